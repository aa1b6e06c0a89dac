"""The IVF index's list layout (``vecstore.indexes.ivf``): every list in one matrix, probed lists
that sit next to each other scored as one slice, appends into spare rows or moved lists, periodic
re-packing, and a grouped path for batches of queries.

None of that may show in the results: a search must return the same labels and scores whatever
the layout (before and after a reload, which re-packs), for one query or a batch, and exactly the
live rows when it probes every list. The stateful test drives adds, replaces, removes, rebuilds and
reloads against a dict + numpy model; ``IvfIndex.check()`` asserts the layout invariants.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_indexes import clustered, exact_scores, prepare

from vecstore.errors import CorruptionError
from vecstore.indexes.ivf import IvfIndex, scan_order

DIM = 4
N_QUERIES = 12   # above the index's batch threshold (8): search() takes the grouped path


def _reload(index: IvfIndex) -> IvfIndex:
    with tempfile.TemporaryDirectory() as d:
        files = index.save(Path(d), "s")
        return IvfIndex.load(Path(d), files, index.dim, index.metric, index.params)


def _singles(index: IvfIndex, q: np.ndarray, k: int, **kw):
    parts = [index.search(q[i:i + 1], k, **kw) for i in range(len(q))]
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts]), sum(p[2] for p in parts)


def _brute(model: dict[int, np.ndarray], q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the model by float32 squared distance, ties by label: what an index that probes
    every list must return."""
    labels = np.array(sorted(model), np.int64)
    x = np.stack([model[i] for i in labels.tolist()])
    d = ((x[None, :, :] - q[:, None, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(labels, d.shape), d), axis=1)[:, :k]
    return labels[order], np.take_along_axis(d, order, 1)


class _LayoutAgainstModel(RuleBasedStateMachine):
    """Four lists from the start, so appends land in lists that must grow: a list moves to the free
    tail, garbage piles up, the whole matrix is re-packed; removes tombstone and compact."""

    @initialize(n=st.integers(8, 60), seed=st.integers(0, 2**16))
    def start(self, n, seed):
        self.rng = np.random.default_rng(seed)
        self.index = IvfIndex(DIM, "l2", n_clusters=4)
        vecs = self.rng.standard_normal((n, DIM)).astype(np.float32)
        self.index.build(np.arange(n, dtype=np.uint64), vecs)
        self.model: dict[int, np.ndarray] = dict(zip(range(n), vecs))
        self.given = dict(self.model)  # the last vector each label was given, removed or not
        self.queries = self.rng.standard_normal((N_QUERIES, DIM)).astype(np.float32)

    @rule(labels=st.lists(st.integers(0, 300), min_size=1, max_size=40), shift=st.floats(-3, 3))
    def add(self, labels, shift):
        vecs = (self.rng.standard_normal((len(labels), DIM)) + shift).astype(np.float32)
        self.index.add(np.array(labels, np.uint64), vecs)
        self.model.update(zip(labels, vecs))
        self.given.update(zip(labels, vecs))

    @rule(data=st.data())
    def add_again_unchanged(self, data):
        """Labels (live or removed) re-added with the vector they were last given: kept in
        place, or revived from their tombstone while it is still there."""
        labels = data.draw(st.lists(st.sampled_from(sorted(self.given)), max_size=20))
        removed = sorted(set(self.given) - set(self.model))
        if removed:
            labels += data.draw(st.lists(st.sampled_from(removed), max_size=20))
        if labels:
            self.index.add(np.array(labels, np.uint64), np.stack([self.given[i] for i in labels]))
            self.model.update((i, self.given[i]) for i in labels)

    @rule(labels=st.lists(st.integers(0, 300), max_size=40))
    def remove(self, labels):
        self.index.remove(np.array(labels, np.uint64))
        for label in labels:
            self.model.pop(label, None)

    @rule(lo=st.integers(0, 300), width=st.integers(1, 200))
    def remove_range(self, lo, width):  # enough tombstones in one list to compact it
        labels = [i for i in self.model if lo <= i < lo + width]
        self.index.remove(np.array(labels, np.uint64))
        for label in labels:
            del self.model[label]

    @rule()
    def reload_keeps_every_answer(self):
        before = [self.index.search(self.queries, 5, breadth=b) for b in (1, 2, 4)]
        self.index = _reload(self.index)
        after = [self.index.search(self.queries, 5, breadth=b) for b in (1, 2, 4)]
        for (la, sa, va), (lb, sb, vb) in zip(before, after):
            np.testing.assert_array_equal(la, lb)
            np.testing.assert_array_equal(sa, sb)

    @rule()
    def rebuild(self):
        if self.model:
            labels = np.array(sorted(self.model), np.uint64)
            self.index.build(labels, np.stack([self.model[i] for i in labels.tolist()]))

    @invariant()
    def layout_is_consistent(self):
        self.index.check()
        assert len(self.index) == len(self.model)

    @invariant()
    def probing_every_list_returns_the_exact_top_k(self):
        k = 7
        labels, scores, visited = self.index.search(self.queries, k, breadth=4)
        if not self.model:
            assert (labels == -1).all()
            return
        want_labels, want_scores = _brute(self.model, self.queries, k)
        n = min(k, len(self.model))
        np.testing.assert_array_equal(labels[:, :n], want_labels[:, :n])
        np.testing.assert_allclose(scores[:, :n], want_scores[:, :n], rtol=1e-6, atol=1e-6)
        assert (labels[:, n:] == -1).all()
        assert visited >= len(self.queries) * len(self.model)   # tombstones count as visited

    @invariant()
    def a_batch_answers_like_single_queries(self):
        for breadth in (1, 2):
            for allowed in (None, np.arange(0, 301, 3, dtype=np.uint64)):
                batch = self.index.search(self.queries, 5, breadth=breadth, allowed=allowed)
                single = _singles(self.index, self.queries, 5, breadth=breadth, allowed=allowed)
                np.testing.assert_array_equal(batch[0], single[0])
                np.testing.assert_array_equal(batch[1], single[1])
                assert batch[2] == single[2]
                got = batch[0][batch[0] >= 0]
                assert set(got.tolist()) <= set(self.model)
                if allowed is not None:
                    assert (got % 3 == 0).all()


TestLayoutAgainstModel = settings(max_examples=30, stateful_step_count=20, deadline=None)(_LayoutAgainstModel).TestCase


# ---------------------------------------------------------------------------------------------
# batches, determinism, persistence on clustered data


@pytest.fixture(scope="module")
def mutated():
    """20k clustered rows per metric, then removals and appends after the build (appends move
    lists to the free tail, so probed lists are no longer all adjacent)."""
    out = {}
    for metric in ("l2", "ip", "cosine"):
        x = prepare(clustered(20_000, 32), metric)
        index = IvfIndex(32, metric)
        index.build(np.arange(20_000, dtype=np.uint64), x)
        index.remove(np.arange(0, 20_000, 7, dtype=np.uint64))
        extra = prepare(clustered(3000, 32, draw=3), metric)
        for s in range(0, 3000, 100):
            index.add(np.arange(20_000 + s, 20_100 + s, dtype=np.uint64), extra[s:s + 100])
        out[metric] = index, prepare(clustered(40, 32, draw=1), metric)
    return out


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_batch_and_single_queries_agree_bit_for_bit(mutated, metric):
    index, q = mutated[metric]
    index.check()
    for breadth in (1, 4, None):
        for allowed in (None, np.arange(0, 23_000, 3, dtype=np.uint64), np.arange(0, 23_000, 997, dtype=np.uint64)):
            batch = index.search(q, 10, breadth=breadth, allowed=allowed)
            single = _singles(index, q, 10, breadth=breadth, allowed=allowed)
            for a, b in zip(batch, single):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_results_survive_a_repacking_reload(mutated, metric):
    index, q = mutated[metric]
    loaded = _reload(index)
    loaded.check()
    for breadth in (1, 3, None):
        a, b = index.search(q, 10, breadth=breadth), loaded.search(q, 10, breadth=breadth)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_same_input_same_index_same_answers():
    x = prepare(clustered(5000, 16), "l2")
    q = prepare(clustered(20, 16, draw=1), "l2")
    a, b = IvfIndex(16, "l2"), IvfIndex(16, "l2")
    for index in (a, b):
        index.build(np.arange(5000, dtype=np.uint64), x)
    for breadth in (1, 2, 8):
        ra, rb = a.search(q, 10, breadth=breadth), b.search(q, 10, breadth=breadth)
        for u, v in zip(ra, rb):
            np.testing.assert_array_equal(u, v)


def test_exact_scores_and_ties_by_label():
    """Duplicate vectors under different labels: equal exact scores, smaller label first, in a
    single query and in a batch alike."""
    base = prepare(clustered(400, 8), "l2")
    x = np.concatenate([base, base[:50]])            # rows 400..449 repeat rows 0..49
    labels = np.concatenate([np.arange(400), np.arange(1000, 1050)]).astype(np.uint64)
    index = IvfIndex(8, "l2", n_clusters=5)
    index.build(labels, x)
    q = base[:10] + 0.01
    got, scores, _ = index.search(q, 4, breadth=5)
    np.testing.assert_array_equal(got[:, :2], np.stack([np.arange(10), np.arange(1000, 1010)], 1))
    assert (scores[:, 0] == scores[:, 1]).all()
    ref = exact_scores(x, q, "l2")
    np.testing.assert_allclose(scores[:, 0], ref[np.arange(10), np.arange(10)], rtol=1e-6, atol=1e-5)
    single = _singles(index, q, 4, breadth=5)
    np.testing.assert_array_equal(single[0], got)


def test_a_version_1_file_is_refused_so_the_collection_rebuilds(tmp_path):
    """Version 1 stored centres in k-means order; loading one raises CorruptionError, which makes
    the collection rebuild the index from its rows."""
    index = IvfIndex(8, "l2")
    index.build(np.arange(300, dtype=np.uint64), prepare(clustered(300, 8), "l2"))
    files = index.save(tmp_path, "g")
    meta_file = tmp_path / files[-1]
    meta = json.loads(meta_file.read_text())
    assert meta["version"] == 3
    meta["version"] = 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CorruptionError, match="version"):
        IvfIndex.load(tmp_path, files, 8, "l2", {})


def test_a_version_2_file_still_loads_and_answers_the_same(tmp_path):
    """Version 2 stored the vectors unwidened; a store written then loads without a rebuild."""
    from vecstore.indexes.hnsw import sha256_file
    x = prepare(clustered(2000, 8), "l2")
    index = IvfIndex(8, "l2", n_clusters=20)
    index.build(np.arange(2000, dtype=np.uint64), x)
    index.remove(np.arange(0, 2000, 7, dtype=np.uint64))   # tombstones are not saved
    files = index.save(tmp_path, "g")
    npz, meta_file = tmp_path / files[0], tmp_path / files[-1]
    with np.load(npz) as z:
        arrays = dict(z)
    rows = arrays.pop("rows")
    arrays["vectors"] = np.ascontiguousarray(rows[:, :8])
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    meta = json.loads(meta_file.read_text())
    meta["version"] = 2
    meta["npz"].update(size=npz.stat().st_size, sha256=sha256_file(npz))
    meta_file.write_text(json.dumps(meta))
    old = IvfIndex.load(tmp_path, files, 8, "l2", {})
    q = x[:50] + 0.01
    for a, b in zip(old.search(q, 10, breadth=4)[:2], index.search(q, 10, breadth=4)[:2]):  # (not `visited`:
        np.testing.assert_array_equal(a, b)                                                 # no tombstones now)
    assert len(old) == len(index) == 2000 - len(range(0, 2000, 7))


def test_scan_order_puts_the_centres_of_one_cluster_together():
    """Ten tight groups of centres in random order: scan order makes each group one run."""
    rng = np.random.default_rng(3)
    groups = rng.standard_normal((10, 16)) * 10
    which = rng.permutation(np.repeat(np.arange(10), 12))
    centres = (groups[which] + 0.1 * rng.standard_normal((120, 16))).astype(np.float32)
    order = scan_order(centres)
    assert sorted(order.tolist()) == list(range(120))
    runs = 1 + int((np.diff(which[order]) != 0).sum())
    assert runs == 10


def test_single_row_appends_move_lists_and_repack():
    """Appending row by row moves lists to the free tail and re-packs; the layout stays
    consistent and every row is found."""
    x = prepare(clustered(3000, 8), "l2")
    index = IvfIndex(8, "l2", n_clusters=20)
    index.build(np.arange(1000, dtype=np.uint64), x[:1000])
    for i in range(1000, 3000):
        index.add(np.array([i], np.uint64), x[i:i + 1])
    index.check()
    labels, _, _ = index.search(x[::100], 1, breadth=20)
    np.testing.assert_array_equal(labels[:, 0], np.arange(0, 3000, 100))


def test_removing_most_of_the_lists_compacts_them():
    """A list that is mostly tombstones is rewritten in place; its freed rows must never rank and
    the survivors keep being found, before and after appends into the freed room."""
    x = prepare(clustered(2000, 8), "l2")
    index = IvfIndex(8, "l2", n_clusters=4)
    index.build(np.arange(2000, dtype=np.uint64), x)
    index.remove(np.arange(0, 1900, dtype=np.uint64))
    index.check()
    model = {i: x[i] for i in range(1900, 2000)}
    q = x[::97] + 0.01
    labels, scores, _ = index.search(q, 10, breadth=4)
    want_labels, want_scores = _brute(model, q, 10)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-6)
    index.add(np.arange(5000, 5100, dtype=np.uint64), x[:100])
    model.update((5000 + i, x[i]) for i in range(100))
    index.check()
    labels, _, _ = index.search(q, 10, breadth=4)
    np.testing.assert_array_equal(labels, _brute(model, q, 10)[0])


def test_rows_re_added_unchanged_keep_or_revive_their_entries():
    """A row re-added with the vector it has (a fields-only upsert, a restore) keeps its entry,
    or gets its tombstone back: no new entry for searches to scan. A tombstone its list's
    compaction removed cannot come back; the row is appended again instead."""
    x = prepare(clustered(2000, 8), "l2")
    index = IvfIndex(8, "l2", n_clusters=4)
    index.build(np.arange(2000, dtype=np.uint64), x)
    q = x[::97] + 0.01

    def entries() -> int:  # every list probed: every entry scored, tombstones included
        return index.search(q[:1], 1, breadth=4)[2]
    index.add(np.arange(0, 2000, 3, dtype=np.uint64), x[::3])            # live, unchanged
    assert entries() == 2000
    index.remove(np.arange(0, 2000, 7, dtype=np.uint64))                 # too few to compact
    index.add(np.arange(0, 2000, 7, dtype=np.uint64), x[::7])            # revived in place
    index.check()
    assert entries() == 2000 and len(index) == 2000
    moved = x[5] + 1
    index.remove(np.array([5], np.uint64))
    index.add(np.array([5], np.uint64), moved[None])                     # changed: a new entry
    index.check()
    assert entries() == 2001
    index.remove(np.arange(0, 1900, dtype=np.uint64))                    # compacts the lists
    index.check()
    index.add(np.arange(0, 1900, 2, dtype=np.uint64), x[:1900:2])        # their tombstones are gone
    index.check()
    model = {i: x[i] for i in [*range(0, 1900, 2), *range(1900, 2000)]}
    labels, scores, _ = index.search(q, 10, breadth=4)
    want_labels, want_scores = _brute(model, q, 10)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-6)


def test_a_vector_whose_squared_norm_overflows_float32_stays_live(tmp_path):
    """l2 lists keep ||x||² as each row's bias, and +inf marks a tombstone: a finite vector of
    norm ~3e19 (its square overflows float32) was taken for deleted: dropped by a build,
    never found after an add, and lost on save/load."""
    huge = np.array([[3e19, 0, 0, 0]], np.float32)
    for how in ("build", "add"):
        idx = IvfIndex(4, "l2", n_clusters=1)
        if how == "build":
            idx.build(np.arange(2, dtype=np.uint64), np.vstack([np.zeros((1, 4), np.float32), huge]))
        else:
            idx.build(np.arange(1, dtype=np.uint64), np.zeros((1, 4), np.float32))
            idx.add(np.array([1], np.uint64), huge)
        idx.check()
        assert len(idx) == 2 and idx.search(huge, 1)[0].tolist() == [[1]]
        again = IvfIndex.load(tmp_path, idx.save(tmp_path, f"x{how}"), 4, "l2", {})
        assert len(again) == 2 and again.search(huge, 1)[0].tolist() == [[1]]


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_a_live_row_whose_ranking_value_overflows_is_still_found(metric):
    """The ranking value (bias - x·q or bias - 2x·q, float32) of a row far from a huge query
    overflows to +inf, which also marks a tombstone: such live rows were dropped, in the single
    and in the batch path, while tombstones (here of the same vector) must stay out."""
    x = np.array([[1e20, 0], [-1e20, 0], [0, 1], [1, 1], [-1e20, 0]], np.float32)
    index = IvfIndex(2, metric, n_clusters=1)
    index.build(np.arange(5, dtype=np.uint64), x)
    index.remove(np.array([4], np.uint64))
    q = np.array([[1e20, 0], [-1e20, 0], [0, 1], [3e19, -3e19]] * 2, np.float32)   # 8: the batch path
    for allowed in (None, np.array([0, 1, 2, 4], np.uint64)):
        live = np.array([0, 1, 2, 3] if allowed is None else [0, 1, 2])
        # oracle: float64 scores, best first, ties by label, reported as float32 (overflowing to
        # ±inf), as FLAT ranks and reports them
        s = x[live].astype(np.float64) @ q.T.astype(np.float64) if metric == "ip" else \
            ((x[live, None, :].astype(np.float64) - q[None].astype(np.float64)) ** 2).sum(-1)
        s = s.T
        order = np.lexsort((np.broadcast_to(live, s.shape), -s if metric == "ip" else s), axis=1)
        with np.errstate(over="ignore"):
            s = s.astype(np.float32)
        for got in (index.search(q, 10, allowed=allowed), _singles(index, q, 10, allowed=allowed)):
            np.testing.assert_array_equal(got[0][:, :len(live)], live[order])
            np.testing.assert_array_equal(got[1][:, :len(live)], np.take_along_axis(s, order, 1))
            assert (got[0][:, len(live):] == -1).all()


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_a_row_whose_products_overflow_with_mixed_signs_ranks_by_its_exact_score(metric):
    """ip: x = (3e21, -1e21), q = (1e18, 1e18): x·q = 2e39, the best row, but in float32 its two
    products are +inf and -inf, and their sum NaN. That row was ranked last among the candidates
    (or not taken at all) and re-scored in float32 (NaN again): missing from a single query, NaN in
    a batch. l2 likewise (bias - 2x·q, rows near a huge query). The rows are now re-scored in
    float64 as FLAT does, every row whose ranking value overflowed among the candidates, and the
    centres are ranked in float64 (in float32 they came out NaN alone and -inf in a batch, which
    then probed other lists). Also when the far rows come after the build (the bound that tells
    a query safe grows with them)."""
    rng = np.random.default_rng(0)
    if metric == "ip":
        x = rng.standard_normal((200, 2)).astype(np.float32)
        x[7], x[50] = [3e21, -1e21], [-1e21, 3e21]
        q = np.array([[1e18, 1e18], [1e18, -1e18], [1, 1], [-3e17, 3e17]] * 2, np.float32)
    else:  # rows and queries far out: |x - q|² is exact in float64 and distinct
        x = (rng.standard_normal((200, 2)) * [1e29, 1e18]).astype(np.float32)
        x[7], x[50] = [1e30, -2e19], [-1e30, 3e19]
        q = np.array([[1e30, 1e19], [-1e30, -1e19], [1e29, 0], [0, 1e19]] * 2, np.float32)
    labels = np.arange(200, dtype=np.uint64)
    built = IvfIndex(2, metric, n_clusters=4)
    built.build(labels, x)
    added = IvfIndex(2, metric, n_clusters=4)
    rest = np.setdiff1d(labels, [7, 50])
    added.build(rest, x[rest])
    added.add(labels[[7, 50]], x[[7, 50]])
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    s = q64 @ x64.T if metric == "ip" else ((q64[:, None, :] - x64[None]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(200), s.shape), -s if metric == "ip" else s), axis=1)[:, :5]
    with np.errstate(over="ignore"):
        want = np.take_along_axis(s, order, 1).astype(np.float32)
    assert order[0, 0] == 7                                  # the row whose products overflow: the best
    for index in (built, added):
        for got in (index.search(q, 5, breadth=4), _singles(index, q, 5, breadth=4)):   # every list
            np.testing.assert_array_equal(got[0], order)
            np.testing.assert_array_equal(got[1], want)
        for breadth in (1, 2):
            batch, single = index.search(q, 5, breadth=breadth), _singles(index, q, 5, breadth=breadth)
            for a, b in zip(batch, single):
                np.testing.assert_array_equal(a, b)
            assert not np.isnan(batch[1]).any()
