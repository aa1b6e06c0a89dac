"""Derived vector indexes (``vecstore.indexes``): HNSW (hnswlib) and IVF (numpy).

Every recall check uses numpy brute force in float64 as the oracle (hnswlib's own
``bindings_test_recall.py`` idea), on clustered data: uniform noise makes every neighbour
equally far and says nothing about recall.
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vecstore.errors import CorruptionError, DimensionMismatchError, InvalidArgumentError
from vecstore.indexes.hnsw import HnswIndex
from vecstore.indexes.ivf import IvfIndex
from vecstore.indexes.rwlock import RWLock

KINDS = {"HNSW": HnswIndex, "IVF": IvfIndex}
METRICS = ("ip", "l2", "cosine")
RECALL_FLOOR = {"HNSW": 0.95, "IVF": 0.90}
N, DIM, K = 20_000, 64, 10


def clustered(n: int, dim: int, *, clusters: int = 50, seed: int = 0, spread: float = 0.35,
              draw: int = 0) -> np.ndarray:
    """``n`` points around ``clusters`` Gaussian centres fixed by ``seed``; ``draw`` selects an
    independent sample from the same mixture (queries use ``draw=1``)."""
    centres = np.random.default_rng(seed).standard_normal((clusters, dim))
    rng = np.random.default_rng([seed, draw])
    which = rng.integers(0, clusters, n)
    return (centres[which] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """What the collection hands an index: float32, C-contiguous, unit rows for cosine."""
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def exact_scores(x: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """(m, n) public scores in float64: dot (ip), squared L2, or 1 - dot (cosine)."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    dots = q64 @ x64.T
    if metric == "ip":
        return dots
    if metric == "cosine":
        return 1.0 - dots
    return (q64 ** 2).sum(1)[:, None] - 2 * dots + (x64 ** 2).sum(1)[None, :]


def exact_topk(x, q, metric, k, labels=None):
    s = exact_scores(x, q, metric)
    order = np.argsort(-s if metric == "ip" else s, axis=1, kind="stable")[:, :k]
    return order if labels is None else labels[order]


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(g[g >= 0].tolist()) & set(t[t >= 0].tolist())) for g, t in zip(got, truth)]
    return sum(hits) / max(1, int((truth >= 0).sum()))


def check_scores(index_scores, labels, x, q, metric):
    """Scores the index returned for real labels equal the exact scores of those labels."""
    ref = exact_scores(x, q, metric)
    mask = labels >= 0
    rows = np.nonzero(mask)[0]
    np.testing.assert_allclose(index_scores[mask], ref[rows, labels[mask]], rtol=1e-6, atol=1e-4)


def assert_best_first(scores, metric):
    finite = np.where(np.isfinite(scores), scores, np.nan)
    d = np.diff(finite, axis=1)
    d = d[~np.isnan(d)]
    assert (d <= 1e-6).all() if metric == "ip" else (d >= -1e-6).all()


# ---------------------------------------------------------------------------------------------
# shared built indexes: one per kind x metric, built once (module scope keeps the file < 60 s)

@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM)
    q = clustered(100, DIM, draw=1)
    return {m: (prepare(x, m), prepare(q, m)) for m in METRICS}


@pytest.fixture(scope="module")
def built(data):
    out = {}
    for kind, cls in KINDS.items():
        for metric in METRICS:
            x, _ = data[metric]
            index = cls(DIM, metric)
            index.build(np.arange(N, dtype=np.uint64), x)
            out[kind, metric] = index
    return out


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_recall_and_exact_scores_at_defaults(built, data, kind, metric):
    x, q = data[metric]
    index = built[kind, metric]
    assert len(index) == N
    labels, scores, visited = index.search(q, K)
    assert labels.dtype == np.int64 and scores.dtype == np.float32 and labels.shape == scores.shape == (len(q), K)
    assert visited > 0
    assert recall(labels, exact_topk(x, q, metric, K)) >= RECALL_FLOOR[kind]
    check_scores(scores, labels, x, q, metric)
    assert_best_first(scores, metric)
    # one query at a time gives the same answers as the batch
    single = np.stack([index.search(q[i:i + 1], K)[0][0] for i in range(10)])
    np.testing.assert_array_equal(single, labels[:10])


@pytest.mark.parametrize("kind", KINDS)
def test_breadth_overrides_default_and_never_goes_below_k(built, data, kind):
    x, q = data["l2"]
    index = built[kind, "l2"]
    truth = exact_topk(x, q, "l2", K)
    wide = index.search(q, K, breadth=4 * (index.ef if kind == "HNSW" else index.nprobe))[0]
    assert recall(wide, truth) >= recall(index.search(q, K)[0], truth) - 0.01
    narrow = index.search(q, K, breadth=1)[0]  # ef 1 is raised to k; nprobe 1 is allowed
    assert (narrow >= 0).all()


# ---------------------------------------------------------------------------------------------
# filtered search

@pytest.mark.parametrize("selectivity", [0.001, 0.01, 0.1, 0.5])
@pytest.mark.parametrize("kind", KINDS)
def test_allowed_filter_returns_only_allowed_and_finds_k(built, data, kind, selectivity):
    metric = "cosine"
    x, q = data[metric]
    q = q[:40]
    index = built[kind, metric]
    rng = np.random.default_rng(7)
    allowed = np.sort(rng.choice(N, int(N * selectivity), replace=False)).astype(np.uint64)
    labels, scores, _ = index.search(q, K, allowed=allowed)
    got = labels[labels >= 0]
    assert np.isin(got, allowed.astype(np.int64)).all()
    assert ((labels >= 0).sum(axis=1) == min(K, len(allowed))).all()  # k found whenever k exist
    truth = exact_topk(x[allowed.astype(np.int64)], q, metric, K, labels=allowed.astype(np.int64))
    assert recall(labels, truth) >= 0.95
    check_scores(scores, labels, x, q, metric)


@pytest.mark.parametrize("kind", KINDS)
def test_allowed_with_unknown_removed_and_empty_labels(kind):
    x = prepare(clustered(500, 8), "l2")
    index = KINDS[kind](8, "l2")
    index.build(np.arange(500, dtype=np.uint64), x)
    index.remove(np.arange(0, 500, 2, dtype=np.uint64))
    allowed = np.array([0, 1, 2, 3, 10**6], dtype=np.uint64)  # 0, 2 removed; 10**6 never added
    labels, _, _ = index.search(x[:3], 5, allowed=allowed)
    assert (labels[:, :2] >= 0).all() and set(labels[:, :2].ravel().tolist()) <= {1, 3}
    assert (labels[:, 2:] == -1).all()
    labels, scores, _ = index.search(x[:3], 5, allowed=np.array([], dtype=np.uint64))
    assert (labels == -1).all() and np.isinf(scores).all()


@pytest.mark.parametrize("ancient", [False, True])
@pytest.mark.parametrize("selectivity", [0.005, 0.1, 0.6])
def test_hnsw_filter_far_from_label_zero(tmp_path, ancient, selectivity):
    """Labels from 10**7 (rows written and compacted away before; with ``ancient``, one row kept
    from the start): filtered search, through hnswlib's filter callback (0.5 %), post-filtering
    (10 %, 60 %) and after a reload, equals brute force over the live allowed rows. The label
    states cost the span of the labels, not the labels ever used (a mask over every label ever
    used cost 7 ms a search at 10M and allocated 10 MB)."""
    n, first = 3000, 10**7
    x = prepare(clustered(n, 8), "l2")
    labels = first + np.arange(n, dtype=np.uint64)
    if ancient:
        labels[0] = 5
    index = HnswIndex(8, "l2")
    index.build(labels, x)
    index.remove(labels[1::7])
    rng = np.random.default_rng(3)
    allowed = np.sort(rng.choice(labels, int(n * selectivity), replace=False))
    live = ~np.isin(labels, labels[1::7]) & np.isin(labels, allowed)
    q = prepare(clustered(20, 8, draw=1), "l2")
    truth = exact_topk(x[live], q, "l2", K, labels=labels[live].astype(np.int64))
    for idx in (index, HnswIndex.load(tmp_path, index.save(tmp_path, "s"), 8, "l2", index.params)):
        approx, _, _ = idx.search(q, K, allowed=allowed)  # default width: post-filtered from 2 %
        assert np.isin(approx, truth).mean() >= 0.9
        got, scores, _ = idx.search(q, K, breadth=n, allowed=allowed)  # the callback, wide: exact
        assert (got == truth).all()
        rows = np.searchsorted(labels.astype(np.int64), got)
        np.testing.assert_allclose(scores, exact_scores(x, q, "l2")[np.arange(len(q))[:, None], rows], rtol=1e-5, atol=1e-5)
        dense = idx._states.dense
        assert dense is not None and dense.nbytes <= (1 << 24 if ancient else 4 * n + 4096)
        tracemalloc.start()
        try:  # what a search allocates follows the allowed rows, not the labels ever used
            idx.search(q, K, allowed=allowed)
            idx.search(q, K, breadth=n, allowed=allowed)
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()


# ---------------------------------------------------------------------------------------------
# updates, removes, padding

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_update_remove_and_restore_by_readd(kind, metric):
    rng = np.random.default_rng(3)
    x = prepare(clustered(3000, 16, seed=3), metric)
    index = KINDS[kind](16, metric)
    index.build(np.arange(3000, dtype=np.uint64), x)
    far = prepare(rng.standard_normal((2, 16)) * 50 + 100, metric)

    # replacing a vector moves the label
    index.add(np.array([5], np.uint64), far[:1])
    assert len(index) == 3000
    assert index.search(far[:1], 1)[0][0, 0] == 5
    assert 5 not in index.search(x[5:6], 10)[0][0]

    # removed labels vanish; unknown and already-removed labels are ignored
    index.remove(np.array([7, 7, 10**9], np.uint64))
    index.remove(np.array([7], np.uint64))
    assert len(index) == 2999
    assert 7 not in index.search(x[7:8], 50)[0][0]

    # re-adding a removed label makes it live again, with the new vector
    index.add(np.array([7], np.uint64), far[1:2])
    assert len(index) == 3000
    labels, scores, _ = index.search(far[1:2], 1)
    assert labels[0, 0] == 7
    check_scores(scores, labels, np.vstack([x[:7], far[1:2]]), far[1:2], metric)

    # a batch repeating a label keeps the last vector, like sequential adds
    index.add(np.array([9, 9], np.uint64), np.vstack([x[9:10], far[:1]]))
    assert len(index) == 3000
    assert 9 in index.search(far[:1], 2)[0][0]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_live_count_pads_with_minus_one(kind, metric):
    x = prepare(clustered(6, 4, clusters=2), metric)
    index = KINDS[kind](4, metric)
    labels, scores, visited = index.search(x[:2], 3)  # empty, never initialised
    assert (labels == -1).all() and visited == 0
    index.add(np.arange(6, dtype=np.uint64), x)
    index.remove(np.array([0, 1], np.uint64))
    labels, scores, _ = index.search(x[:2], 10)
    assert labels.shape == (2, 10)
    assert (np.sort(labels[:, :4], axis=1) == [2, 3, 4, 5]).all()
    assert (labels[:, 4:] == -1).all()
    worst = -np.inf if metric == "ip" else np.inf
    assert (scores[:, 4:] == worst).all() and np.isfinite(scores[:, :4]).all()
    index.remove(np.arange(6, dtype=np.uint64))
    assert len(index) == 0
    assert (index.search(x[:1], 3)[0] == -1).all()


@pytest.mark.parametrize("exact_fallback", [True, False])
def test_hnsw_graph_that_cannot_reach_k_live_nodes(exact_fallback):
    """98 % deleted on an M=2 graph: raw hnswlib raises "Cannot return the results in a
    contiguous 2D array" for every query (measured). The index scores the live rows exactly when
    they are few enough, else returns what the graph reaches, padded; it never raises."""
    x = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    index = HnswIndex(8, "l2", M=2, ef_construction=10, ef=10)
    if not exact_fallback:
        index.exact_fallback_rows = 0
    index.build(np.arange(2000, dtype=np.uint64), x)
    index.remove(np.array([i for i in range(2000) if i % 50], np.uint64))
    live = np.arange(0, 2000, 50)
    labels, scores, _ = index.search(x[:20], 40)
    for row in labels:
        got = row[row >= 0].tolist()
        assert got and set(got) <= set(live.tolist()) and len(set(got)) == len(got)
        assert (row[len(got):] == -1).all()
        if exact_fallback:
            assert sorted(got) == live.tolist()
    check_scores(scores, labels, x, x[:20], "l2")
    assert_best_first(scores, "l2")


@pytest.mark.parametrize("kind", KINDS)
def test_huge_sparse_labels_work_everywhere(tmp_path, kind):
    """Row labels are a dense counter in practice; a far-out label must still just work."""
    x = prepare(clustered(300, 8), "l2")
    labels = np.concatenate([np.arange(299), [2**62 + 5]]).astype(np.uint64)
    index = KINDS[kind](8, "l2")
    index.add(labels[:150], x[:150])
    index.add(labels[150:], x[150:])
    assert index.search(x[-1:], 1)[0][0, 0] == 2**62 + 5
    got = index.search(x[-1:], 3, allowed=np.array([7, 2**62 + 5], np.uint64))[0][0]
    assert sorted(got[:2].tolist()) == [7, 2**62 + 5] and got[2] == -1
    index.remove(np.array([2**62 + 5, 7], np.uint64))
    files = index.save(tmp_path, "s")
    loaded = KINDS[kind].load(tmp_path, files, 8, "l2", index.params)
    assert len(loaded) == 298
    assert not np.isin(loaded.search(x[-1:], 50)[0], [7, 2**62 + 5]).any()


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_dimension_is_refused_before_native_code(kind):
    index = KINDS[kind](8, "l2")
    index.add(np.arange(3, dtype=np.uint64), np.ones((3, 8), np.float32))
    with pytest.raises(DimensionMismatchError):
        index.add(np.arange(1, dtype=np.uint64), np.ones((1, 4), np.float32))
    with pytest.raises(DimensionMismatchError):
        index.search(np.ones((1, 16), np.float32), 1)
    with pytest.raises(DimensionMismatchError):
        index.build(np.arange(1, dtype=np.uint64), np.ones((1, 9), np.float32))
    with pytest.raises(InvalidArgumentError):
        index.search(np.ones((1, 8), np.float32), 0)
    with pytest.raises(InvalidArgumentError):
        KINDS[kind](8, "l2", bogus=1)


def test_params_are_reported_and_validated():
    assert HnswIndex(4, "l2").params == {"M": 16, "ef_construction": 200, "ef": 64, "seed": 100}
    assert HnswIndex(4, "l2", M=8, ef=32).params["M"] == 8
    with pytest.raises(InvalidArgumentError):
        HnswIndex(4, "l2", M=0)
    ivf = IvfIndex(4, "ip", n_clusters=3, nprobe=2)
    assert ivf.params["n_clusters"] == 3 and ivf.nprobe == 2
    with pytest.raises(InvalidArgumentError):
        IvfIndex(4, "ip", nprobe=-1)


# ---------------------------------------------------------------------------------------------
# capacity and growth

def test_hnsw_capacity_grows_across_many_small_adds():
    x = prepare(clustered(3000, 16), "l2")
    index = HnswIndex(16, "l2")
    for s in range(0, 3000, 7):
        index.add(np.arange(s, min(s + 7, 3000), dtype=np.uint64), x[s:s + 7])
    assert len(index) == 3000 and index.capacity >= 3000
    labels, _, _ = index.search(x[::30], 1)
    assert (labels[:, 0] == np.arange(0, 3000, 30)).mean() >= 0.99


def test_ivf_trains_lazily_and_retrains_as_it_grows():
    x = prepare(clustered(6000, 16), "l2")
    q = prepare(clustered(50, 16, draw=1), "l2")
    index = IvfIndex(16, "l2")
    index.add(np.arange(10, dtype=np.uint64), x[:10])
    first = index.n_clusters
    for s in range(10, 6000, 500):
        index.add(np.arange(s, min(s + 500, 6000), dtype=np.uint64), x[s:s + 500])
    assert len(index) == 6000 and index.n_clusters > first
    labels, scores, _ = index.search(q, K)
    assert recall(labels, exact_topk(x, q, "l2", K)) >= 0.90
    check_scores(scores, labels, x, q, "l2")


# ---------------------------------------------------------------------------------------------
# persistence

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_is_identical_and_keeps_removals(tmp_path, kind, metric):
    x = prepare(clustered(3000, 16), metric)
    q = prepare(clustered(30, 16, draw=1), metric)
    index = KINDS[kind](16, metric)
    index.build(np.arange(3000, dtype=np.uint64), x)
    index.remove(np.arange(0, 3000, 3, dtype=np.uint64))
    index.add(np.array([3], np.uint64), x[4:5])  # a removed label, restored with another vector
    files = index.save(tmp_path, "gen1")
    assert all((tmp_path / f).exists() for f in files) and all(f.startswith("gen1") for f in files)
    loaded = KINDS[kind].load(tmp_path, files, 16, metric, index.params)
    assert len(loaded) == len(index) == 2001
    for allowed in (None, np.arange(0, 3000, 5, dtype=np.uint64)):
        a = index.search(q, K, allowed=allowed)
        b = loaded.search(q, K, allowed=allowed)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.isin(b[0], np.arange(6, 3000, 3)).any()
    loaded.add(np.arange(3000, 5000, dtype=np.uint64), prepare(clustered(2000, 16, draw=9), metric))
    assert len(loaded) == 4001


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_round_trip(tmp_path, kind):
    files = KINDS[kind](4, "ip").save(tmp_path, "empty")
    loaded = KINDS[kind].load(tmp_path, files, 4, "ip", {})
    assert len(loaded) == 0
    loaded.add(np.arange(2, dtype=np.uint64), np.eye(2, 4, dtype=np.float32))
    assert loaded.search(np.eye(1, 4, dtype=np.float32), 1)[0][0, 0] == 0


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip":
        data[len(data) // 2] ^= 0xFF
    elif how == "header":
        data[16:24] = (2**60).to_bytes(8, "little")  # cur_element_count: a huge allocation
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip", "header"])
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_files_raise_corruption_error(tmp_path, kind, how):
    x = prepare(clustered(500, 8), "l2")
    index = KINDS[kind](8, "l2")
    index.build(np.arange(500, dtype=np.uint64), x)
    files = index.save(tmp_path, "g")
    data_file = tmp_path / files[0]
    _damage(data_file, how)
    with pytest.raises(CorruptionError):
        KINDS[kind].load(tmp_path, files, 8, "l2", index.params)


@pytest.mark.parametrize("kind, how", [("HNSW", "truncate"), ("HNSW", "header"), ("IVF", "truncate")])
def test_damage_with_a_matching_checksum_still_raises(tmp_path, kind, how):
    """E.g. a full disk truncated the file before its checksum was taken: the structure checks
    (and hnswlib's own) must still refuse it without crashing."""
    from vecstore.indexes.hnsw import sha256_file

    x = prepare(clustered(500, 8), "l2")
    index = KINDS[kind](8, "l2")
    index.build(np.arange(500, dtype=np.uint64), x)
    files = index.save(tmp_path, "g")
    data_file, meta_file = tmp_path / files[0], tmp_path / files[-1]
    _damage(data_file, how)
    meta = json.loads(meta_file.read_text())
    key = "bin" if kind == "HNSW" else "npz"
    meta[key].update(size=data_file.stat().st_size, sha256=sha256_file(data_file))
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CorruptionError):
        KINDS[kind].load(tmp_path, files, 8, "l2", index.params)


@pytest.mark.parametrize("damage", ["offsets", "duplicate", "duplicate-huge", "distinct-huge", "padding", "bias"])
def test_ivf_arrays_that_do_not_fit_together_are_refused(tmp_path, damage):
    """Arrays that pass the checksum but not the structure checks: a list running past the rows,
    a label twice (checked by a bitmap for dense labels, by np.unique for huge ones); a huge but
    distinct label is fine."""
    from vecstore.indexes.hnsw import sha256_file

    index = IvfIndex(8, "l2")
    index.build(np.arange(200, dtype=np.uint64), prepare(clustered(200, 8), "l2"))
    files = index.save(tmp_path, "g")
    npz, meta_file = tmp_path / files[0], tmp_path / files[-1]
    with np.load(npz) as z:
        arrays = {name: a.copy() for name, a in z.items()}
    if damage == "offsets":
        arrays["offsets"][-1] += 10**9  # a list that runs past the end of the rows
    if damage.endswith("huge"):
        arrays["labels"][0] = 2**63 + 5
    if damage.startswith("duplicate"):
        arrays["labels"][1] = arrays["labels"][0]
    if damage == "padding":   # widened rows: the padding must be zero (a search multiplies it by 0)
        arrays["rows"][3, 9] = np.inf
    if damage == "bias":      # a stored row is live: its bias is finite
        arrays["rows"][3, 8] = np.inf
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    meta = json.loads(meta_file.read_text())
    meta["npz"].update(size=npz.stat().st_size, sha256=sha256_file(npz))
    meta_file.write_text(json.dumps(meta))
    if damage == "distinct-huge":
        assert len(IvfIndex.load(tmp_path, files, 8, "l2", {})) == 200
        return
    with pytest.raises(CorruptionError, match="do not form"):
        IvfIndex.load(tmp_path, files, 8, "l2", {})


@pytest.mark.parametrize("kind", KINDS)
def test_load_refuses_other_dim_metric_and_broken_metadata(tmp_path, kind):
    index = KINDS[kind](8, "l2")
    index.build(np.arange(100, dtype=np.uint64), prepare(clustered(100, 8), "l2"))
    files = index.save(tmp_path, "g")
    with pytest.raises(CorruptionError):
        KINDS[kind].load(tmp_path, files, 16, "l2", {})
    with pytest.raises(CorruptionError):
        KINDS[kind].load(tmp_path, files, 8, "ip", {})
    with pytest.raises(CorruptionError):
        KINDS[kind].load(tmp_path, [f for f in files if not f.endswith(".meta.json")], 8, "l2", {})
    (tmp_path / files[-1]).write_text("{not json")
    with pytest.raises(CorruptionError):
        KINDS[kind].load(tmp_path, files, 8, "l2", {})


def test_hnsw_file_of_another_dimension_is_refused_even_if_metadata_says_otherwise(tmp_path):
    """hnswlib's load_index accepts a 16-d file into an 8-d Index (reliability §2.2)."""
    from vecstore.indexes.hnsw import sha256_file

    index = HnswIndex(16, "l2")
    index.build(np.arange(50, dtype=np.uint64), prepare(clustered(50, 16), "l2"))
    files = index.save(tmp_path, "g")
    meta_file = tmp_path / files[-1]
    meta = json.loads(meta_file.read_text())
    meta["dim"] = 8
    meta_file.write_text(json.dumps(meta))
    assert meta["bin"]["sha256"] == sha256_file(tmp_path / files[0])
    with pytest.raises(CorruptionError):
        HnswIndex.load(tmp_path, files, 8, "l2", {})


# ---------------------------------------------------------------------------------------------
# threads

@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_searches_with_a_writer_adding_and_removing(kind):
    dim = 16
    rng = np.random.default_rng(11)
    pool = prepare(clustered(12_000, dim, seed=11), "l2")
    index = KINDS[kind](dim, "l2")
    index.add(np.arange(100, dtype=np.uint64), pool[:100])
    added = set(range(100))  # grows only; read by searchers without a lock (set reads are atomic)
    errors: list[BaseException] = []
    bad: list[list[int]] = []
    stop = threading.Event()

    def searcher(seed):
        r = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = pool[r.integers(0, len(pool), r.integers(1, 4))]
                allowed = None
                if r.random() < 0.25:
                    allowed = np.sort(r.choice(12_000, 2000, replace=False)).astype(np.uint64)
                labels, _, _ = index.search(q, int(r.integers(1, 40)), breadth=int(r.integers(1, 100)),
                                            allowed=allowed)
                got = set(labels[labels >= 0].tolist())
                if not got <= added:
                    bad.append(sorted(got - added))
        except BaseException as e:  # noqa: BLE001 - any failure fails the test
            errors.append(e)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 2.5
    next_label = 100
    try:
        while time.monotonic() < deadline and next_label < len(pool):
            batch = int(rng.integers(1, 200))
            labels = np.arange(next_label, min(next_label + batch, len(pool)), dtype=np.uint64)
            added.update(labels.tolist())
            index.add(labels, pool[labels.astype(np.int64)])
            next_label += len(labels)
            index.remove(rng.choice(next_label, 30, replace=False).astype(np.uint64))
            back = rng.choice(next_label, 10, replace=False).astype(np.uint64)
            index.add(back, pool[back.astype(np.int64)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert not bad, bad[:3]
    assert next_label > 1024  # the HNSW index had to grow past its initial capacity


def test_rwlock_readers_share_and_a_waiting_writer_blocks_new_readers():
    lock = RWLock()
    order: list[str] = []
    lock.acquire_read()
    lock.acquire_read()  # two readers at once
    writer = threading.Thread(target=lambda: (lock.acquire_write(), order.append("w"), lock.release_write()))
    writer.start()
    while not lock.writers_waiting:  # wait until the writer queues
        time.sleep(0.001)
    reader = threading.Thread(target=lambda: (lock.acquire_read(), order.append("r"), lock.release_read()))
    reader.start()
    time.sleep(0.05)
    assert order == []  # writer waits for the readers; the new reader waits for the writer
    lock.release_read()
    lock.release_read()
    writer.join(2)
    reader.join(2)
    assert order == ["w", "r"]


# ---------------------------------------------------------------------------------------------
# stateful model: random adds / replaces / removes / re-adds / reloads against a dict


class _IndexAgainstModel(RuleBasedStateMachine):
    """With a search as wide as the index (``breadth`` ≥ rows), both kinds must return exactly
    the live labels, with exact scores, whatever sequence of writes and reloads came before."""

    kind = "HNSW"
    offset = 0  # added to every label: far from 0, as after rows were written and compacted away

    def __init__(self) -> None:
        super().__init__()
        self.index = KINDS[self.kind](4, "l2")
        self.model: dict[int, np.ndarray] = {}
        self.given: dict[int, np.ndarray] = {}  # the last vector each label was given, removed or not

    @rule(labels=st.lists(st.integers(0, 60), min_size=1, max_size=25), seed=st.integers(0, 2**16))
    def add(self, labels, seed):
        labels = [self.offset + x for x in labels]
        vecs = np.random.default_rng(seed).standard_normal((len(labels), 4)).astype(np.float32)
        self.index.add(np.array(labels, np.uint64), vecs)
        self.model.update(zip(labels, vecs))
        self.given.update(zip(labels, vecs))

    @rule(labels=st.lists(st.integers(0, 60), max_size=25))
    def add_again_unchanged(self, labels):
        """A fields-only upsert or a restore: labels re-added with the vector they were last
        given, live or removed (an index may skip or revive them, never lose or misplace them)."""
        labels = [i for i in labels if i in self.given]
        if labels:
            self.index.add(np.array(labels, np.uint64), np.stack([self.given[i] for i in labels]))
            self.model.update((i, self.given[i]) for i in labels)

    @rule(labels=st.lists(st.integers(0, 70), max_size=15))
    def remove(self, labels):
        labels = [self.offset + x for x in labels]
        self.index.remove(np.array(labels, np.uint64))
        for label in labels:
            self.model.pop(label, None)

    @rule()
    def rebuild(self):
        labels = np.array(sorted(self.model), np.uint64)
        vecs = np.stack([self.model[i] for i in sorted(self.model)]) if self.model else np.empty((0, 4), np.float32)
        self.index.build(labels, vecs)

    @rule()
    def reload(self):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            files = self.index.save(Path(d), "s")
            self.index = KINDS[self.kind].load(Path(d), files, 4, "l2", self.index.params)

    @invariant()
    def returns_exactly_the_live_rows(self):
        assert len(self.index) == len(self.model)
        q = np.full((1, 4), 0.25, np.float32)
        labels, scores, _ = self.index.search(q, len(self.model) + 2, breadth=1000)
        got = labels[0][labels[0] >= 0]
        assert sorted(got.tolist()) == sorted(self.model)
        if len(got):
            ref = ((np.stack([self.model[i] for i in got.tolist()]) - q[0]) ** 2).sum(1)
            np.testing.assert_allclose(scores[0, :len(got)], ref, rtol=1e-5, atol=1e-5)
        assert (labels[0, len(got):] == -1).all()

    @invariant()
    def a_filter_returns_exactly_the_live_allowed_rows(self):
        allowed = np.arange(self.offset, self.offset + 71, 3, dtype=np.uint64)  # some never added
        want = sorted(x for x in self.model if (x - self.offset) % 3 == 0)
        labels, _, _ = self.index.search(np.full((1, 4), 0.25, np.float32), len(want) + 2,
                                         breadth=1000, allowed=allowed)
        assert sorted(labels[0][labels[0] >= 0].tolist()) == want


class _HnswAgainstModel(_IndexAgainstModel):
    kind = "HNSW"


class _HnswFarAgainstModel(_IndexAgainstModel):
    kind = "HNSW"
    offset = 10**9


class _IvfAgainstModel(_IndexAgainstModel):
    kind = "IVF"


_stateful = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestHnswAgainstModel = _stateful(_HnswAgainstModel).TestCase
TestHnswFarAgainstModel = _stateful(_HnswFarAgainstModel).TestCase
TestIvfAgainstModel = _stateful(_IvfAgainstModel).TestCase


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_hnsw_ip_ranks_small_vectors_as_well_as_unit_ones(tmp_path, scale):
    """hnswlib ranks ip by the float32 distance 1 - dot, which is 1 whenever |dot| < 6e-8: at
    norms ~1e-4 every distance tied, recall@10 was 0.35 and every score read one float32 ulp.
    Small rows now go to hnswlib scaled by one power of two (kept by save/load and reused by
    later adds), small queries by their own; norms near 1 and above are left as they were."""
    x = clustered(3000, 16) * np.float32(scale)
    more = clustered(500, 16, draw=2) * np.float32(scale)
    index = HnswIndex(16, "ip")
    index.build(np.arange(3000, dtype=np.uint64), x)
    assert (index.scale_exp != 0) == (scale < 1)             # 0: exactly the unscaled index
    files = index.save(tmp_path, "s")
    meta = json.loads((tmp_path / files[-1]).read_text())
    assert (meta["scale_exp"], meta["version"]) == ((index.scale_exp, 2) if scale < 1 else (0, 1))
    loaded = HnswIndex.load(tmp_path, files, 16, "ip", {})
    assert loaded.scale_exp == index.scale_exp
    for idx in (index, loaded):
        idx.add(np.arange(3000, 3500, dtype=np.uint64), more)
        idx.add(np.arange(3000, 3100, dtype=np.uint64), more[:100])   # unchanged: left alone
    all_x = np.concatenate([x, more])
    for q_scale in (scale, 1e-4):                            # each query scaled on its own too
        q = clustered(50, 16, draw=1) * np.float32(q_scale)
        ref = exact_scores(all_x, q, "ip")
        a, b = index.search(q, K), loaded.search(q, K)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert recall(a[0], exact_topk(all_x, q, "ip", K)) >= 0.95
        rows = np.arange(len(q))[:, None]
        np.testing.assert_allclose(a[1], ref[rows, a[0]], rtol=1e-5, atol=1e-6 * 16 * scale * q_scale)
        np.testing.assert_array_equal(index.search_trusted(q[:1], K, None)[0], a[0][:1])


def test_hnsw_ip_row_far_beyond_the_index_scale_gets_a_new_scale(tmp_path):
    """An ip index created from rows of norm ~1e-5 gives them to hnswlib times 2**15, a power of
    two fixed for its graph. A row of norm 1e35 added later was scaled the same way, to inf: it
    scored inf (numpy warned of the overflow) and the graph held an inf vector. Such an add now
    rebuilds the graph with one power of two for all its rows (here none), removals kept."""
    import warnings
    x = clustered(300, 8) * np.float32(1e-5)
    index = HnswIndex(8, "ip")
    index.build(np.arange(300, dtype=np.uint64), x)
    index.remove(np.array([5], np.uint64))
    assert index.scale_exp == 15
    big = np.zeros((2, 8), np.float32)
    big[0, 0], big[1, 1] = 1e35, -1e30
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        index.add(np.array([300, 7], np.uint64), big)    # 7 replaces a small row
    assert index.scale_exp == 0 and len(index) == 300
    rows = np.vstack([x, big[:1]])
    rows[7] = big[1]
    live = np.setdiff1d(np.arange(301), [5])
    q = np.vstack([np.eye(8, dtype=np.float32)[:2], -np.eye(8, dtype=np.float32)[1:2]])
    ref = exact_scores(rows[live], q, "ip")               # float64 oracle
    want = live[np.argsort(-ref, axis=1, kind="stable")[:, 0]]
    loaded = HnswIndex.load(tmp_path, index.save(tmp_path, "s"), 8, "ip", {})
    for idx in (index, loaded):
        labels, scores, _ = idx.search(q, 3)
        np.testing.assert_array_equal(labels[:, 0], want)
        # (the small rows are unscaled now: hnswlib's 1 - dot holds their dots to ~6e-8)
        np.testing.assert_allclose(scores[:, 0], ref.max(axis=1), rtol=1e-6, atol=1e-7)
        assert np.isfinite(scores).all() and 5 not in labels
    assert loaded.scale_exp == 0


def test_hnsw_index_saved_before_scaling_opens_unscaled(tmp_path):
    """Files written before the scale existed have no scale_exp: they are unscaled (0)."""
    index = HnswIndex(8, "ip")
    index.build(np.arange(500, dtype=np.uint64), clustered(500, 8))
    files = index.save(tmp_path, "old")
    meta_path = tmp_path / files[-1]
    meta = json.loads(meta_path.read_text())
    del meta["scale_exp"]
    meta_path.write_text(json.dumps(meta))
    loaded = HnswIndex.load(tmp_path, files, 8, "ip", {})
    assert loaded.scale_exp == 0
    q = clustered(5, 8, draw=1)
    np.testing.assert_array_equal(loaded.search(q, K)[0], index.search(q, K)[0])
    meta["scale_exp"] = 3                                    # not for another metric
    meta["metric"] = "l2"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptionError, match="scale_exp"):
        HnswIndex.load(tmp_path, files, 8, "l2", {})
