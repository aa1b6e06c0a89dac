"""vecstore through its public API. Variants: ``hnsw`` (HNSW-L2, M / ef_construction from
--params, ``nprobe`` = ef), ``ivf`` (IVF-L2, ``n_clusters`` from --params, ``nprobe`` = lists
probed), ``flat`` (no index: exact). Runs in /work/main/.venv."""

from __future__ import annotations

import os
import time

import numpy as np

import vecstore
from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries


def same_graph(col, data: Data, a) -> list[dict]:
    """Diagnostic, not the public API: time hnswlib's own ``knn_query`` (``set_ef(ef)``, k=10)
    on the very graph vecstore built, interleaved with ``col.search`` at the same ef, so the
    two see the same recall and the same machine state. ``ratio`` = vecstore QPS / raw QPS."""
    try:
        raw = col._default.index._index
    except AttributeError:
        return []
    out = []
    for ef in a.sweep:
        best = {"vecstore": float("inf"), "raw": float("inf")}
        for _ in range(3):
            for name in ("vecstore", "raw"):
                if name == "raw":
                    raw.set_ef(ef)
                    fn = lambda q: raw.knn_query(q, k=10)
                else:
                    raw.set_ef(1)  # vecstore's own setting (it passes k' = ef)
                    fn = lambda q: col.search(q, k=10, nprobe=ef)
                t = time.perf_counter()
                for q in data.queries:
                    fn(q)
                best[name] = min(best[name], (time.perf_counter() - t) / len(data.queries))
        raw.set_ef(1)
        out.append({"breadth": ef, "vecstore_us": best["vecstore"] * 1e6, "raw_us": best["raw"] * 1e6,
                    "ratio": best["raw"] / best["vecstore"]})
        log(f"  same graph ef {ef}: vecstore {best['vecstore'] * 1e6:.1f} us raw {best['raw'] * 1e6:.1f} us")
    return out


def build_ab(data: Data, a) -> None:
    """Variant ``build-ab``: vecstore's build (``add`` + ``build_index("HNSW-L2")`` in a fresh
    store) and raw hnswlib's (``init_index`` + ``add_items``), alternated ``rounds`` times in one
    process so both see the same machine state; reports each round and the best of each."""
    import shutil
    import hnswlib
    p = a.params
    rounds = int(p.get("rounds", 3))
    rows = []
    for i in range(rounds):
        d = os.path.join(a.workdir, f"r{i}")
        t = time.perf_counter()
        client = vecstore.connect(d)
        col = client.create_database("b").require_collection("c", dim=data.dim, metric="l2")
        col.add(data.base)
        t_add = time.perf_counter() - t
        col.build_index("HNSW-L2", M=p.get("M", 16), ef_construction=p.get("ef_construction", 200))
        t_vs = time.perf_counter() - t
        client.close()
        shutil.rmtree(d, ignore_errors=True)
        t = time.perf_counter()
        index = hnswlib.Index(space="l2", dim=data.dim)
        index.init_index(max_elements=data.n, M=p.get("M", 16), ef_construction=p.get("ef_construction", 200),
                         random_seed=100)
        index.add_items(data.base, np.arange(data.n))
        t_raw = time.perf_counter() - t
        del index
        rows.append({"vecstore_s": t_vs, "vecstore_add_s": t_add, "hnswlib_s": t_raw, "load": os.getloadavg()[0]})
        log(f"  round {i}: vecstore {t_vs:.2f}s (add {t_add:.2f}s) hnswlib {t_raw:.2f}s")
    emit({"system": "build-ab", "version": vecstore.__version__, "rounds": rows,
          "vecstore_best_s": min(r["vecstore_s"] for r in rows), "hnswlib_best_s": min(r["hnswlib_s"] for r in rows)})


def search_ab(data: Data, a) -> None:
    """Variant ``search-ab``: the goal's own comparison. vecstore (``col.search``) and raw hnswlib
    (``set_ef(ef)`` + ``knn_query(q, k=10)``), each on its own graph built with the same M /
    ef_construction / seed, timed in alternating passes over all queries at every ef of the
    sweep, in one process, so both see the same machine state. Per ef: each system's best
    pass (µs per query) and its recall@10; ann.py interpolates QPS at equal recall."""
    import hnswlib
    from _common import recall
    p = a.params
    M, efc = p.get("M", 16), p.get("ef_construction", 200)
    col = vecstore.connect(a.workdir).create_database("b").require_collection("c", dim=data.dim, metric="l2")
    col.add(data.base)  # auto ids 0..n-1 = row numbers
    col.build_index("HNSW-L2", M=M, ef_construction=efc)
    raw = hnswlib.Index(space="l2", dim=data.dim)
    raw.init_index(max_elements=data.n, M=M, ef_construction=efc, random_seed=100)
    raw.add_items(data.base, np.arange(data.n))
    passes = int(p.get("passes", 3))
    rows = []
    for ef in a.sweep:
        raw.set_ef(ef)
        systems = {"vecstore": lambda q: col.search(q, k=10, nprobe=ef).ids,
                   "hnswlib": lambda q: raw.knn_query(q, k=10)[0][0]}
        best = dict.fromkeys(systems, float("inf"))
        for _ in range(passes):
            for name, fn in systems.items():
                t = time.perf_counter()
                for q in data.queries:
                    fn(q)
                best[name] = min(best[name], (time.perf_counter() - t) / len(data.queries))
        row = {"breadth": ef, "load": os.getloadavg()[0]}
        for name, fn in systems.items():
            row[f"{name}_us"] = best[name] * 1e6
            row[f"{name}_qps"] = 1.0 / best[name]
            row[f"{name}_recall"] = recall([np.asarray(fn(q), np.int64) for q in data.queries], data.gt)
        log(f"  ef {ef}: vecstore {row['vecstore_us']:.1f} us (recall {row['vecstore_recall']:.4f}) "
            f"hnswlib {row['hnswlib_us']:.1f} us (recall {row['hnswlib_recall']:.4f})")
        rows.append(row)
    emit({"system": "search-ab", "version": vecstore.__version__, "passes": passes, "sweep": rows})


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    p = a.params
    if a.variant == "build-ab":
        build_ab(data, a)
        return
    if a.variant == "search-ab":
        search_ab(data, a)
        return
    client = vecstore.connect(a.workdir)
    col = client.create_database("b").require_collection("c", dim=data.dim, metric="l2")
    fields = [{"bucket": int(b)} for b in data.bucket] if data.bucket is not None else None
    with Timer() as t_ingest:
        ids = col.add(data.base, fields=fields)
    with Timer() as t_index:
        if a.variant == "hnsw":
            col.build_index("HNSW-L2", M=p.get("M", 16), ef_construction=p.get("ef_construction", 200))
        elif a.variant == "ivf":
            col.build_index("IVF-L2", n_clusters=p.get("n_clusters"))
    log(f"vecstore-{a.variant}: ingest {t_ingest.s:.2f}s index {t_index.s:.2f}s")
    if list(ids[:3]) == [0, 1, 2] and ids[-1] == len(ids) - 1:
        to_row = None  # auto ids are the row numbers
    else:
        lookup = {x: i for i, x in enumerate(ids)}
        to_row = lookup.__getitem__

    def rows(r):
        return np.fromiter(r.ids if to_row is None else map(to_row, r.ids), np.int64, len(r.ids))

    out = {"system": f"vecstore-{a.variant}", "version": vecstore.__version__,
           "ingest_s": t_ingest.s, "index_s": t_index.s, "build_s": t_ingest.s + t_index.s}
    if a.mode == "filtered":
        b = p.get("filter_breadth")
        out["breadth"] = b
        out["filtered"] = filtered_runs(
            lambda q, t: rows(col.search(q, k=10, where=f"bucket < {t}", nprobe=b)),
            lambda q: rows(col.search(q, k=10, nprobe=b)), data, a.budget, a.min_queries)
        prof = {t: col.search_profile(data.queries[0], k=10, where=f"bucket < {t}", nprobe=b).profile.get("index_path")
                for t in (1, 10, 100, 500)}
        out["plans"] = prof
        client.close()
        emit(out)
        return

    sweep = a.sweep or [None]
    out["sweep"] = []
    for b in sweep:
        lat, res = single_queries(lambda q: rows(col.search(q, k=10, nprobe=b)), data.queries, a.budget, a.min_queries)
        pt = point(b, lat, res, data.gt,
                   lambda qs: [rows(r) for r in col.batch_search(qs, k=10, nprobe=b)], data.queries)
        log(f"  breadth {b}: recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
        out["sweep"].append(pt)
    if a.variant == "hnsw":
        out["same_graph"] = same_graph(col, data, a)
    client.close()
    out["disk_bytes"] = disk_bytes(a.workdir)
    t = time.perf_counter()
    client = vecstore.connect(a.workdir)
    col = client.get_database("b").get_collection("c")
    col.search(data.queries[0], k=10, nprobe=sweep[0])
    out["reopen_s"] = time.perf_counter() - t
    client.close()
    emit(out)


if __name__ == "__main__":
    main()
