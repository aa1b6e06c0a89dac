"""LynseDB embedded mode (``lynse.VectorDBClient(<local path>)``: the Rust backend in-process,
no HTTP). Variants: ``hnsw`` (``HNSW-L2``, m / ef_construction, ``nprobe`` = ef_search),
``ivf`` (``IVF-L2``, n_clusters, ``nprobe`` = lists), ``flat`` (``FLAT-L2``). Filter: its SQL
``where``. Runs in benchmarks/.peers/lynsedb."""

from __future__ import annotations

import time

import lynse
import numpy as np

from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries

MODES = {"hnsw": "HNSW-L2", "ivf": "IVF-L2", "flat": "FLAT-L2"}


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    p = a.params
    client = lynse.VectorDBClient(a.workdir)
    col = client.create_database("b").require_collection("c", dim=data.dim, default_index=None)
    fields = [{"bucket": int(b)} for b in data.bucket] if data.bucket is not None else None
    with Timer() as t_ingest:
        ids = col.add(vectors=data.base, fields=fields, batch_size=10_000)
        col.commit()
    assert list(ids[:2]) == [0, 1] and ids[-1] == data.n - 1, "expected auto ids 0..n-1"
    kw = {}
    if a.variant == "hnsw":
        kw = {"m": p.get("M", 16), "ef_construction": p.get("ef_construction", 200)}
    elif a.variant == "ivf":
        kw = {"n_clusters": p.get("n_clusters", 1024)}
    with Timer() as t_index:
        col.build_index(MODES[a.variant], **kw)
    log(f"lynsedb-{a.variant}: ingest {t_ingest.s:.2f}s index {t_index.s:.2f}s")
    out = {"system": f"lynsedb-{a.variant}", "version": lynse.__version__, "ingest_s": t_ingest.s,
           "index_s": t_index.s, "build_s": t_ingest.s + t_index.s}

    if a.mode == "filtered":
        b = p.get("filter_breadth") or 64
        out["breadth"] = b
        out["filtered"] = filtered_runs(lambda q, t: col.search(q, k=10, where=f"bucket < {t}", nprobe=b).ids,
                                        lambda q: col.search(q, k=10, nprobe=b).ids, data, a.budget, a.min_queries)
        emit(out)
        return
    out["sweep"] = []
    for b in a.sweep or [None]:
        lat, res = single_queries(lambda q: col.search(q, k=10, nprobe=b or 10).ids, data.queries, a.budget, a.min_queries)
        pt = point(b, lat, res, data.gt, lambda qs: [r.ids for r in col.batch_search(qs, k=10, nprobe=b or 10)], data.queries)
        log(f"  breadth {b}: recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
        out["sweep"].append(pt)
    col.close()
    del col, client
    out["disk_bytes"] = disk_bytes(a.workdir)
    t = time.perf_counter()
    client = lynse.VectorDBClient(a.workdir)
    col = client.get_database("b").get_collection("c")
    col.search(data.queries[0], k=10, nprobe=(a.sweep or [10])[0])
    out["reopen_s"] = time.perf_counter() - t
    emit(out)


if __name__ == "__main__":
    main()
