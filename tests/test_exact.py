"""Exact search equals numpy brute force: ids and scores, every metric, with deletes, filters
and batches."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered


def brute(matrix: np.ndarray, q: np.ndarray, metric: str, k: int):
    if metric == "ip":
        s = matrix @ q
        order = np.argsort(-s, kind="stable")
    elif metric == "l2":
        s = ((matrix - q) ** 2).sum(axis=1)
        order = np.argsort(s, kind="stable")
    else:
        mn = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        s = 1.0 - mn @ (q / np.linalg.norm(q))
        order = np.argsort(s, kind="stable")
    return order[:k], s[order[:k]]


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_exact_search_matches_numpy(client, metric):
    db = client.create_database("app")
    x = clustered(3000, 24, seed=3)
    col = db.require_collection(f"c_{metric}", dim=24, metric=metric)
    ids = [f"s{i}" if i % 3 == 0 else i for i in range(len(x))]  # mixed id types
    col.add(x, ids=ids, fields=[{"g": i % 7} for i in range(len(x))])
    deleted = list(range(0, 3000, 11))
    col.delete_items([ids[i] for i in deleted])
    live = np.setdiff1d(np.arange(3000), deleted)
    rng = np.random.default_rng(7)
    queries = clustered(20, 24, seed=99)
    for q in queries:
        order, scores = brute(x[live], q, metric, 10)
        r = col.search(q, k=10)
        assert list(r.ids) == [ids[live[i]] for i in order]
        np.testing.assert_allclose(r.scores, scores, rtol=1e-4, atol=1e-4)
    # filtered: exact over the allowed rows
    allowed = live[live % 7 == 3]
    for q in queries[:5]:
        order, scores = brute(x[allowed], q, metric, 10)
        r = col.search(q, k=10, where="g = 3")
        assert list(r.ids) == [ids[allowed[i]] for i in order]
    # batch equals one-by-one
    batch = col.batch_search(queries[:5], k=5)
    assert [b.ids for b in batch] == [col.search(q, k=5).ids for q in queries[:5]]
    # range: every live row within the threshold, best first
    q = queries[0]
    order, scores = brute(x[live], q, metric, len(live))
    thr = float(scores[25])
    r = col.search_range(q, threshold=thr, max_results=10_000)
    expect = {ids[live[i]] for i, s in zip(order, scores) if (s >= thr if metric == "ip" else s <= thr)}
    assert set(r.ids) == expect
    del rng
