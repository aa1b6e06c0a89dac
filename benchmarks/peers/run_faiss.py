"""faiss-cpu: ``IndexHNSWFlat`` (variant ``hnsw``: M, efConstruction, efSearch = ef) and
``IndexIVFFlat`` (variant ``ivf``: n_clusters lists, nprobe). Batch = one ``search`` call.
Runs in benchmarks/.peers/faiss."""

from __future__ import annotations

import os
import time

import faiss
import numpy as np

from _common import Data, Timer, disk_bytes, emit, log, parse_args, point, single_queries


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    p = a.params
    d = data.dim
    with Timer() as t_build:
        if a.variant == "hnsw":
            index = faiss.IndexHNSWFlat(d, p.get("M", 16))
            index.hnsw.efConstruction = p.get("ef_construction", 200)
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, p.get("n_clusters", 1024))
            index.train(data.base)
        index.add(data.base)
    log(f"faiss-{a.variant}: build {t_build.s:.2f}s threads {faiss.omp_get_max_threads()}")
    out = {"system": f"faiss-{a.variant}", "version": faiss.__version__, "ingest_s": 0.0,
           "index_s": t_build.s, "build_s": t_build.s}

    def set_breadth(index, b):
        if a.variant == "hnsw":
            index.hnsw.efSearch = b
        else:
            index.nprobe = b

    out["sweep"] = []
    for b in a.sweep:
        set_breadth(index, b)
        lat, res = single_queries(lambda q: index.search(q[None, :], 10)[1][0], data.queries, a.budget, a.min_queries)
        pt = point(b, lat, res, data.gt, lambda qs: list(index.search(qs, 10)[1]), data.queries)
        log(f"  breadth {b}: recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
        out["sweep"].append(pt)
    path = os.path.join(a.workdir, "index.faiss")
    faiss.write_index(index, path)
    out["disk_bytes"] = disk_bytes(path)
    del index
    t = time.perf_counter()
    index = faiss.read_index(path)
    set_breadth(index, a.sweep[0])
    index.search(data.queries[:1], 10)
    out["reopen_s"] = time.perf_counter() - t
    emit(out)


if __name__ == "__main__":
    main()
