"""The remote client's search next to the local one, interleaved in one process.

    .venv/bin/python benchmarks/remote.py [--n 20000] [--dim 128] [--queries 500] [--rounds 5]

A live server on loopback (a thread of this process) over the same store the local client
opens; per round, every query through ``collection.search`` locally, remotely over
``/search_binary`` (the default for integer ids) and remotely forced onto JSON ``/search``.
Reports the best round per mode (µs per query, client and server CPU together: they share the
process) and the ratios. Fixed seed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import vecstore  # noqa: E402
from live_server import start_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = tempfile.mkdtemp()
    local = vecstore.connect(data)
    col = local.create_database("b").require_collection("c", dim=args.dim, metric="l2")
    col.add(rng.standard_normal((args.n, args.dim)).astype(np.float32))
    col.build_index("HNSW-L2", ef_construction=100)
    server = start_server(Path(data), local)
    remote = vecstore.connect(server.url).get_database("b").get_collection("c")
    qs = rng.standard_normal((args.queries, args.dim)).astype(np.float32)

    def binary(q):
        remote._binary_search = True
        return remote.search(q, k=10)

    def json_(q):
        remote._binary_search = False
        return remote.search(q, k=10)

    modes = {"local `collection.search`": lambda q: col.search(q, k=10),
             "remote, `/search_binary` (default)": binary, "remote, JSON `/search`": json_}
    best = dict.fromkeys(modes, float("inf"))
    for _ in range(args.rounds):
        for name, fn in modes.items():
            t = time.perf_counter()
            for q in qs:
                fn(q)
            best[name] = min(best[name], (time.perf_counter() - t) / len(qs))
    server.stop()
    local.close()
    json_us = best["remote, JSON `/search`"]
    print(f"\n{args.n:,} × {args.dim}, HNSW-L2, k=10, {args.queries} queries, best of {args.rounds} rounds\n")
    print("| mode | µs per search | vs remote JSON |\n|---|---:|---:|")
    for name, s in best.items():
        print(f"| {name} | {s * 1e6:.0f} | {json_us / s:.2f}× |")


if __name__ == "__main__":
    main()
