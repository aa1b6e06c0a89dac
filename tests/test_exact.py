"""Exact search equals numpy brute force in float64: ids and scores, every metric, with ties,
data far from the origin, deletes, filters, batches and ranges."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered

from vecstore.table import VectorSpace
from vecstore.validation import check_vector

# ---------------------------------------------------------------------------------------------
# The float64 oracle. FLAT promises the exact answer: the scores the vectors themselves give
# (l2 by direct differences, never |x|² - 2x·q + |q|², which cancels far from the origin), best
# first, ties in storage order, so that search(k) is a prefix of search(k') for k < k'.


def exact_order(vectors: np.ndarray, q: np.ndarray, metric: str):
    """Every row's exact score (float64) and the rows best first, ties in storage order."""
    x, q = vectors.astype(np.float64), q.astype(np.float64)
    if metric == "l2":
        s = ((x - q) ** 2).sum(axis=1)
    else:
        s = (x * q).sum(axis=1)
        if metric == "cosine":
            s = 1.0 - s
    return np.lexsort((np.arange(len(s)), -s if metric == "ip" else s)), s


def within(s: np.ndarray, threshold: float, metric: str) -> np.ndarray:
    return s >= threshold if metric == "ip" else s <= threshold


def brute(matrix: np.ndarray, q: np.ndarray, metric: str, k: int):
    if metric == "cosine":  # the vectors and the query as the collection normalises them
        matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        q = check_vector(q, len(q), normalise=True)[0]
    order, s = exact_order(matrix, q, metric)
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


def test_l2_far_from_origin_is_exact(client):
    # Points near (5000, 5000): the float32 expansion gave ('c', 'd', 'e', 'b', 'a') at 0, 0, 0, 4, 8.
    col = client.create_database("app").require_collection("c", dim=2, metric="l2")
    x = np.array([[5000.0 + dx, 5000.0] for dx in (3.0, -2.0, 1.0, 0.5, -0.25)], np.float32)
    col.add(x, ids=["a", "b", "c", "d", "e"])
    r = col.search([5000.0, 5000.0], k=5)
    assert r.ids == ("e", "d", "c", "b", "a")
    assert r.scores.tolist() == [0.0625, 0.25, 1.0, 4.0, 9.0]
    assert [col.search([5000.0, 5000.0], k=k).ids for k in (1, 2, 3, 4)] == [r.ids[:k] for k in (1, 2, 3, 4)]
    assert col.search_range([5000.0, 5000.0], threshold=0.25).ids == ("e", "d")


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_ties_keep_storage_order_and_k_is_a_prefix(client, metric):
    # Three points, each stored many times: which of the equal rows the k-th place takes must
    # not depend on k (argpartition picks among equals arbitrarily; BLAS may even round equal
    # rows differently by where they are stored).
    col = client.create_database("app").require_collection("c", dim=24, metric=metric)
    rng = np.random.default_rng(5)
    points = rng.standard_normal((3, 24)).astype(np.float32)
    which = rng.integers(0, 3, 60)
    col.add(points[which], ids=list(range(60)))
    q = points[0] + 0.1 * points[1]
    full = col.search(q, k=60).ids
    first = [i for i in range(60) if which[i] == which[full[0]]]
    assert list(full[: len(first)]) == first  # the equal best rows, in storage order
    for k in range(1, 61):
        assert col.search(q, k=k).ids == full[:k]


@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_exact_search_equals_float64_oracle(client, metric, offset):
    rng = np.random.default_rng(11)
    dim, n = 6, 300
    grid = rng.integers(-4, 5, (15, dim)) * 0.25  # few distinct points on a grid: many exact ties
    x = (grid[rng.integers(0, len(grid), n)] + offset).astype(np.float32)
    col = client.create_database("app").require_collection("c", dim=dim, metric=metric)
    col.add(x, ids=list(range(n)), fields=[{"g": i % 5} for i in range(n)])
    col.delete_items(list(range(0, n, 7)))
    stored, ids, fields = col.query_vectors()  # live rows in storage order, as stored (cosine: normalised)
    groups = np.array([f["g"] for f in fields])
    queries = (np.vstack([grid[:3], grid[3:6] + 0.125]) + offset).astype(np.float32)
    for qv in queries:
        q = check_vector(qv, dim, normalise=metric == "cosine")[0]  # the query the search scores
        order, s = exact_order(stored, q, metric)
        for k in (1, 4, 9, len(ids) + 3):  # k beyond the live rows: all of them
            r = col.search(qv, k=k)
            assert list(r.ids) == [ids[i] for i in order[:k]]
            np.testing.assert_array_equal(r.scores, s[order[:k]].astype(np.float32))
        # a narrow filter scores the allowed rows gathered, a broad one all rows masked
        for where, allowed in [("g = 1", groups == 1), ("g != 1", groups != 1)]:
            sub = order[allowed[order]]
            r = col.search(qv, k=8, where=where)
            assert list(r.ids) == [ids[i] for i in sub[:8]]
            np.testing.assert_array_equal(r.scores, s[sub[:8]].astype(np.float32))
        # thresholds at exact scores: the rows exactly at one are in, best first
        for rank in (0, 5, 40, len(order) - 1):
            thr = float(s[order[rank]])
            r = col.search_range(qv, threshold=thr, max_results=10_000)
            expect = order[within(s[order], thr, metric)]
            assert list(r.ids) == [ids[i] for i in expect]
            np.testing.assert_array_equal(r.scores, s[expect].astype(np.float32))
    for qv, r in zip(queries, col.batch_search(queries, k=9)):
        order, _ = exact_order(stored, check_vector(qv, dim, normalise=metric == "cosine")[0], metric)
        assert list(r.ids) == [ids[i] for i in order[:9]]


@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_range_scores_with_a_threshold_are_exact(metric, offset):
    # search_range's threshold lets the mirror rule out rows by their float32 estimates and
    # score only the rest exactly: exactly the rows within it, with their exact scores.
    rng = np.random.default_rng(3)
    dim, n = 5, 400
    grid = rng.integers(-4, 5, (20, dim)) * 0.25
    x = (grid[rng.integers(0, len(grid), n)] + offset).astype(np.float32)
    if metric == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    space = VectorSpace("default", dim, metric)
    space.put(np.arange(n, dtype=np.uint64), x)
    space.set_live(np.arange(0, n, 9), False)
    live = np.flatnonzero(space.live[:n])
    subset = live[live % 3 == 0]
    for qv in (grid[:3] + offset).astype(np.float32):
        q = check_vector(qv, dim, normalise=metric == "cosine")[0]
        for allowed in (None, subset):
            rows = live if allowed is None else subset
            order, s = exact_order(x[rows], q, metric)
            for rank in (0, 7, len(rows) // 2, len(rows) - 1):
                thr = float(s[order[rank]])
                pos, got = space.range_scores(q, allowed, threshold=thr)
                keep = order[within(s[order], thr, metric)]
                assert sorted(pos.tolist()) == sorted(rows[keep].tolist())
                assert dict(zip(pos.tolist(), got.tolist())) == dict(zip(rows[keep].tolist(), s[keep].tolist()))
