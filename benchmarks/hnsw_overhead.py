"""vecstore's HNSW search next to raw hnswlib on the same data, interleaved in one process.

    .venv/bin/python benchmarks/hnsw_overhead.py [--n 100000] [--ef 48]

The cross-process sweep in ann.py runs each system at a different moment of a shared
machine's load; this script alternates 1,000-query blocks of raw ``knn_query`` and
``collection.search`` (same M, ef_construction, ef; two graphs built from the same rows) so
both see the same load, and reports the median of the per-block QPS ratios. It also times
the layers in between: the index wrapper and the collection.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import hnswlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vecstore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--ef", type=int, default=48)
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, args.dim)).astype(np.float32)
    x = (centres[rng.integers(0, 100, args.n)] + 0.2 * rng.standard_normal((args.n, args.dim))).astype(np.float32)
    qs = (centres[rng.integers(0, 100, 1000)] + 0.2 * rng.standard_normal((1000, args.dim))).astype(np.float32)
    col = vecstore.connect(tempfile.mkdtemp()).create_database("b").require_collection("c", dim=args.dim, metric="l2")
    col.add(x)
    col.build_index("HNSW-L2", M=16, ef_construction=200, ef=args.ef)
    raw = hnswlib.Index("l2", args.dim)
    raw.init_index(args.n, 16, 200)
    raw.add_items(x)
    raw.set_ef(args.ef)
    index = col._default.index
    layers = {"raw hnswlib knn_query": lambda q: raw.knn_query(q, k=10),
              "vecstore index (search_trusted)": lambda q: index.search_trusted(q[None, :], 10, None),
              "vecstore collection.search": lambda q: col.search(q, k=10)}
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(args.blocks):
        for name, fn in layers.items():
            t = time.perf_counter()
            for q in qs:
                fn(q)
            times[name].append(time.perf_counter() - t)
    base = np.array(times["raw hnswlib knn_query"])
    print(f"\n### HNSW per-call overhead: {args.n:,} × {args.dim}, M=16, ef_construction=200, ef={args.ef}, "
          f"k=10, {args.blocks} interleaved blocks of 1,000 queries\n")
    print("| layer | µs per query (median block) | QPS vs raw hnswlib (median of block ratios) |\n|---|---|---|")
    for name, ts in times.items():
        arr = np.array(ts)
        print(f"| {name} | {np.median(arr) / len(qs) * 1e6:.1f} | {np.median(base / arr):.2f}× |")
    col.database.client.close()


if __name__ == "__main__":
    main()
