"""Core benchmark: ingest rate, exact-search latency and reopen time on 100k x 128 clustered
float32 (fixed seed), side by side with a bare numpy matrix product over the same matrix.

    .venv/bin/python benchmarks/core.py [--n 100000] [--dim 128]

Prints a markdown table (paste into BENCHMARKS.md). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vecstore  # noqa: E402


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    return (centres[rng.integers(0, clusters, n)] + 0.2 * rng.standard_normal((n, dim))).astype(np.float32)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def p(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    x = clustered(args.n, args.dim)
    qs = clustered(args.queries, args.dim, seed=1)
    fields = [{"lang": ("en", "de", "fr")[i % 3], "rank": i % 100, "title": f"doc {i}"} for i in range(args.n)]
    root = Path(tempfile.mkdtemp())
    rows = []
    try:
        client = vecstore.connect(root)
        col = client.create_database("bench").require_collection("c", dim=args.dim, metric="ip")
        t = time.perf_counter()
        col.add(x, fields=fields)
        ingest = time.perf_counter() - t
        rows.append(("ingest 100k rows with fields (rows/s)", f"{args.n / ingest:,.0f}", "—", "goal ≥ 50,000"))

        # numpy: the same matrix, the same top-k selection.
        m = np.ascontiguousarray(x)

        def np_search(q):
            s = m @ q
            idx = np.argpartition(-s, 10)[:10]
            return idx[np.argsort(-s[idx])]

        # Interleaved blocks (ours, numpy, ours, numpy, ...) so load on a shared machine hits
        # both alike; the ratio is the median of per-block ratios.
        ours, bare, ratios = [], [], []
        for block in np.array_split(qs, 10):
            a = timed(lambda: None, 0)
            for q in block:
                a += timed(lambda q=q: col.search(q, k=10), 1)
            b = []
            for q in block:
                b += timed(lambda q=q: np_search(q), 1)
            ours += a
            bare += b
            ratios.append(float(np.median(a) / np.median(b)))
        rows.append(("exact search p50 (ms)", f"{p(ours, 50):.3f}", f"{p(bare, 50):.3f}",
                     f"ratio {np.median(ratios):.2f}× (goal ≤ 1.3×)"))
        rows.append(("exact search p99 (ms)", f"{p(ours, 99):.3f}", f"{p(bare, 99):.3f}",
                     f"ratio {p(ours, 99) / p(bare, 99):.2f}×"))
        ours_b = timed(lambda: col.batch_search(qs[:100], k=10), 5)
        bare_b = timed(lambda: np.argpartition(-(qs[:100] @ m.T), 10, axis=1), 5)
        rows.append(("batch of 100 queries (ms)", f"{statistics.median(ours_b) * 1e3:.1f}",
                     f"{statistics.median(bare_b) * 1e3:.1f}",
                     f"ratio {statistics.median(ours_b) / statistics.median(bare_b):.2f}×"))
        client.close()
        t = time.perf_counter()
        client = vecstore.connect(root)
        col = client.get_database("bench").get_collection("c")
        col.search(qs[0], k=10)
        reopen = time.perf_counter() - t
        rows.append(("reopen 100k rows to first result (s)", f"{reopen:.2f}", "—", "goal < 1 s"))
        client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n### Core: {args.n:,} × {args.dim} clustered float32, seed 0\n")
    print("| measure | vecstore | bare numpy | note |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
