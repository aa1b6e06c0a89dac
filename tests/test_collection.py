"""The behaviour suite of the core API, run against the local library and the remote client
(the ``client`` fixture), so both modes stay identical."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore
from vecstore import (AlreadyExistsError, ClosedError, DimensionMismatchError, InvalidArgumentError,
                      InvalidNameError, NotFoundError)


@pytest.fixture
def col(db):
    c = db.require_collection("items", dim=4, description="demo")
    c.bulk_add_items([
        {"vector": [1, 0, 0, 0], "id": 1, "field": {"lang": "en", "rank": 3}},
        {"vector": [0, 1, 0, 0], "id": 2, "field": {"lang": "de", "rank": 1}},
        {"vector": [0, 0, 1, 0], "id": 3, "field": {"lang": "en", "rank": 2, "tags": ["a", "b"]}},
        {"vector": [0.5, 0.5, 0, 0], "id": 4},
    ])
    return c


def snapshot_state(c):
    """Everything a reader can see, to check that a rejected call changed nothing."""
    return (c.shape, c.query(), c.list_deleted_ids(), c.search([1, 1, 1, 1], k=10).ids)


# --------------------------------------------------------------------------- databases ----
def test_databases_lifecycle(client):
    assert client.list_databases() == []
    db = client.create_database("app")
    assert client.database_exists("app")
    assert client.create_database("app").name == "app"  # idempotent, like LynseDB
    client.create_database("other")
    assert client.list_databases() == ["app", "other"]
    client.drop_database("other")
    assert client.list_databases() == ["app"]
    client.drop_database("never-existed")  # missing is fine
    with pytest.raises(NotFoundError):
        client.get_database("nope")
    assert db.show_collections() == []


@pytest.mark.parametrize("bad", ["", "../evil", "a/b", "..", "x" * 129, "sp ace", "é"])
def test_bad_names_never_escape(client, bad):
    with pytest.raises(InvalidNameError):
        client.create_database(bad)
    db = client.create_database("app")
    with pytest.raises(InvalidNameError):
        db.require_collection(bad, dim=2)


def test_require_collection_create_open_and_drop(db):
    db.require_collection("items", dim=4, description="demo")
    assert db.show_collections() == ["items"]
    assert db.collection_exists("items")
    again = db.require_collection("items")
    assert again.get_collection_config().dim == 4
    assert again.get_collection_config().description == "demo"
    with pytest.raises(DimensionMismatchError):
        db.require_collection("items", dim=8)
    assert db.require_collection("fresh").dim == 0  # no dim yet: the first vectors set it (test_dimless)
    db.drop_collection("fresh")
    c2 = db.require_collection("items", dim=2, drop_if_exists=True)
    assert c2.get_collection_config().dim == 2
    db.drop_collection("items")
    assert db.show_collections() == []
    db.drop_collection("items")  # missing is fine
    with pytest.raises(NotFoundError):
        db.get_collection("items")


# --------------------------------------------------------------------------- writes -------
def test_auto_ids_continue_from_max(db):
    c = db.require_collection("items", dim=2)
    assert c.bulk_add_items([{"vector": [1, 0], "id": 5}, {"vector": [0, 1]}, {"vector": [1, 1], "id": 2}]) == [5, 0, 2]
    assert c.add_item([0.2, 0.3]) == 6
    assert c.max_id() == 6


def test_string_ids_and_columnar_add(db):
    c = db.require_collection("items", dim=3, metric="l2")
    ids = c.add(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], fields=[{"n": 1}, None, {"n": 3}])
    assert ids == ["a", "b", "c"]
    assert c.read_by_only_id("b").fields == ({},)
    assert c.max_id() == -1
    assert c.search([0, 1, 0], k=1).ids == ("b",)
    assert c.upsert(np.ones((1, 3)), ids=["a"]) == ["a"]
    assert c.read_by_only_id("a").fields == ({"n": 1},)  # fields=None keeps them


@pytest.mark.parametrize("bad_call, error", [
    (lambda c: c.add_item([1, 2, 3], id=9), DimensionMismatchError),
    (lambda c: c.add_item([1, float("nan"), 0, 0], id=9), InvalidArgumentError),
    (lambda c: c.add_item([1, float("inf"), 0, 0], id=9), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=1), AlreadyExistsError),
    (lambda c: c.add_item([1, 0, 0, 0], id=-1), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=1.5), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=True), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=""), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": {1, 2}}), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": float("nan")}), InvalidArgumentError),
    (lambda c: c.add_item(["a", "b", "c", "d"], id=10), InvalidArgumentError),
    (lambda c: c.bulk_add_items([]), InvalidArgumentError),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 7}, {"vector": [1, 0, 0, 0], "id": 7}]), InvalidArgumentError),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 7}, {"vector": [1, 0], "id": 8}]), InvalidArgumentError),
    (lambda c: c.upsert_items([{"vector": [1, 0, 0, 0]}]), InvalidArgumentError),
    (lambda c: c.delete_items([99]), NotFoundError),
    (lambda c: c.restore_items([99]), NotFoundError),
    (lambda c: c.read_by_only_id(99), NotFoundError),
    (lambda c: c.search([1, 0, 0], k=1), DimensionMismatchError),
    (lambda c: c.search([1, 0, 0, 0], k=0), InvalidArgumentError),
    (lambda c: c.search([1, 0, 0, 0], k=1, vector_field="nope"), NotFoundError),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(col, bad_call, error):
    before = snapshot_state(col)
    with pytest.raises(error) as exc:
        bad_call(col)
    assert str(exc.value)  # a message, naming what was wrong
    assert snapshot_state(col) == before


def test_error_messages_name_the_parameter(col):
    with pytest.raises(DimensionMismatchError, match="expected dimension 4, got 3"):
        col.add_item([1, 2, 3])
    with pytest.raises(AlreadyExistsError, match="1"):
        col.add_item([1, 0, 0, 0], id=1)
    with pytest.raises(InvalidArgumentError, match="k"):
        col.search([1, 0, 0, 0], k=-3)


def test_upsert_replaces_vector_and_fields(col):
    col.upsert_items([{"vector": [0, 0, 0, 1], "id": 1, "field": {"lang": "fr"}},
                      {"vector": [0, 0, 0, 2], "id": 50}])
    r = col.read_by_only_id([1, 50])
    assert r.ids == (1, 50)
    assert r.fields == ({"lang": "fr"}, {})
    np.testing.assert_allclose(r.vectors[0], [0, 0, 0, 1])
    col.upsert_items([{"vector": [0, 0, 1, 1], "id": 1}])  # no "field": keep
    assert col.read_by_only_id(1).fields == ({"lang": "fr"},)


# --------------------------------------------------------------------------- deletes ------
def test_deleted_rows_vanish_from_every_read(col):
    assert col.delete_items([1, 3]) == 2
    assert col.delete_items([1]) == 0  # already deleted: nothing to do
    assert col.list_deleted_ids() == [1, 3]
    assert 1 not in col.search([1, 0, 0, 0], k=10).ids
    assert col.head(10).ids == (2, 4)
    assert col.tail(10).ids == (2, 4)
    assert col.query(return_ids_only=True) == [2, 4]
    assert col.query_vectors().ids == (2, 4)
    assert not col.is_id_exists(1)
    with pytest.raises(NotFoundError):
        col.read_by_only_id(1)
    assert col.shape == (2, 4)
    s = col.stats()
    assert (s.n_vectors, s.n_live, s.n_tombstoned) == (4, 2, 2)
    with pytest.raises(AlreadyExistsError, match="soft-deleted"):
        col.add_item([1, 0, 0, 0], id=1)
    assert col.restore_items([1]) == 1
    assert col.search([1, 0, 0, 0], k=1).ids == (1,)
    assert col.compact() == 1  # id 3 removed for good
    assert col.list_deleted_ids() == []
    assert col.add_item([0, 0, 1, 0], id=3) == 3  # the id is free again
    assert col.head(10).ids == (1, 2, 4, 3)


def test_delete_by_where(col):
    assert col.delete_items(where="lang = 'en'") == 2
    assert col.query(return_ids_only=True) == [2, 4]


# --------------------------------------------------------------------------- reads --------
def test_search_shapes_and_order(col):
    r = col.search([1, 0, 0, 0], k=2, return_fields=True)
    ids, scores, fields = r
    assert ids == (1, 4)
    assert list(np.round(scores, 4)) == [1.0, 0.5]
    assert fields == ({"lang": "en", "rank": 3}, {})
    assert r.index == "FLAT-IP"
    assert col.search([1, 0, 0, 0], k=2).fields is None
    assert len(col.search([1, 0, 0, 0], k=100)) == 4
    assert col.search([1, 0, 0, 0], k=2, where="lang = 'de'").ids == (2,)
    batch = col.batch_search([[1, 0, 0, 0], [0, 1, 0, 0]], k=1)
    assert [b.ids for b in batch] == [(1,), (2,)]
    rng = col.search_range([1, 0, 0, 0], threshold=0.4)
    assert rng.ids == (1, 4)
    prof = col.search_profile([1, 0, 0, 0], k=2, where="rank >= 1")
    assert prof.result.ids == (1, 2)  # 2 and 3 tie at 0.0: storage order breaks it
    assert prof.profile["index_path"] == "flat_mmap_filtered"
    assert prof.profile["filter_matches"] == 3


def test_reads(col):
    vectors, ids, fields = col.head(2)
    assert ids == (1, 2) and vectors.shape == (2, 4)
    assert col.tail(1).ids == (4,)
    assert col.query(where="lang = 'en'") == [{"lang": "en", "rank": 3, "id": 1},
                                              {"lang": "en", "rank": 2, "tags": ["a", "b"], "id": 3}]
    assert col.query(filter_ids=[3, 4, 77], return_ids_only=True) == [3, 4]
    assert col.list_fields() == ["lang", "rank", "tags"]
    assert col.is_id_exists(2) and not col.is_id_exists(77)
    assert col.max_id() == 4
    assert col.shape == (4, 4)
    assert col.stats().index_mode == "none"
    assert col.index_mode() is None
    assert col.update_description("new") == "new"
    assert col.get_collection_config().description == "new"


def test_l2_and_cosine_scores(db):
    l2 = db.require_collection("l2", dim=4, metric="l2")
    l2.add_item([0, 0, 1, 0], id=0)
    l2.add_item([0, 0, 0.5, 0.5], id=1)
    r = l2.search([0, 0, 1, 0], k=2)
    assert r.ids == (0, 1) and np.allclose(r.scores, [0.0, 0.5])  # squared L2 (LynseDB §8.2)
    cos = db.require_collection("cos", dim=2, metric="cosine")
    cos.add_item([1, 0.1], id=0)
    r = cos.search([1, 0], k=1)
    assert np.isclose(r.scores[0], 0.00496, atol=1e-4)  # cosine distance = 1 - cos
    with pytest.raises(InvalidArgumentError, match="zero vector"):
        cos.add_item([0, 0], id=1)


def test_closed_handle_raises(db):
    c = db.require_collection("items", dim=2)
    with c:
        c.add_item([1, 0], id=1)
    with pytest.raises(ClosedError):
        c.search([1, 0], k=1)
    c.close()  # twice is harmless


def test_close_releases_vectors_and_indexes_while_the_handle_lives(tmp_path):
    """A handle kept after close() (a notebook variable, a cache) must not pin every vector."""
    import gc
    import weakref
    c = vecstore.connect(tmp_path).create_database("app").require_collection("big", dim=8, metric="l2")
    c.add(np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32))
    c.build_index("HNSW-L2")
    c.create_vector_field("t", dim=4)
    c.add_named_vectors("t", np.ones((3, 4)), [0, 1, 2])
    held = [weakref.ref(c._default.matrix), weakref.ref(c._default.index), weakref.ref(c._named["t"].matrix)]
    c.close()
    gc.collect()
    assert [r() for r in held] == [None, None, None]
    with pytest.raises(ClosedError):
        c.search(np.ones(8), k=1)
    assert "closed" in repr(c)


def test_reopen_restores_everything(tmp_path):
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        c = client.create_database("app").require_collection("items", dim=3, metric="l2", description="d")
        c.add(np.eye(3), ids=[1, 2, "x"], fields=[{"a": 1}, {"b": [1, 2]}, {"c": "s"}])
        c.delete_items([2])
    with vecstore.connect(path) as client:
        c = client.get_database("app").get_collection("items")
        assert c.get_collection_config().metric == "l2"
        assert c.get_collection_config().description == "d"
        assert c.query() == [{"a": 1, "id": 1}, {"c": "s", "id": "x"}]
        assert c.list_deleted_ids() == [2]
        assert c.search([0, 0, 1], k=1).ids == ("x",)


def test_second_writer_process_is_refused(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        c = client.create_database("app").require_collection("items", dim=2)
        c.add_item([1, 0], id=1)
        code = (
            "import sys, vecstore\n"
            f"c = vecstore.connect({str(path)!r})\n"
            "try:\n"
            "    c.get_database('app').get_collection('items')\n"
            "except vecstore.LockedError as e:\n"
            "    print('locked:', e); sys.exit(3)\n"
            "ro = vecstore.connect(" + repr(str(path)) + ", read_only=True)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "open for writing" in proc.stdout
        reader = (
            "import vecstore\n"
            f"c = vecstore.connect({str(path)!r}, read_only=True).get_database('app').get_collection('items')\n"
            "print(c.search([1, 0], k=1).ids)\n"
        )
        proc = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == "(1,)", proc.stderr


def test_same_collection_opened_twice_in_one_process_is_one_handle(tmp_path):
    a = vecstore.connect(tmp_path / "s").create_database("app").require_collection("c", dim=2)
    b = vecstore.connect(tmp_path / "s").get_database("app").get_collection("c")
    assert a is b
    a.close()


def test_bulk_progress_and_chunking(db):
    c = db.require_collection("big", dim=8, metric="l2")
    x = np.random.default_rng(1).standard_normal((120_000, 8)).astype(np.float32)
    ids = c.add(x, progress=True)  # three chunks, each its own transaction
    assert ids == list(range(120_000))
    assert c.shape == (120_000, 8)
    assert c.search(x[119_999], k=1).ids == (119_999,)
    assert c.search(x[7], k=1).ids == (7,)


def test_build_index_takes_lynsedb_shared_kwargs_like_lynsedb(db):
    """LynseDB's client sends one kwargs dict to every index mode and its server ignores the
    keys of other index families; ours does too (locally and remotely), keeps its own names
    strict, and maps LynseDB's names of its parameters."""
    col = db.require_collection("c", dim=4, metric="l2")
    col.add(np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32))
    shared = {"m": 8, "ef_construction": 40, "ef_search": 20, "n_centroids": 4, "nprobe": 2}
    assert col.build_index("HNSW-L2", **shared)["index_mode"] == "HNSW-L2"
    assert col.build_index("IVF-L2", **shared) == {"index_mode": "IVF-L2", "n_clusters": 4}
    assert col.search(np.zeros(4, np.float32), k=3).index == "IVF-L2"
    with pytest.raises(InvalidArgumentError, match="bogus"):
        col.build_index("HNSW-L2", bogus=1)
    with pytest.raises(InvalidArgumentError, match="n_clusters"):
        col.build_index("HNSW-L2", n_clusters=4)  # our own argument stays strict
