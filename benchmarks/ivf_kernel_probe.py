"""What a compiled IVF scan would buy: a probe for a design decision, not shipped code.

vecstore's IVF is numpy (issue 3 asks to be ahead of faiss IVF at recall 0.95; it is not). This
script measures, on the ANN benchmark's 100k x 128 data, in one process and interleaved:
faiss ``IndexIVFFlat`` (1280 lists, its own k-means), vecstore's ``collection.search`` and its
``IvfIndex.search`` (numpy), and the same index scanned by two numba kernels written here -
float32 rows, and uint8 scalar-quantised rows re-ranked exactly from 40 candidates - each
followed by vecstore's exact re-score. numba and faiss are not vecstore dependencies: run it
in its own venv (git-ignored)::

    python3.11 -m venv benchmarks/.peers/kernel
    benchmarks/.peers/kernel/bin/pip install -e . numba faiss-cpu
    benchmarks/.peers/kernel/bin/python benchmarks/ivf_kernel_probe.py

(the data comes from ``benchmarks/ann.py``'s first run). Results: BENCHMARKS.md, "ANN (issue 3)".
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from numba import njit

import vecstore

DATA = Path(__file__).parent / "data" / "clustered_n100000_d128_q1000_s0"
FM = {"reassoc", "contract"}  # vectorised sums; no "ninf": tombstones carry an infinite bias


@njit(cache=True, nogil=True, fastmath=FM)
def _sift(vals, idx, n):
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        m = left + 1 if left + 1 < n and vals[left + 1] > vals[left] else left
        if vals[m] <= vals[i]:
            return
        vals[i], vals[m] = vals[m], vals[i]
        idx[i], idx[m] = idx[m], idx[i]
        i = m


@njit(cache=True, nogil=True, fastmath=FM)
def _lists(ct, qx, nprobe):
    """The nprobe best lists: centres stored transposed, so the scan is vectorised across them."""
    w, n_lists = ct.shape
    rank = np.zeros(n_lists, np.float32)
    for j in range(w):
        if qx[j] != 0:
            for c in range(n_lists):
                rank[c] += ct[j, c] * qx[j]
    hv = np.full(nprobe, np.inf, np.float32)
    hi = np.full(nprobe, -1, np.int64)
    for c in range(n_lists):
        if rank[c] < hv[0]:
            hv[0], hi[0] = rank[c], c
            _sift(hv, hi, nprobe)
    return hi


@njit(cache=True, nogil=True, fastmath=FM)
def scan_f32(ct, x, start, size, qx, nprobe, kk):
    rv, ri = np.full(kk, np.inf, np.float32), np.full(kk, -1, np.int64)
    for c in _lists(ct, qx, nprobe):
        if c < 0:
            continue
        for row in range(start[c], start[c] + size[c]):
            s = np.float32(0.0)
            for j in range(x.shape[1]):
                s += x[row, j] * qx[j]
            if s < rv[0]:
                rv[0], ri[0] = s, row
                _sift(rv, ri, kk)
    return ri


@njit(cache=True, nogil=True, fastmath=FM)
def scan_sq8(ct, codes, bias, start, size, qx, q8, qoff, nprobe, kk):
    rv, ri = np.full(kk, np.inf, np.float32), np.full(kk, -1, np.int64)
    for c in _lists(ct, qx, nprobe):
        if c < 0:
            continue
        for row in range(start[c], start[c] + size[c]):
            s = np.float32(0.0)
            for j in range(codes.shape[1]):
                s += q8[j] * np.float32(codes[row, j])
            s += bias[row] + qoff
            if s < rv[0]:
                rv[0], ri[0] = s, row
                _sift(rv, ri, kk)
    return ri


def main() -> None:
    base, qs, gt = (np.load(DATA / f) for f in ("base.npy", "queries.npy", "gt.npy"))
    d = base.shape[1]
    col = vecstore.connect(tempfile.mkdtemp()).create_database("b").require_collection("c", dim=d, metric="l2")
    col.add(base, ids=np.arange(len(base)))
    col.build_index("IVF-L2", n_clusters=1280)
    idx = col._default.index
    lists = idx._lists
    start, size = np.asarray(lists.start, np.int64), np.asarray(lists.size, np.int64)
    ct = np.ascontiguousarray(idx._c_ext.T)
    live = np.isfinite(lists.x[:, d])
    lo, hi = lists.x[live, :d].min(0), lists.x[live, :d].max(0)
    scale = (hi - lo) / 255
    codes = np.clip(np.round((lists.x[:, :d] - lo) / scale), 0, 255).astype(np.uint8)
    bias = np.ascontiguousarray(lists.x[:, d])
    fi = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, 1280)
    fi.train(base)
    fi.add(base)

    def ext(q):
        qx = np.zeros(lists.x.shape[1], np.float32)
        qx[:d], qx[d] = -2 * q, 1
        return qx

    def f32(q, p):
        rows = scan_f32(ct, lists.x, start, size, ext(q), p, 18)
        return idx._exact(lists, q, rows[rows >= 0])[0][:10]

    def sq8(q, p):
        qx = ext(q)
        rows = scan_sq8(ct, codes, bias, start, size, qx, qx[:d] * scale, np.float32(qx[:d] @ lo), p, 40)
        return idx._exact(lists, q, rows[rows >= 0])[0][:10]

    systems = {
        "faiss IndexIVFFlat": lambda q, p: (setattr(fi, "nprobe", p), fi.search(q[None], 10)[1][0])[1],
        "vecstore collection.search": lambda q, p: col.search(q, k=10, nprobe=p).ids,
        "vecstore IvfIndex.search": lambda q, p: idx.search(q[None], 10, breadth=p)[0][0],
        "numba f32 scan + exact": f32,
        "numba sq8 scan (40) + exact": sq8,
    }
    for f in systems.values():
        f(qs[0], 8)   # compile
    best: dict = {}
    for _ in range(3):
        for p in (8, 10, 12, 16):
            for name, f in systems.items():
                t = time.perf_counter()
                out = [f(q, p) for q in qs]
                us = (time.perf_counter() - t) / len(qs) * 1e6
                rec = np.mean([len(set(np.asarray(o).tolist()) & set(g.tolist())) / 10 for o, g in zip(out, gt)])
                best[name, p] = (min(us, best.get((name, p), (1e9,))[0]), rec)
    print(f"faiss threads {faiss.omp_get_max_threads()}")
    print("| nprobe | system | µs/query | QPS | recall@10 |\n|---:|---|---:|---:|---:|")
    for p in (8, 10, 12, 16):
        for name in systems:
            us, rec = best[name, p]
            print(f"| {p} | {name} | {us:.1f} | {1e6 / us:,.0f} | {rec:.4f} |")


if __name__ == "__main__":
    main()
