"""Shared by every adapter in this folder: stdlib + numpy only (each peer venv has numpy).

An adapter is run by ``benchmarks/ann.py`` or ``benchmarks/filtered.py`` as

    <peer venv>/bin/python benchmarks/peers/run_<name>.py --data DIR --workdir TMP --mode ann|filtered
        [--variant hnsw|ivf|flat|...] [--sweep 10,16,32] [--budget 5] [--params JSON]

It loads the ``.npy`` files the driver wrote, measures, and prints exactly one JSON line on
stdout (anything else goes to stderr). The driver reads the last stdout line that parses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

K = 10
THRESHOLDS = (1, 10, 100, 500)  # bucket < t, bucket uniform in 0..999: 0.1 %, 1 %, 10 %, 50 %


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with base.npy, queries.npy, gt.npy, ...")
    ap.add_argument("--workdir", required=True, help="an empty directory the system may write to")
    ap.add_argument("--mode", choices=("ann", "filtered"), default="ann")
    ap.add_argument("--variant", default="")
    ap.add_argument("--sweep", default="", help="comma-separated search breadths (ef / nprobe)")
    ap.add_argument("--budget", type=float, default=5.0, help="seconds of single queries per sweep point")
    ap.add_argument("--min-queries", type=int, default=100)
    ap.add_argument("--params", default="{}", help="JSON: M, ef_construction, n_clusters, filter_breadth, ...")
    a = ap.parse_args()
    a.sweep = [int(s) for s in a.sweep.split(",") if s]
    a.params = json.loads(a.params)
    return a


class Data:
    def __init__(self, directory: str, mode: str) -> None:
        d = Path(directory)
        self.base = np.load(d / "base.npy")
        self.queries = np.load(d / "queries.npy")
        self.gt = np.load(d / "gt.npy")
        self.n, self.dim = self.base.shape
        self.bucket = np.load(d / "bucket.npy") if mode == "filtered" else None
        self.gt_filtered = ({t: np.load(d / f"gt_bucket_lt_{t}.npy") for t in THRESHOLDS}
                            if mode == "filtered" else {})


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def recall(results: Sequence[Any], gt: np.ndarray) -> float:
    """Mean |found ∩ true top-k| / |true top-k| over the queries answered (gt pads with -1)."""
    tot = 0.0
    for i, r in enumerate(results):
        truth = {int(x) for x in gt[i][:K] if x >= 0}
        if not truth:
            tot += 1.0
            continue
        tot += len(truth.intersection(int(x) for x in list(r)[:K])) / len(truth)
    return tot / max(1, len(results))


def single_queries(search_one: Callable[[np.ndarray], Any], queries: np.ndarray, budget: float,
                   min_queries: int, warmup: int = 5, min_time: float = 1.0) -> tuple[np.ndarray, list]:
    """Sequential single queries on one thread. The first pass over ``queries`` gives the
    results (for recall); it stops early after ``budget`` seconds once ``min_queries`` are done.
    Fast systems then repeat the same queries until ``min_time`` seconds of queries have run, so
    that QPS and percentiles rest on enough samples. Returns latencies (s) and first-pass results."""
    for q in queries[:warmup]:
        search_one(q)
    lat, res = [], []
    t0 = time.perf_counter()
    stop = t0 + budget
    for i, q in enumerate(queries):
        t = time.perf_counter()
        r = search_one(q)
        lat.append(time.perf_counter() - t)
        res.append(r)
        if i + 1 >= min_queries and time.perf_counter() > stop:
            break
    used = queries[:len(res)]
    while time.perf_counter() - t0 < min_time:
        for q in used:
            t = time.perf_counter()
            search_one(q)
            lat.append(time.perf_counter() - t)
    return np.asarray(lat), res


def point(breadth: Any, lat: np.ndarray, res: list, gt: np.ndarray,
          batch: Callable[[np.ndarray], list] | None = None, queries: np.ndarray | None = None) -> dict:
    """One sweep point: latency percentiles, sequential QPS, recall, and batch QPS over the same
    queries when the system has a batch API."""
    out = {"breadth": breadth, "n_queries": len(res), "n_timed": len(lat),
           "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
           "qps": float(len(lat) / lat.sum()), "recall": recall(res, gt)}
    if batch is not None and queries is not None:
        qs = queries[:len(res)]
        batch(qs[:5])  # warm-up
        t = time.perf_counter()
        bres = batch(qs)
        dt = time.perf_counter() - t
        out["batch_qps"] = float(len(qs) / dt)
        out["batch_recall"] = recall(bres, gt)
    return out


def disk_bytes(path: str | os.PathLike) -> int:
    """Allocated bytes under ``path`` (st_blocks: LMDB and others preallocate sparse files)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def filtered_runs(search_filtered: Callable[[np.ndarray, int], Any], search_plain: Callable[[np.ndarray], Any],
                  data: Data, budget: float, min_queries: int) -> dict:
    """Unfiltered baseline, then each selectivity: p50/p99/QPS/recall vs exact filtered truth."""
    lat, res = single_queries(search_plain, data.queries, budget, min_queries)
    out: dict = {"unfiltered": point(None, lat, res, data.gt)}
    for t in THRESHOLDS:
        lat, res = single_queries(lambda q, t=t: search_filtered(q, t), data.queries, budget, min_queries)
        pt = point(None, lat, res, data.gt_filtered[t])
        pt["selectivity"] = t / 1000
        out[f"lt_{t}"] = pt
        log(f"  bucket < {t}: p50 {pt['p50_ms']:.3f} ms recall {pt['recall']:.4f} ({pt['n_queries']} q)")
    return out


def emit(result: dict) -> None:
    result.setdefault("peak_rss_mb", peak_rss_mb())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class Timer:
    def __enter__(self) -> "Timer":
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.t
