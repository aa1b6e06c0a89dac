"""Sparse search: vecstore's inverted index (through the collection and bare) next to a plain
numpy baseline over the same data, fixed seed.

    .venv/bin/python benchmarks/sparse.py [--n 100000] [--vocab 30000] [--nnz 40]

The numpy baseline is what a user would write without scipy: a CSR matrix as three numpy
arrays and a per-query scatter-add of the query's columns (via a feature -> rows index built
once with argsort). Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vecstore  # noqa: E402
from vecstore.indexes.sparse import SparseIndex  # noqa: E402


def zipf_rows(n: int, vocab: int, nnz: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows whose features follow a Zipf law, like term weights of real text (SPLADE, BM25)."""
    out = []
    for _ in range(n):
        idx = np.unique(np.minimum(rng.zipf(1.3, nnz), vocab) - 1).astype(np.uint32)
        out.append((idx, rng.random(len(idx)).astype(np.float32)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--vocab", type=int, default=30_000)
    ap.add_argument("--nnz", type=int, default=40)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = zipf_rows(args.n, args.vocab, args.nnz, rng)
    queries = zipf_rows(args.queries, args.vocab, 8, rng)
    k = 10

    # numpy baseline: feature-major postings built once with argsort, then scatter-add per query
    t = time.perf_counter()
    row_of = np.repeat(np.arange(args.n), [len(i) for i, _ in rows])
    feat = np.concatenate([i for i, _ in rows])
    vals = np.concatenate([x for _, x in rows])
    order = np.argsort(feat, kind="stable")
    feat_s, rows_s, vals_s = feat[order], row_of[order], vals[order]
    indptr = np.searchsorted(feat_s, np.arange(args.vocab + 1))
    build_np = time.perf_counter() - t

    def np_search(qi, qv):
        scores = np.zeros(args.n, np.float32)
        for f, w in zip(qi, qv):
            a, b = indptr[f], indptr[f + 1]
            np.add.at(scores, rows_s[a:b], w * vals_s[a:b])
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])]

    t = time.perf_counter()
    index = SparseIndex()
    index.upsert(np.arange(args.n, dtype=np.uint64), rows)
    build_ix = time.perf_counter() - t

    root = Path(tempfile.mkdtemp())
    col = vecstore.connect(root).create_database("b").require_collection("c", dim=2)
    col.add(np.ones((args.n, 2), np.float32), ids=list(range(args.n)))
    t = time.perf_counter()
    col.add_sparse_vectors([{"indices": i.tolist(), "values": x.tolist()} for i, x in rows], ids=list(range(args.n)))
    build_col = time.perf_counter() - t

    def lat(fn) -> float:
        ts = []
        for qi, qv in queries:
            s = time.perf_counter()
            fn(qi, qv)
            ts.append(time.perf_counter() - s)
        return float(np.median(ts)) * 1e3

    agree = np.mean([set(np_search(qi, qv).tolist()) == set(index.search(qi, qv, k)[0].astype(int).tolist())
                     for qi, qv in queries[:50]])
    p_np = lat(np_search)
    p_ix = lat(lambda qi, qv: index.search(qi, qv, k))
    p_col = lat(lambda qi, qv: col.sparse_search({"indices": qi.tolist(), "values": qv.tolist()}, k=k))
    print(f"\n### Sparse: {args.n:,} rows, vocabulary {args.vocab:,}, ~{args.nnz} entries/row (Zipf), k={k}, seed 0\n")
    print("| measure | numpy baseline | SparseIndex | collection.sparse_search |\n|---|---|---|---|")
    print(f"| build (s) | {build_np:.2f} | {build_ix:.2f} | {build_col:.2f} (incl. LMDB writes) |")
    print(f"| query p50 (ms) | {p_np:.3f} | {p_ix:.3f} ({p_ix / p_np:.2f}×) | {p_col:.3f} ({p_col / p_np:.2f}×) |")
    print(f"| same top-{k} as baseline | — | {agree:.0%} | — |")
    col.database.client.close()


if __name__ == "__main__":
    main()
