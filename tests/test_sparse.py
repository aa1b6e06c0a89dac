"""SparseIndex against a dense numpy oracle; parse_sparse's accepted shapes and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vecstore.errors import InvalidArgumentError
from vecstore.indexes.sparse import SparseIndex, parse_sparse

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
        index.search(np.array([1]), np.array([1.0]), 0)
    with pytest.raises(InvalidArgumentError, match="equal lengths"):
        index.search(np.array([1, 2]), np.array([1.0]), 3)
    with pytest.raises(InvalidArgumentError):
        index.upsert(np.array([1], dtype=U64), [])


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
