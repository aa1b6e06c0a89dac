"""Plain numpy brute force (the limit for exact search): ``‖x‖² − 2·X·q`` over the in-memory
matrix, ``argpartition`` + sort of the top 10. Filtered: the mask ``bucket < t`` computed per
query, the allowed rows gathered, then the same. "Disk" is the .npy file; "reopen" is
``np.load`` + the first query. Runs in /work/main/.venv."""

from __future__ import annotations

import os
import time

import numpy as np

from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries


def topk(x: np.ndarray, sq: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    d = sq - 2.0 * (q[None, :] @ x.T)[0]  # the gemm form vecstore uses; x @ q (gemv) was slower here
    kk = min(k, len(d))
    idx = np.argpartition(d, kk - 1)[:kk]
    return idx[np.argsort(d[idx])]


def batch_topk(x: np.ndarray, sq: np.ndarray, qs: np.ndarray, k: int = 10) -> list:
    out = []
    for s in range(0, len(qs), 256):
        d = sq[None, :] - 2.0 * (qs[s:s + 256] @ x.T)
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(d, idx, 1)
        out.extend(np.take_along_axis(idx, np.argsort(part, axis=1), 1))
    return out


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    x = np.ascontiguousarray(data.base)
    with Timer() as t_build:
        sq = np.einsum("ij,ij->i", x, x)
    out = {"system": "numpy", "version": np.__version__, "ingest_s": 0.0, "index_s": t_build.s,
           "build_s": t_build.s}
    if a.mode == "filtered":
        def filtered(q, t):
            allowed = np.flatnonzero(data.bucket < t)
            return allowed[topk(x[allowed], sq[allowed], q)]
        out["filtered"] = filtered_runs(filtered, lambda q: topk(x, sq, q), data, a.budget, a.min_queries)
        emit(out)
        return
    lat, res = single_queries(lambda q: topk(x, sq, q), data.queries, a.budget, a.min_queries)
    pt = point(None, lat, res, data.gt, lambda qs: batch_topk(x, sq, qs), data.queries)
    log(f"  recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
    out["sweep"] = [pt]
    path = os.path.join(a.data, "base.npy")
    out["disk_bytes"] = disk_bytes(path)
    t = time.perf_counter()
    y = np.load(path)
    topk(y, np.einsum("ij,ij->i", y, y), data.queries[0])
    out["reopen_s"] = time.perf_counter() - t
    emit(out)


if __name__ == "__main__":
    main()
