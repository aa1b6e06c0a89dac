"""Long-running writers: what churn costs (rows rewritten, deleted, compacted, a crash).

Four measures, each next to its baseline in the same run (fixed seeds):

1. **reopen after a crash**: a child process upserts rows of an HNSW collection in rounds and
   exits without closing (as ``kill -9`` would); the parent times the reopen against a fresh
   build of the same index.
2. **unchanged vectors**: upsert 5,000 of 20,000 rows with the vectors they have and new
   fields, and restore 5,000 soft-deleted rows, with HNSW and IVF, against FLAT (no index).
3. **rows ever written**: a rolling window of 20,000 live rows through which ``--passed``
   rows go (add a batch, delete the oldest batch, compact); a filtered HNSW search, timed
   against the same collection before the churn.
4. **change log**: the store's file and a snapshot after the same rolling window, against a
   collection holding the same live rows written once.

    python benchmarks/churn.py [--passed 1000000] [--json out.json]

Run it with ``PYTHONPATH=<tree>`` to compare two trees of vecstore (it uses the public API only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import vecstore

DIM = 32


def best_latency(fn, queries, repeat: int = 5) -> float:
    """Median over queries of the best of ``repeat`` runs, in microseconds."""
    times = []
    for q in queries:
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn(q)
            best = min(best, time.perf_counter() - t)
        times.append(best)
    return statistics.median(times) * 1e6


_CHILD = r"""
import os, sys, numpy as np, vecstore
root, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
col = vecstore.connect(root).get_database("app").get_collection("c")
for _ in range(rounds):
    ids = rng.choice(n, n // 2, replace=False).tolist()
    col.upsert(rng.standard_normal((len(ids), 32)).astype(np.float32), ids=ids)
os._exit(0)  # no close, no checkpoint: what kill -9 leaves
"""


def crash_reopen(tmp: Path, n: int = 20_000, rounds: int = 2) -> dict:
    root = tmp / "crash"
    rng = np.random.default_rng(0)
    with vecstore.connect(root) as c:
        col = c.create_database("app").require_collection("c", dim=DIM, metric="l2")
        col.add(rng.standard_normal((n, DIM)).astype(np.float32), ids=list(range(n)))
        t = time.perf_counter()
        col.build_index("HNSW")
        build = time.perf_counter() - t
    subprocess.run([sys.executable, "-c", _CHILD, str(root), str(n), str(rounds)], check=True)
    t = time.perf_counter()
    with vecstore.connect(root) as c:
        c.get_database("app").get_collection("c").search(np.zeros(DIM, np.float32), k=1)
        reopen = time.perf_counter() - t
    return {"crash: fresh HNSW build (s)": build, "crash: reopen + first search (s)": reopen}


def unchanged_vectors(tmp: Path, n: int = 20_000, m: int = 5_000) -> dict:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    out = {}
    with vecstore.connect(tmp / "same") as c:
        db = c.create_database("app")
        for mode in ("FLAT", "HNSW", "IVF"):
            col = db.require_collection(mode.lower(), dim=DIM, metric="l2")
            col.add(x, ids=list(range(n)), fields=[{"g": i % 7} for i in range(n)])
            col.build_index(mode)
            ids = list(range(m))
            t = time.perf_counter()
            col.upsert(x[:m], ids=ids, fields=[{"g": 9}] * m)
            out[f"same-vector upsert of {m:,} ({mode}) (s)"] = time.perf_counter() - t
            col.delete_items(ids)
            t = time.perf_counter()
            col.restore_items(ids)
            out[f"restore of {m:,} ({mode}) (s)"] = time.perf_counter() - t
    return out


def rolling_window(tmp: Path, passed: int, live: int = 20_000, batch: int = 100_000) -> dict:
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((100, DIM)).astype(np.float32)
    out = {}
    with vecstore.connect(tmp / "rolling") as c:
        db = c.create_database("app")
        col = db.require_collection("c", dim=DIM, metric="l2")
        col.add(rng.standard_normal((live, DIM)).astype(np.float32), ids=list(range(live)),
                fields=[{"g": i % 10} for i in range(live)])
        col.build_index("HNSW")
        search = lambda q: col.search(q, k=10, where="g < 6")  # noqa: E731
        out["filtered HNSW search, fresh (us)"] = best_latency(search, queries)
        first, nxt = 0, live
        while nxt - live < passed:  # rows pass through: add a batch, drop the oldest, compact
            b = min(batch, live + passed - nxt)
            col.add(rng.standard_normal((b, DIM)).astype(np.float32), ids=list(range(nxt, nxt + b)),
                    fields=[{"g": i % 10} for i in range(nxt, nxt + b)])
            col.delete_items(list(range(first, first + b)))
            col.compact()
            first, nxt = first + b, nxt + b
        assert len(col) == live
        out[f"filtered HNSW search, after {passed:,} rows passed through (us)"] = best_latency(search, queries)
        col.checkpoint()
        out["store file after churn (MB)"] = os.path.getsize(col.path / "data.mdb") / 1e6
        snap = tmp / "churned.snap"
        col.snapshot_to(snap)
        out["snapshot after churn (MB)"] = snap.stat().st_size / 1e6
        vecs = col.query_vectors()
        once = db.require_collection("once", dim=DIM, metric="l2")
        once.add(vecs.vectors, ids=list(vecs.ids), fields=list(vecs.fields))
        once.snapshot_to(tmp / "once.snap")
        out["snapshot of the same rows written once (MB)"] = (tmp / "once.snap").stat().st_size / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passed", type=int, default=1_000_000, help="rows through the rolling window")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vecstore-churn-"))
    try:
        results = {"vecstore": os.path.dirname(vecstore.__file__), "load_start": os.getloadavg()[0]}
        for part in (crash_reopen, unchanged_vectors):
            results.update(part(tmp))
        results.update(rolling_window(tmp, args.passed))
        results["load_end"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in results.items():
        print(f"{k:60} {v:,.3f}" if isinstance(v, float) else f"{k:60} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
