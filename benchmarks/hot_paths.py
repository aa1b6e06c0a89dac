"""Single-query latency of each search path, for two source trees side by side: did a change
cost anything on ordinary data?

    .venv/bin/python benchmarks/hot_paths.py --trees OLD_TREE,. [--rounds 3] [--n 100000]

``OLD_TREE`` is a checkout of the other commit (``git worktree add --detach /tmp/old <commit>``;
its ``vecstore/server`` may be missing, nothing here needs it). Each round runs one child process
per tree, alternately, so both trees see the machine's load of that moment; a child builds the
same data (100 Gaussian clusters, spread 0.2, seed 0; 300 queries, seed 1) into a temporary
store and reports the median µs per ``collection.search`` over 5 blocks for IVF-L2 (1280 lists,
nprobe 10), HNSW-L2 and HNSW-IP (M 16, ef_construction 200, ef 48), FLAT-COS, FLAT-IP and
FLAT-L2. The table gives, per path and tree, the median over the rounds and the range, and
FLAT-COS over FLAT-IP measured in the same child (a ratio the machine's load mostly cancels).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

PATHS = [("IVF-L2", "l2", "IVF-L2", {"n_clusters": 1280}, 10, 300),
         ("HNSW-L2", "l2", "HNSW-L2", {}, 48, 300),
         ("HNSW-IP", "ip", "HNSW-IP", {}, 48, 300),
         ("FLAT-COS", "cosine", None, {}, None, 60),
         ("FLAT-IP", "ip", None, {}, None, 60),
         ("FLAT-L2", "l2", None, {}, None, 60)]


def child(n: int, dim: int) -> None:
    import tempfile
    import time

    import vecstore
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, dim)).astype(np.float32)
    x = (centres[rng.integers(0, 100, n)] + 0.2 * rng.standard_normal((n, dim))).astype(np.float32)
    qrng = np.random.default_rng(1)
    qs = (centres[qrng.integers(0, 100, 300)] + 0.2 * qrng.standard_normal((300, dim))).astype(np.float32)
    out = {}
    with tempfile.TemporaryDirectory() as root, vecstore.connect(root) as client:
        db = client.create_database("bench")
        for name, metric, mode, params, nprobe, nq in PATHS:
            col = db.require_collection(name.lower(), dim=dim, metric=metric)
            col.add(x)
            if mode:
                col.build_index(mode, **params)
            blocks = []
            for _ in range(5):
                t = time.perf_counter()
                for q in qs[:nq]:
                    col.search(q, k=10, nprobe=nprobe)
                blocks.append((time.perf_counter() - t) / nq * 1e6)
            out[name] = float(np.median(blocks))
            db.drop_collection(name.lower())
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", required=True, help="two source trees, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.n, args.dim)
    trees = [str(Path(t).resolve()) for t in args.trees.split(",")]
    runs: dict[str, list[dict]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run([sys.executable, __file__, "--child", "--n", str(args.n), "--dim", str(args.dim),
                                  "--trees", args.trees], env=env, cwd="/", capture_output=True, text=True, check=True)
            runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {tree}: {runs[tree][-1]}  (1-min load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    print("| path | " + " | ".join(f"`{t}` µs (median, range)" for t in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for name, *_ in PATHS:
        cells = []
        for t in trees:
            v = [run[name] for run in runs[t]]
            cells.append(f"{np.median(v):.1f} ({min(v):.1f}–{max(v):.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for t in trees:
        v = [run["FLAT-COS"] / run["FLAT-IP"] for run in runs[t]]
        cells.append(f"{np.median(v):.2f}× ({min(v):.2f}–{max(v):.2f})")
    print("| FLAT-COS / FLAT-IP | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
