"""Exact search equals numpy brute force in float64: ids and scores, every metric, with ties,
data far from the origin, deletes, filters, batches and ranges."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered

from vecstore import table
from vecstore.table import VectorSpace
from vecstore.validation import check_vector, row_norms, unit_rows

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
        matrix = unit_rows(matrix)
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
    stored, ids, fields = col.query_vectors()  # live rows in storage order, as written
    np.testing.assert_array_equal(stored, x[[i for i in range(n) if i % 7]])
    if metric == "cosine":  # what cosine scores: the rows' unit vectors, made in memory
        stored = unit_rows(stored)
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


@pytest.mark.parametrize("dim", [2, 1024])
def test_cosine_norms_whose_float32_squares_underflow_are_exact(client, dim):
    """|x| ~ 1e-22 .. 1e-15: squares under float32's normals lose bits (many of them, at dim
    1024, more than float32's precision even for a norm above 2**-63), but only a zero or
    infinite norm was measured again in float64. Norms were off by up to 1e-3, unit vectors with
    them, and rows with the query's exact direction scored cosine distances of -1e-3 .. 1e-5.
    Oracle: numpy in float64."""
    base = np.random.default_rng(dim).standard_normal(dim)
    x = np.stack([base * s for s in (1e-12, 1e-15, 1e-17, 1e-19, 1e-20, 1e-21, 1e-22, 1e-26)]
                 # squares of 1.21·2**-136 each, all rounded alike: norm 1.1·2**-63·sqrt(dim/1024)
                 + [np.sign(base) * 1.1 * 2.0 ** -68]).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(row_norms(x), np.linalg.norm(x64, axis=1), rtol=1e-6)
    col = client.create_database("app").require_collection("c", dim=dim, metric="cosine")
    col.add(x, ids=list(range(len(x))))
    q = base.astype(np.float32)
    u = x64 / np.linalg.norm(x64, axis=1)[:, None]
    dist = 1 - u @ (q / np.linalg.norm(q.astype(np.float64)))
    r = col.search(q, k=len(x))
    assert sorted(r.ids) == list(range(len(x)))
    np.testing.assert_allclose(r.scores, dist[list(r.ids)], atol=1e-6)


@pytest.mark.parametrize("scale", [1e-33, 1e-25, 1e-19, 1.0, 1e19, 1e30, 3e37])
def test_cosine_rows_far_from_unit_norm_are_estimated_not_all_re_scored(monkeypatch, scale):
    """Cosine rows with |x| outside [2**-60, 2**60] had no bounded estimate (NaN), so every query
    scored every such row exactly: a collection of them searched 17-40x slower. Their norms are
    now measured in float64, which bounds the estimate for |x| in [2**-100, 2**125]: about k rows
    re-scored there, all of them beyond (still exact). Oracle: numpy in float64."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2000, 16)) * scale).astype(np.float32)
    space = VectorSpace("default", 16, "cosine")
    space.put(np.arange(2000, dtype=np.uint64), x)
    scored: list[int] = []
    direct = table._direct
    monkeypatch.setattr(table, "_direct", lambda *a: scored.append(len(a[-1])) or direct(*a))
    for qv in rng.standard_normal((5, 16)):
        q = check_vector(qv, 16, normalise=True)
        pos, scores = space.exact_search(q, 10)
        order, s = exact_order(unit_rows(x), q[0], "cosine")
        assert pos[0].tolist() == order[:10].tolist()
        np.testing.assert_array_equal(scores[0], s[order[:10]].astype(np.float32))
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    unbounded = int(np.count_nonzero((norms < 2.0 ** -100) | (norms > 2.0 ** 125)))
    assert unbounded <= min(scored) and max(scored) < unbounded + 100


@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_range_scores_with_a_threshold_are_exact(metric, offset):
    # search_range's threshold lets the mirror rule out rows by their float32 estimates and
    # score only the rest exactly: exactly the rows within it, with their exact scores.
    rng = np.random.default_rng(3)
    dim, n = 5, 400
    grid = rng.integers(-4, 5, (20, dim)) * 0.25
    x = (grid[rng.integers(0, len(grid), n)] + offset).astype(np.float32)
    x[~x.any(axis=1)] += 1  # no zero rows (cosine): held as written, scored as unit_rows
    space = VectorSpace("default", dim, metric)
    space.put(np.arange(n, dtype=np.uint64), x)
    space.set_live(np.arange(0, n, 9), False)
    live = np.flatnonzero(space.live[:n])
    subset = live[live % 3 == 0]
    for qv in (grid[:3] + offset).astype(np.float32):
        q = check_vector(qv, dim, normalise=metric == "cosine")[0]
        for allowed in (None, subset):
            rows = live if allowed is None else subset
            order, s = exact_order(unit_rows(x[rows]) if metric == "cosine" else x[rows], q, metric)
            for rank in (0, 7, len(rows) // 2, len(rows) - 1):
                thr = float(s[order[rank]])
                pos, got = space.range_scores(q, allowed, threshold=thr)
                keep = order[within(s[order], thr, metric)]
                assert sorted(pos.tolist()) == sorted(rows[keep].tolist())
                assert dict(zip(pos.tolist(), got.tolist())) == dict(zip(rows[keep].tolist(), s[keep].tolist()))


# ---------------------------------------------------------------------------------------------
# The mirror's label -> position map. Labels are never reused, so once rows have been written and
# compacted away the labels held sit far from 0, maybe with an old row kept far below them: the
# map must cost what the rows held cost, and answer like a dict whatever the labels.

def _map_bytes(space: VectorSpace) -> int:
    arrays = [getattr(space, name, None) for name in ("_lut", "_keys", "_vals")]
    return sum((a.base if a.base is not None else a).nbytes for a in arrays if a is not None)


def _probes(known: list[int]) -> list[int]:
    near = {x + d for x in known for d in (-1, 0, 1)}
    edges = {0, 1, min(known) - 1, max(known) + 1, max(known) + 10**6, 2**62} if known else {0, 5}
    return sorted(x for x in near | edges if x >= 0)


def _check_map(space: VectorSpace, model: dict[int, int]) -> None:
    probes = _probes(list(model))
    want = [model.get(x, -1) for x in probes]
    assert space.lookup(np.array(probes, np.uint64)).tolist() == want
    assert space.lookup(np.array(probes, np.int64)).tolist() == want
    assert space.lookup(probes).tolist() == want
    assert space.lookup([-1, -(10**9)]).tolist() == [-1, -1]
    if model:
        labels = np.array(sorted(model), np.int64)
        pos, _ = space.index_positions(labels, np.zeros(len(labels), np.float32))
        assert pos.tolist() == [model[x] for x in labels.tolist()]
        assert space.labels[pos].tolist() == labels.tolist()


@pytest.mark.parametrize("seed", range(8))
def test_label_map_answers_like_a_dict_through_any_writes(seed):
    """Puts in batches shaped like the collection's writes (new labels above the others, in
    order; far jumps; labels below them, as a named field's vectors for old rows; replacements)
    and reloads that drop rows (compact: a rolling window), against a dict. Covers both forms of
    the map and the moves between them."""
    rng = np.random.default_rng(seed)
    space, model = VectorSpace("v", 1, "l2"), {}
    top = (0, 10**6, 10**9)[seed % 3]
    for _ in range(60):
        kind = rng.choice(6, p=[0.4, 0.1, 0.05, 0.15, 0.1, 0.2]) if model else 0
        if kind == 0:                  # new rows above the others
            lab = top + 1 + np.arange(int(rng.integers(1, 2000)))
        elif kind in (1, 2):           # a jump: rows written and compacted away meanwhile
            lab = top + int(rng.integers(100, 5000) if kind == 1 else rng.integers(10**5, 10**7)) + np.arange(50)
        elif kind == 3:                # labels below the others (an old row's named vector)
            lab = np.unique(rng.integers(max(min(model) - 10**5, 0), min(model) + 1, int(rng.integers(1, 20))))
        elif kind == 4:                # replacements of labels held
            lab = rng.choice(sorted(model), min(len(model), 30), replace=False)
        else:                          # compact: the oldest rows (or all but one) go, the rest reload
            held = space.labels[:space.n]
            cut = np.sort(held)[int(rng.integers(0, len(held)))]
            keep = (held >= cut) | ((held == held.min()) & (rng.random() < 0.3))
            fresh = VectorSpace("v", 1, "l2")
            fresh.fill(held[keep].copy(), np.zeros((int(keep.sum()), 1), np.float32), np.ones(int(keep.sum()), bool))
            space, model = fresh, dict(zip(held[keep].tolist(), range(int(keep.sum()))))
            _check_map(space, model)
            continue
        lab = np.array([x for x in lab.tolist() if x not in model or kind == 4], np.uint64)
        if not len(lab):
            continue
        space.put(lab, np.zeros((len(lab), 1), np.float32))
        for x in lab.tolist():
            model.setdefault(x, len(model))
        top = max(top, int(lab.max()))
        _check_map(space, model)
        assert _map_bytes(space) <= 64 * space.n + 65536


@pytest.mark.parametrize("ancient", [False, True])
def test_label_map_costs_the_rows_held_not_the_labels_ever_used(ancient):
    """1,000 rows with labels from 10**6 (after 10**6 rows were written and compacted away),
    with or without one row kept from the start: a table indexed by label took 8 MB."""
    n, first = 1000, 10**6
    labels = first + np.arange(n - ancient)
    if ancient:
        labels = np.concatenate([[3], labels])
    space = VectorSpace("v", 1, "l2")
    space.fill(labels.astype(np.uint64), np.zeros((n, 1), np.float32), np.ones(n, bool))
    assert _map_bytes(space) <= 64 * n + 65536
    space.put(labels[-1] + 1 + np.arange(5000, dtype=np.uint64), np.zeros((5000, 1), np.float32))
    assert _map_bytes(space) <= 64 * space.n + 65536
    model = dict(zip(space.labels[:space.n].tolist(), range(space.n)))
    _check_map(space, model)


def test_label_map_edges_below_inside_and_above():
    """Both forms: a label below the smallest held (stored nowhere), a hole, above the largest,
    negative and unknown labels are -1; in uint64, int64 and list form."""
    dense = np.array([10**6, 10**6 + 1, 10**6 + 5])
    for labels in (dense, np.concatenate([[3], dense])):
        space = VectorSpace("v", 1, "l2")
        space.put(labels.astype(np.uint64), np.zeros((len(labels), 1), np.float32))
        probes = [10**6 - 1, 10**6, 10**6 + 2, 10**6 + 5, 10**6 + 6, 10**7, 0, 3, 2**62]
        off = len(labels) - 3
        want = [-1, off, -1, off + 2, -1, -1, -1, 0 if off else -1, -1]
        assert space.lookup(np.array(probes, np.uint64)).tolist() == want
        assert space.lookup(np.array(probes, np.int64)).tolist() == want
        assert space.lookup(probes).tolist() == want
        assert space.lookup([-1]).tolist() == [-1]
        assert space.positions(probes).tolist() == [p for p in want if p >= 0]


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_vectors_near_the_float32_limit_raise_no_numpy_warnings(local_client, metric):
    """The float32 estimates overflow to inf (and inf - inf to NaN) by design, the bounds and
    the float64 re-score handle it: numpy's RuntimeWarnings only reached the user's console."""
    import warnings
    col = local_client.create_database("app").require_collection("c", dim=2, metric=metric)
    col.add([[1e30, 1e30], [1, 2], [-1e30, 3e30]], ids=[1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for q in ([1e30, 1e30], [1, 1]):
            assert len(col.search(q, k=3).ids) == 3
            assert len(col.batch_search([q, q], k=2)) == 2
            col.search_range(q, threshold=1e38 if metric == "ip" else 1.0)
            col.search(q, k=2, where="id = 1")
