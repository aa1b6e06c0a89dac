"""lancedb (local, OSS): one table (id, bucket, vector FixedSizeList<float32>). Variants:
``ivfpq`` (``create_index`` IVF_PQ, l2, num_partitions 256 / num_sub_vectors 16, ``nprobes``
20 = lance's default; the breadth swept is ``refine_factor``, the re-ranking of PQ candidates
with full vectors: PQ alone gives recall@10 ≈ 0.24 on this data, and nprobes barely moves it) and ``flat`` (no index:
brute-force scan). Filter: ``.where("bucket < t", prefilter=True)``. Batch = ``search`` with a
list of query vectors. Runs in benchmarks/.peers/lancedb."""

from __future__ import annotations

import time

import lancedb
import numpy as np
import pyarrow as pa

from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    p = a.params
    db = lancedb.connect(a.workdir)
    cols = {"id": pa.array(np.arange(data.n, dtype=np.int64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(data.base.reshape(-1)), data.dim)}
    if data.bucket is not None:
        cols["bucket"] = pa.array(data.bucket)
    with Timer() as t_ingest:
        tbl = db.create_table("t", data=pa.table(cols))
    nprobes = p.get("nprobes", 20)
    with Timer() as t_index:
        if a.variant == "ivfpq":
            tbl.create_index(metric="l2", num_partitions=p.get("num_partitions", 256),
                             num_sub_vectors=p.get("num_sub_vectors", 16), index_type="IVF_PQ")
    log(f"lancedb-{a.variant}: ingest {t_ingest.s:.2f}s index {t_index.s:.2f}s")
    out = {"system": f"lancedb-{a.variant}", "version": lancedb.__version__, "ingest_s": t_ingest.s,
           "index_s": t_index.s, "build_s": t_ingest.s + t_index.s}

    def query(tb, q, b, where=None):
        s = tb.search(q).distance_type("l2").limit(10).select(["id"])
        if a.variant == "ivfpq":
            s = s.nprobes(nprobes).refine_factor(b)
        if where is not None:
            s = s.where(where, prefilter=True)
        return s

    def one(q, b, where=None):
        return query(tbl, q, b, where).to_arrow()["id"].to_numpy()

    def batch(qs, b):
        t = query(tbl, [q for q in qs], b).with_row_id(False).to_arrow()
        qi, ids = t["query_index"].to_numpy(), t["id"].to_numpy()
        return [ids[qi == i] for i in range(len(qs))]

    if a.mode == "filtered":
        b = p.get("filter_breadth") or 20  # refine_factor
        out["breadth"] = b
        out["filtered"] = filtered_runs(lambda q, t: one(q, b, f"bucket < {t}"), lambda q: one(q, b),
                                        data, a.budget, a.min_queries)
        emit(out)
        return
    out["sweep"] = []
    for b in a.sweep or [None]:
        lat, res = single_queries(lambda q: one(q, b), data.queries, a.budget, a.min_queries)
        pt = point(b, lat, res, data.gt, lambda qs: batch(qs, b), data.queries)
        log(f"  refine_factor {b}: recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
        out["sweep"].append(pt)
    del tbl, db
    out["disk_bytes"] = disk_bytes(a.workdir)
    t = time.perf_counter()
    tbl = lancedb.connect(a.workdir).open_table("t")
    one(data.queries[0], (a.sweep or [None])[0])
    out["reopen_s"] = time.perf_counter() - t
    emit(out)


if __name__ == "__main__":
    main()
