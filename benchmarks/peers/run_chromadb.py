"""chromadb local ``PersistentClient(path)``: a collection with an HNSW configuration (l2,
max_neighbors = M, ef_construction), added in batches of ``get_max_batch_size()``; ef swept
with ``collection.modify(configuration={"hnsw": {"ef_search": ef}})`` then a reopen
(``clear_system_cache`` + a new client: measured, the loaded index keeps its old ef otherwise); filter = ``where``
``{"bucket": {"$lt": t}}``. Batch = one ``query`` with many embeddings. Build time runs until
the first query answers. Runs in benchmarks/.peers/chromadb."""

from __future__ import annotations

import time

import chromadb
import numpy as np

from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    p = a.params
    client = chromadb.PersistentClient(path=a.workdir, settings=chromadb.Settings(anonymized_telemetry=False))
    ef0 = p.get("filter_breadth") or (a.sweep or [64])[0]
    cfg = {"hnsw": {"space": "l2", "max_neighbors": p.get("M", 16), "ef_construction": p.get("ef_construction", 200),
                    "ef_search": ef0}}
    col = client.create_collection("bench", configuration=cfg, embedding_function=None)
    ids = [str(i) for i in range(data.n)]
    step = client.get_max_batch_size()
    with Timer() as t_ingest:
        for s in range(0, data.n, step):
            kw = {}
            if data.bucket is not None:
                kw["metadatas"] = [{"bucket": int(b)} for b in data.bucket[s:s + step]]
            col.add(ids=ids[s:s + step], embeddings=data.base[s:s + step], **kw)
    with Timer() as t_index:
        col.query(query_embeddings=data.queries[:1], n_results=10, include=[])
    log(f"chromadb: add {t_ingest.s:.2f}s first query {t_index.s:.2f}s (batch {step})")
    out = {"system": "chromadb", "version": chromadb.__version__, "ingest_s": t_ingest.s, "index_s": t_index.s,
           "build_s": t_ingest.s + t_index.s}

    state = {"col": col}

    def one(q, where=None):
        r = state["col"].query(query_embeddings=q[None, :], n_results=10, where=where, include=[])
        return [int(x) for x in r["ids"][0]]

    def batch(qs):
        return [[int(x) for x in r] for r in state["col"].query(query_embeddings=qs, n_results=10, include=[])["ids"]]

    if a.mode == "filtered":
        out["breadth"] = ef0
        out["filtered"] = filtered_runs(lambda q, t: one(q, {"bucket": {"$lt": t}}), one, data, a.budget, a.min_queries)
        emit(out)
        return
    out["sweep"] = []
    for ef in a.sweep or [ef0]:
        if ef != ef0:
            state["col"].modify(configuration={"hnsw": {"ef_search": ef}})
            client.clear_system_cache()
            client = chromadb.PersistentClient(path=a.workdir, settings=chromadb.Settings(anonymized_telemetry=False))
            state["col"] = client.get_collection("bench")
            ef0 = ef
        lat, res = single_queries(one, data.queries, a.budget, a.min_queries)
        pt = point(ef, lat, res, data.gt, batch, data.queries)
        log(f"  ef {ef}: recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
        out["sweep"].append(pt)
    state["col"].modify(configuration={"hnsw": {"ef_search": (a.sweep or [ef0])[0]}})
    client.clear_system_cache()
    del state, col, client
    out["disk_bytes"] = disk_bytes(a.workdir)
    t = time.perf_counter()
    client = chromadb.PersistentClient(path=a.workdir, settings=chromadb.Settings(anonymized_telemetry=False))
    col = client.get_collection("bench")
    col.query(query_embeddings=data.queries[:1], n_results=10, include=[])
    out["reopen_s"] = time.perf_counter() - t
    emit(out)


if __name__ == "__main__":
    main()
