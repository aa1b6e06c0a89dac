"""ANN benchmark (issue 3): vecstore HNSW / IVF / exact side by side with raw hnswlib, numpy,
faiss, chromadb, lancedb, qdrant local and LynseDB embedded, on the same machine and data.

    .venv/bin/python benchmarks/ann.py --install          # once: peer venvs under benchmarks/.peers/
    .venv/bin/python benchmarks/ann.py                    # 100k x 128, writes results + plot
    .venv/bin/python benchmarks/ann.py --n 20000 --only vecstore-hnsw,hnswlib   # quick
    .venv/bin/python benchmarks/ann.py --large            # 1M x 128 as well (slow)

Data: 100 Gaussian clusters (centres N(0,1), spread 0.2), float32, seed 0; queries drawn the
same way (same centres) with seed 1; truth = exact top-10 in float64. Written once to
benchmarks/data/ as .npy. Each system then runs in its own subprocess with its own venv's
python (benchmarks/peers/run_<name>.py), which prints one JSON line; peak RSS is the child's
``ru_maxrss`` from ``wait4``. Results: benchmarks/data/results/ann_n<N>.{json,md}, the plot
benchmarks/ann_recall_qps.png, and with --write-md the "## ANN (issue 3)" section of
BENCHMARKS.md. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
PEERS_DIR = HERE / "peers"
VENVS = HERE / ".peers"
MAIN_PY = REPO / ".venv" / "bin" / "python"
K = 10
SEED = 0
CLUSTERS, SPREAD = 100, 0.2
THRESHOLDS = (1, 10, 100, 500)

EF_SWEEP = [10, 16, 24, 32, 48, 64, 96, 128, 256]
NPROBE_SWEEP = [1, 2, 4, 8, 16, 32, 64, 128]
LANCE_REFINE_SWEEP = [1, 2, 5, 10, 20, 50]
HNSW = {"M": 16, "ef_construction": 200}
AB = ("build-ab", "search-ab")  # in-process A/B runs: goal rows, not systems of the table

# peer venv name -> packages (pip names); python: "3.11" unless stated
PEER_PACKAGES = {
    "faiss": ["faiss-cpu", "numpy"],
    "chromadb": ["chromadb", "numpy"],
    "lancedb": ["lancedb", "pyarrow", "pandas", "numpy"],
    "qdrant": ["qdrant-client", "numpy"],
    "lynsedb": ["lynsedb", "numpy"],
    "plot": ["matplotlib", "numpy"],
}


def venv_python(name: str | None) -> Path:
    return MAIN_PY if name is None else VENVS / name / "bin" / "python"


def systems(n_clusters: int) -> dict[str, dict]:
    """name -> venv (None = /work/main/.venv), adapter script, variant, sweep, params."""
    ivf = {"n_clusters": n_clusters}
    return {
        "numpy": dict(venv=None, script="run_numpy.py"),
        "build-ab": dict(venv=None, script="run_vecstore.py", variant="build-ab", params=HNSW),
        "search-ab": dict(venv=None, script="run_vecstore.py", variant="search-ab", sweep=EF_SWEEP, params=HNSW),
        "vecstore-flat": dict(venv=None, script="run_vecstore.py", variant="flat"),
        "vecstore-hnsw": dict(venv=None, script="run_vecstore.py", variant="hnsw", sweep=EF_SWEEP, params=HNSW),
        "vecstore-ivf": dict(venv=None, script="run_vecstore.py", variant="ivf", sweep=NPROBE_SWEEP, params=ivf),
        "hnswlib": dict(venv=None, script="run_hnswlib.py", sweep=EF_SWEEP, params=HNSW),
        "faiss-hnsw": dict(venv="faiss", script="run_faiss.py", variant="hnsw", sweep=EF_SWEEP, params=HNSW),
        "faiss-ivf": dict(venv="faiss", script="run_faiss.py", variant="ivf", sweep=NPROBE_SWEEP, params=ivf),
        "chromadb": dict(venv="chromadb", script="run_chromadb.py", sweep=EF_SWEEP, params=HNSW),
        "lancedb-ivfpq": dict(venv="lancedb", script="run_lancedb.py", variant="ivfpq", sweep=LANCE_REFINE_SWEEP),
        "lancedb-flat": dict(venv="lancedb", script="run_lancedb.py", variant="flat"),
        "qdrant-local": dict(venv="qdrant", script="run_qdrant.py"),
        "lynsedb-hnsw": dict(venv="lynsedb", script="run_lynsedb.py", variant="hnsw", sweep=EF_SWEEP, params=HNSW),
        "lynsedb-ivf": dict(venv="lynsedb", script="run_lynsedb.py", variant="ivf", sweep=NPROBE_SWEEP, params=ivf),
        "lynsedb-flat": dict(venv="lynsedb", script="run_lynsedb.py", variant="flat"),
    }


# ------------------------------------------------------------------------------------- data --

def clustered(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        out[s:s + m] = centres[rng.integers(0, len(centres), m)] + SPREAD * rng.standard_normal((m, dim), np.float32)
    return out


def exact_topk(base64: np.ndarray, sq: np.ndarray, qs: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact top-K by squared L2 in float64; -1 pads when fewer than K rows are allowed."""
    out = np.full((len(qs), K), -1, np.int64)
    x, s2, idx_map = (base64, sq, None) if allowed is None else (base64[allowed], sq[allowed], allowed)
    step = max(1, 20_000_000 // max(1, len(x)))
    for s in range(0, len(qs), step):
        q = qs[s:s + step].astype(np.float64)
        d = s2[None, :] - 2.0 * (q @ x.T)
        kk = min(K, d.shape[1])
        if kk == 0:
            continue
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        order = np.argsort(np.take_along_axis(d, part, 1), axis=1, kind="stable")
        top = np.take_along_axis(part, order, 1)
        out[s:s + step, :kk] = top if idx_map is None else idx_map[top]
    return out


def ensure_data(n: int, dim: int, nq: int, filtered: bool = False) -> Path:
    d = DATA / f"clustered_n{n}_d{dim}_q{nq}_s{SEED}"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "gt.npy").exists():
        t = time.perf_counter()
        rng = np.random.default_rng(SEED)
        centres = rng.standard_normal((CLUSTERS, dim)).astype(np.float32)
        base = clustered(n, dim, centres, rng)
        queries = clustered(nq, dim, centres, np.random.default_rng(SEED + 1))
        bucket = np.random.default_rng(SEED + 2).integers(0, 1000, n).astype(np.int32)
        np.save(d / "base.npy", base)
        np.save(d / "queries.npy", queries)
        np.save(d / "bucket.npy", bucket)
        b64 = base.astype(np.float64)
        np.save(d / "gt.npy", exact_topk(b64, np.einsum("ij,ij->i", b64, b64), queries))
        print(f"data: wrote {d.name} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    if filtered and not all((d / f"gt_bucket_lt_{t}.npy").exists() for t in THRESHOLDS):
        base, queries, bucket = np.load(d / "base.npy"), np.load(d / "queries.npy"), np.load(d / "bucket.npy")
        b64 = base.astype(np.float64)
        sq = np.einsum("ij,ij->i", b64, b64)
        for t in THRESHOLDS:
            np.save(d / f"gt_bucket_lt_{t}.npy", exact_topk(b64, sq, queries, np.flatnonzero(bucket < t)))
    return d


# ---------------------------------------------------------------------------------- running --

_WAITED = [0.0]  # seconds waited so far in this run (the whole run waits at most --max-wait)


def wait_for_quiet(limit: float, max_wait: float, cap: float | None = None) -> float:
    """Sleep while the 1-minute load average is above ``limit``: at most ``cap`` s this time and
    ``max_wait`` s summed over the run; then go on and let the recorded load tell."""
    t0 = time.time()
    cap = max_wait if cap is None else cap
    while os.getloadavg()[0] > limit and time.time() - t0 < cap and _WAITED[0] + (time.time() - t0) < max_wait:
        print(f"load {os.getloadavg()[0]:.2f} > {limit}: waiting", file=sys.stderr)
        time.sleep(10)
    _WAITED[0] += time.time() - t0
    return os.getloadavg()[0]


def run_adapter(name: str, spec: dict, data_dir: Path, mode: str, budget: float, timeout: float,
                log_dir: Path, extra_params: dict | None = None) -> dict:
    """Run one adapter in a subprocess; return its JSON (+ rss from wait4) or an error record."""
    py = venv_python(spec.get("venv"))
    if not py.exists():
        return {"system": name, "error": f"venv benchmarks/.peers/{spec.get('venv')} missing (run ann.py --install)"}
    work = Path(tempfile.mkdtemp(prefix=f"vsbench-{name}-"))
    params = dict(spec.get("params") or {}, **(extra_params or {}))
    cmd = [str(py), str(PEERS_DIR / spec["script"]), "--data", str(data_dir), "--workdir", str(work),
           "--mode", mode, "--variant", spec.get("variant", ""), "--budget", str(budget),
           "--sweep", ",".join(map(str, spec.get("sweep") or [])), "--params", json.dumps(params)]
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    load_before = os.getloadavg()[0]
    errlog = log_dir / f"{mode}_{name}.log"
    outfile = work.with_name(work.name + ".out")
    t = time.perf_counter()
    ru, returncode, timed_out = None, None, False
    with open(errlog, "w") as err, open(outfile, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        # reap it ourselves with wait4: its own rusage (peak RSS), which Popen.wait would discard
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                returncode = os.waitstatus_to_exitcode(status)
                proc.returncode = returncode
                break
            if time.perf_counter() - t > timeout:
                proc.kill()
                timed_out = True
            time.sleep(0.05)
    stdout = outfile.read_text(errors="replace")
    outfile.unlink()
    wall = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    result = None
    for line in reversed(stdout.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    if result is not None and "error" in result:
        return {"system": name, "error": result["error"], "wall_s": time.perf_counter() - t, "partial": result}
    if result is None:
        tail = [ln for ln in errlog.read_text(errors="replace").strip().splitlines() if ln.strip()]
        why = tail[-1].strip() if tail else f"exit code {returncode}"
        if returncode is not None and returncode < 0:
            why = f"killed by signal {-returncode}" + (f" ({why})" if tail else "")
        if timed_out:
            why = f"timed out after {timeout:.0f}s"
        return {"system": name, "error": why[:200], "wall_s": wall}
    result["system"] = name
    result["wall_s"] = wall
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()[0]
    if ru is not None:  # the child's own peak (max over it and its reaped children)
        result["peak_rss_mb"] = max(result.get("peak_rss_mb", 0), ru.ru_maxrss / 1024)
    return result


def install(names: list[str]) -> None:
    VENVS.mkdir(exist_ok=True)
    for name in names:
        venv = VENVS / name
        if not (venv / "bin" / "python").exists():
            subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(venv)], check=True)
        pkgs = PEER_PACKAGES[name]
        print(f"installing {pkgs} into {venv}", file=sys.stderr)
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pkgs])
        if r.returncode:
            print(f"  {name}: pip failed ({r.returncode})", file=sys.stderr)


# -------------------------------------------------------------------------------- reporting --

def pareto(sweep: list[dict]) -> list[dict]:
    return sorted(sweep, key=lambda p: p["recall"])


def qps_at(sweep: list[dict], target: float) -> float | None:
    """Best single-query QPS among sweep points with recall ≥ target (None if none reaches it)."""
    ok = [p["qps"] for p in sweep if p["recall"] >= target]
    return max(ok) if ok else None


def qps_interp(sweep: list[dict], target: float) -> float | None:
    """QPS at exactly ``target`` recall, interpolated (log QPS, linear recall) between the two
    sweep points around it on the recall-vs-QPS frontier; None outside the measured range."""
    pts = sorted(((p["recall"], p["qps"]) for p in sweep))
    front = []
    for r, q in reversed(pts):  # keep points not dominated (higher recall and higher QPS)
        if not front or q > front[-1][1]:
            front.append((r, q))
    front.reverse()
    for (r0, q0), (r1, q1) in zip(front, front[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return max(q0, q1)
            w = (target - r0) / (r1 - r0)
            return math.exp(math.log(q0) + w * (math.log(q1) - math.log(q0)))
    if front and front[0][0] >= target:
        return front[0][1]
    return None


def operating_point(res: dict) -> dict | None:
    """The fastest sweep point with recall@10 ≥ 0.95; else the highest-recall point."""
    sweep = res.get("sweep") or []
    if not sweep:
        return None
    ok = [p for p in sweep if p["recall"] >= 0.95]
    return max(ok, key=lambda p: p["qps"]) if ok else max(sweep, key=lambda p: p["recall"])


def fmt(x, spec=".1f", none="—"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return format(x, spec)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def markdown(meta: dict, results: list[dict]) -> str:
    by = {r["system"]: r for r in results}
    L = [f"Data: {meta['n']:,} × {meta['dim']} float32, {CLUSTERS} Gaussian clusters (spread {SPREAD}), seed {SEED}; "
         f"{meta['nq']} queries from the same clusters (seed {SEED + 1}); recall@10 vs exact float64 brute force. "
         f"Machine: {meta['machine']}. 1-min load average before/after each system in the JSON; "
         f"at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}. "
         f"HNSW: M={HNSW['M']}, ef_construction={HNSW['ef_construction']}; IVF: n_clusters={meta['n_clusters']}. "
         f"Single queries are sequential on one Python thread (≥ 100 queries or {meta['budget']:.0f} s per point); "
         "batch = the system's batch call over the same queries with its default threads. "
         "Build = ingest + index until searchable. Reopen = open the persisted store + first result (same process, warm page cache).",
         *[f"Added afterwards ({m['date']}, 1-min load {m['load_start']:.2f} → {m['load_end']:.2f}): "
           + ", ".join(m["systems"]) + "." for m in meta.get("merged", [])],
         "",
         "Per system, the operating point is the fastest sweep point with recall@10 ≥ 0.95 (or its best recall if none).",
         "",
         "| system | version | build s | breadth | recall@10 | p50 ms | p99 ms | QPS | batch QPS | peak RSS MB | disk MB | reopen s |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["system"] in AB:
            continue
        if "error" in r:
            L.append(f"| {r['system']} | — | failed: {r['error']} |||||||||")
            continue
        p = operating_point(r) or {}
        L.append("| " + " | ".join([
            r["system"], str(r.get("version", "")), fmt(r.get("build_s"), ".2f"),
            fmt(p.get("breadth"), "", "exact"), fmt(p.get("recall"), ".4f"), fmt(p.get("p50_ms"), ".3f"),
            fmt(p.get("p99_ms"), ".3f"), fmt(p.get("qps"), ",.0f"), fmt(p.get("batch_qps"), ",.0f"),
            fmt(r.get("peak_rss_mb"), ",.0f"), fmt((r.get("disk_bytes") or 0) / 2**20 if "disk_bytes" in r else None, ",.1f"),
            fmt(r.get("reopen_s"), ".3f")]) + " |")

    # goals
    vs, hl = by.get("vecstore-hnsw"), by.get("hnswlib")
    L += ["", "**Goals**", "", "| goal | measured | ratio | met |", "|---|---|---|---|"]
    sab = by.get("search-ab")
    if sab and "sweep" in sab:
        # The goal's measurement: both in one process, alternating passes (same machine state).
        side = {name: [{"recall": p[f"{name}_recall"], "qps": p[f"{name}_qps"]} for p in sab["sweep"]]
                for name in ("vecstore", "hnswlib")}
        for target in (0.90, 0.95, 0.99):
            a, b = qps_interp(side["vecstore"], target), qps_interp(side["hnswlib"], target)
            rr = ratio(a, b)
            L.append(f"| vecstore HNSW single-query QPS ≥ 0.8× hnswlib at recall {target:.2f} (A/B in one process, "
                     f"best of {sab['passes']} alternating passes, interpolated) | {fmt(a, ',.0f')} vs {fmt(b, ',.0f')} | "
                     f"{fmt(rr, '.2f')}× | {'yes' if rr and rr >= 0.8 else 'no'} |")
        L.append("| … A/B per ef, QPS ratio (recall vecstore / hnswlib): " + ", ".join(
            f"{p['breadth']}: {p['vecstore_qps'] / p['hnswlib_qps']:.2f} ({p['vecstore_recall']:.3f}/{p['hnswlib_recall']:.3f})"
            for p in sab["sweep"]) + " | | | |")
    if vs and hl and "sweep" in vs and "sweep" in hl:
        for target in (0.90, 0.95, 0.99):
            a, b = qps_interp(vs["sweep"], target), qps_interp(hl["sweep"], target)
            rr = ratio(a, b)
            L.append(f"| … the same from the sweep above (separate processes, each at its own moment's load) at recall "
                     f"{target:.2f} | {fmt(a, ',.0f')} vs {fmt(b, ',.0f')} | {fmt(rr, '.2f')}× | context |")
        sg = vs.get("same_graph") or []
        if sg:
            ef48 = next((f"{g['vecstore_us']:.0f} µs vs {g['raw_us']:.0f} µs" for g in sg if g["breadth"] == 48), "—")
            L.append("| … diagnostic: `col.search` vs hnswlib `knn_query` on vecstore's own graph (same recall), "
                     "best of 3 interleaved passes, per ef (" + ", ".join(f"{g['breadth']}: {g['ratio']:.2f}" for g in sg)
                     + f") | e.g. ef 48: {ef48} | "
                     f"min {min(g['ratio'] for g in sg):.2f}× | diagnostic |")
        ab = by.get("build-ab")
        if ab and "rounds" in ab:
            rab = ratio(ab["hnswlib_best_s"], ab["vecstore_best_s"])
            L.append(f"| … build, A/B in one process ({len(ab['rounds'])} alternating rounds, best of each): "
                     "vecstore `add` + `build_index` vs hnswlib `init_index` + `add_items` | "
                     f"{ab['vecstore_best_s']:.2f} s vs {ab['hnswlib_best_s']:.2f} s (rounds: "
                     + "; ".join(f"{x['vecstore_s']:.1f}/{x['hnswlib_s']:.1f}" for x in ab["rounds"])
                     + f") | {fmt(rab, '.2f')}× | {'yes' if rab and rab >= 0.7 else 'no'} |")
        rb = ratio(hl["build_s"], vs["build_s"])
        L.append(f"| … build from the table above (separate processes) | {vs['build_s']:.2f} s vs {hl['build_s']:.2f} s "
                 f"(index alone {vs['index_s']:.2f} s) | {fmt(rb, '.2f')}× | context |")
    if vs and "sweep" in vs:
        # Every system at exactly recall 0.95, interpolated on its own recall-QPS frontier, so
        # no one gains or loses by where its sweep grid happens to cross 0.95; vecstore's figure
        # is the faster of its HNSW and IVF.
        ours = {n: qps_interp(by[n]["sweep"], 0.95) for n in ("vecstore-hnsw", "vecstore-ivf")
                if n in by and by[n].get("sweep")}
        best = max(ours, key=lambda n: ours[n] or 0)
        mine = ours[best]
        for r in results:
            if r["system"] in ("vecstore-hnsw", "vecstore-ivf", "vecstore-flat", "hnswlib", "numpy", *AB) or "error" in r:
                continue
            theirs = qps_interp(r.get("sweep") or [], 0.95)
            what = f"ahead of {r['system']} at recall 0.95 (interpolated; vecstore: {best.split('-')[1].upper()})"
            if theirs is None:
                L.append(f"| {what} | {fmt(mine, ',.0f')} vs never reaches 0.95 | — | yes |")
            else:
                rr = ratio(mine, theirs)
                L.append(f"| {what} | {fmt(mine, ',.0f')} vs {theirs:,.0f} QPS | "
                         f"{fmt(rr, '.2f')}× | {'yes' if rr and rr > 1 else 'no'} |")
        for r in results:
            if "error" in r and r["system"] not in ("numpy", "hnswlib"):
                L.append(f"| ahead of {r['system']} | not measured: {r['error']} | — | — |")

    L += ["", "<details><summary>Full sweep (single-query QPS / recall@10 per breadth)</summary>", "",
          "| system | breadth | recall@10 | p50 ms | p99 ms | QPS | batch QPS | queries |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["system"] in AB:
            continue
        for p in r.get("sweep") or []:
            L.append(f"| {r['system']} | {fmt(p['breadth'], '', 'exact')} | {p['recall']:.4f} | {p['p50_ms']:.3f} | "
                     f"{p['p99_ms']:.3f} | {p['qps']:,.0f} | {fmt(p.get('batch_qps'), ',.0f')} | {p['n_queries']} |")
    L += ["", "</details>"]
    return "\n".join(L)


def plot(json_path: Path, png: Path) -> None:
    """Run under a python that has matplotlib (benchmarks/.peers/plot)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    doc = json.loads(json_path.read_text())
    fig, ax = plt.subplots(figsize=(9, 6))
    colours = plt.get_cmap("tab20").colors
    markers = "osD^v<>ph*"
    for i, r in enumerate(x for x in doc["results"] if x.get("sweep") and x["system"] not in AB):
        pts = r["sweep"]  # in breadth order
        ours = r["system"].startswith("vecstore")
        ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], "-" if len(pts) > 1 else "",
                marker=markers[i % len(markers)], color=colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
                label=r["system"], lw=2.8 if ours else 1.2, ms=6 if ours else 4)
    ax.set_yscale("log")
    lo = min(p["recall"] for r in doc["results"] if r["system"] not in AB for p in (r.get("sweep") or []))
    ax.set_xlim(max(0.5, lo - 0.02), 1.005)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("single-query QPS (sequential, log scale)")
    m = doc["meta"]
    ax.set_title(f"recall vs QPS, {m['n']:,} × {m['dim']} clustered float32, k=10")
    ax.axvline(0.95, color="grey", ls=":", lw=1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def replace_section(md_path: Path, heading: str, body: str) -> None:
    """Replace (or append) ``heading``'s section, up to the next ``## `` heading, in ``md_path``."""
    text = md_path.read_text() if md_path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == heading), None)
    new = [heading, "", *body.rstrip().splitlines(), ""]
    if start is None:
        lines = lines + ([""] if lines and lines[-1].strip() else []) + new
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        lines = lines[:start] + new + lines[end:]
    md_path.write_text("\n".join(lines).rstrip() + "\n")


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GB, {platform.system()} {platform.release()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--large", action="store_true", help="also run n = 1,000,000")
    ap.add_argument("--only", default="", help="comma-separated system names")
    ap.add_argument("--skip", default="", help="comma-separated system names")
    ap.add_argument("--budget", type=float, default=5.0, help="seconds of single queries per sweep point")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per system")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait while the 1-min load average is above this")
    ap.add_argument("--max-wait", type=float, default=1200.0)
    ap.add_argument("--write-md", action="store_true", help="replace '## ANN (issue 3)' in BENCHMARKS.md")
    ap.add_argument("--install", action="store_true", help="create/update the peer venvs and exit")
    ap.add_argument("--plot", nargs=2, metavar=("JSON", "PNG"), help=argparse.SUPPRESS)
    ap.add_argument("--report", metavar="JSON", help="re-render markdown/plot from a results JSON")
    ap.add_argument("--merge", action="store_true",
                    help="merge these systems' results into the saved JSON of the same n (replacing same names)")
    args = ap.parse_args()
    if args.plot:
        plot(Path(args.plot[0]), Path(args.plot[1]))
        return
    if args.install:
        install(list(PEER_PACKAGES))
        return
    for n in [args.n] + ([1_000_000] if args.large and args.n != 1_000_000 else []):
        if args.report:
            out_json = Path(args.report)
            doc = json.loads(out_json.read_text())
        else:
            doc = run_all(args, n)
            out_json = DATA / "results" / f"ann_n{n}.json"
            if args.merge and out_json.exists():
                old = json.loads(out_json.read_text())
                new = {r["system"]: r for r in doc["results"]}
                merged = [new.pop(r["system"], r) for r in old["results"]] + list(new.values())
                old["meta"].setdefault("merged", []).append({**doc["meta"], "systems": [r["system"] for r in doc["results"]]})
                doc = {"meta": old["meta"], "results": merged}
            out_json.write_text(json.dumps(doc, indent=1))
        md = markdown(doc["meta"], doc["results"])
        (out_json.with_suffix(".md")).write_text(md + "\n")
        print(md)
        png = HERE / "ann_recall_qps.png" if n == 100_000 else DATA / "results" / f"ann_recall_qps_n{n}.png"
        if venv_python("plot").exists():
            subprocess.run([str(venv_python("plot")), str(Path(__file__)), "--plot", str(out_json), str(png)], check=False)
        if args.write_md and n == 100_000:
            rel = png.relative_to(REPO)
            body = (f"Run: `.venv/bin/python benchmarks/ann.py --write-md` (see benchmarks/README.md). "
                    f"Raw JSON: benchmarks/data/results/ann_n{n}.json (git-ignored).\n\n{md}\n\n![recall vs QPS]({rel})")
            replace_section(REPO / "BENCHMARKS.md", "## ANN (issue 3)", body)
        if args.report:
            break


def run_all(args: argparse.Namespace, n: int) -> dict:
    data_dir = ensure_data(n, args.dim, args.queries)
    (DATA / "results").mkdir(parents=True, exist_ok=True)
    n_clusters = int(round(4 * math.sqrt(n) / 64)) * 64 or 64  # ≈ 4·√n, e.g. 1280 for 100k
    specs = systems(n_clusters)
    names = [s for s in (args.only.split(",") if args.only else specs) if s]
    names = [s for s in names if s not in set(args.skip.split(","))]
    load_start = wait_for_quiet(args.max_load, args.max_wait)
    results = []
    for name in names:
        wait_for_quiet(args.max_load, args.max_wait, cap=90)
        print(f"== {name} (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
        r = run_adapter(name, specs[name], data_dir, "ann", args.budget, args.timeout, DATA / "results")
        print(f"   {r.get('error') or 'ok'} in {r.get('wall_s', 0):.0f}s", file=sys.stderr)
        results.append(r)
    meta = {"n": n, "dim": args.dim, "nq": args.queries, "n_clusters": n_clusters, "budget": args.budget,
            "machine": machine(), "load_start": load_start, "load_end": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    return {"meta": meta, "results": results}


if __name__ == "__main__":
    main()
