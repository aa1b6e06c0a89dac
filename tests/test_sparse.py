"""SparseIndex against a dense numpy oracle; parse_sparse's accepted shapes and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vecstore.errors import InvalidArgumentError
from vecstore.indexes.sparse import SparseIndex, _Segment, parse_sparse

U64 = np.uint64


class DenseOracle:
    """label -> dense row; search = matrix @ query, non-zero scores, descending, ties by label."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows: dict[int, np.ndarray] = {}
        self._dense = None

    def upsert(self, labels, vectors) -> None:
        for lab, (idx, val) in zip(np.asarray(labels).tolist(), vectors):
            row = np.zeros(self.dim)
            row[idx] = val
            self.rows[lab] = row
        self._dense = None

    def remove(self, labels) -> None:
        for lab in np.asarray(labels).tolist():
            self.rows.pop(lab, None)
        self._dense = None

    def search(self, idx, val, k, allowed=None):
        q = np.zeros(self.dim)
        np.add.at(q, idx, val.astype(np.float64))
        if self._dense is None:
            labs = np.array(sorted(self.rows), dtype=U64)
            mat = np.stack([self.rows[int(lab)] for lab in labs]) if len(labs) else np.zeros((0, self.dim))
            self._dense = labs, mat
        labs, mat = self._dense
        if not len(labs):
            return labs, np.empty(0)
        scores = mat @ q
        keep = scores != 0
        if allowed is not None:
            keep &= np.isin(labs, allowed)
        labs, scores = labs[keep], scores[keep]
        order = np.lexsort((labs, -scores))[:k]
        return labs[order], scores[order]


def random_vectors(rng, n, dim, *, integer=True, max_nnz=12):
    out = []
    for _ in range(n):
        nnz = int(rng.integers(0, max_nnz + 1))
        idx = np.sort(rng.choice(dim, nnz, replace=False)).astype(np.uint32)
        val = (rng.integers(-3, 6, nnz) if integer else rng.standard_normal(nnz)).astype(np.float32)
        out.append((idx, val))
    return out


def assert_same(got, want, *, exact=True):
    labels, scores = got
    assert labels.dtype == np.uint64 and scores.dtype == np.float32
    if exact:  # small integers: every sum is exact, so order and ties must agree exactly
        np.testing.assert_array_equal(labels, want[0])
        np.testing.assert_array_equal(scores, want[1].astype(np.float32))
    else:
        np.testing.assert_allclose(scores, want[1], rtol=1e-5, atol=1e-5)
        assert len(labels) == len(want[0])


@pytest.mark.parametrize("seed", range(3))
def test_search_matches_dense_oracle_through_writes(seed):
    rng = np.random.default_rng(seed)
    dim = 64
    index, oracle = SparseIndex(), DenseOracle(dim)
    next_label = 0

    def upsert(n, reuse=0.0):
        nonlocal next_label
        fresh = np.arange(next_label, next_label + n, dtype=U64)
        next_label += n
        labels = fresh.copy()
        if oracle.rows and reuse:
            old = np.array(sorted(oracle.rows), dtype=U64)
            swap = rng.random(n) < reuse
            labels[swap] = rng.choice(old, int(swap.sum()))
        vecs = random_vectors(rng, n, dim)
        index.upsert(labels, vecs)
        oracle.upsert(labels, vecs)

    def check():
        assert len(index) == len(oracle.rows)
        for _ in range(4):
            q_idx, q_val = random_vectors(rng, 1, dim, max_nnz=6)[0]
            k = int(rng.integers(1, 30))
            assert_same(index.search(q_idx, q_val, k), oracle.search(q_idx, q_val, k))
            live = np.array(sorted(oracle.rows), dtype=U64)
            if len(live):
                allowed = np.sort(rng.choice(live, int(rng.integers(1, len(live) + 1)), replace=False))
                assert_same(index.search(q_idx, q_val, k, allowed=allowed),
                            oracle.search(q_idx, q_val, k, allowed=allowed))

    check()  # empty index
    upsert(5000)  # bulk path
    check()
    for _ in range(24):  # small writes stay pending, then get merged
        op = rng.random()
        if op < 0.6:
            upsert(int(rng.integers(1, 400)), reuse=0.3)
        else:
            live = np.array(sorted(oracle.rows), dtype=U64)
            gone = rng.choice(live, int(rng.integers(1, 300)))
            gone = np.concatenate([gone, np.array([10**12], dtype=U64)])  # unknown label
            index.remove(gone)
            oracle.remove(gone)
        check()
    upsert(3000, reuse=0.3)  # pending + batch outgrow the threshold: merged into main
    check()
    live = np.array(sorted(oracle.rows), dtype=U64)
    index.remove(live[: int(len(live) * 0.8)])  # mostly dead: compaction
    oracle.remove(live[: int(len(live) * 0.8)])
    check()


def test_float_values_match_within_tolerance():
    rng = np.random.default_rng(11)
    index, oracle = SparseIndex(), DenseOracle(200)
    labels = rng.choice(10**9, 3000, replace=False).astype(U64)
    vecs = random_vectors(rng, 3000, 200, integer=False, max_nnz=30)
    index.upsert(labels, vecs)
    oracle.upsert(labels, vecs)
    for _ in range(20):
        q_idx, q_val = random_vectors(rng, 1, 200, integer=False, max_nnz=20)[0]
        assert_same(index.search(q_idx, q_val, 25), oracle.search(q_idx, q_val, 25), exact=False)


def test_wide_feature_space_matches_python_oracle():
    # Few postings per query (a wide, very sparse space): the per-candidate accumulator path.
    rng = np.random.default_rng(5)
    dim, n = 1_000_000, 20_000
    labels = np.arange(n, dtype=U64) * 7
    vecs = random_vectors(rng, n, dim, max_nnz=4)
    index = SparseIndex()
    index.upsert(labels, vecs)
    rows = [dict(zip(i.tolist(), v.tolist())) for i, v in vecs]
    for _ in range(10):
        picked = rng.choice(n, 3)
        q = {}
        for p in picked.tolist():  # query features that some rows have
            q.update(list(rows[p].items())[:2])
        q_idx, q_val = parse_sparse(q)
        want = [(lab, sum(row.get(f, 0.0) * w for f, w in q.items()))
                for lab, row in zip(labels.tolist(), rows) if any(f in row for f in q)]
        want = sorted([(lab, s) for lab, s in want if s != 0], key=lambda t: (-t[1], t[0]))[:10]
        got = index.search(q_idx, q_val, 10)
        assert got[0].tolist() == [lab for lab, _ in want]
        assert got[1].tolist() == [s for _, s in want]


def test_lynse_observed_replace():
    # lynse_api §8.3: re-adding id 0 as {3: 5.0} replaces it; query {1:1, 3:1} scores it 5.0.
    index = SparseIndex()
    index.upsert(np.array([0, 1], dtype=U64), [parse_sparse({1: 1.0, 2: 2.0}), parse_sparse({1: 0.5})])
    index.upsert(np.array([0], dtype=U64), [parse_sparse({3: 5.0})])
    labels, scores = index.search(*parse_sparse({1: 1, 3: 1}), k=10)
    assert labels.tolist() == [0, 1] and scores.tolist() == [5.0, 0.5]
    assert index.search(*parse_sparse({9: 1}), k=10)[0].size == 0  # no shared index
    assert len(index) == 2


def test_zero_and_negative_scores():
    index = SparseIndex()
    index.upsert(np.array([1, 2, 3], dtype=U64),
                 [parse_sparse({0: 1.0, 1: -1.0}), parse_sparse({0: -2.0}), parse_sparse({0: 3.0})])
    labels, scores = index.search(*parse_sparse({0: 1.0, 1: 1.0}), k=10)
    assert labels.tolist() == [3, 2] and scores.tolist() == [3.0, -2.0]  # row 1 cancels to 0


def test_last_write_wins_within_a_batch_and_repeated_query_indices_add():
    index = SparseIndex()
    index.upsert(np.array([4, 4], dtype=U64), [parse_sparse({1: 1.0}), parse_sparse({1: 7.0})])
    assert len(index) == 1
    labels, scores = index.search(np.array([1, 1], dtype=np.uint32), np.array([1.0, 1.0], dtype=np.float32), 5)
    assert labels.tolist() == [4] and scores.tolist() == [14.0]


def test_search_arguments():
    index = SparseIndex()
    with pytest.raises(InvalidArgumentError, match="k"):
        index.search(np.array([1]), np.array([1.0]), -1)
    index.upsert(np.array([7], np.uint64), [(np.array([1], np.uint32), np.array([1.0], np.float32))])
    assert index.search(np.array([1]), np.array([1.0]), 1)[0].tolist() == [7]
    assert index.search(np.array([1]), np.array([1.0]), 0)[0].size == 0  # k=0: no hits
    with pytest.raises(InvalidArgumentError, match="equal lengths"):
        index.search(np.array([1, 2]), np.array([1.0]), 3)
    with pytest.raises(InvalidArgumentError):
        index.upsert(np.array([1], dtype=U64), [])


class TinyTiers(SparseIndex):
    """Fresh tier of 3 rows, levels of 6, 12, 24, ... rows: a few hundred writes cross every
    merge boundary (fresh -> level 0, cascades through several levels at once, compactions)."""

    _FRESH_ROWS = 3
    _GROWTH = 2


def check_structure(index: SparseIndex, n_rows: int, peak_rows: int) -> None:
    assert len(index) == n_rows  # no label alive in two places
    assert len(index._fresh) <= index._FRESH_ROWS
    for i, seg in enumerate(index._levels):
        if seg is not None:
            assert seg.n_alive <= index._FRESH_ROWS * index._GROWTH ** (i + 1)
            assert seg.n_alive * 2 >= len(seg.labels)  # mostly dead levels are rebuilt
    # a level is opened by more live rows than the one below holds: O(log n) levels
    if index._levels:
        assert index._FRESH_ROWS * index._GROWTH ** (len(index._levels) - 1) < peak_rows


@pytest.mark.parametrize("seed", range(4))
def test_tiers_match_python_oracle(seed):
    """Random upserts (new labels, replaced ones, repeats within a batch, empty vectors), removes
    (present, absent, in the fresh tier) and re-upserts of removed labels, against a dict of
    label -> {feature: value} with Python dot products; searches with and without `allowed`."""
    rng = np.random.default_rng(100 + seed)
    dim = 40
    index, model = TinyTiers(), {}
    removed: list[int] = []
    deepest = peak = 0

    def search_check():
        q_idx, q_val = random_vectors(rng, 1, dim, max_nnz=5)[0]
        q = dict(zip(q_idx.tolist(), q_val.tolist()))
        k = int(rng.integers(1, 25))
        allowed = None
        if model and rng.random() < 0.5:
            pool = np.array(sorted(model) + removed[:5] + [10**12], dtype=U64)
            allowed = np.unique(rng.choice(pool, int(rng.integers(1, len(pool) + 1))))
        want = [(lab, sum(row.get(f, 0.0) * w for f, w in q.items())) for lab, row in model.items()
                if allowed is None or lab in set(allowed.tolist())]
        want = sorted([(lab, sc) for lab, sc in want if sc != 0], key=lambda t: (-t[1], t[0]))[:k]
        labels, scores = index.search(q_idx, q_val, k, allowed=allowed)
        assert labels.dtype == np.uint64 and scores.dtype == np.float32
        assert labels.tolist() == [lab for lab, _ in want]
        assert scores.tolist() == [sc for _, sc in want]

    for step in range(700):
        op = rng.random()
        if op < 0.55 or not model:  # upsert: fresh labels, replacements, re-upserts, repeats
            n = int(rng.integers(1, 4)) if rng.random() < 0.9 else int(rng.integers(10, 60))
            pool = [int(x) for x in rng.integers(0, 10**6, n)]
            for j in range(n):
                r = rng.random()
                if r < 0.3 and model:
                    pool[j] = int(rng.choice(list(model)))
                elif r < 0.4 and removed:
                    pool[j] = removed.pop(int(rng.integers(len(removed))))
                elif r < 0.45 and j:
                    pool[j] = pool[j - 1]  # repeated in the batch: the last wins
            vecs = random_vectors(rng, n, dim, max_nnz=6)
            index.upsert(np.array(pool, dtype=U64), vecs)
            for lab, (i, v) in zip(pool, vecs):
                model[lab] = dict(zip(i.tolist(), v.tolist()))
        else:
            live = list(model)
            gone = [int(x) for x in rng.choice(live, int(rng.integers(1, min(len(live), 12) + 1)))]
            gone += [int(x) for x in rng.integers(0, 10**6, 2)]  # (almost surely) unknown
            index.remove(np.array(gone, dtype=U64))
            for lab in gone:
                if model.pop(lab, None) is not None:
                    removed.append(lab)
        deepest, peak = max(deepest, len(index._levels)), max(peak, len(model))
        check_structure(index, len(model), peak)
        if rng.random() < 0.5:
            search_check()
    assert deepest >= 5  # the writes went through several levels
    for lab in list(model):  # remove everything: every level empties
        index.remove(np.array([lab], dtype=U64))
        del model[lab]
        check_structure(index, len(model), peak)
    assert all(seg is None for seg in index._levels)
    assert index.search(np.array([1], np.uint32), np.array([1.0], np.float32), 5)[0].size == 0


def test_search_after_a_write_builds_only_the_fresh_tier(monkeypatch):
    """A search after a small write costs O(fresh tier), not O(rows written since a bulk load);
    writes rewrite each row O(log n) times in all."""
    built, merged = [], []
    from_rows, merge = _Segment.from_rows.__func__, _Segment.merge.__func__
    monkeypatch.setattr(_Segment, "from_rows", classmethod(
        lambda cls, labels, vectors: built.append(len(labels)) or from_rows(cls, labels, vectors)))
    monkeypatch.setattr(_Segment, "merge", classmethod(
        lambda cls, segs: merged.append(sum(s.n_alive for s in segs)) or merge(cls, segs)))
    rng = np.random.default_rng(3)
    index = SparseIndex()
    index.upsert(np.arange(20_000, dtype=U64), random_vectors(rng, 20_000, 100, max_nnz=4))
    q = parse_sparse({1: 1.0, 2: 1.0})
    built.clear()
    n_writes = 2_000
    for i in range(n_writes):
        index.upsert(np.array([20_000 + i], dtype=U64), random_vectors(rng, 1, 100, max_nnz=4))
        index.search(*q, k=5)
    assert max(built) <= SparseIndex._FRESH_ROWS + 1
    # leveled merging: about _GROWTH / 2 rewrites per row per level, a few levels here
    assert sum(merged) <= 4 * SparseIndex._GROWTH * n_writes


# -- parse_sparse ---------------------------------------------------------------------------

def test_three_input_shapes_agree():
    want_i, want_v = np.array([2, 5, 40], np.uint32), np.array([1.0, 0.5, -2.0], np.float32)
    for value in ({"indices": [5, 2, 40], "values": [0.5, 1, -2.0]},
                  {"indices": np.array([5, 2, 40]), "values": np.array([0.5, 1.0, -2.0])},
                  {5: 0.5, "2": 1, 40: -2.0},
                  [(5, 0.5), (2, 1.0), [40, -2]],
                  ((5, 0.5), (2, 1.0), (40, -2.0))):
        i, v = parse_sparse(value)
        assert i.dtype == np.uint32 and v.dtype == np.float32
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(v, want_v)
    assert parse_sparse({})[0].size == 0
    assert parse_sparse([])[0].size == 0
    assert parse_sparse({"indices": [2**32 - 1], "values": [1]})[0].tolist() == [2**32 - 1]


@pytest.mark.parametrize("value, needle", [
    ({"indices": [1, 2], "values": [1.0]}, "equal lengths"),
    ({"indices": [-1], "values": [1.0]}, "-1"),
    ({"indices": [2**32], "values": [1.0]}, str(2**32)),
    ({"indices": [1.5], "values": [1.0]}, "1.5"),
    ({"indices": [True], "values": [1.0]}, "True"),
    ({"indices": ["1"], "values": [1.0]}, "'1'"),
    ({"indices": [1], "values": [float("nan")]}, "nan"),
    ({"indices": [1], "values": [float("inf")]}, "inf"),
    ({"indices": [1], "values": [1e39]}, "1e+39"),
    ({"indices": [1], "values": ["x"]}, "'x'"),
    ({"indices": [1], "values": [False]}, "False"),
    ({"indices": [3, 3], "values": [1, 2]}, "duplicate sparse index 3"),
    ({"indices": "12", "values": [1, 2]}, "'12'"),
    ({3: 1.0, "3": 2.0}, "duplicate sparse index 3"),
    ({"a": 1.0}, "'a'"),
    ({"-1": 1.0}, "'-1'"),
    ({1: None}, "None"),
    ({1.0: 2.0}, "1.0"),
    ([(1, 0.5), (1, 0.7)], "duplicate sparse index 1"),
    ([(1, 0.5, 3)], "(1, 0.5, 3)"),
    ([1, 2], "pairs"),
    ("1:0.5", "'1:0.5'"),
    (None, "None"),
    (7, "7"),
])
def test_bad_vectors_are_refused_naming_param_and_value(value, needle):
    with pytest.raises(InvalidArgumentError) as err:
        parse_sparse(value, param="sparse_vector")
    assert str(err.value).startswith("sparse_vector:")
    assert needle in str(err.value)


@given(st.dictionaries(st.integers(0, 2**32 - 1),
                       st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=40))
def test_parse_round_trip(mapping):
    i, v = parse_sparse(mapping)
    assert i.tolist() == sorted(mapping)
    assert v.tolist() == [mapping[key] for key in sorted(mapping)]
    for other in ({str(key): val for key, val in mapping.items()}, list(mapping.items()),
                  {"indices": list(mapping), "values": list(mapping.values())}):
        i2, v2 = parse_sparse(other)
        np.testing.assert_array_equal(i2, i)
        np.testing.assert_array_equal(v2, v)
