"""Blobs (LynseDB HEAD's write_blob / read_blob / delete_blob), local and remote, against a
plain dict model; persistence, snapshots and read-only opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vecstore
from vecstore.errors import InvalidArgumentError, NotFoundError, ReadOnlyError


@pytest.fixture
def col(db):
    return db.require_collection("items", dim=4)


def test_blobs_behave_like_a_dict_of_bytes(col):
    model: dict[str, bytes] = {}
    rng = np.random.default_rng(0)
    keys = ["a", "b/c", "é", "x" * 200]
    for step in range(60):
        key = keys[int(rng.integers(len(keys)))]
        if rng.random() < 0.3:
            assert col.delete_blob(key) == (key in model)
            model.pop(key, None)
        else:
            data = rng.bytes(int(rng.integers(0, 3000)))
            col.write_blob(key, data)
            model[key] = data
        for k in keys:
            assert col.read_blob(k) == model.get(k)
        assert col.list_blobs() == sorted(model, key=lambda k: k.encode())
    assert len(col) == 0  # blobs are not rows


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=64), offset=st.integers(0, 80), length=st.one_of(st.none(), st.integers(0, 80)))
def test_ranges_read_like_slices(tmp_path_factory, data, offset, length):
    col = vecstore.connect(tmp_path_factory.mktemp("b")).create_database("d").require_collection("c", dim=2)
    col.write_blob("k", data)
    want = data[offset:] if length is None else data[offset:offset + length]
    assert col.read_blob("k", offset=offset, length=length) == want
    col.database.client.close()


@pytest.mark.parametrize("kw, param", [({"key": ""}, "key"), ({"key": 3}, "key"), ({"key": "k" * 512}, "key"),
                                       ({"key": "k", "data": "text"}, "data"), ({"key": "k", "data": None}, "data")])
def test_bad_writes_are_refused_and_change_nothing(col, kw, param):
    col.write_blob("keep", b"kept")
    with pytest.raises(InvalidArgumentError, match=param):
        col.write_blob(**{"data": b"x", **kw})
    assert col.list_blobs() == ["keep"] and col.read_blob("keep") == b"kept"


@pytest.mark.parametrize("kw, param", [({"offset": -1}, "offset"), ({"length": -2}, "length"),
                                       ({"offset": 1.5}, "offset"), ({"length": True}, "length")])
def test_bad_ranges_are_refused(col, kw, param):
    col.write_blob("k", b"abc")
    with pytest.raises(InvalidArgumentError, match=param):
        col.read_blob("k", **kw)


def test_bytes_like_inputs(col):
    col.write_blob("ba", bytearray(b"\x01\x02"))
    col.write_blob("arr", np.arange(3, dtype="<u2"))
    assert col.read_blob("ba") == b"\x01\x02"
    assert col.read_blob("arr") == b"\x00\x00\x01\x00\x02\x00"


def test_unknown_collection_is_not_found(db):
    db.require_collection("gone", dim=2)
    handle = db.get_collection("gone")
    db.drop_collection("gone")
    with pytest.raises((NotFoundError, vecstore.errors.ClosedError)):
        handle.read_blob("k")


def test_blobs_persist_and_travel_in_snapshots(local_client, tmp_path):
    db = local_client.create_database("app")
    col = db.require_collection("items", dim=4)
    col.add(np.eye(4, dtype=np.float32))
    col.write_blob("model.bin", b"\x00" * 100_000 + b"end")
    snap = db.snapshot_collection("items", tmp_path / "s.snap")
    root = local_client.root
    local_client.close()
    again = vecstore.connect(root)
    assert again.get_database("app").get_collection("items").read_blob("model.bin", offset=100_000) == b"end"
    restored = again.get_database("app").restore_collection("copy", snap)
    assert restored.list_blobs() == ["model.bin"] and len(restored.read_blob("model.bin")) == 100_003
    again.close()
    ro = vecstore.connect(root, read_only=True).get_database("app").get_collection("items")
    assert ro.read_blob("model.bin", length=3) == b"\x00\x00\x00"
    with pytest.raises(ReadOnlyError):
        ro.write_blob("x", b"y")


def test_a_snapshot_has_a_blobs_member_only_with_blobs(local_client, tmp_path, monkeypatch):
    """A vecstore from before blobs refuses a snapshot member it does not know ("unknown or
    missing member items/blobs"), and the blobs member was in every snapshot, empty or not: now
    only in those with blobs, so such a version restores the others (simulated: its
    sub-databases)."""
    from vecstore.errors import CorruptionError
    from vecstore.storage import Storage
    db = local_client.create_database("app")
    col = db.require_collection("items", dim=2)
    col.add(np.eye(2, dtype=np.float32))
    without = db.snapshot_collection("items", tmp_path / "without.snap")
    col.write_blob("k", b"v")
    with_blobs = db.snapshot_collection("items", tmp_path / "with.snap")
    monkeypatch.setattr(Storage, "subdb_names", staticmethod(lambda: ("meta", "rows", "vec", "ids", "named",
                                                                      "sparse", "log", "jobs")))
    assert len(db.restore_collection("old_reader", without)) == 2
    with pytest.raises(CorruptionError, match="items/blobs"):
        db.restore_collection("refused", with_blobs)
    monkeypatch.undo()
    assert db.restore_collection("copy", with_blobs).read_blob("k") == b"v"
    assert db.restore_collection("copy2", without).list_blobs() == []


def test_stores_written_before_blobs_open_read_only_and_gain_blobs_on_write(local_client, tmp_path):
    import lmdb
    col = local_client.create_database("app").require_collection("old", dim=2)
    col.add(np.eye(2, dtype=np.float32))
    path = col.path
    local_client.close()
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as t:  # as a store of the previous format: no "blobs" sub-db
        t.drop(env.open_db(b"blobs", txn=t), delete=True)
    env.close()
    ro_client = vecstore.connect(local_client.root, read_only=True)
    ro = ro_client.get_database("app").get_collection("old")
    assert ro.read_blob("k") is None and ro.list_blobs() == [] and len(ro) == 2
    ro_client.get_database("app").snapshot_collection("old", tmp_path / "old.snap")
    ro_client.close()
    rw = vecstore.connect(local_client.root)
    rw.get_database("app").get_collection("old").write_blob("k", b"v")
    assert rw.get_database("app").get_collection("old").read_blob("k") == b"v"
    assert rw.get_database("app").restore_collection("back", tmp_path / "old.snap").list_blobs() == []
    rw.close()


def test_blobs_travel_in_exports(local_client, tmp_path):
    db = local_client.create_database("app")
    col = db.require_collection("items", dim=2)
    col.add(np.eye(2, dtype=np.float32))
    plain = col.export_to(tmp_path / "plain")
    assert not (tmp_path / "plain" / "blobs.jsonl").exists()  # no blobs: the export is as before
    col.write_blob("a", b"\x00\x01")
    col.write_blob("b", b"")
    out = col.export_to(tmp_path / "with")
    copy = db.import_collection("copy", out)
    assert {k: copy.read_blob(k) for k in copy.list_blobs()} == {"a": b"\x00\x01", "b": b""}
    assert db.import_collection("copy2", plain).list_blobs() == []
    again = copy.export_to(tmp_path / "again")
    for name in ("blobs.jsonl", "export_manifest.json"):
        if name == "export_manifest.json":
            import json
            a, b = (json.loads((Path(p) / name).read_text()) for p in (out, again))
            a.pop("collection_name"), b.pop("collection_name"), a.pop("manifest_sha256"), b.pop("manifest_sha256")
            assert a == b
        else:
            assert (Path(out) / name).read_bytes() == (Path(again) / name).read_bytes()
    (Path(out) / "blobs.jsonl").write_bytes(b'{"key": "a", "base64": "!!"}\n')
    with pytest.raises(vecstore.errors.CorruptionError):
        db.import_collection("copy3", out)
    assert "copy3" not in db.show_collections()
