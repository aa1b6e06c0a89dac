"""Filtered-search benchmark (issue 4): latency and recall@10 of ``where``-filtered k-NN at
selectivities 0.1 %, 1 %, 10 % and 50 %, side by side with raw hnswlib's ``filter=`` callback,
numpy, and the peers that filter natively (chromadb ``where``, lancedb ``.where(prefilter=True)``,
qdrant local ``query_filter``, LynseDB ``where``).

    .venv/bin/python benchmarks/filtered.py                 # 100k x 128; --write-md to update BENCHMARKS.md
    .venv/bin/python benchmarks/filtered.py --n 20000 --only vecstore-hnsw,hnswlib

Data: the same as benchmarks/ann.py (same seeds), plus an int field ``bucket`` uniform in
0..999 (seed 2): ``bucket < 1`` / ``< 10`` / ``< 100`` / ``< 500``. Truth = exact top-10 over
the allowed rows (float64). Each system runs in its own subprocess (benchmarks/peers/); every
system searches at one fixed breadth: HNSW ef = 64 (vecstore's default), IVF nprobe = vecstore's
default, lancedb refine_factor 20 at nprobes 20. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import ann
from ann import DATA, HNSW, REPO, THRESHOLDS, ensure_data, fmt, machine, replace_section, run_adapter, wait_for_quiet

EF = 64


def systems(n_clusters: int) -> dict[str, dict]:
    s = ann.systems(n_clusters)
    out = {}
    for name, breadth in [("vecstore-hnsw", EF), ("vecstore-flat", None), ("vecstore-ivf", None), ("hnswlib", EF),
                          ("numpy", None), ("chromadb", EF), ("lancedb-ivfpq", 20), ("lancedb-flat", None),
                          ("qdrant-local", None), ("lynsedb-hnsw", EF), ("lynsedb-flat", None)]:
        spec = dict(s[name])
        spec["params"] = dict(spec.get("params") or {}, filter_breadth=breadth)
        spec["sweep"] = None
        out[name] = spec
    return out


def markdown(meta: dict, results: list[dict]) -> str:
    sel = [f"{t / 10:g} %" for t in THRESHOLDS]
    L = [f"Data: {meta['n']:,} × {meta['dim']} float32 (as in the ANN section), field `bucket` uniform in 0..999; "
         f"filters `bucket < 1`, `< 10`, `< 100`, `< 500`; {meta['nq']} queries (≥ 100 or {meta['budget']:.0f} s per "
         "cell, sequential, one thread); recall@10 vs exact brute force over the allowed rows. "
         f"HNSW ef = {EF} everywhere (M={HNSW['M']}, ef_construction={HNSW['ef_construction']}). "
         f"Machine: {meta['machine']}; 1-min load average at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}.",
         *[f"{m['systems']} from an earlier run of the same script and data ({m['date']}, 1-min load "
           f"{m['load_start']:.2f} → {m['load_end']:.2f}): {m['why']}" for m in meta.get("merged", [])],
         "",
         "p50 latency in ms / recall@10:",
         "",
         "| system | unfiltered | " + " | ".join(sel) + " | p50 at 1 % ÷ unfiltered p50 |",
         "|---|---|" + "---|" * len(sel) + "---|"]
    for r in results:
        if "error" in r:
            L.append(f"| {r['system']} | failed: {r['error']} |" + " |" * (len(sel) + 1))
            continue
        f = r["filtered"]
        cells = [f"{f['unfiltered']['p50_ms']:.3f} / {f['unfiltered']['recall']:.3f}"]
        for t in THRESHOLDS:
            c = f[f"lt_{t}"]
            cells.append(f"{c['p50_ms']:.3f} / {c['recall']:.3f}")
        ratio = f["lt_10"]["p50_ms"] / f["unfiltered"]["p50_ms"]
        L.append(f"| {r['system']} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
    L += ["", "p99 latency (ms):", "", "| system | unfiltered | " + " | ".join(sel) + " |",
          "|---|---|" + "---|" * len(sel)]
    for r in results:
        if "error" in r:
            continue
        f = r["filtered"]
        L.append(f"| {r['system']} | {f['unfiltered']['p99_ms']:.3f} | "
                 + " | ".join(f"{f[f'lt_{t}']['p99_ms']:.3f}" for t in THRESHOLDS) + " |")
    L += ["", "**Goals** (vecstore)", "", "| goal | measured | met |", "|---|---|---|"]
    for name in ("vecstore-hnsw", "vecstore-flat", "vecstore-ivf"):
        r = next((x for x in results if x["system"] == name), None)
        if r is None:
            continue
        if "error" in r:
            L.append(f"| {name}: recall ≥ 0.95 at every selectivity | failed: {r['error']} | no |")
            continue
        f = r["filtered"]
        recs = [f[f"lt_{t}"]["recall"] for t in THRESHOLDS]
        L.append(f"| {name}: recall@10 ≥ 0.95 at every selectivity | min {min(recs):.3f} "
                 f"({', '.join(f'{s}: {x:.3f}' for s, x in zip(sel, recs))}) | {'yes' if min(recs) >= 0.95 else 'no'} |")
        ratio = f["lt_10"]["p50_ms"] / f["unfiltered"]["p50_ms"]
        L.append(f"| {name}: p50 at 1 % ≤ 2× unfiltered p50 | {f['lt_10']['p50_ms']:.3f} ms vs "
                 f"{f['unfiltered']['p50_ms']:.3f} ms = {ratio:.2f}× | {'yes' if ratio <= 2 else 'no'} |")
        if r.get("plans"):
            L.append(f"| {name}: plan chosen (`search_profile`) | "
                     + ", ".join(f"{s}: `{r['plans'][str(t)]}`" for s, t in zip(sel, THRESHOLDS)) + " | |")
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--only", default="")
    ap.add_argument("--skip", default="")
    ap.add_argument("--budget", type=float, default=4.0)
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--max-wait", type=float, default=1200.0)
    ap.add_argument("--write-md", action="store_true", help="replace '## Filtered search (issue 4)' in BENCHMARKS.md")
    ap.add_argument("--report", metavar="JSON", help="re-render markdown from a results JSON")
    args = ap.parse_args()
    if args.report:
        out_json = Path(args.report)
        doc = json.loads(out_json.read_text())
    else:
        data_dir = ensure_data(args.n, args.dim, args.queries, filtered=True)
        (DATA / "results").mkdir(parents=True, exist_ok=True)
        n_clusters = int(round(4 * math.sqrt(args.n) / 64)) * 64 or 64
        specs = systems(n_clusters)
        names = [s for s in (args.only.split(",") if args.only else specs) if s and s not in set(args.skip.split(","))]
        load_start = wait_for_quiet(args.max_load, args.max_wait)
        results = []
        for name in names:
            wait_for_quiet(args.max_load, args.max_wait, cap=90)
            print(f"== {name} (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
            r = run_adapter(name, specs[name], data_dir, "filtered", args.budget, args.timeout, DATA / "results")
            print(f"   {r.get('error') or 'ok'} in {r.get('wall_s', 0):.0f}s", file=sys.stderr)
            results.append(r)
        meta = {"n": args.n, "dim": args.dim, "nq": args.queries, "budget": args.budget, "machine": machine(),
                "load_start": load_start, "load_end": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        doc = {"meta": meta, "results": results}
        out_json = DATA / "results" / f"filtered_n{args.n}.json"
        out_json.write_text(json.dumps(doc, indent=1))
    md = markdown(doc["meta"], doc["results"])
    out_json.with_suffix(".md").write_text(md + "\n")
    print(md)
    if args.write_md and doc["meta"]["n"] == 100_000:
        body = ("Run: `.venv/bin/python benchmarks/filtered.py --write-md` (see benchmarks/README.md). "
                f"Raw JSON: benchmarks/data/results/filtered_n{doc['meta']['n']}.json (git-ignored).\n\n{md}")
        replace_section(REPO / "BENCHMARKS.md", "## Filtered search (issue 4)", body)


if __name__ == "__main__":
    main()
