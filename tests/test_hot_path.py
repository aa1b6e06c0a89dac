"""The unfiltered search hot path (``search_trusted``, the inlined branch of ``Collection.search``
and the fast case of ``check_vector``) answers exactly what the general path answers."""

from __future__ import annotations

import numpy as np
import pytest

from vecstore import validation as v
from vecstore.errors import InvalidArgumentError
from vecstore.indexes.hnsw import HnswIndex
from vecstore.indexes.ivf import IvfIndex


def _same(index, queries, k, breadth):
    fast = index.search_trusted(queries, k, breadth)
    slow = index.search(queries, k, breadth=breadth)[:2]
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
    assert fast[0].shape == (len(queries), k)


@pytest.mark.parametrize("make", [lambda: HnswIndex(8, "l2", M=8, ef_construction=40),
                                  lambda: HnswIndex(8, "cosine"),
                                  lambda: IvfIndex(8, "ip", n_clusters=4)])
def test_search_trusted_matches_search_through_churn(make):
    rng = np.random.default_rng(3)
    index = make()
    q = rng.standard_normal((3, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _same(index, q, 5, None)  # empty
    live: set[int] = set()
    for step in range(40):
        labels = rng.integers(0, 300, int(rng.integers(1, 40))).astype(np.uint64)
        if step % 3 == 2 and live:
            gone = np.array(sorted(live), np.uint64)[rng.random(len(live)) < 0.5]
            index.remove(gone)
            live -= set(gone.tolist())
        else:
            x = rng.standard_normal((len(labels), 8)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            index.add(labels, x)
            live |= set(labels.tolist())
        for k, breadth in [(1, None), (5, None), (10, 3), (10, 64), (len(live) + 5, None)]:
            _same(index, q, k, breadth)
        found = index.search_trusted(q, 10, None)[0]
        assert set(found[found >= 0].ravel().tolist()) <= live  # never a removed label


def test_check_vector_fast_case_agrees_with_full_check():
    ok = np.full(16, 1e20, np.float32)  # finite, though its squares overflow float32
    np.testing.assert_array_equal(v.check_vector(ok, 16), ok[None, :])
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros(16, np.float32)
        x[7] = bad
        with pytest.raises(InvalidArgumentError, match="vector"):
            v.check_vector(x, 16)


def test_check_vector_fast_case_has_no_overflow_warning():
    import warnings
    big = np.full(128, np.finfo(np.float32).max, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert v.check_vector(big, 128).shape == (1, 128)
        assert v.check_vector(-big, 128).shape == (1, 128)


@pytest.mark.parametrize("spread_labels", [False, True])  # dense label states, and the sparse (dict) ones
def test_broad_filters_post_filter_or_fall_back_and_stay_exact_on_the_found(spread_labels):
    """A broad filter is answered from one unfiltered search of 2k/selectivity rows when those
    hold k allowed ones (uniform filter), and through hnswlib's filter callback when they do not
    (a filter allowing only a far cluster). Either way: the k nearest allowed rows."""
    rng = np.random.default_rng(5)
    near = rng.standard_normal((1800, 16)).astype(np.float32)
    far = (rng.standard_normal((200, 16)) + 40).astype(np.float32)
    x = np.vstack([near, far])
    labels = np.arange(len(x), dtype=np.uint64) * (np.uint64(10**9) if spread_labels else np.uint64(1))
    index = HnswIndex(16, "l2", M=16, ef_construction=100)
    index.add(labels, x)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    calls = {"post": 0}
    original = index._post_filtered

    def counting(*a, **kw):
        out = original(*a, **kw)
        calls["post"] += out is not None
        return out
    index._post_filtered = counting
    for allowed_rows in (rng.choice(len(x), 300, replace=False), np.arange(1800, 2000)):
        allowed = np.sort(labels[allowed_rows])
        got, _, _ = index.search(q, 10, allowed=allowed)
        d = ((q[:, None, :] - x[None, allowed_rows, :]) ** 2).sum(-1)
        want = labels[allowed_rows][np.argsort(d, axis=1)[:, :10]]
        hits = sum(len(set(g.tolist()) & set(w.tolist())) for g, w in zip(got.astype(np.uint64), want))
        assert hits / want.size >= 0.95
        assert set(got.astype(np.uint64).ravel().tolist()) <= set(allowed.tolist())
    assert calls["post"] == 1  # the uniform filter post-filtered; the far cluster fell back
