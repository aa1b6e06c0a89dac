"""External-collection benchmark: refresh of an Iceberg table of 100k x 128 clustered float32
(fixed seed), then an incremental refresh of 10k appended rows, side by side with the bare cost
of the same work: reading the rows with pyiceberg (``scan().to_arrow()`` + the vector column to
numpy) and building / extending an index with raw hnswlib (same M, ef_construction, metric and
threads).

    .venv/bin/python benchmarks/external.py [--n 100000] [--dim 128] [--append 10000]
                                            [--encoding list|fixed] [--M 16] [--ef-construction 200]

Goals (issue 8): a full refresh within 1.3x of (bare read + bare build); an incremental refresh
proportional to the appended rows (within 1.3x of bare read + bare add of those rows).
Prints a markdown table (paste into BENCHMARKS.md) with the machine load before and after: the
box is shared, so compare ratios, not seconds. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import hnswlib
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import vecstore  # noqa: E402
from iceberg_util import Lake, vector_array  # noqa: E402


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    return (centres[rng.integers(0, clusters, n)] + 0.2 * rng.standard_normal((n, dim))).astype(np.float32)


def rows(x: np.ndarray, start: int, encoding: str) -> pa.Table:
    ids = np.arange(start, start + len(x), dtype=np.int64)
    return pa.table({"id": pa.array(ids), "vec": vector_array(x, encoding),
                     "title": pa.array([f"doc {i}" for i in ids.tolist()]),
                     "year": pa.array((1990 + ids % 30).astype(np.int32)),
                     "price": pa.array(ids * 0.5)})


def to_numpy(col: pa.ChunkedArray, dim: int) -> np.ndarray:
    """The bare conversion of a vector column (list<float> or fixed[4*dim]) to (n, dim) float32."""
    parts = []
    for chunk in col.chunks:
        if pa.types.is_fixed_size_binary(chunk.type):
            parts.append(np.frombuffer(chunk.buffers()[1], dtype="<f4", count=len(chunk) * dim,
                                       offset=chunk.offset * 4 * dim).reshape(-1, dim))
        else:
            parts.append(chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim))
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def bare_run(lake: Lake, s1: int, s2: int, dim: int, args: argparse.Namespace, threads: int) -> dict:
    """pyiceberg read + raw hnswlib build of snapshot s1, then read + add of the rows s2 appended."""
    n, m = args.n, args.append
    out = {}
    t = time.perf_counter()
    arrow = lake.load().scan(snapshot_id=s1).to_arrow()
    x = to_numpy(arrow.column("vec"), dim)
    ids = arrow.column("id").to_numpy()
    out["read"] = time.perf_counter() - t
    assert x.shape == (n, dim)
    del arrow
    t = time.perf_counter()
    raw = hnswlib.Index(space="l2", dim=dim)
    raw.init_index(max_elements=n + m, M=args.M, ef_construction=args.ef_construction, random_seed=100)
    raw.add_items(x, ids, num_threads=threads)
    out["build"] = time.perf_counter() - t
    t = time.perf_counter()
    inc = lake.load().incremental_append_scan(from_snapshot_id_exclusive=s1, to_snapshot_id_inclusive=s2).to_arrow()
    inc_x = to_numpy(inc.column("vec"), dim)
    inc_ids = inc.column("id").to_numpy()
    out["read_inc"] = time.perf_counter() - t
    assert inc_x.shape == (m, dim)
    t = time.perf_counter()
    raw.add_items(inc_x, inc_ids, num_threads=threads)
    out["add_inc"] = time.perf_counter() - t
    out["index"] = raw
    return out


def vecstore_run(db, name: str, lake: Lake, s1: int, args: argparse.Namespace) -> dict:
    """create + full refresh pinned at s1, then an incremental refresh to the latest snapshot
    (the same spec without the pin: an append-only delta), then a no-op refresh."""
    out = {}
    spec = {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "l2", "M": args.M,
                                           "efConstruction": args.ef_construction}}
    db.create_external_collection(name, lake.source(), {**spec, "snapshotId": s1})
    t = time.perf_counter()
    job = db.wait_refresh_job(db.refresh_external_collection(name), timeout=3600)
    out["full"] = time.perf_counter() - t
    assert job.state == "COMPLETED", job.reason
    out["full_phases"] = job.stats["phaseMs"]
    col = db.get_collection(name)
    assert len(col) == args.n
    t = time.perf_counter()
    job = db.wait_refresh_job(db.refresh_external_collection(name, lake.source(), spec), timeout=3600)
    out["inc"] = time.perf_counter() - t
    assert job.state == "COMPLETED" and job.stats["mode"] == "append", (job.reason, job.stats.get("mode"))
    out["inc_phases"] = job.stats["phaseMs"]
    assert len(col) == args.n + args.append
    t = time.perf_counter()
    job = db.wait_refresh_job(db.refresh_external_collection(name), timeout=60)
    out["noop"] = time.perf_counter() - t
    assert job.stats["mode"] == "no_op"
    out["col"] = col
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--append", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=4, help="data files the first n rows are written in")
    ap.add_argument("--encoding", choices=("list", "fixed"), default="list")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2,
                    help="rounds, alternating which side runs first (ABBA); the best of each is kept")
    args = ap.parse_args()
    n, dim, m = args.n, args.dim, args.append
    x = clustered(n + m, dim)
    threads = os.cpu_count() or 1
    load_before = load()
    root = Path(tempfile.mkdtemp(prefix="vecstore-bench-ext-"))
    try:
        lake = Lake(root / "lake")
        tbl = lake.create_table("docs", dim=dim, encoding=args.encoding)
        step = -(-n // args.files)
        t = time.perf_counter()
        for start in range(0, n, step):
            tbl.append(rows(x[start:min(n, start + step)], start, args.encoding))
        t_write = time.perf_counter() - t
        s1 = tbl.current_snapshot().snapshot_id
        t = time.perf_counter()
        tbl.append(rows(x[n:], n, args.encoding))
        t_write_append = time.perf_counter() - t
        s2 = tbl.current_snapshot().snapshot_id

        client = vecstore.connect(root / "store")
        db = client.create_database("bench")
        bares, ours = [], []
        for r in range(args.repeat):
            for side in (("bare", "ours") if r % 2 == 0 else ("ours", "bare")):
                if side == "bare":
                    bares.append(bare_run(lake, s1, s2, dim, args, threads))
                else:
                    ours.append(vecstore_run(db, f"ext{r}", lake, s1, args))
                    if r:
                        db.drop_collection(f"ext{r - 1}")

        # recall of both indexes against brute force (sanity: the same graph quality)
        rng = np.random.default_rng(1)
        allx = x[: n + m]
        qs = (allx[rng.choice(n + m, 100, replace=False)] + 0.05 * rng.standard_normal((100, dim))).astype(np.float32)
        d = (qs ** 2).sum(1)[:, None] - 2 * qs @ allx.T + (allx ** 2).sum(1)[None, :]
        truth = np.argsort(d, axis=1)[:, :10]
        col = ours[-1]["col"]
        recall_ours = np.mean([len(set(col.search(q, k=10).ids) & set(tr.tolist())) / 10 for q, tr in zip(qs, truth)])
        raw = bares[-1]["index"]
        raw.set_ef(64)
        lab, _ = raw.knn_query(qs, k=10)
        recall_raw = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(lab, truth)])
        client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    best = lambda runs, key: min(r[key] for r in runs)  # noqa: E731
    t_read, t_build, t_read_inc, t_add_inc = (best(bares, k) for k in ("read", "build", "read_inc", "add_inc"))
    t_full, t_inc, t_noop = (best(ours, k) for k in ("full", "inc", "noop"))
    bare_full = t_read + t_build
    bare_inc = t_read_inc + t_add_inc
    r_full = t_full / bare_full
    r_inc = t_inc / bare_inc
    print(f"\n### External collection refresh: Iceberg ({args.encoding}) {n:,} x {dim} + {m:,} appended, "
          f"HNSW M={args.M} ef_construction={args.ef_construction}, {threads} threads, seed 0, "
          f"best of {args.repeat} (ABBA)\n")
    print(f"load average (1/5/15 min) before: {load_before}; after: {load()}\n")
    print("| measure | vecstore | bare (pyiceberg read + raw hnswlib) | ratio | goal |")
    print("|---|---|---|---|---|")
    print(f"| full refresh, {n:,} rows | {t_full:.2f} s | {bare_full:.2f} s (read {t_read:.2f} + build {t_build:.2f}) "
          f"| {r_full:.2f}x | <= 1.3x: {'met' if r_full <= 1.3 else 'NOT met'} |")
    print(f"| incremental refresh, {m:,} appended | {t_inc:.2f} s | {bare_inc:.2f} s (read {t_read_inc:.2f} + add "
          f"{t_add_inc:.2f}) | {r_inc:.2f}x | <= 1.3x: {'met' if r_inc <= 1.3 else 'NOT met'} |")
    print(f"| incremental / full | {t_inc / t_full:.3f} | {bare_inc / bare_full:.3f} | rows {m / n:.3f} | proportional |")
    print(f"| no-op refresh | {t_noop * 1e3:.0f} ms | | | completes at once |")
    print(f"| recall@10 (ef 64) | {recall_ours:.3f} | {recall_raw:.3f} | | same graph quality |")
    print("\nvecstore phases (ms), each round: " + "; ".join(
        f"full {o['full_phases']}, incremental {o['inc_phases']}" for o in ours))
    print("bare (s), each round: " + "; ".join(
        f"read {b['read']:.2f} build {b['build']:.2f} read_inc {b['read_inc']:.2f} add_inc {b['add_inc']:.2f}"
        for b in bares))
    print(f"Writing the table: {t_write:.1f} s ({args.files} files) + {t_write_append:.1f} s (append).")


if __name__ == "__main__":
    main()
