"""ANN indexes through the collection: recall against numpy brute force on clustered data,
writes after the build, persistence across a killed process, threads, named vector fields."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import vecstore
from conftest import FD_PRESSURE, Beside, clustered


def brute_ids(x: np.ndarray, live: np.ndarray, q: np.ndarray, metric: str, k: int) -> np.ndarray:
    m = x[live]
    if metric == "ip":
        order = np.argsort(-(m @ q), kind="stable")
    elif metric == "l2":
        order = np.argsort(((m - q) ** 2).sum(1), kind="stable")
    else:
        mn = m / np.linalg.norm(m, axis=1, keepdims=True)
        order = np.argsort(-(mn @ (q / np.linalg.norm(q))), kind="stable")
    return live[order[:k]]


def recall(col, x, live, queries, metric, k=10, **kw) -> float:
    hits = 0
    for q in queries:
        truth = set(brute_ids(x, live, q, metric, k).tolist())
        hits += len(truth & set(col.search(q, k=k, **kw).ids))
    return hits / (k * len(queries))


@pytest.fixture(scope="module")
def data():
    return clustered(8000, 32, clusters=40, seed=11), clustered(40, 32, clusters=40, seed=11)[::-1].copy() + 0.01


@pytest.mark.parametrize("kind, floor", [("HNSW", 0.95), ("IVF", 0.90)])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_recall_at_default_parameters(local_client, data, kind, floor, metric):
    x, queries = data
    col = local_client.create_database("app").require_collection("c", dim=32, metric=metric)
    col.add(x)
    mode = f"{kind}-{ {'ip': 'IP', 'l2': 'L2', 'cosine': 'COS'}[metric] }"
    col.build_index(mode)
    assert col.index_mode() == mode and col.stats().index_mode == mode
    live = np.arange(len(x))
    assert recall(col, x, live, queries, metric) >= floor
    assert col.search(queries[0], k=10).index == mode
    # writes after the build are searchable without a rebuild
    extra = clustered(500, 32, clusters=40, seed=12)
    col.add(extra, ids=list(range(len(x), len(x) + 500)))
    allx = np.vstack([x, extra])
    col.delete_items(list(range(0, 8000, 5)))
    live = np.setdiff1d(np.arange(len(allx)), np.arange(0, 8000, 5))
    r = recall(col, allx, live, queries, metric)
    assert r >= floor - 0.02
    for q in queries[:10]:
        assert not set(col.search(q, k=10).ids) & set(range(0, 8000, 5))  # deleted never come back
    col.restore_items([0])
    if metric == "l2":  # a restored row is back in the index
        assert col.search(x[0], k=1).ids == (0,)


def test_unknown_and_mismatched_modes(local_client):
    col = local_client.create_database("app").require_collection("c", dim=4)
    col.add(np.eye(4))
    with pytest.raises(vecstore.InvalidArgumentError, match="index"):
        col.build_index("BOGUS")
    with pytest.raises(vecstore.InvalidArgumentError, match="n_clusters"):
        col.build_index("HNSW", n_clusters=4)
    col.build_index("FLAT-IP")
    assert col.index_mode() == "FLAT-IP"
    col.remove_index()
    assert col.index_mode() is None


def test_metric_suffix_retargets_the_collection(local_client):
    col = local_client.create_database("app").require_collection("c", dim=2)
    col.add([[3, 4], [1, 0]], ids=[1, 2])
    col.build_index("FLAT-L2")
    assert col.get_collection_config().metric == "l2"
    assert col.search([3, 4], k=1).ids == (1,)
    assert np.isclose(col.search([3, 4], k=1).scores[0], 0.0)


def test_index_caught_up_after_kill(tmp_path, data):
    """Build, write more, kill the process (no checkpoint, no close), reopen: the index
    answers for every row."""
    x, _ = data
    path = tmp_path / "store"
    child = textwrap.dedent(f"""
        import numpy as np, vecstore, os, signal
        x = np.load({str(tmp_path / 'x.npy')!r})
        col = vecstore.connect({str(path)!r}).create_database("app").require_collection("c", dim=32, metric="l2")
        col.add(x[:6000])
        col.build_index("HNSW-L2")      # index files written, version recorded
        col.add(x[6000:], ids=list(range(6000, {len(x)})))  # only in LMDB's log
        col.delete_items([1, 2, 3])
        print("done", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "done" in proc.stdout, proc.stderr
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        assert col.index_mode() == "HNSW-L2"
        found = sum(col.search(x[i], k=1).ids == (i,) for i in range(5990, 6100))
        assert found >= 108  # rows written after the index files are in the index
        assert all(col.search(x[i], k=5).ids.count(i) == 0 for i in (1, 2, 3))


def test_concurrent_search_and_writes(local_client):
    col = local_client.create_database("app").require_collection("c", dim=16, metric="l2")
    x = clustered(3000, 16, seed=5)
    col.add(x[:1000])
    col.build_index("HNSW-L2")
    errors: list = []
    stop = threading.Event()

    def reader():
        rng = np.random.default_rng()
        while not stop.is_set():
            try:
                r = col.search(x[rng.integers(0, 1000)], k=5)
                assert all(isinstance(i, int) for i in r.ids)
            except Exception as e:  # noqa: BLE001 - any exception is a failure here
                errors.append(e)
    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for start in range(1000, 3000, 100):
        col.add(x[start:start + 100], ids=list(range(start, start + 100)))
        col.delete_items([start - 500])
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert col.search(x[2999], k=1).ids == (2999,)


def test_named_vector_fields(local_client):
    col = local_client.create_database("app").require_collection("c", dim=4, metric="l2")
    col.add(np.eye(4), ids=[1, 2, 3, 4])
    info = col.create_vector_field("title_vec", dim=3, metric="cosine")
    assert info.name == "title_vec" and info.dimension == 3
    col.add_named_vectors("title_vec", [[1, 0, 0], [0, 1, 0], [0, 0, 1]], ids=[1, 2, 3])
    assert col.search([1, 0.1, 0], k=2, vector_field="title_vec").ids == (1, 2)
    assert col.search([1, 0.1, 0], k=2, field_name="title_vec").ids == (1, 2)  # the seed doc's name
    hybrid = col.hybrid_search(vector=[1, 0.1, 0], k=2, field_name="title_vec")
    assert hybrid.ids == (1, 2) and hybrid.vector_field == "title_vec"
    assert col.hybrid_search(vector=[1, 0, 0, 0], k=2).vector_field == "default"
    col.build_vector_field_index("title_vec", "HNSW")
    assert [f.index_mode for f in col.list_vector_fields()] == ["FLAT-L2", "HNSW"]
    assert col.search([0, 0, 1], k=1, vector_field="title_vec").ids == (3,)
    col.delete_items([3])
    assert 3 not in col.search([0, 0, 1], k=3, vector_field="title_vec").ids
    col.restore_items([3])                      # back in the field's index, not just the mirror
    hit = col.search([0, 0, 1], k=1, vector_field="title_vec")
    assert hit.ids == (3,) and hit.index == "HNSW"
    col.remove_vector_field_index("title_vec")
    with pytest.raises(vecstore.NotFoundError):
        col.add_named_vectors("title_vec", [[1, 0, 0]], ids=[99])
    with pytest.raises(vecstore.DimensionMismatchError):
        col.add_named_vectors("title_vec", [[1, 0]], ids=[1])
    with pytest.raises(vecstore.ConflictError, match="metric 'cosine' \\(asked 'ip'\\)"):
        col.create_vector_field("title_vec", dim=3)


def test_an_upsert_reviving_a_deleted_row_brings_back_its_named_and_sparse_vectors(local_client):
    """restore_items() and an upsert of a soft-deleted id both make the row live again: its
    named vectors must be back in their field's index, its sparse vector in the sparse index."""
    col = local_client.create_database("app").require_collection("c", dim=4, metric="l2")
    rng = np.random.default_rng(5)
    col.add(rng.standard_normal((60, 4)), ids=list(range(60)))
    col.create_vector_field("t", dim=3, metric="l2")
    named = rng.standard_normal((60, 3))
    col.add_named_vectors("t", named, ids=list(range(60)))
    col.build_vector_field_index("t", "HNSW-L2")
    col.add_sparse_vectors([{7: 1.0}], ids=[9])
    col.delete_items([9])
    assert 9 not in col.search(named[9], k=1, vector_field="t").ids and not col.sparse_search({7: 1.0}).ids
    col.upsert(rng.standard_normal((1, 4)), ids=[9])   # revived by an upsert, not restore_items()
    hit = col.search(named[9], k=1, vector_field="t")
    assert hit.ids == (9,) and hit.index == "HNSW-L2"
    assert col.sparse_search({7: 1.0}).ids == (9,)


def test_search_profile_reports_the_plan(local_client):
    col = local_client.create_database("app").require_collection("c", dim=8, metric="l2")
    x = clustered(20_000, 8, seed=2)
    col.add(x, fields=[{"b": i % 1000} for i in range(len(x))])
    col.build_index("HNSW-L2")
    p = col.search_profile(x[0], k=10).profile
    assert p["index_path"] == "ann_index" and p["index"] == "HNSW-L2"
    p = col.search_profile(x[0], k=10, where="b < 5").profile      # 0.5%: exact over the allowed rows
    assert p["index_path"] == "flat_mmap_filtered" and p["filter_matches"] == 100
    assert p["index"] == col.search(x[0], k=10, where="b < 5").index == "FLAT-L2"   # what answered
    p = col.search_profile(x[0], k=10, where="b < 500").profile    # 50%: the index, steered by the filter
    assert p["index_path"] == "ann_index_filtered" and p["filter_matches"] == 10_000
    assert p["index"] == col.batch_search([x[0]], k=10, where="b < 500")[0].index == "HNSW-L2"
    for key in ("filter_us", "search_us", "total_us", "scanned_vectors", "result_count"):
        assert key in p


def test_builds_report_progress_and_a_stepped_hnsw_build_keeps_recall():
    """An HNSW build of more rows than one step (10,000) adds them step by step: progress rises
    to the total in rows, and recall is that of a one-call build. IVF counts k-means rounds."""
    from vecstore.indexes.hnsw import HnswIndex
    from vecstore.indexes.ivf import IvfIndex
    x = clustered(25_000, 16, clusters=50, seed=5)
    labels = np.arange(len(x), dtype=np.uint64)
    queries = x[::499] + 0.01
    calls: list[tuple[int, int]] = []
    hnsw = HnswIndex(16, "l2")
    hnsw.build(labels, x, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]
    found, _, _ = hnsw.search(queries, 10, breadth=64)
    truth = [set(brute_ids(x, np.arange(len(x)), q, "l2", 10).tolist()) for q in queries]
    assert np.mean([len(t & set(f.tolist())) / 10 for t, f in zip(truth, found)]) >= 0.95
    calls.clear()
    ivf = IvfIndex(16, "l2")
    ivf.build(labels, x, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, ivf.iters + 1) for i in range(1, ivf.iters + 2)]


def test_build_index_draws_a_progress_bar_only_when_asked(local_client, monkeypatch):
    import tqdm.auto
    bars: list = []

    class Bar:  # records what the collection asks of tqdm
        def __init__(self, desc=None, disable=None):
            self.desc, self.n, self.total, self.closed = desc, 0, None, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    col = local_client.create_database("app").require_collection("c", dim=8, metric="l2")
    col.add(clustered(12_000, 8, seed=3))
    col.build_index("HNSW-L2", progress=True)
    col.build_index("IVF-L2", progress=True)
    col.build_index("HNSW-L2")
    assert [(b.n, b.total, b.closed) for b in bars] == [(12_000, 12_000, True), (9, 9, True)]
    assert "HNSW-L2" in bars[0].desc and "IVF-L2" in bars[1].desc


def test_searches_go_on_during_an_index_build(local_client):
    """The new index is built outside the collection's read/write lock: searches keep being
    answered (by the previous plan) until the swap. Before, each waited for the whole build."""
    col = local_client.create_database("app").require_collection("c", dim=32, metric="l2")
    x = clustered(40_000, 32, seed=4)
    col.add(x)
    build = threading.Thread(target=col.build_index, args=("HNSW-L2",))
    build.start()
    during = 0   # searches answered by the previous plan (exact) while the graph was built
    while build.is_alive():
        r = col.search(x[7], k=1)
        assert r.ids == (7,)
        during += r.index != "HNSW-L2"
    build.join()
    assert during >= 20, during
    assert col.index_mode() == "HNSW-L2" and col.search(x[7], k=1).index == "HNSW-L2"


def test_named_field_index_parameters_reach_the_index(db):
    """Locally and over HTTP alike (the route takes them in ``params``): a bad one is refused,
    good ones are used."""
    col = db.require_collection("c", dim=4)
    col.add(np.eye(4), ids=[1, 2, 3, 4])
    col.create_vector_field("t", dim=3, metric="l2")
    col.add_named_vectors("t", np.eye(3), ids=[1, 2, 3])
    with pytest.raises(vecstore.InvalidArgumentError):
        col.build_vector_field_index("t", "HNSW", bogus=1)
    assert col.build_vector_field_index("t", "HNSW", M=8, ef_construction=50)["index_mode"] == "HNSW"
    assert col.search([1, 0, 0], k=1, vector_field="t").ids == (1,)


@pytest.mark.parametrize("mode,params", [
    ("HNSW", {"ef": None}), ("HNSW", {"M": None, "ef_construction": None, "seed": None}),
    ("IVF", {"iters": None, "seed": None, "nprobe": None})])
def test_an_index_parameter_given_as_none_takes_its_default(db, mode, params):
    """None asks for the default, as everywhere in the API; it was stored as None and broke
    every later search (a TypeError; a 500 over HTTP)."""
    col = db.require_collection("c", dim=4, metric="l2")
    col.add(np.eye(4), ids=[1, 2, 3, 4])
    col.build_index(mode, **params)
    assert col.search([1, 0, 0, 0], k=1).ids == (1,)
    assert [r.ids for r in col.batch_search(np.eye(4)[:2], k=1)] == [(1,), (2,)]


def test_searches_go_on_while_compact_rebuilds_the_index(local_client):
    """compact() reloads the mirror under the lock, then rebuilds the index outside it: once the
    mirror shows the compacted rows, searches keep being answered (by the caught-up index) until
    the rebuilt one is swapped in."""
    col = local_client.create_database("app").require_collection("c", dim=32, metric="l2")
    x = clustered(40_000, 32, seed=6)
    col.add(x)
    col.build_index("HNSW-L2")
    col.delete_items(list(range(0, 40_000, 10)))
    job = threading.Thread(target=col.compact)
    job.start()
    during = 0   # searches answered after the reload while compact was still running
    while job.is_alive():
        r = col.search(x[7], k=3)
        assert r.ids[0] == 7 and 0 not in r.ids
        during += job.is_alive() and col.stats().n_vectors == 36_000
    job.join()
    assert during >= 20, during
    assert col.stats().n_vectors == 36_000 and col.search(x[7], k=1).ids == (7,)


def test_a_rejected_build_changes_nothing(db):
    """Every parameter is checked before anything is written: a build refused for a bad one
    keeps the metric, the stored vectors and the index (it re-targeted the collection, then
    normalising its vectors for good, or dropped the index, before the check)."""
    col = db.require_collection("c", dim=4, metric="l2")
    col.add([[3, 4, 0, 0], [0, 0, 1, 1]], ids=[1, 2])
    with pytest.raises(vecstore.InvalidArgumentError, match="M"):
        col.build_index("HNSW-COS", M=0)
    assert col.metric == "l2" and col.index_mode() is None
    assert col.read_by_only_id(1).vectors[0].tolist() == [3, 4, 0, 0]
    col.build_index("HNSW-L2")
    with pytest.raises(vecstore.InvalidArgumentError, match="nprobe"):
        col.build_index("IVF-IP", nprobe=0)
    r = col.search([1, 0, 0, 0], k=2)
    assert col.metric == "l2" and col.index_mode() == "HNSW-L2" and r.index == "HNSW-L2"
    np.testing.assert_allclose(r.scores, [3.0, 20.0])   # squared L2 distances, not inner products


@pytest.mark.parametrize("mode", ["HNSW-COS", "FLAT-COS"])
def test_a_metric_change_commits_with_its_index_or_not_at_all(local_client, tmp_path, monkeypatch, mode):
    """The new metric and the new index record are one transaction: when the index record
    cannot be written, the metric stays the old one too, in memory and after reopening (it was
    committed first, so a crash between the two reopened a cosine field under the old L2
    index). The vectors are never rewritten."""
    from vecstore.storage import Txn
    col = local_client.create_database("app").require_collection("c", dim=4, metric="l2")
    col.add([[3, 4, 0, 0], [0, 0, 1, 1]], ids=[1, 2])
    col.build_index("HNSW-L2")
    real = Txn.put_meta

    def put_meta(self, key, value):
        if key.startswith("index:"):
            raise vecstore.StorageFullError("disk full")
        return real(self, key, value)
    monkeypatch.setattr(Txn, "put_meta", put_meta)
    with pytest.raises(vecstore.StorageFullError):
        col.build_index(mode)
    monkeypatch.undo()

    def unchanged(c):
        assert c.metric == "l2" and c.index_mode() == "HNSW-L2"
        assert c.read_by_only_id(1).vectors[0].tolist() == [3, 4, 0, 0]
        np.testing.assert_allclose(c.search([1, 0, 0, 0], k=2).scores, [3.0, 20.0])
    unchanged(col)
    local_client.close()
    with vecstore.connect(tmp_path / "store") as client:
        unchanged(client.get_database("app").get_collection("c"))


def test_a_rejected_vector_field_is_not_created(db):
    """The index mode of create_vector_field is checked before the field is stored: a typo
    leaves no field behind, so the corrected call succeeds."""
    col = db.require_collection("c", dim=4, metric="l2")
    col.add(np.eye(4), ids=[1, 2, 3, 4])
    with pytest.raises(vecstore.InvalidArgumentError, match="index_mode"):
        col.create_vector_field("t", dim=3, metric="l2", index_mode="HSNW")
    assert [f.name for f in col.list_vector_fields()] == ["default"]
    info = col.create_vector_field("t", dim=3, metric="l2", index_mode="HNSW-COS")
    assert (info.metric, info.index_mode) == ("cosine", "HNSW-COS")   # the mode's metric, as in build_index
    col.add_named_vectors("t", [[2, 0, 0], [0, 3, 0]], ids=[1, 2])
    assert col.search([1, 0.1, 0], k=1, vector_field="t").ids == (1,)


@pytest.mark.parametrize("params", [{"foo": 1}, {"M": -5}, {"ef": "x"}])
def test_flat_refuses_parameters_it_does_not_take(db, params):
    """FLAT takes no parameters: a stray one is refused by name, as HNSW and IVF refuse theirs
    (it was accepted silently, hiding a typo). LynseDB's shared keys are still ignored."""
    col = db.require_collection("c", dim=2, metric="l2")
    col.add(np.eye(2))
    col.build_index("HNSW")
    with pytest.raises(vecstore.InvalidArgumentError, match=next(iter(params))):
        col.build_index("FLAT", **params)
    assert col.index_mode() == "HNSW"
    assert col.build_index("FLAT", m=8, ef_search=20, n_centroids=4, nprobe=2)["index_mode"] == "FLAT"


WRITER = textwrap.dedent("""
    import sys, vecstore
    with vecstore.connect(sys.argv[1]) as client:
        col = client.get_database("app").get_collection("c")
        col.delete_items(list(range(10)))
        col.compact()
""")


@pytest.mark.parametrize("vector_field", ["default", "t"])
def test_a_search_keeps_ids_and_scores_in_step_when_a_refresh_replaces_its_space(tmp_path, monkeypatch,
                                                                                  vector_field):
    """A search picks its vector space, then takes the read lock; a refresh() between the two
    (a replica's, after another process compacted) gives it the old space under the new rows:
    rows gone since are dropped with their scores (the scores were kept whole, so every id
    after one gone had another's score)."""
    from vecstore.collection import Collection
    path = tmp_path / "store"
    x = np.random.default_rng(4).standard_normal((50, 4)).astype(np.float32)
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("c", dim=4, metric="l2")
        col.add(x, ids=list(range(50)))
        col.create_vector_field("t", dim=4, metric="l2")
        col.add_named_vectors("t", x, ids=list(range(50)))
    reader = vecstore.connect(path, read_only=True)
    col = reader.get_database("app").get_collection("c")
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    real = Collection._space

    def space_then_refresh(self, *args, **kwargs):
        monkeypatch.setattr(Collection, "_space", real)   # once
        space = real(self, *args, **kwargs)
        assert self.refresh()
        return space
    monkeypatch.setattr(Collection, "_space", space_then_refresh)
    r = col.search(x[0], k=20, vector_field=vector_field)
    distance = ((x - x[0]) ** 2).sum(1)
    # the top 20 when the search began, less the rows gone since
    assert r.ids == tuple(i for i in np.argsort(distance)[:20].tolist() if i >= 10)
    np.testing.assert_allclose(r.scores, distance[list(r.ids)], rtol=1e-5)
    reader.close()


def test_a_build_beside_a_compact_installs_its_index(local_client, monkeypatch):
    """build_index took the collection's vector space before the writer mutex: a compact() in
    between replaced the space, and the index was built from the old one and installed on it,
    where no search looks (index_mode() stayed None until a reopen)."""
    import vecstore.collection_ext
    col = local_client.create_database("app").require_collection("c", dim=4, metric="l2")
    x = np.random.default_rng(8).standard_normal((100, 4)).astype(np.float32)
    col.add(x, ids=list(range(100)))
    beside, build_params = Beside(col, [0]), vecstore.collection_ext.lynse_build_params

    def params_beside(*args):
        monkeypatch.setattr(vecstore.collection_ext, "lynse_build_params", build_params)   # once
        beside()
        return build_params(*args)
    monkeypatch.setattr(vecstore.collection_ext, "lynse_build_params", params_beside)
    col.build_index("HNSW-L2")
    beside.join()
    assert col.index_mode() == "HNSW-L2" and col.stats().n_vectors == 99
    r = col.search(x[5], k=1)
    assert r.ids == (5,) and r.index == "HNSW-L2"


def test_field_name_is_an_alias_of_vector_field_wherever_a_search_takes_one(db):
    col = db.require_collection("c", dim=2, metric="l2")
    col.add(np.eye(2), ids=[1, 2], fields=[{"t": "a"}, {"t": "b"}])
    col.create_vector_field("t", dim=3, metric="l2")
    col.add_named_vectors("t", [[1, 0, 0], [0, 1, 0]], ids=[1, 2])
    assert col.search_profile([0, 1, 0], k=1, field_name="t").result.ids == (2,)
    assert col.hybrid_search(vector=[0, 1, 0], k=1, field_name="t").ids == (2,)


def test_index_file_names_are_never_reused(tmp_path):
    """After remove_index() the next build must not write files under a name an earlier index
    had: a reader in another process may be checking, then loading, those files."""
    col = vecstore.connect(tmp_path).create_database("app").require_collection("c", dim=8, metric="l2")
    col.add(clustered(300, 8), ids=list(range(300)))
    seen: list[set] = []
    for mode in ("HNSW", "IVF", "HNSW"):
        col.build_index(mode)
        seen.append({p.name for p in (col.path / "indexes").iterdir()})
        col.remove_index()
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    col.build_index("HNSW")
    col.database.client.close()
    again = vecstore.connect(tmp_path).get_database("app").get_collection("c")
    assert again.index_mode() == "HNSW" and again.search(clustered(300, 8)[5], k=1).ids == (5,)
    again.database.client.close()


def test_superseded_index_files_outlive_one_more_save(tmp_path):
    """A checkpoint's new index files supersede the last ones, which stay until the next save:
    a reader in another process may be loading them (without them it rebuilt the index from
    the rows, minutes at a million rows). Older ones, and files no record names, go."""
    col = vecstore.connect(tmp_path).create_database("app").require_collection("c", dim=8, metric="l2")
    x = clustered(400, 8)
    col.add(x[:200], ids=list(range(200)))
    col.build_index("HNSW")
    names = lambda: {p.name.split(".")[1] for p in (col.path / "indexes").iterdir()}  # noqa: E731
    first = names()
    for i in range(3):  # three saves: generations 2, 3, 4
        col.add(x[200 + 50 * i:250 + 50 * i], ids=list(range(200 + 50 * i, 250 + 50 * i)))
        col.checkpoint()
    gens = sorted(names(), key=int)
    assert len(gens) == 2 and not (first & set(gens))  # the current generation and the one before
    (col.path / "indexes" / "default.999.orphan").write_bytes(b"x")
    col.database.client.close()
    again = vecstore.connect(tmp_path).get_database("app").get_collection("c")
    assert sorted({p.name.split(".")[1] for p in (again.path / "indexes").iterdir()}, key=int) == gens
    assert again.search(x[5], k=1).ids == (5,)
    again.database.client.close()


def test_a_removed_index_keeps_its_files_until_the_next_index_commit(tmp_path):
    col = vecstore.connect(tmp_path).create_database("app").require_collection("c", dim=8, metric="l2")
    col.add(clustered(200, 8), ids=list(range(200)))
    col.build_index("HNSW")
    files = {p.name for p in (col.path / "indexes").iterdir()}
    col.remove_index()  # a reader may be loading these right now
    assert files <= {p.name for p in (col.path / "indexes").iterdir()}
    col.build_index("IVF")
    assert not files & {p.name for p in (col.path / "indexes").iterdir()}
    col.database.client.close()


def test_vector_field_names_are_checked(db):
    """A non-string name is bad input (not "no such field"), and ``vector_field`` and its alias
    ``field_name`` naming two different fields is an error, not a silent choice of one."""
    col = db.require_collection("c", dim=2, metric="l2")
    col.add(np.eye(2), ids=[1, 2])
    col.create_vector_field("t", dim=3, metric="l2")
    col.add_named_vectors("t", [[1, 0, 0], [0, 1, 0]], ids=[1, 2])
    for kw in ({"vector_field": 5}, {"field_name": ["t"]}, {"vector_field": "t", "field_name": "default"}):
        with pytest.raises(vecstore.InvalidArgumentError, match="vector_field|field_name"):
            col.search([0, 1, 0], k=1, **kw)
    assert col.search([0, 1, 0], k=1, vector_field="t", field_name="t").ids == (2,)
    assert col.search([0, 1], k=1, vector_field="default").ids == (2,)


_OPEN_SHORT_OF_DESCRIPTORS = FD_PRESSURE + r'''
import logging, os, resource, sys, numpy as np, vecstore
rebuilt = []
class Spy(logging.Handler):
    def emit(self, record):
        if "rebuilding" in record.getMessage():
            rebuilt.append(record.getMessage())
logging.getLogger("vecstore").addHandler(Spy())
root = sys.argv[1]
with vecstore.connect(root) as c:
    col = c.create_database("app").require_collection("c", dim=8)
    col.add(np.random.default_rng(0).random((2000, 8), dtype=np.float32))
    col.build_index("HNSW")
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
outcomes = set()
for spare in range(12):
    c = vecstore.connect(root)
    held = hold_all_but(spare)
    try:
        c.get_database("app").get_collection("c")
        outcomes.add("opened")
    except vecstore.UnavailableError:
        outcomes.add("unavailable")
    except OSError:
        outcomes.add("oserror")
    for fd in held:
        os.close(fd)
    c.close()
print(sorted(outcomes), rebuilt)
'''


def test_out_of_descriptors_at_open_is_unavailable_not_a_rebuild(tmp_path):
    """EMFILE reading good index files was taken as damage: the index was rebuilt from the rows
    (minutes for a large one, paid again by every replica). Now UnavailableError: retry later."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _OPEN_SHORT_OF_DESCRIPTORS, str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    outcomes, _, rebuilt = out.stdout.strip().partition("] ")
    assert "unavailable" in outcomes and "opened" in outcomes and rebuilt == "[]", out.stdout


CRASHING_WRITER = textwrap.dedent("""
    import os, signal, sys, numpy as np, vecstore, vecstore.collection as vc
    vc.CHECKPOINT_MIN_ROWS, vc.CHECKPOINT_FRACTION = int(sys.argv[2]), 0.1
    x = np.load(sys.argv[1] + ".npy")
    col = vecstore.connect(sys.argv[1]).create_database("app").require_collection("c", dim=32, metric="l2")
    col.add(x[:2000])
    col.build_index("HNSW-L2")                   # index files written at this version
    for start in range(0, int(sys.argv[3]), 50):  # upserts: in-place updates of the graph
        col.upsert(x[2000 + start:2050 + start], ids=list(range(start, start + 50)))
    print("done", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)        # no close, no checkpoint
""")


def reopen_after_crash(tmp_path, x, min_rows: int, upserted: int, caplog) -> None:
    path = tmp_path / "store"
    np.save(f"{path}.npy", x)
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path), str(min_rows), str(upserted)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL and "done" in proc.stdout, proc.stderr
    with caplog.at_level("INFO", logger="vecstore"), vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        vectors = x[:2000].copy()
        vectors[:upserted] = x[2000:2000 + upserted]
        assert recall(col, vectors, np.arange(2000), x[::97], "l2") >= 0.95
        # The upserted rows answer with their new vectors (a missed replay: none would). Not
        # every one: hnswlib's threaded build makes the graph, and so a rare miss, vary by run.
        found = [col.search(vectors[i], k=1).ids == (i,) for i in range(0, upserted, 25)]
        assert sum(found) >= 0.9 * len(found), found


def test_a_reopen_rebuilds_the_index_when_that_is_cheaper_than_replaying(tmp_path, caplog):
    """HNSW replays each changed row as an in-place update, several times a build's cost per
    row: past a fraction of the index the open rebuilds instead (auto-checkpoints off here)."""
    x = clustered(3000, 32, seed=3)
    reopen_after_crash(tmp_path, x, 10**9, 1000, caplog)
    assert "rebuilt the HNSW-L2 index of 'default' (1000 rows changed)" in caplog.text
    assert "replayed" not in caplog.text


def test_writes_checkpoint_so_a_crash_leaves_a_bounded_replay(tmp_path, caplog):
    """1,000 rows upserted in calls of 50 against a threshold of 200 (10 % of 2,000): the
    writes checkpointed themselves, so the open after a kill replays at most ~250 rows."""
    x = clustered(3000, 32, seed=4)
    reopen_after_crash(tmp_path, x, 100, 1000, caplog)
    replays = [int(n) for n in re.findall(r"replayed (\d+) rows", caplog.text)]
    assert "rebuilt" not in caplog.text and all(n <= 250 for n in replays), caplog.text


def test_an_index_older_than_the_log_is_rebuilt_not_replayed(tmp_path):
    """Index files whose version the change log no longer reaches back to (a reader loading
    files a save superseded): the open rebuilds them from the rows instead of missing changes."""
    x = clustered(1200, 16, seed=5)
    with vecstore.connect(tmp_path / "store") as client:
        col = client.create_database("app").require_collection("c", dim=16, metric="l2")
        col.add(x[:1000])
        col.build_index("HNSW-L2")                                   # files at this version
        col.add(x[1000:], ids=list(range(1000, 1200)))
        col.delete_items([0, 1, 2])
        col._storage.write(lambda t: t.trim_log(col.version))          # the log no longer names them
        col._discard()                                               # a crash: nothing saved
    with vecstore.connect(tmp_path / "store") as client:
        col = client.get_database("app").get_collection("c")
        assert all(col.search(x[i], k=1).ids == (i,) for i in range(1000, 1200, 10))
        assert not {0, 1, 2} & set(col.search(x[0], k=10).ids)


def test_an_hnsw_ip_graph_of_small_rows_saved_before_scaling_is_rebuilt_once(tmp_path, monkeypatch, caplog):
    """Index files saved before small ip rows were scaled (no scale_exp) hold a graph hnswlib
    built from distances that all rounded to 1: loaded as they were, the index answered with
    recall@10 ~0.06, silently, and every later save kept it so. The open now rebuilds it (with
    a warning), the close saves the scaled graph, and the next open loads that."""
    from vecstore.indexes.hnsw import HnswIndex
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2000, 16)) * 3e-5).astype(np.float32)
    queries = (rng.standard_normal((30, 16)) * 3e-5).astype(np.float32)
    with monkeypatch.context() as m:
        m.setattr(HnswIndex, "_row_exp", lambda self, vectors: 0)     # the graph as built before
        with vecstore.connect(tmp_path / "store") as client:
            col = client.create_database("app").require_collection("c", dim=16, metric="ip")
            col.add(x, ids=list(range(2000)))
            col.build_index("HNSW-IP")
    [meta_path] = (tmp_path / "store").rglob("indexes/*.meta.json")
    meta = json.loads(meta_path.read_text())
    del meta["scale_exp"]                                               # as the files were written
    meta_path.write_text(json.dumps(meta, sort_keys=True))
    for first in (True, False):
        caplog.clear()
        with caplog.at_level("INFO", logger="vecstore"), vecstore.connect(tmp_path / "store") as client:
            col = client.get_database("app").get_collection("c")
            assert recall(col, x.astype(np.float64), np.arange(2000), queries.astype(np.float64), "ip") >= 0.95
        assert ("saved before such rows were scaled" in caplog.text) is first, caplog.text


def test_a_reopen_replays_only_the_commits_of_each_field(tmp_path, caplog):
    """After a crash, each index replays the commits that can change it: rows (every field),
    its own named vectors. Counted with every other field's named and sparse commits, 400
    vectors written to field 'a' rebuilt the untouched default and 'b' indexes as if 400 of
    their 1,000 rows had changed (past the 15 % where a rebuild is cheaper than a replay)."""
    rng = np.random.default_rng(8)
    x, a, b = (rng.standard_normal((1000, d)).astype(np.float32) for d in (8, 4, 4))
    with vecstore.connect(tmp_path / "store") as client:
        col = client.create_database("app").require_collection("c", dim=8, metric="l2")
        col.add(x, ids=list(range(1000)))
        col.build_index("HNSW-L2")
        for name, vectors in (("a", a), ("b", b)):
            col.create_vector_field(name, dim=4, metric="l2", index_mode="HNSW")
            col.add_named_vectors(name, vectors, ids=list(range(1000)))
        col.checkpoint()
        a[:400] = rng.standard_normal((400, 4))
        col.add_named_vectors("a", a[:400], ids=list(range(400)))
        col.add_sparse_vectors([{i: 1.0} for i in range(400)], ids=list(range(400)))
        x[:10] = rng.standard_normal((10, 8))
        col.upsert(x[:10], ids=list(range(10)))          # rows: every field replays these
        col._discard()                                   # a crash: nothing saved
    with caplog.at_level("INFO", logger="vecstore"), vecstore.connect(tmp_path / "store") as client:
        col = client.get_database("app").get_collection("c")
        done = {field: what for what, field in re.findall(r"(rebuilt|replayed \d+ rows into) the HNSW\S* index of '(\w+)'",
                                                           caplog.text)}
        assert done == {"default": "replayed 10 rows into", "a": "rebuilt", "b": "replayed 10 rows into"}, caplog.text
        live = np.ones(1000, bool)
        for field, vectors in (("default", x), ("a", a), ("b", b)):
            _answers_like_numpy(col, vectors, live, vectors[::97] + 0.01, field=field)


@pytest.mark.parametrize("error", [vecstore.errors.StorageFullError("the disk is full"),
                                   OSError(28, "No space left on device"), RuntimeError("hnswlib: cannot write")])
def test_a_write_whose_checkpoint_fails_is_kept(tmp_path, monkeypatch, caplog, error):
    """The checkpoint a write triggers runs after the write committed: if it fails (a full
    disk; raw from numpy or hnswlib too) the write still returns, and the checkpoint is tried
    again later."""
    from vecstore import collection
    monkeypatch.setattr(collection, "CHECKPOINT_MIN_ROWS", 50)
    x = clustered(400, 8, seed=6)
    with vecstore.connect(tmp_path / "store") as client:
        col = client.create_database("app").require_collection("c", dim=8, metric="l2")
        col.add(x[:100])
        col.build_index("HNSW-L2")
        real = collection.Collection._save_index

        def full(self, space):
            raise error
        monkeypatch.setattr(collection.Collection, "_save_index", full)
        with caplog.at_level("WARNING", logger="vecstore"):
            assert col.add(x[100:200], ids=list(range(100, 200))) == list(range(100, 200))
        assert "checkpoint after a write failed" in caplog.text
        monkeypatch.setattr(collection.Collection, "_save_index", real)
        assert col.shape == (200, 8) and all(col.search(x[i], k=1).ids == (i,) for i in range(100, 200, 9))


# ---------------------------------------------------------------------------------------------
# rows re-added with the vector they have: a fields-only upsert, a restore, a revive

def _answers_like_numpy(col, x: np.ndarray, live: np.ndarray, queries: np.ndarray, *, field: str = "default"):
    """Searches as wide as the index (every IVF list, an HNSW beam of every row) against numpy:
    no dead row, every score the exact distance to the row's current vector, recall >= 0.98."""
    hits = 0
    for q in queries:
        r = col.search(q, k=10, nprobe=len(x), vector_field=field)
        assert live[list(r.ids)].all(), "a deleted row came back"
        exact = ((x[list(r.ids)].astype(np.float64) - q) ** 2).sum(1)
        np.testing.assert_allclose(r.scores, exact, rtol=1e-4, atol=1e-4)  # not a stale vector
        hits += len(set(r.ids) & set(brute_ids(x, np.flatnonzero(live), q, "l2", 10).tolist()))
    assert hits >= 0.98 * 10 * len(queries)


@pytest.mark.parametrize("kind", ["HNSW", "IVF"])
def test_same_vector_upserts_and_restores_keep_the_index_exact(tmp_path, kind):
    rng = np.random.default_rng(8)
    n = 1500
    x = clustered(n, 16, seed=8)
    t = rng.standard_normal((n, 4)).astype(np.float32)
    col = vecstore.connect(tmp_path / "s").create_database("app").require_collection("c", dim=16, metric="l2")
    col.add(x, ids=list(range(n)), fields=[{"v": 0} for _ in range(n)])
    col.create_vector_field("t", dim=4, metric="l2")
    col.add_named_vectors("t", t, ids=list(range(n)))
    col.build_index(kind)
    col.build_vector_field_index("t", kind)
    live = np.ones(n, bool)
    same = list(range(0, n, 5))
    col.upsert(x[same], ids=same, fields=[{"v": 1} for _ in same])        # fields only
    col.add_named_vectors("t", t[same], ids=same)                          # the same named vectors
    gone = list(range(1, n, 7))
    col.delete_items(gone)
    col.restore_items(gone[::2])                                           # half come back
    live[gone[1::2]] = False
    revive = gone[1::6]                                                    # revived by upsert: same
    moved = list(range(3, n, 50)) + gone[3::6]                             # ... or new vectors
    col.upsert(x[revive], ids=revive)
    dead = x[gone[5::6]]                                                   # the rest stay deleted
    x[moved] = clustered(len(moved), 16, seed=9)
    col.upsert(x[moved], ids=moved)
    live[revive + moved] = True
    assert col.query(where="v = 1", return_ids_only=True) == [i for i in same if live[i]]
    queries = np.vstack([x[moved[:10]], dead[:10], clustered(20, 16, seed=10)])
    _answers_like_numpy(col, x, live, queries)
    _answers_like_numpy(col, t, live, t[gone[:10]] + 0.01, field="t")
    col.close()
    col = vecstore.connect(tmp_path / "s").get_database("app").get_collection("c")   # from the saved files
    _answers_like_numpy(col, x, live, queries)
    _answers_like_numpy(col, t, live, t[gone[:10]] + 0.01, field="t")
    col.close()


def test_unchanged_rows_are_not_linked_into_the_graph_again(local_client, monkeypatch):
    """hnswlib's add_items on a label it holds is updatePoint, ~1 ms a row: a fields-only upsert
    of a quarter of the rows cost as much as a build. Rows whose vector did not change are left
    alone; removed ones are unmarked."""
    import hnswlib

    calls = {"added": 0, "unmarked": 0}

    class Spy(hnswlib.Index):
        def add_items(self, data, ids=None, *args, **kwargs):
            calls["added"] += len(data)
            return super().add_items(data, ids, *args, **kwargs)

        def unmark_deleted(self, label):
            calls["unmarked"] += 1
            return super().unmark_deleted(label)

    monkeypatch.setattr(hnswlib, "Index", Spy)
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((400, 8)), rng.standard_normal((400, 4))
    col = local_client.create_database("app").require_collection("c", dim=8, metric="l2")
    col.add(x, ids=list(range(400)))
    col.create_vector_field("t", dim=4, metric="l2", index_mode="HNSW")
    col.add_named_vectors("t", t, ids=list(range(400)))
    col.build_index("HNSW")
    ids = list(range(0, 400, 4))

    def counted(call) -> dict:
        calls.update(added=0, unmarked=0)
        call()
        return dict(calls)
    nothing = {"added": 0, "unmarked": 0}
    assert counted(lambda: col.upsert(x[ids], ids=ids, fields=[{"seen": True}] * len(ids))) == nothing
    assert counted(lambda: col.add_named_vectors("t", t[ids], ids=ids)) == nothing
    col.delete_items(ids)
    assert counted(lambda: col.restore_items(ids)) == {"added": 0, "unmarked": 2 * len(ids)}  # default and t
    col.delete_items(ids)
    assert counted(lambda: col.upsert(x[ids], ids=ids)) == {"added": 0, "unmarked": 2 * len(ids)}
    x[ids[:10]] += 1
    assert counted(lambda: col.upsert(x[ids], ids=ids)) == {"added": 10, "unmarked": 0}
    assert col.search(x[ids[3]], k=1).ids == (ids[3],)


def test_ivf_rows_re_added_unchanged_leave_no_tombstones(local_client):
    """IVF re-adds by appending and tombstoning the old entry, which every search that probes the
    list scans on: an unchanged row keeps its entry, a restored one gets it back."""
    x = clustered(4000, 8, seed=4)
    col = local_client.create_database("app").require_collection("c", dim=8, metric="l2")
    col.add(x, ids=list(range(4000)))
    col.build_index("IVF")
    ids = list(range(0, 4000, 4))

    def scanned() -> int:  # every list probed: every entry there is, tombstones included
        return col.search_profile(x[0], k=5, nprobe=10_000).profile["scanned_vectors"]
    col.upsert(x[ids], ids=ids, fields=[{"seen": True}] * len(ids))
    assert scanned() == 4000
    col.delete_items(ids)
    col.restore_items(ids)
    col.delete_items(ids)
    col.upsert(x[ids], ids=ids)
    assert scanned() == 4000
    assert col.search(x[ids[5]], k=1, nprobe=10_000).ids == (ids[5],)


@pytest.mark.parametrize("kind", ["HNSW", "IVF"])
def test_a_row_changed_then_deleted_after_the_index_files_is_restored_with_its_new_vector(tmp_path, kind):
    """The replay on open re-syncs the saved index from the rows: a row upserted with a new
    vector, then deleted, is only marked removed in the graph, which still holds its old vector.
    Restoring it must not bring the old vector back. Fields-only upserts, deletes and restores
    in the same replay keep the index answering for every live row."""
    x = clustered(600, 16, seed=6)
    far = np.full(16, 40.0, np.float32)
    path = tmp_path / "store"
    np.save(tmp_path / "x.npy", x)
    child = textwrap.dedent(f"""
        import numpy as np, vecstore, os, signal
        x = np.load({str(tmp_path / 'x.npy')!r})
        col = vecstore.connect({str(path)!r}).create_database("app").require_collection("c", dim=16, metric="l2")
        col.add(x, ids=list(range(600)))
        col.build_index({kind!r})
        col.checkpoint()                               # index files as of now
        col.upsert(np.full((1, 16), 40.0), ids=[7])    # then only in LMDB's log
        col.delete_items([7] + list(range(1, 600, 10)))
        col.upsert(x[::3], ids=list(range(0, 600, 3)), fields=[{{"seen": True}}] * 200)
        col.restore_items(list(range(1, 600, 20)))
        print("done", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL and "done" in proc.stdout, proc.stderr
    live = np.ones(600, bool)
    live[[7] + list(range(1, 600, 10))] = False
    live[list(range(0, 600, 3)) + list(range(1, 600, 20))] = True   # an upsert revives a deleted row
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        _answers_like_numpy(col, x, live, x[::37] + 0.01)
        col.restore_items([7])
        x[7], live[7] = far, True
        hit = col.search(far, k=1, nprobe=600)
        assert hit.ids == (7,) and hit.scores[0] == 0
        _answers_like_numpy(col, x, live, np.vstack([x[::37] + 0.01, far[None]]))


def test_a_checkpoint_keeps_the_files_it_superseded_for_every_field(local_client):
    """A checkpoint saves the indexed fields one after another; the second save removed the
    files the first had just superseded, which a reader in another process that read the index
    records before the checkpoint was about to load: it then rebuilt the index from the rows.
    Superseded files now stay until their own field's next save, and no longer."""
    col = local_client.create_database("app").require_collection("c", dim=8, metric="l2")
    rng = np.random.default_rng(0)
    col.add(rng.standard_normal((200, 8)).astype(np.float32), ids=list(range(200)))
    col.build_index("HNSW")
    col.create_vector_field("n", dim=4, metric="l2", index_mode="HNSW")
    col.add_named_vectors("n", rng.standard_normal((10, 4)).astype(np.float32), ids=list(range(10)))
    col.checkpoint()
    index_dir = col.path / "indexes"

    def files(field):
        return col._get_meta(f"index:{field}")["files"]
    generations = []
    for round_ in range(3):
        generations.append({f: files(f) for f in ("default", "n")})
        col.add(rng.standard_normal((5, 8)).astype(np.float32), ids=list(range(1000 + 5 * round_, 1005 + 5 * round_)))
        col.add_named_vectors("n", rng.standard_normal((1, 4)).astype(np.float32), ids=[1000 + 5 * round_])
        col.checkpoint()
        for field in ("default", "n"):  # what a reader that read the records before may be loading
            assert all((index_dir / f).exists() for f in generations[-1][field]), (round_, field)
    for field in ("default", "n"):      # and not kept beyond that
        assert not any((index_dir / f).exists() for f in generations[0][field])
    col.remove_vector_field_index("n")  # its last files go at the next save of any field
    assert any(p.name.startswith("n.") for p in index_dir.iterdir())
    col.add(rng.standard_normal((1, 8)).astype(np.float32), ids=[5000])
    col.checkpoint()
    assert not any(p.name.startswith("n.") for p in index_dir.iterdir())
    (index_dir / "legacy.bin").write_bytes(b"x")  # a store from before listed them as one list
    col._storage.write(lambda t: t.put_meta("index_dropped", ["legacy.bin"]))
    col.add(rng.standard_normal((1, 8)).astype(np.float32), ids=[5001])
    col.checkpoint()
    assert not (index_dir / "legacy.bin").exists()


# ------------------------------------------------------------------ cosine keeps the vectors as written
def cosine_oracle(x: np.ndarray, q) -> np.ndarray:
    """Cosine distances (float64) of rows ``x`` to ``q``: of the unit vectors the collection
    scores, made as it makes them (and as it stored them before it kept the raw vectors)."""
    from vecstore.validation import check_vector, unit_rows
    u, q = unit_rows(x).astype(np.float64), check_vector(q, len(q), normalise=True)[0].astype(np.float64)
    return 1.0 - (u * q).sum(axis=1)  # summed as the exact scan sums


@pytest.mark.parametrize("mode", ["FLAT-COS", "HNSW-COS", "IVF-COS"])
def test_a_cosine_build_keeps_the_vectors_as_written(db, mode):
    """LynseDB names the metric in the index mode, and its clients build FLAT-COS, then FLAT-IP
    on the same data. The cosine build normalised the stored vectors for good: FLAT-IP then
    scored the unit vectors ([1, 0.6, 0], not [3, 1, 0]) and every read returned them. Now the
    re-target changes the metric only, and a named cosine field keeps its raw vectors too."""
    x = np.array([[3, 4], [1, 0], [0, 10]], np.float32)
    col = db.require_collection("c", dim=2, metric="ip")
    col.add(x, ids=[0, 1, 2])
    col.build_index(mode)
    r = col.search([1, 0], k=3)
    d = cosine_oracle(x, [1, 0])
    assert list(r.ids) == np.argsort(d, kind="stable").tolist()
    np.testing.assert_allclose(r.scores, np.sort(d), atol=1e-6)
    np.testing.assert_array_equal(col.head(3).vectors, x)
    col.build_index("FLAT-IP")
    r = col.search([1, 0], k=3)
    assert r.ids == (0, 1, 2) and r.scores.tolist() == [3.0, 1.0, 0.0]
    np.testing.assert_array_equal(col.read_by_only_id([0, 1, 2]).vectors, x)
    np.testing.assert_array_equal(col.query_vectors().vectors, x)

    col.create_vector_field("tv", dim=2, metric="cosine", index_mode=mode)
    col.add_named_vectors("tv", x[:2], ids=[0, 1])
    r = col.search([1, 1], k=2, vector_field="tv")
    np.testing.assert_allclose(r.scores, np.sort(cosine_oracle(x[:2], [1, 1])), atol=1e-6)
    col.build_vector_field_index("tv", "FLAT-L2")      # L2 between the vectors as written
    r = col.search([0, 0], k=2, vector_field="tv")
    assert r.ids == (1, 0) and r.scores.tolist() == [1.0, 25.0]


def test_a_switch_to_cosine_refuses_a_zero_vector_and_changes_nothing(db):
    """Cosine has no direction for a zero vector: a write of one is refused, and so is a
    re-target to cosine while one is stored (soft-deleted too: a restore brings it back)."""
    col = db.require_collection("c", dim=2, metric="l2")
    col.add([[0, 0], [3, 4]], ids=[1, 2])
    col.delete_items([1])
    with pytest.raises(vecstore.InvalidArgumentError, match="index_mode: cannot switch field 'default' to cosine"):
        col.build_index("HNSW-COS")
    assert col.metric == "l2" and col.index_mode() is None
    col.restore_items([1])
    assert col.search([0, 0], k=2).scores.tolist() == [0.0, 25.0]
    cos = db.require_collection("cos", dim=2, metric="cosine")
    with pytest.raises(vecstore.InvalidArgumentError, match=r"vectors: a zero vector has no cosine direction, in row\(s\) 1$"):
        cos.add([[1, 0], [0, 0]], ids=[1, 2])
    assert len(cos) == 0


@pytest.mark.parametrize("mode", ["FLAT", "HNSW", "IVF"])
def test_cosine_search_paths_score_the_directions_of_the_vectors_as_written(local_client, tmp_path, mode):
    """Vectors of all sizes in a cosine collection (and a named cosine field) read back bit for
    bit, while every search path scores the rows' unit vectors as before, when those were what
    was stored: exact (FLAT: equal to the float64 oracle), ANN, filtered both ways, batch,
    range, profile, hybrid's vector leg; the same after a reopen (the index files)."""
    rng = np.random.default_rng(5)
    n, dim = 600, 16
    x = (clustered(n, dim, seed=2) * rng.choice([1e-3, 1.0, 7.0, 1e4], n)[:, None]).astype(np.float32)
    t = rng.standard_normal((n, 4)).astype(np.float32) * 50
    ids = list(range(n))
    col = local_client.create_database("app").require_collection("c", dim=dim, metric="cosine")
    col.add(x, ids=ids, fields=[{"g": i % 9} for i in range(n)])
    col.create_vector_field("t", dim=4, metric="cosine")
    col.add_named_vectors("t", t, ids=ids)
    col.delete_items(list(range(0, n, 13)))
    live = np.array([i for i in range(n) if i % 13])
    wide = {"M": 32, "ef_construction": 400} if mode == "HNSW" else {"n_clusters": 8} if mode == "IVF" else {}
    col.build_index(f"{mode}-COS", **wide)
    col.build_vector_field_index("t", f"{mode}-COS", **wide)
    breadth = None if mode == "FLAT" else n                # every list / the whole graph: exact answers
    queries = clustered(5, dim, seed=9) * np.array([[1], [1e-4], [3], [1e3], [1]], np.float32)

    def check(c) -> None:
        np.testing.assert_array_equal(c.query_vectors().vectors, x[live])
        np.testing.assert_array_equal(c.head(4).vectors, x[live[:4]])
        np.testing.assert_array_equal(c.read_by_only_id([1, 2]).vectors, x[[1, 2]])
        for q in queries:
            d = cosine_oracle(x[live], q)
            order = np.lexsort((live, d))
            hits = c.search(q, k=10, nprobe=breadth)
            assert list(hits.ids) == live[order[:10]].tolist()
            if mode == "FLAT":   # exact: the float64 scores of the unit vectors, to the bit
                np.testing.assert_array_equal(hits.scores, d[order[:10]].astype(np.float32))
            else:
                np.testing.assert_allclose(hits.scores, d[order[:10]], atol=2e-6)
            assert c.search_profile(q, k=10, nprobe=breadth).result.ids == hits.ids
            assert c.hybrid_search(vector=q, k=10, nprobe=breadth).ids == hits.ids
            g = np.array([i % 9 for i in live])
            for where, ok in (("g = 4", g == 4), ("g != 4", g != 4)):    # exact scan, index steered
                sub = order[ok[order]]
                r = c.search(q, k=5, where=where, nprobe=breadth)
                assert list(r.ids) == live[sub[:5]].tolist()
                np.testing.assert_allclose(r.scores, d[sub[:5]], atol=2e-6)
            thr = float(d[order[20]])
            r = c.search_range(q, threshold=thr, max_results=n)
            within = order[d[order] <= thr]
            assert list(r.ids) == live[within].tolist()
            np.testing.assert_array_equal(r.scores, d[within].astype(np.float32))
            qt = t[live[0]] + 1
            dt = cosine_oracle(t[live], qt)
            ot = np.lexsort((live, dt))
            r = c.search(qt, k=5, vector_field="t", nprobe=breadth)
            assert list(r.ids) == live[ot[:5]].tolist()
            np.testing.assert_allclose(r.scores, dt[ot[:5]], atol=2e-6)
        for q, r in zip(queries, c.batch_search(queries, k=7, nprobe=breadth)):
            d = cosine_oracle(x[live], q)
            assert list(r.ids) == live[np.lexsort((live, d))[:7]].tolist()

    check(col)
    local_client.close()
    with vecstore.connect(tmp_path / "store") as client:
        check(client.get_database("app").get_collection("c"))


COSINE_CRASHING_WRITER = textwrap.dedent("""
    import os, signal, sys, numpy as np, vecstore
    x = np.load(sys.argv[1] + ".npy")
    col = vecstore.connect(sys.argv[1]).create_database("app").require_collection("c", dim=32, metric="cosine")
    col.add(x[:2000])
    col.build_index(sys.argv[2])                 # index files written at this version
    col.add(x[2000:], ids=list(range(2000, len(x))))
    col.upsert(x[:20] * 3, ids=list(range(20)))  # same directions: the index keeps its nodes
    print("done", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)        # no close, no checkpoint
""")


@pytest.mark.parametrize("mode", ["HNSW-COS", "IVF-COS"])
def test_a_cosine_index_replays_raw_rows_after_a_crash(tmp_path, caplog, mode):
    """The rows written after the index files are replayed into the index from the raw rows
    (normalised on the way), and read back as written."""
    rng = np.random.default_rng(1)
    x = (clustered(2200, 32, seed=4) * rng.uniform(0.5, 20, 2200)[:, None]).astype(np.float32)
    path = tmp_path / "store"
    np.save(f"{path}.npy", x)
    proc = subprocess.run([sys.executable, "-c", COSINE_CRASHING_WRITER, str(path), mode],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL and "done" in proc.stdout, proc.stderr
    want = x.copy()
    want[:20] *= 3
    with caplog.at_level("INFO", logger="vecstore"), vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        assert "replayed 220 rows" in caplog.text
        np.testing.assert_array_equal(col.query_vectors().vectors, want)
        for i in [*range(0, 20, 5), *range(2000, 2200, 20)]:
            r = col.search(want[i], k=1, nprobe=200)
            assert r.ids == (i,) and abs(r.scores[0]) < 1e-5
