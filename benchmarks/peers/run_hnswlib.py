"""Raw hnswlib 0.8 (the limit for vecstore's HNSW path): the same M / ef_construction / seed,
``set_ef(ef)`` + ``knn_query``; filtered search with hnswlib's own ``filter=`` callback over a
precomputed boolean mask. Runs in /work/main/.venv."""

from __future__ import annotations

import os
import time

import hnswlib
import numpy as np

from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    p = a.params
    index = hnswlib.Index(space="l2", dim=data.dim)
    with Timer() as t_build:
        index.init_index(max_elements=data.n, M=p.get("M", 16), ef_construction=p.get("ef_construction", 200),
                         random_seed=100)
        index.add_items(data.base, np.arange(data.n))
    log(f"hnswlib: build {t_build.s:.2f}s")
    out = {"system": "hnswlib", "version": getattr(hnswlib, "__version__", "0.8.0"),
           "ingest_s": 0.0, "index_s": t_build.s, "build_s": t_build.s}

    if a.mode == "filtered":
        ef = p.get("filter_breadth") or 64
        index.set_ef(ef)
        out["breadth"] = ef
        masks = {}

        def filtered(q, t):
            if t not in masks:
                masks[t] = (data.bucket < t).__getitem__  # label -> numpy bool, as a user would write it
            return index.knn_query(q, k=10, num_threads=1, filter=masks[t])[0][0]

        out["filtered"] = filtered_runs(filtered, lambda q: index.knn_query(q, k=10)[0][0],
                                        data, a.budget, a.min_queries)
        emit(out)
        return

    out["sweep"] = []
    for ef in a.sweep or [64]:
        index.set_ef(ef)
        lat, res = single_queries(lambda q: index.knn_query(q, k=10)[0][0], data.queries, a.budget, a.min_queries)
        pt = point(ef, lat, res, data.gt, lambda qs: list(index.knn_query(qs, k=10)[0]), data.queries)
        log(f"  ef {ef}: recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
        out["sweep"].append(pt)
    path = os.path.join(a.workdir, "index.bin")
    index.save_index(path)
    out["disk_bytes"] = disk_bytes(path)
    del index
    t = time.perf_counter()
    index = hnswlib.Index(space="l2", dim=data.dim)
    index.load_index(path)
    index.set_ef((a.sweep or [64])[0])
    index.knn_query(data.queries[0], k=10)
    out["reopen_s"] = time.perf_counter() - t
    emit(out)


if __name__ == "__main__":
    main()
