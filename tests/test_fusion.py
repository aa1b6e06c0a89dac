"""fuse / minmax_normalise against a plain-Python reading of lynse_api §8.5."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vecstore.errors import InvalidArgumentError
from vecstore.fusion import fuse, minmax_normalise


def oracle(legs, k, fusion="rrf", rrf_k=60.0):
    """Sum per id over legs; sort by (-total, best rank, first appearance); keep k."""
    totals, best, first = {}, {}, {}
    pos = 0
    for leg in legs:
        if leg is None or len(leg[0]) == 0:
            continue
        ids, scores, weight, hib = leg
        scores = [float(s) for s in scores]
        if fusion == "weighted":
            lo, hi = min(scores), max(scores)
            norm = [1.0] * len(scores) if hi == lo else [(s - lo) / (hi - lo) for s in scores]
            if not hib and hi != lo:
                norm = [1.0 - x for x in norm]
        seen = set()
        for rank, i in enumerate(ids.tolist() if hasattr(ids, "tolist") else ids):
            if i not in seen:
                seen.add(i)
                if fusion == "rrf":
                    c = weight / (max(rrf_k, 1.0) + rank + 1)
                else:
                    c = norm[rank] * max(weight, 0.0)
                totals[i] = totals.get(i, 0.0) + c
                best[i] = min(best.get(i, rank), rank)
                first.setdefault(i, pos)
            pos += 1
    order = sorted(totals, key=lambda i: (-totals[i], best[i], first[i]))[:k]
    return order, [totals[i] for i in order]


@st.composite
def legs_strategy(draw):
    legs = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()) and draw(st.booleans()):
            legs.append(None)
            continue
        ids = draw(st.lists(st.integers(0, 25), max_size=20))
        hib = draw(st.booleans())
        scores = sorted(draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=len(ids),
                                      max_size=len(ids))), reverse=hib)
        weight = draw(st.floats(-2, 3, allow_nan=False))
        legs.append((np.array(ids, dtype=np.uint64), np.array(scores), weight, hib))
    return legs


@given(legs_strategy(), st.integers(1, 40), st.sampled_from(["rrf", "weighted"]),
       st.floats(-5, 100, allow_nan=False))
def test_fuse_equals_plain_python(legs, k, fusion, rrf_k):
    ids, scores = fuse(legs, k, fusion=fusion, rrf_k=rrf_k)
    want_ids, want_scores = oracle(legs, k, fusion, rrf_k)
    assert ids.tolist() == want_ids
    assert scores.tolist() == want_scores  # same additions in the same order: bit-equal
    if len(ids):
        assert ids.dtype == np.uint64


def test_lynse_observed_rrf():
    # §8.5: rrf, vector e0 + "apple" -> ids [0, 1, 3], scores [0.032266, 0.032258, 0.032018].
    vector = (np.array([0, 1, 2, 3]), np.array([1.0, 0.0, 0.0, 0.0]), 1.0, True)
    text = (np.array([3, 1, 0]), np.array([0.3813, 0.3492, 0.3220]), 1.0, True)
    ids, scores = fuse([vector, text], 3, fusion="rrf")
    assert ids.tolist() == [0, 1, 3]
    np.testing.assert_allclose(scores, [0.032266, 0.032258, 0.032018], atol=5e-7)


def test_lynse_observed_weighted():
    # §8.5: weighted 0.7 / 0.3 -> ids [0, 3, 1], scores [0.7, 0.3, 0.1374] (BM25 scores there
    # were printed rounded to 4 places, hence the tolerance on the last one).
    vector = (np.array([0, 1, 2, 3]), np.array([1.0, 0.0, 0.0, 0.0]), 0.7, True)
    text = (np.array([3, 1, 0]), np.array([0.3813, 0.3492, 0.3220]), 0.3, True)
    ids, scores = fuse([vector, text], 3, fusion="weighted")
    assert ids.tolist() == [0, 3, 1]
    np.testing.assert_allclose(scores, [0.7, 0.3, 0.1374], atol=5e-4)


def test_missing_and_empty_legs():
    leg = (np.array([5, 6], dtype=np.uint64), np.array([0.9, 0.1]), 1.0, True)
    empty = (np.array([], dtype=np.uint64), np.array([]), 1.0, True)
    for legs in ([leg], [None, leg], [leg, empty], [empty, None, leg]):
        ids, scores = fuse(legs, 10)
        assert ids.tolist() == [5, 6]
        np.testing.assert_allclose(scores, [1 / 61, 1 / 62])
    for legs in ([], [None], [empty, None]):
        ids, scores = fuse(legs, 10, fusion="weighted")
        assert ids.size == 0 and scores.size == 0


def test_ties_are_deterministic():
    a = (np.array([1, 2]), np.array([5.0, 4.0]), 1.0, True)
    b = (np.array([3, 4]), np.array([5.0, 4.0]), 1.0, True)
    # 1 and 3 tie (rank 0 each), 2 and 4 tie (rank 1 each): first appearance decides.
    assert fuse([a, b], 4)[0].tolist() == [1, 3, 2, 4]
    assert fuse([b, a], 4)[0].tolist() == [3, 1, 4, 2]
    # Equal totals, different best ranks: the id ranked higher somewhere comes first.
    c = (np.array([7, 8]), np.array([1.0, 1.0]), 1.0, True)
    d = (np.array([9]), np.array([1.0]), 2.0, True)
    ids, scores = fuse([c, d], 3, fusion="weighted")
    assert ids.tolist() == [9, 7, 8] and scores.tolist() == [2.0, 1.0, 1.0]
    assert all(fuse([a, b], 4)[0].tolist() == [1, 3, 2, 4] for _ in range(5))


def test_string_ids_and_mixed_dtypes():
    a = (np.array(["x", "y"], dtype=object), np.array([2.0, 1.0]), 1.0, True)
    b = (np.array(["y"], dtype=object), np.array([3.0]), 1.0, True)
    assert fuse([a, b], 5)[0].tolist() == ["y", "x"]
    c = (np.array([1, 2], dtype=np.int64), np.array([2.0, 1.0]), 1.0, True)
    d = (np.array([2], dtype=np.uint64), np.array([3.0]), 1.0, True)
    assert fuse([c, d], 5)[0].tolist() == [2, 1]  # no float64 promotion of the ids


def test_ascending_metric_is_inverted():
    dist = (np.array([10, 11, 12]), np.array([0.1, 0.5, 0.9]), 1.0, False)
    ids, scores = fuse([dist], 3, fusion="weighted")
    assert ids.tolist() == [10, 11, 12]
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.0])


def test_bad_arguments():
    leg = (np.array([1]), np.array([1.0]), 1.0, True)
    with pytest.raises(InvalidArgumentError, match="fusion.*'max'"):
        fuse([leg], 3, fusion="max")
    with pytest.raises(InvalidArgumentError, match="fusion"):
        fuse([leg], 3, fusion=None)
    assert fuse([leg], 3, fusion="RRF")[0].tolist() == [1]
    with pytest.raises(InvalidArgumentError, match="k"):
        fuse([leg], -1)
    assert fuse([leg], 0)[0].size == 0  # k=0: no hits
    with pytest.raises(InvalidArgumentError, match="score"):
        fuse([(np.array([1, 2]), np.array([1.0]), 1.0, True)], 3, fusion="weighted")


def test_minmax_normalise():
    s = np.array([3.0, 1.0, 2.0])
    np.testing.assert_allclose(minmax_normalise(s, higher_is_better=True), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(minmax_normalise(s, higher_is_better=False), [0.0, 1.0, 0.5])
    assert minmax_normalise(np.array([4.0, 4.0]), higher_is_better=False).tolist() == [1.0, 1.0]
    assert minmax_normalise(np.array([7.0]), higher_is_better=True).tolist() == [1.0]
    assert minmax_normalise(np.array([]), higher_is_better=True).size == 0
    with pytest.raises(InvalidArgumentError):
        minmax_normalise(np.array([1.0, np.nan]), higher_is_better=True)


def test_weighted_fusion_of_scores_that_overflowed_both_ways():
    """ip scores of huge vectors overflow float32 to +inf and -inf in one leg: the span of the
    (clipped) scores overflowed float64, so the best hit normalised to NaN (inf / inf) and ranked
    last, and every other hit to 0. The ends are 1 and 0; a hit in between sits at the middle of
    a span that wide, as exact arithmetic gives."""
    inf = np.inf
    for scores, hib, want in [([inf, 1.0, 0.0, -inf], True, [1.0, 0.5, 0.5, 0.0]),
                              ([-inf, 2.0, inf], False, [1.0, 0.5, 0.0]),
                              ([1e308, -1e308, 0.0], True, [1.0, 0.0, 0.5]),
                              ([5e-324, 0.0], True, [1.0, 0.0])]:         # tiny spans are not halved
        assert minmax_normalise(np.array(scores), higher_is_better=hib).tolist() == want
    legs = [(np.array([1, 3, 4, 2]), np.array([inf, 1.0, 0.0, -inf]), 1.0, True),
            (np.array([2, 3]), np.array([5.0, 1.0]), 0.5, True)]
    ids, scores = fuse(legs, 4, fusion="weighted")
    assert ids.tolist() == [1, 2, 3, 4] and scores.tolist() == [1.0, 0.5, 0.5, 0.5]
