"""Snapshots, restores, exports and imports (issue 6).

Round trips are checked read by read (query, head/tail, searches, named and sparse searches,
vector fields, stats, deleted ids) for every combination of id type, named vectors, sparse
vectors and soft deletes; then index modes, a snapshot taken while a writer runs, damaged
inputs (target untouched), overwrite semantics, byte-identical re-export, LynseDB's export
format, database snapshots, a 60k-row streaming run and the server's path confinement.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import struct
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

import vecstore
import vecstore.portability as portability
from conftest import clustered
from vecstore.errors import (AlreadyExistsError, BadBackupError, ClosedError, CorruptionError, ForbiddenPathError,
                             InvalidArgumentError, NotFoundError, UnsupportedFormatError)
from vecstore.portability import _FOOT, _SnapshotWriter, resolve_confined
from vecstore.storage import Storage

N, DIM = 200, 8


@pytest.fixture
def db(local_client):
    return local_client.create_database("app")


def make_id(i: int, kind: str):
    if kind == "int":
        return 1000 + i
    if kind == "str":
        return f"doc-{i:04d}"
    return 1000 + i if i % 2 == 0 else f"doc-{i:04d}"


def build(db, name, *, ids="int", named=False, sparse=False, deleted=False, metric="l2", n=N):
    col = db.require_collection(name, dim=DIM, metric=metric, description="test rows")
    vecs = clustered(n, DIM, seed=1)
    id_list = [make_id(i, ids) for i in range(n)]
    fields = [{"i": i, "grp": i % 5, "name": f"row {i} é", "tags": ["a", "b", "c"][: i % 3],
               "score": i / 7, "when": "2024-01-02", "nested": {"x": i % 2 == 0}} for i in range(n)]
    col.add(vecs, ids=id_list, fields=fields)
    col.upsert(vecs[:3] * 2, ids=id_list[:3])           # rewritten rows keep their place
    if named:
        rng = np.random.default_rng(2)
        col.create_vector_field("title", dim=6, metric="cosine")
        col.add_named_vectors("title", rng.standard_normal((n // 2, 6)), ids=id_list[::2])
        col.create_vector_field("img", dim=3, metric="l2")
        col.add_named_vectors("img", rng.standard_normal((len(id_list[::3]), 3)), ids=id_list[::3])
    if sparse:
        col.add_sparse_vectors([{i % 50: 1.0 + i, 50 + (i * 7) % 50: 0.5} for i in range(0, n, 4)],
                               ids=id_list[::4])
    if deleted:
        col.delete_items([id_list[i] for i in range(n) if i % 10 == 3] + [id_list[12], id_list[24]])
    return col


def same_rows(a, b):
    assert a.ids == b.ids
    assert a.fields == b.fields
    np.testing.assert_array_equal(a.vectors, b.vectors)


def same_result(a, b):
    assert a.ids == b.ids
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    assert a.fields == b.fields


def fields_of(col) -> list[dict]:
    """Vector fields, named ones by name: a reopened collection lists them in name order, a live
    one in creation order."""
    first, *rest = col.list_vector_fields()
    return [first.to_dict()] + sorted((f.to_dict() for f in rest), key=lambda d: d["name"])


def assert_same_reads(a, b, *, exact_copy: bool):
    """Every read of ``b`` equals the same read of ``a``. ``exact_copy``: a snapshot (deleted
    rows and the commit counter survive); otherwise an export (only live rows travel)."""
    assert a.query() == b.query()
    assert a.query(where="grp = 2 AND score > 3", return_ids_only=True) == \
        b.query(where="grp = 2 AND score > 3", return_ids_only=True)
    same_rows(a.head(7), b.head(7))
    same_rows(a.tail(7), b.tail(7))
    assert len(a) == len(b) and a.max_id() == b.max_id() and a.list_fields() == b.list_fields()
    assert fields_of(a) == fields_of(b)
    qs = clustered(6, DIM, seed=7)
    for q in qs:
        same_result(a.search(q, k=10, return_fields=True), b.search(q, k=10, return_fields=True))
        same_result(a.search(q, k=5, where="grp != 1"), b.search(q, k=5, where="grp != 1"))
    rng = np.random.default_rng(3)
    for info in a.list_vector_fields()[1:]:
        q = rng.standard_normal(info.dimension)
        same_result(a.search(q, k=8, vector_field=info.name), b.search(q, k=8, vector_field=info.name))
    for q in ({4: 1.0, 60: 2.0}, {i: 1.0 for i in range(0, 100, 3)}):
        same_result(a.sparse_search(q, k=10, return_fields=True), b.sparse_search(q, k=10, return_fields=True))
    sa, sb = a.stats(), b.stats()
    if exact_copy:
        assert sa == sb
        assert a.list_deleted_ids() == b.list_deleted_ids()
        assert a.get_collection_config() == b.get_collection_config()
    else:
        assert (sb.n_vectors, sb.n_live, sb.n_tombstoned) == (sa.n_live, sa.n_live, 0)
        assert (sa.dimension, sa.index_mode, sa.max_id) == (sb.dimension, sb.index_mode, sb.max_id)
        assert b.list_deleted_ids() == []
        assert a.get_collection_config().description == b.get_collection_config().description


# ------------------------------------------------------------------ round trips ---------------
COMBOS = list(itertools.product(["int", "str", "mixed"], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("ids,named,sparse,deleted", COMBOS,
                         ids=[f"{i}-named{int(n)}-sparse{int(s)}-del{int(d)}" for i, n, s, d in COMBOS])
def test_round_trips(db, tmp_path, ids, named, sparse, deleted):
    col = build(db, "items", ids=ids, named=named, sparse=sparse, deleted=deleted)

    snap = col.snapshot_to(tmp_path / "backups" / "items.snap")
    restored = db.restore_collection("restored", snap)
    assert_same_reads(col, restored, exact_copy=True)

    out = col.export_to(tmp_path / "exports" / "items")
    imported = db.import_collection("imported", out)
    assert_same_reads(col, imported, exact_copy=False)
    if deleted:   # a deleted row can be restored in the snapshot copy, not in the export copy
        gone = col.list_deleted_ids()[0]
        assert restored.restore_items([gone]) == 1 and restored.is_id_exists(gone)
        assert not imported.is_id_exists(gone)
    assert sorted(db.show_collections()) == ["imported", "items", "restored"]


def test_snapshots_leave_the_change_log_out_and_old_ones_with_it_restore(db, tmp_path, monkeypatch):
    """The log grew with every row ever written and a restore needs none of it: a snapshot
    carries an empty log member. One written before (with the log) still restores, without it,
    and either restored store catches up and trims like any other."""
    col = build(db, "items", named=True, sparse=True, deleted=True)
    col.build_index("HNSW")
    with col._storage.read() as t:
        logged = t.count_raw("log")
    new = col.snapshot_to(tmp_path / "new.snap")

    def old_dump(col, w, progress):     # _dump_collection as it was: every sub-database whole
        with col._storage.read() as t:
            subdbs = vecstore.storage.Storage.subdb_names()
            counts = {s: t.count_raw(s) for s in subdbs}
            for s in subdbs:
                w.member(f"{col.name}/{s}", t.iter_raw(s), portability._bar(False, 0, "", ""))
            cfg = t.get_meta("config")
            return {"name": col.name, "dim": cfg["dim"], "metric": cfg["metric"], "store_format": 1,
                    "version": t.get_meta("version"), "counts": counts, "subdbs": list(subdbs),
                    "index_modes": {k[6:]: r.get("mode") for k, r in t.iter_meta("index:")}}
    monkeypatch.setattr(portability, "_dump_collection", old_dump)
    old = col.snapshot_to(tmp_path / "old.snap")
    monkeypatch.undo()
    with portability._SnapshotReader(Path(new)) as r:
        assert r.members["items/log"]["entries"] == 0
    with portability._SnapshotReader(Path(old)) as r:
        assert r.members["items/log"]["entries"] == logged > 0
    expected = col.query()
    q = clustered(1, DIM, seed=11)[0]
    for name, snap in (("from_new", new), ("from_old", old)):
        other = db.restore_collection(name, snap)
        assert other.query() == expected and other.version == col.version
        assert len(set(col.search(q, k=10).ids) & set(other.search(q, k=10).ids)) >= 8
        with other._storage.read() as t:
            assert t.count_raw("log") == 0 and t.log_start() == col.version
        other.add(np.ones((1, DIM)), ids=["after"])           # the log goes on from there
        other.close()
        other = db.get_collection(name)
        assert other.search(np.ones(DIM), k=1).ids == ("after",) and other.query()[:-1] == expected


def test_index_modes_survive_and_indexes_are_rebuilt(db, tmp_path):
    col = build(db, "items", named=True, deleted=True, metric="cosine")
    col.build_index("HNSW", M=8, ef_construction=64)
    col.build_vector_field_index("img", "IVF", n_clusters=4)
    col.build_vector_field_index("title", "FLAT")
    expected = fields_of(col)
    snap = col.snapshot_to(tmp_path / "s.snap")
    exp = col.export_to(tmp_path / "e")
    manifest = json.loads((Path(exp) / "export_manifest.json").read_text())
    assert manifest["index_mode"] == "HNSW" and manifest["index_params"]["M"] == 8
    q = clustered(1, DIM, seed=11)[0]
    want = set(col.search(q, k=10).ids)
    for other in (db.restore_collection("r", snap), db.import_collection("i", exp)):
        assert other.index_mode() == "HNSW"
        assert fields_of(other) == expected
        prof = other.search_profile(q, k=10).profile
        assert prof["index_path"] == "ann_index"
        assert len(want & set(other.search(q, k=10).ids)) >= 8
        assert len(other.search(np.ones(3), k=5, vector_field="img")) == 5
        # The index files are ours, built from the rows after the restore.
        assert any(p.name.startswith("default.") for p in (other.path / "indexes").iterdir())
    # Reopening loads the rebuilt files rather than rebuilding again.
    db.get_collection("r").close()
    assert db.get_collection("r").index_mode() == "HNSW"


def test_snapshot_is_consistent_while_a_writer_runs(db, tmp_path):
    col = db.require_collection("w", dim=4)
    batch, stop, errors = 40, threading.Event(), []

    def writer():
        try:
            for b in range(2000):
                if stop.is_set():
                    return
                col.add(np.full((batch, 4), b, np.float32), ids=list(range(b * batch, (b + 1) * batch)),
                        fields=[{"batch": b}] * batch)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(col) < 5 * batch:
            time.sleep(0.005)
        snaps = []
        for k in range(5):
            snaps.append(col.snapshot_to(tmp_path / f"w{k}.snap"))
            time.sleep(0.02)
    finally:
        stop.set()
        t.join()
    assert not errors
    sizes = []
    for k, snap in enumerate(snaps):
        r = db.restore_collection(f"r{k}", snap)
        ids = r.query(return_ids_only=True)
        sizes.append(len(ids))
        assert len(ids) % batch == 0 and ids == list(range(len(ids))), "a batch was split by the snapshot"
        vectors, got, fields = r.tail(1)
        assert vectors[0, 0] == fields[0]["batch"] == got[0] // batch
    assert sizes == sorted(sizes) and 0 < sizes[0] < len(col) and sizes[-1] <= len(col)


def test_map_growth_waits_for_a_snapshot_read(tmp_path):
    """Growing the LMDB map re-maps the file under open read transactions; a writer that must
    grow waits until the snapshot's read transaction ends (Storage.read holds the map guard)."""
    st = Storage(tmp_path / "s", map_size=1 << 20)
    try:
        st.write(lambda t: t.put_meta("a", 1))
        done = threading.Event()

        def big_write():
            st.write(lambda t: [t.put_raw("vec", struct.pack(">Q", i), b"x" * 4000) for i in range(1000)])
            done.set()

        with st.read() as t:
            w = threading.Thread(target=big_write)
            w.start()
            assert not done.wait(0.3), "the map grew under an open snapshot read"
            assert [k for k, _ in t.iter_raw("vec")] == []
        w.join(10)
        assert done.is_set()
        with st.read() as t:
            assert t.count_raw("vec") == 1000
    finally:
        st.close()


# ------------------------------------------------------------------ damaged inputs ------------
def _rewrite_manifest(data: bytes, change) -> bytes:
    """A snapshot with its manifest changed and a correct checksum again."""
    offset, length, _, end = _FOOT.unpack(data[-_FOOT.size:])
    manifest = json.loads(data[offset:offset + length])
    change(manifest)
    body = data[:offset] + json.dumps(manifest, sort_keys=True).encode()
    return body + _FOOT.pack(offset, len(body) - offset, hashlib.sha256(body).digest(), end)


@pytest.fixture
def snapshot_and_target(db, tmp_path):
    src = build(db, "src", ids="mixed", named=True, sparse=True, deleted=True)
    snap = Path(src.snapshot_to(tmp_path / "good.snap"))
    target = build(db, "items", n=30)
    return snap, target, target.query()


def _assert_untouched(db, before):
    assert db.get_collection("items").query() == before
    assert not db.collection_exists("fresh")
    assert [p for p in os.listdir(db.path) if p.startswith(".vecstore-tmp")] == []


def test_damaged_snapshots_fail_clearly_and_change_nothing(db, tmp_path, snapshot_and_target, monkeypatch):
    snap, _, before = snapshot_and_target

    class NoStore(Storage):
        def __init__(self, *a, **k):
            raise AssertionError("an LMDB store was created before the snapshot was verified")
    monkeypatch.setattr(portability, "Storage", NoStore)
    data = snap.read_bytes()
    size = len(data)
    offset = struct.unpack("<Q", data[-_FOOT.size:-_FOOT.size + 8])[0]
    bad: dict[str, bytes] = {}
    for pos in [0, 7, 9, 12, 100, size // 2, offset - 1, offset + 5, size - 40, size - 1]:
        flipped = bytearray(data)
        flipped[pos] ^= 0x5A
        bad[f"flip@{pos}"] = bytes(flipped)
    for cut in [0, 5, 12, 60, size // 2, offset + 3, size - _FOOT.size, size - 1]:
        bad[f"truncated@{cut}"] = data[:cut]
    bad["garbage"] = np.random.default_rng(0).bytes(5000)
    bad["text"] = b"hello, I am not a snapshot\n" * 10
    bad["appended"] = data + b"\0"
    for label, content in bad.items():
        p = tmp_path / f"{label}.snap"
        p.write_bytes(content)
        for name, overwrite in (("items", True), ("fresh", False)):
            with pytest.raises(CorruptionError) as info:
                db.restore_collection(name, p, overwrite=overwrite)
            assert str(p) in str(info.value), label
        _assert_untouched(db, before)


def test_wrong_version_snapshots_are_refused(db, tmp_path, snapshot_and_target):
    snap, _, before = snapshot_and_target
    data = snap.read_bytes()
    cases = {
        "container": data[:8] + struct.pack("<I", 2) + data[12:],
        "format_version": _rewrite_manifest(data, lambda m: m.update(format_version=2)),
        "store_format": _rewrite_manifest(data, lambda m: m["collections"][0].update(store_format=99)),
    }
    for label, content in cases.items():
        p = tmp_path / f"{label}.snap"
        p.write_bytes(content)
        with pytest.raises(UnsupportedFormatError):
            db.restore_collection("items", p, overwrite=True)
        _assert_untouched(db, before)


def test_checksummed_but_broken_content_is_refused(db, tmp_path, snapshot_and_target):
    """A file with a correct checksum whose records are nonsense (a crafted snapshot) fails at
    the validation open, before anything replaces the target."""
    _, _, before = snapshot_and_target
    for rows in ([(struct.pack(">Q", 0), b"\xc1\xc1 not msgpack")], [(b"", b"x")]):
        p = tmp_path / f"crafted{len(rows[0][0])}.snap"
        with open(p, "wb") as fp:
            w = _SnapshotWriter(fp)
            for s in ("meta", "rows"):
                w.member(f"items/{s}", rows if s == "rows" else [], _NullBar())
            w.finish({"kind": "collection", "collections": [
                {"name": "items", "subdbs": ["meta", "rows"], "counts": {"rows": 1}, "store_format": 1}]})
        with pytest.raises(CorruptionError):
            db.restore_collection("items", p, overwrite=True)
        _assert_untouched(db, before)
    missing = tmp_path / "nope.snap"
    with pytest.raises(NotFoundError, match="snapshot path does not exist"):
        db.restore_collection("items", missing, overwrite=True)
    with pytest.raises(CorruptionError):
        db.restore_collection("items", tmp_path, overwrite=True)   # a directory
    _assert_untouched(db, before)


def test_backups_are_not_written_into_a_database_or_collection_folder(local_client, tmp_path):
    """A snapshot or export into a collection's own folder broke it (at ``indexes``: every index
    build failed; at ``text``: deleted by the next text search), and one into a database's
    folder could look like a collection (``<db>/ghost/data.mdb``)."""
    db = local_client.create_database("app")
    col = db.require_collection("items", dim=2, metric="l2")
    col.add([[1, 0], [0, 1]], ids=[1, 2], fields=[{"t": "a b"}, {"t": "c"}])
    (tmp_path / "app_link").symlink_to(db.path)

    def files():
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.name.endswith(".mdb"))

    before = files()
    targets = [col.path / "indexes", col.path / "text", db.path / "ghost" / "data.mdb", db.path / "s.snap",
               col.path / "x" / "y", tmp_path / "app_link" / "s.snap"]
    calls = [(col.snapshot_to, "snapshot_path"), (col.export_to, "export_path"),
             (lambda p: local_client.snapshot_database("app", p), "snapshot_path")]
    for call, param in calls:
        for target in targets:
            with pytest.raises(InvalidArgumentError, match=rf"^{param}: .* is inside the database or collection folder"):
                call(target)
    assert files() == before and db.show_collections() == ["items"]
    col.build_index("HNSW")
    assert col.text_search("c", text_fields=["t"]).ids == (2,)
    # beside the databases, in the data folder, is still a place for backups
    restored = db.restore_collection("copy", col.snapshot_to(local_client.root / "backups" / "s.snap"))
    assert restored.query() == col.query()


def test_restoring_from_a_fifo_or_socket_is_refused_at_once(local_client, tmp_path):
    """open() of a FIFO for reading waits for a writer: a restore from one hung for good."""
    import socket
    db = local_client.create_database("app")
    fifo, sock_path = tmp_path / "p.snap", tmp_path / "s.snap"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    errors: list = []

    def restore(path, restore_db=False):
        try:
            local_client.restore_database("x", path) if restore_db else db.restore_collection("x", path)
        except vecstore.VecstoreError as e:  # anything else fails the assertion below
            errors.append(e)

    try:
        for path, restore_db in ((fifo, False), (fifo, True), (sock_path, False)):
            th = threading.Thread(target=restore, args=(path, restore_db), daemon=True)
            th.start()
            th.join(10)
            if th.is_alive():  # unblock it (a writer opens and closes) before failing
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                th.join(10)
                pytest.fail(f"a restore from {path.name} blocked")
    finally:
        sock.close()
    assert [type(e) for e in errors] == [BadBackupError] * 3, errors
    assert all("not a regular file" in str(e) and "snapshot_path" in str(e) for e in errors), errors
    assert db.show_collections() == [] and local_client.list_databases() == ["app"]


class _NullBar:
    def update(self, n=1):
        pass


@pytest.mark.parametrize("case", ["next_label", "metric", "dim", "version", "negative id", "float id",
                                  "empty id", "repeated id"])
def test_checksummed_snapshot_with_inconsistent_records_is_refused(db, tmp_path, case):
    """Records that decode but contradict each other restored "successfully" before, then broke
    later calls: a ``next_label`` at a stored label made the next add overwrite a row, a bogus
    metric or version raised KeyError / TypeError (500 over HTTP), bad ids were kept."""
    from vecstore.portability import _SnapshotReader
    col = db.require_collection("a", dim=2, metric="l2")
    col.add([[1, 0], [0, 1], [1, 1]], ids=[1, 2, 3])
    snap = Path(col.snapshot_to(tmp_path / "a.snap"))
    pack, unpack = (lambda x: msgpack.packb(x, use_bin_type=True)), (lambda b: msgpack.unpackb(b, raw=False))
    meta = {"next_label": lambda k, x: 0 if k == "next_label" else x,
            "metric": lambda k, x: {**x, "metric": "bogus"} if k == "config" else x,
            "dim": lambda k, x: {**x, "dim": "2"} if k == "config" else x,
            "version": lambda k, x: "x" if k == "version" else x}.get(case)
    first_id = {"negative id": -5, "float id": 1.5, "empty id": "", "repeated id": 2}.get(case)
    with _SnapshotReader(snap) as r:
        entry = r.manifest["collections"][0]
        members = {sub: list(r.records(f"a/{sub}")) for sub in entry["subdbs"]}
    if meta:
        members["meta"] = [(k, pack(meta(k.decode(), unpack(x)))) for k, x in members["meta"]]
    else:
        members["rows"] = [(k, pack([first_id, *row[1:]] if row[0] == 1 else row))
                           for k, row in ((k, unpack(x)) for k, x in members["rows"])]
    crafted = tmp_path / "crafted.snap"
    with open(crafted, "wb") as fp:
        w = _SnapshotWriter(fp)
        for sub in entry["subdbs"]:
            w.member(f"a/{sub}", members[sub], _NullBar())
        w.finish({"kind": "collection", "collections": [entry]})
    with pytest.raises(BadBackupError):
        db.restore_collection("b", crafted)
    assert not db.collection_exists("b")
    assert db.restore_collection("b", snap).query(return_ids_only=True) == [1, 2, 3]


def test_damaged_exports_fail_clearly_and_change_nothing(db, tmp_path, snapshot_and_target):
    _, _, before = snapshot_and_target
    good = Path(db.get_collection("src").export_to(tmp_path / "good"))

    def variant(label, edit):
        d = tmp_path / label
        d.mkdir()
        for f in good.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        edit(d)
        return d

    def flip(name, pos):
        def edit(d):
            b = bytearray((d / name).read_bytes())
            b[pos] ^= 1
            (d / name).write_bytes(bytes(b))
        return edit

    def manifest(change):
        def edit(d):
            m = json.loads((d / "export_manifest.json").read_text())
            m.pop("manifest_sha256")  # an older export's or a crafted one: the checks behind the checksum
            change(m)
            (d / "export_manifest.json").write_text(json.dumps(m))
        return edit

    outside = tmp_path / "outside.jsonl"
    outside.write_text((good / "metadata.jsonl").read_text())

    def symlinked(d):
        (d / "metadata.jsonl").unlink()
        (d / "metadata.jsonl").symlink_to(outside)

    cases = {
        "flip-vectors": (flip("vectors.npy", 200), CorruptionError),
        "flip-metadata": (flip("metadata.jsonl", 30), CorruptionError),
        "flip-named": (flip("vectors.title.rows.npy", 130), CorruptionError),
        "truncated": (lambda d: (d / "vectors.npy").write_bytes((d / "vectors.npy").read_bytes()[:-4]), CorruptionError),
        "missing-file": (lambda d: (d / "vectors.img.npy").unlink(), CorruptionError),
        "no-manifest": (lambda d: (d / "export_manifest.json").unlink(), CorruptionError),
        "garbage-manifest": (lambda d: (d / "export_manifest.json").write_bytes(b"\x00garbage"), CorruptionError),
        "version": (manifest(lambda m: m.update(export_version=2)), UnsupportedFormatError),
        "foreign": (manifest(lambda m: m.update(export_type="something-else")), UnsupportedFormatError),
        "escape": (manifest(lambda m: m.update(vectors_file="../good/vectors.npy")), ForbiddenPathError),
        "symlink-out": (symlinked, ForbiddenPathError),
        "count": (manifest(lambda m: m.update(count=m["count"] + 1)), CorruptionError),
        "deep-manifest": (lambda d: (d / "export_manifest.json").write_text("[" * 100_000 + "]" * 100_000),
                          vecstore.BadBackupError),
        "repeated-field": (manifest(lambda m: m["vector_fields"].append(m["vector_fields"][0])),
                           vecstore.BadBackupError),
        "manifest-edited": (lambda d: (d / "export_manifest.json").write_bytes(
            (d / "export_manifest.json").read_bytes().replace(b'"test rows"', b'"test row!"')), vecstore.BadBackupError),
    }
    for label, (edit, error) in cases.items():
        d = variant(label, edit)
        for name, overwrite in (("items", True), ("fresh", False)):
            with pytest.raises(error):
                db.import_collection(name, d, overwrite=overwrite)
        _assert_untouched(db, before)
    with pytest.raises(NotFoundError, match="export path does not exist"):
        db.import_collection("items", tmp_path / "nope", overwrite=True)
    _assert_untouched(db, before)


def test_a_damaged_export_manifest_is_refused_and_creates_nothing(local_client, tmp_path):
    """The manifest was the one file of an export without a checksum, and what it says twice was
    never compared: one flipped bit imported "successfully" without a named field, the blobs or
    the index, or with a field renamed. It now carries its own checksum; an export without one
    (an older vecstore's) is checked against itself and the files in its directory."""
    db, other = local_client.create_database("app"), local_client.create_database("other")
    src = db.require_collection("src", dim=2, metric="l2", description="d")
    src.add([[1, 2], [3, 4], [5, 6]], ids=[1, "b", 3], fields=[{"t": "x"}, {}, {"t": "y"}])
    src.create_vector_field("title", dim=2)
    src.add_named_vectors("title", [[1, 0], [0, 1]], ids=[1, "b"])
    src.add_sparse_vectors([{3: 1.0}], ids=[3])
    src.write_blob("tokenizer.json", b"{}")
    src.build_index("HNSW-L2", M=8)
    good = Path(src.export_to(tmp_path / "good"))
    want = _export_files(good)
    raw = want["export_manifest.json"]
    d = tmp_path / "bad"
    d.mkdir()
    for name, data in want.items():
        (d / name).write_bytes(data)
    n = itertools.count()

    def outcome(content: bytes):
        """The error an import of ``d`` with this manifest raises; None if it imported what was
        exported (the same name in another database: its export is the same bytes)."""
        (d / "export_manifest.json").write_bytes(content)
        try:
            col = other.import_collection("src", d)
        except (BadBackupError, UnsupportedFormatError, ForbiddenPathError) as e:
            assert other.show_collections() == []                       # nothing created
            return e
        again = _export_files(Path(col.export_to(tmp_path / f"again{next(n)}")))
        other.drop_collection("src")
        assert again == want
        return None

    assert outcome(raw) is None
    imported = []
    for pos in range(len(raw)):                       # every byte, its lowest bit
        bad = bytearray(raw)
        bad[pos] ^= 1
        if outcome(bytes(bad)) is None:
            imported.append(pos)
    # Only a flip in the checksum's own key imports (as an older export would, all else intact).
    key = raw.index(b'"manifest_sha256"')
    assert imported and all(key < p < key + len('"manifest_sha256"') - 1 for p in imported), imported

    # An older export: no checksum; what damage it shows is still refused, by name.
    old = json.loads(raw)
    del old["manifest_sha256"]

    def older(edit=None) -> bytes:
        m = json.loads(json.dumps(old))
        if edit:
            edit(m)
        return json.dumps(m, indent=2, sort_keys=True).encode()

    def rename(key, new):
        return lambda m: m.__setitem__(new, m.pop(key))

    def title(m):
        return m["vector_fields"][0]

    def drop_title(m):                               # consistently, but its files are there
        m["vector_fields"], _ = [], m["counts"]["vector_fields"].pop("title")
        del m["files"]["vectors.title.npy"], m["files"]["vectors.title.rows.npy"]

    def drop_blobs(m):
        del m["blobs_file"], m["counts"]["blobs"], m["files"]["blobs.jsonl"]

    (d / "notes.txt").write_bytes(b"x")
    notes = {"bytes": 1, "sha256": hashlib.sha256(b"x").hexdigest()}
    assert outcome(older()) is None
    cases = {
        "no vector_fields": rename("vector_fields", "vector_fieldr"),
        "no index_mode": rename("index_mode", "index_modd"),
        "blobs_file and counts.blobs": rename("blobs_file", "blobs_filg"),
        "bad vector field entry": lambda m: title(m).update(name="titlf"),
        "do not match the vector files present": drop_title,
        "blobs.jsonl is present": drop_blobs,
        "counts.rows 4 does not match count 3": lambda m: m["counts"].update(rows=4),
        "counts.vector_fields": lambda m: m["counts"]["vector_fields"].update(title=1),
        "counts.sparse says 0": lambda m: m["counts"].update(sparse=0),
        "counts.blobs says 2": lambda m: m["counts"].update(blobs=2),
        r"files listed that nothing reads \['notes.txt'\]": lambda m: m["files"].update({"notes.txt": notes}),
    }
    for message, edit in cases.items():
        error = outcome(older(edit))
        assert isinstance(error, BadBackupError) and re.search(message, str(error)), (message, error)


# ------------------------------------------------------------------ overwrite semantics -------
@pytest.fixture(params=["exchange", "two-renames"])
def swap(request, monkeypatch):
    """Overwrites run through renameat2's exchange where the system has one, else two renames."""
    if request.param == "two-renames":
        monkeypatch.setattr(portability, "_exchange", lambda new, final: False)
    return request.param


def test_overwrite_semantics(db, tmp_path, swap):
    src = build(db, "src", ids="str", sparse=True, deleted=True)
    snap = src.snapshot_to(tmp_path / "s.snap")
    exp = src.export_to(tmp_path / "e")
    old = build(db, "items", n=20)
    before = old.query()
    with pytest.raises(AlreadyExistsError):
        db.restore_collection("items", snap)
    with pytest.raises(AlreadyExistsError):
        db.import_collection("items", exp, overwrite=False)
    assert old.query() == before                      # the open handle still works
    with pytest.raises(AlreadyExistsError, match="snapshot target already exists"):
        src.snapshot_to(snap)
    with pytest.raises(AlreadyExistsError, match="export target already exists"):
        db.export_collection("src", exp)

    new = db.restore_collection("items", snap, overwrite=True)
    assert_same_reads(src, new, exact_copy=True)
    with pytest.raises(ClosedError):                  # the replaced handle was closed
        old.query()
    assert db.get_collection("items") is new
    again = db.import_collection("items", exp, overwrite=True)
    assert_same_reads(src, again, exact_copy=False)
    assert sorted(db.show_collections()) == ["items", "src"]
    assert [p for p in os.listdir(db.path) if p.startswith(".")] == [".vecstore-database"]
    assert db.snapshot_collection("items", tmp_path / "via-db.snap").endswith("via-db.snap")


@pytest.mark.skipif(not hasattr(portability._libc(), "renameat2"), reason="no renameat2 on this system")
@pytest.mark.parametrize("kind", ["database", "collection"])
def test_an_overwrite_never_leaves_the_name_free_for_another_creator(local_client, tmp_path, monkeypatch, kind):
    """With two renames the name was free between them: another process's create_database /
    create_collection landing there made the second rename fail, the old folder could not be
    put back, and it was deleted with the staging folder. The exchange leaves no such moment;
    the hook plays the other process wherever the old code had it."""
    db = local_client.create_database("app")
    build(db, "items", n=30)
    snap = (local_client.snapshot_database("app", tmp_path / "app.snap") if kind == "database"
            else db.snapshot_collection("items", tmp_path / "items.snap"))
    db.get_collection("items").delete_items([make_id(i, "int") for i in range(10)])
    real = portability._move_aside

    def another_creator(final, staging):
        real(final, staging)
        final.mkdir()
        (final / (".vecstore-database" if kind == "database" else "data.mdb")).touch()

    monkeypatch.setattr(portability, "_move_aside", another_creator)
    if kind == "database":
        restored = local_client.restore_database("app", snap, overwrite=True).get_collection("items")
    else:
        restored = db.restore_collection("items", snap, overwrite=True)
    assert len(restored) == 30


# ------------------------------------------------------------------ export format -------------
def _export_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_export_import_export_is_byte_identical(local_client, tmp_path):
    db = local_client.create_database("app")
    col = build(db, "items", ids="mixed", named=True, sparse=True, deleted=True, metric="cosine")
    col.build_index("HNSW-COS", M=12)
    col.build_vector_field_index("img", "IVF", n_clusters=3)
    a = Path(col.export_to(tmp_path / "a"))
    db.import_collection("copy", a)
    b = Path(db.export_collection("copy", tmp_path / "b"))
    fa, fb = _export_files(a), _export_files(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        if name != "export_manifest.json":
            assert fa[name] == fb[name], name
    ma, mb = json.loads(fa["export_manifest.json"]), json.loads(fb["export_manifest.json"])
    assert mb.pop("collection_name") == "copy" and ma.pop("collection_name") == "items"
    ma.pop("manifest_sha256"), mb.pop("manifest_sha256")   # over collection_name too
    assert ma == mb
    # Under the same name (another database) even the manifest is identical.
    other = local_client.create_database("other")
    other.import_collection("items", a)
    c = Path(other.export_collection("items", tmp_path / "c"))
    assert _export_files(c) == fa


def test_export_is_readable_without_vecstore(db, tmp_path):
    col = build(db, "items", ids="mixed", named=True, sparse=True, deleted=True)
    d = Path(col.export_to(tmp_path / "e"))
    m = json.loads((d / "export_manifest.json").read_text())
    lines = [json.loads(x) for x in (d / m["metadata_file"]).read_text().splitlines()]
    vectors = np.load(d / m["vectors_file"])
    live = col.query_vectors()
    assert m["count"] == len(lines) == len(live) and vectors.shape == (len(live), m["dimension"])
    assert [x["id"] for x in lines] == list(live.ids)
    assert [x["field"] for x in lines] == list(live.fields)
    np.testing.assert_array_equal(vectors, live.vectors)
    assert sum("sparse" in x for x in lines) == m["counts"]["sparse"] > 0
    img = next(f for f in m["vector_fields"] if f["name"] == "img")
    rows, vecs = np.load(d / img["rows_file"]), np.load(d / img["vectors_file"])
    assert len(rows) == len(vecs) == img["count"] and (np.diff(rows) > 0).all()
    for r, vec in zip(rows[:5], vecs[:5]):      # each named vector is its row's nearest
        assert col.search(vec, k=1, vector_field="img").ids[0] == lines[r]["id"]
    for key in ("export_type", "export_format", "export_version", "collection_name", "dimension",
                "count", "vector_dtype", "byte_order", "metadata_file", "vectors_file"):
        assert key in m


@pytest.mark.parametrize("era", ["0.2.0", "0.9.0"])
def test_import_lynsedb_export(db, tmp_path, era):
    d = tmp_path / "lynse"
    d.mkdir()
    vecs = clustered(30, DIM, seed=4)
    (d / "vectors.f32").write_bytes(vecs.astype("<f4").tobytes())
    with open(d / "metadata.jsonl", "w") as f:
        for i in range(30):
            field = {"n": i, "id": f"sku-{i}"} if i < 2 else {"n": i}  # legal in LynseDB (no id column there)
            rec = {"id": i, "field": field} if era == "0.2.0" else \
                {"id": i, "external_id": f"ext-{i}" if i % 2 else i, "field": field}
            f.write(json.dumps(rec) + "\n")
    (d / "export_manifest.json").write_text(json.dumps({
        "export_type": "lynsedb-collection-export", "collection_name": "items",
        "export_format": "lynsedb-collection-jsonl-binary-export", "export_version": 1, "dimension": DIM,
        "chunk_size": 100000, "count": 30, "vector_dtype": "f32" if era == "0.2.0" else "float32",
        "byte_order": "little-endian", "vectors_file": "vectors.f32", "metadata_file": "metadata.jsonl"}))
    col = db.import_collection("items", d)
    want = list(range(30)) if era == "0.2.0" else [f"ext-{i}" if i % 2 else i for i in range(30)]
    assert col.query(return_ids_only=True) == want
    assert col.query()[5]["n"] == 5 and col.index_mode() is None
    # a field named id is refused on write (reads and filters mean the row's id): renamed id_
    assert [col.read_by_only_id(want[i]).fields[0] for i in (0, 1)] == [{"n": 0, "id_": "sku-0"}, {"n": 1, "id_": "sku-1"}]
    assert col.query(where="id_ = 'sku-1'", return_ids_only=True) == [want[1]]
    np.testing.assert_array_equal(col.query_vectors().vectors, vecs)
    (d / "vectors.f32").write_bytes(vecs.astype("<f4").tobytes()[:-4])
    with pytest.raises(CorruptionError, match="expected count x dimension"):
        db.import_collection("items", d, overwrite=True)


def test_stores_and_snapshots_with_raw_cosine_vectors_are_a_format_older_versions_refuse(tmp_path, monkeypatch):
    """Cosine keeps the vectors as written; before, it stored them unit length, and a vecstore
    of then read raw ones as unit vectors (here (1, 2) with scores [0, 0.9] for (2, 1) with
    [0, 0.29]), no error. A store or snapshot with a cosine field (default, named, switched to
    cosine, or an older store this version opened for writing) is now format 2, which older
    versions refuse by their own check (simulated: STORE_FORMAT 1); the others stay 1."""
    from vecstore import collection
    rows = np.array([[1, 1], [0.1, 0]], np.float32)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    formats = {"cos": 2, "named": 2, "switched": 2, "plain": 1, "old": 1}
    with vecstore.connect(tmp_path / "s") as client:
        db = client.create_database("app")
        for name in formats:
            col = db.require_collection(name, dim=2, metric="cosine" if name in ("cos", "old") else "l2")
            col.add(unit if name == "old" else rows, ids=[1, 2])
        db.get_collection("named").create_vector_field("t", dim=2, metric="cosine")
        db.get_collection("switched").build_index("FLAT-COS")
        db.get_collection("old")._storage.write(      # as a version of before wrote it
            lambda t: t.put_meta("config", {**t.get_meta("config"), "format": 1}))
        snaps = {name: db.get_collection(name).snapshot_to(tmp_path / f"{name}.snap") for name in formats}
    for name, snap in snaps.items():
        with portability._SnapshotReader(Path(snap)) as r:
            assert r.manifest["collections"][0]["store_format"] == formats[name], name

    def stored_format(name):
        with (vecstore.connect(tmp_path / "s", read_only=True) as client,
              client.get_database("app").get_collection(name)._storage.read() as t):
            return t.get_meta("config")["format"]
    assert {name: stored_format(name) for name in formats} == formats
    with monkeypatch.context() as m:                 # an older version
        m.setattr(collection, "STORE_FORMAT", 1)
        m.setattr(portability, "STORE_FORMAT", 1)
        with vecstore.connect(tmp_path / "s", read_only=True) as client:
            db = client.get_database("app")
            for name, fmt in formats.items():
                if fmt == 1:
                    assert db.get_collection(name).search([1, 0], k=2).ids == (2, 1)
                else:
                    with pytest.raises(UnsupportedFormatError, match="store format 2 is newer"):
                        db.get_collection(name)
        with vecstore.connect(tmp_path / "other") as client:
            db = client.create_database("app")
            for name, snap in snaps.items():
                if name == "old":   # this version's restore opens it for writing (see the end)
                    continue
                if formats[name] == 1:
                    db.restore_collection(name, snap)
                else:
                    with pytest.raises(UnsupportedFormatError, match="store format 2 is newer"):
                        db.restore_collection(name, snap)
    with vecstore.connect(tmp_path / "s") as client:   # this version reads both
        db = client.get_database("app")
        for name in formats:
            col = db.get_collection(name)
            field = "t" if name == "named" else "default"
            if name == "named":
                col.add_named_vectors("t", rows, ids=[1, 2])
            r = col.search([1, 0], k=2, vector_field=field)
            assert r.ids == (2, 1)
            np.testing.assert_allclose(r.scores, [0.81, 1] if name == "plain" else [0, 1 - np.sqrt(0.5)], atol=1e-6)
    # opened for writing, the older cosine store takes raw vectors from now on: format 2
    assert {name: stored_format(name) for name in formats} == {**formats, "old": 2}


def test_cosine_import_and_retarget_keep_the_vectors_as_written(db, tmp_path):
    """Cosine keeps the vectors as written: a LynseDB export imported into cosine, and an l2
    collection re-targeted by ``build_index("…-COS")``, read back bit for bit (they were stored
    normalised, for good: a later FLAT-L2 measured between unit vectors), huge and tiny rows too
    (|x| ~ 5e20 once became a zero vector, ~1e-25 was refused as one), and score the cosine
    distance of their directions. Exports and snapshots carry the raw rows."""
    vecs = np.array([[3e20, 4e20, 0, 0], [1e-25, 0, 0, 0], [1, 2, 3, 4]], np.float32)
    unit = vecs.astype(np.float64) / np.array([5e20, 1e-25, np.sqrt(30)])[:, None]
    d = tmp_path / "lynse"
    d.mkdir()
    (d / "vectors.f32").write_bytes(vecs.astype("<f4").tobytes())
    (d / "metadata.jsonl").write_text("".join(json.dumps({"id": i, "field": {}}) + "\n" for i in range(3)))
    (d / "export_manifest.json").write_text(json.dumps({
        "export_type": "lynsedb-collection-export", "export_version": 1, "count": 3, "dimension": 4,
        "metric": "cosine", "vectors_file": "vectors.f32", "metadata_file": "metadata.jsonl"}))
    imported = db.import_collection("imp", d)
    l2 = db.require_collection("l2", dim=4, metric="l2")
    l2.add(vecs, ids=[0, 1, 2])
    l2.build_index("FLAT-COS")
    again = db.import_collection("again", l2.export_to(tmp_path / "e"))   # its own export imports
    restored = db.restore_collection("restored", l2.snapshot_to(tmp_path / "l2.snap"))
    q = np.array([3, 4, 1, 0], np.float64)
    dist = 1 - unit @ (q / np.linalg.norm(q))
    for col in (imported, l2, again, restored):
        assert col.metric == "cosine"
        np.testing.assert_array_equal(col.query_vectors().vectors, vecs)
        r = col.search(q, k=3)
        assert list(r.ids) == np.argsort(dist).tolist()
        np.testing.assert_allclose(r.scores, np.sort(dist), atol=1e-6)
    l2.build_index("FLAT-L2")                  # and back: the distances of the vectors as written
    r = l2.search(q, k=3)
    sq = ((vecs.astype(np.float64) - q) ** 2).sum(axis=1)
    assert list(r.ids) == np.argsort(sq).tolist()
    with np.errstate(over="ignore"):  # 2.5e41 is beyond float32: inf
        np.testing.assert_allclose(r.scores, np.sort(sq).astype(np.float32), rtol=1e-6)


# ------------------------------------------------------------------ databases -----------------
def test_database_snapshot_round_trip(local_client, tmp_path):
    db = local_client.create_database("app")
    a = build(db, "a", ids="mixed", named=True, sparse=True, deleted=True)
    a.build_index("HNSW")
    b = build(db, "b", ids="str", n=50)
    snap = local_client.snapshot_database("app", tmp_path / "app.snap")
    with pytest.raises(AlreadyExistsError):
        local_client.snapshot_database("app", snap)
    db2 = local_client.restore_database("app2", snap)
    assert db2.show_collections() == ["a", "b"] and (db2.path / ".vecstore-database").exists()
    assert sorted(local_client.list_databases()) == ["app", "app2"]
    assert_same_reads(a, db2.get_collection("a"), exact_copy=True)
    assert_same_reads(b, db2.get_collection("b"), exact_copy=True)
    with pytest.raises(AlreadyExistsError):
        local_client.restore_database("app2", snap)
    with pytest.raises(InvalidArgumentError, match="database snapshot"):
        db.restore_collection("x", snap)
    with pytest.raises(InvalidArgumentError, match="collection snapshot"):
        local_client.restore_database("app3", a.snapshot_to(tmp_path / "a.snap"))

    db2.get_collection("b").delete_items(["doc-0001"])
    old_handle = db2.get_collection("a")
    db3 = local_client.restore_database("app2", snap, overwrite=True)
    with pytest.raises(ClosedError):
        old_handle.query()
    assert db3.get_collection("b").query() == b.query()
    bad = tmp_path / "bad.snap"
    bad.write_bytes(Path(snap).read_bytes()[:-10])
    with pytest.raises(CorruptionError):
        local_client.restore_database("app2", bad, overwrite=True)
    assert db3.get_collection("b").query() == b.query()
    assert [p for p in os.listdir(local_client.root) if p.startswith(".")] == []


# ------------------------------------------------------------------ streaming -----------------
def test_streaming_60k_rows(db, tmp_path):
    n = 60_000
    col = db.require_collection("big", dim=DIM, metric="l2")
    vecs = clustered(n, DIM, seed=5)
    col.add(vecs, ids=list(range(n)), fields=[{"i": i} for i in range(n)])
    col.create_vector_field("extra", dim=2)
    col.add_named_vectors("extra", np.ones((n // 4, 2)), ids=list(range(0, n, 4)))
    col.add_sparse_vectors([{i % 97: 1.0} for i in range(0, n, 10)], ids=list(range(0, n, 10)))
    col.delete_items(list(range(5, n, 1000)))
    exp = col.export_to(tmp_path / "big", progress=True)
    imp = db.import_collection("big2", exp, progress=True)
    snap = col.snapshot_to(tmp_path / "big.snap", progress=True)
    res = db.restore_collection("big3", snap)
    for other in (imp, res):
        assert len(other) == len(col) == n - 60
        same_rows(col.tail(3), other.tail(3))
        assert other.search(vecs[123], k=5).ids == col.search(vecs[123], k=5).ids
        assert other.sparse_search({7: 1.0}, k=3).ids == col.sparse_search({7: 1.0}, k=3).ids
        assert other.search([1, 1], k=1, vector_field="extra").ids == col.search([1, 1], k=1, vector_field="extra").ids


# ------------------------------------------------------------------ path confinement ----------
def test_resolve_confined(tmp_path):
    root = tmp_path / "data"
    (root / "snaps").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    real = root.resolve()
    assert resolve_confined("snaps/a.snap", [root]) == real / "snaps" / "a.snap"
    assert resolve_confined("new/deeper/x", [root]) == real / "new" / "deeper" / "x"
    assert resolve_confined(str(root / "snaps" / "a.snap"), [root]) == real / "snaps" / "a.snap"
    assert resolve_confined(str(other / "x"), [root, other]) == other.resolve() / "x"
    (root / "inside-link").symlink_to(root / "snaps")
    assert resolve_confined("inside-link/a", [root]) == real / "snaps" / "a"
    (root / "out-link").symlink_to(other)
    (root / "dangling").symlink_to(tmp_path / "nowhere" / "file")
    refused = ["../other/x", "snaps/../../other/x", "snaps/..", "..", str(other / "x"), "/etc/passwd",
               "out-link/x", "out-link", "dangling", "snaps/a\x00b", "", "   ", ".", str(root),
               "snaps\\..\\..\\x"]
    for bad in refused:
        with pytest.raises(ForbiddenPathError):
            resolve_confined(bad, [root])
    with pytest.raises(ForbiddenPathError):
        resolve_confined("a", [])
    with pytest.raises(ForbiddenPathError):
        resolve_confined(b"snaps/a", [root])  # type: ignore[arg-type]


_RESTORE_AND_HANG = r"""
import sys, time, vecstore, vecstore.portability as p
original = p._restore_store
def restore_then_hang(*a, **kw):
    original(*a, **kw)
    sys.stdout.write("staged\n")  # one write: the parent counts whole lines only
    time.sleep(60)
p._restore_store = restore_then_hang
vecstore.connect(sys.argv[1]).get_database("app").restore_collection("items", sys.argv[2], overwrite=True)
"""


def _staged(root: Path) -> list[Path]:
    return sorted(root.rglob(portability._STAGING + "*"))


def test_a_restore_killed_midway_leaves_nothing_behind(local_client, tmp_path):
    import signal
    import subprocess
    import sys
    db = local_client.create_database("app")
    col = db.require_collection("items", dim=8)
    col.add(np.eye(8, dtype=np.float32), ids=list(range(8)))
    snap = db.snapshot_collection("items", tmp_path / "items.snap")
    root = local_client.root
    local_client.close()
    child = subprocess.Popen([sys.executable, "-c", _RESTORE_AND_HANG, str(root), snap],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "staged\n"
        held = _staged(root)
        assert len(held) == 1 and (held[0] / "new").exists()
        # while the restoring process lives, another process's open must not touch its folder
        other = vecstore.connect(root, read_only=False)
        other.get_database("app")
        assert _staged(root) == held
        other.close()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        again = vecstore.connect(root)
        col = again.get_database("app").get_collection("items")
        assert _staged(root) == []  # swept at open
        assert sorted(col.search(np.eye(8, dtype=np.float32)[3], k=1).ids) == [3]  # old data intact
        again.close()
    finally:
        child.kill()
        child.wait()


def test_a_path_no_file_can_have_is_refused(tmp_path):
    col = vecstore.connect(tmp_path / "s").create_database("app").require_collection("c", dim=2)
    col.add_item([1, 0], id=1)
    for call, param in ((col.snapshot_to, "snapshot_path"), (col.export_to, "export_path")):
        with pytest.raises(vecstore.InvalidArgumentError, match=param):
            call(str(tmp_path / "x\ud800"))
    col.database.client.close()


@pytest.mark.parametrize("where", ["long name", "under a file", "deep under a file"])
def test_a_path_the_file_system_refuses_is_a_clear_error(local_client, tmp_path, server_url, where):
    """A name over 255 bytes or a parent that is a file raised a bare OSError locally (a 500
    over HTTP); now InvalidArgumentError naming the parameter, in both modes, and nothing made."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "served" / "afile").write_text("")  # the server resolves relative paths in its data folder
    bad = {"long name": "x" * 300, "under a file": "afile/sub", "deep under a file": "afile/a/b"}[where]
    remote = vecstore.connect(server_url)
    for client, base in ((local_client, tmp_path), (remote, None)):
        if base is None:
            client.create_database("probe").require_collection("c", dim=2).add_item([1, 0], id=1)
            db = client.get_database("probe")
        else:
            db = client.create_database("app")
            db.require_collection("c", dim=2).add_item([1, 0], id=1)
        path = str(base / bad) if base is not None else bad
        col = db.get_collection("c")
        calls = [(lambda: col.snapshot_to(path), "snapshot_path"), (lambda: col.export_to(path), "export_path"),
                 (lambda: db.restore_collection("r", path), "snapshot_path"),
                 (lambda: client.snapshot_database(db.name, path), "snapshot_path"),
                 (lambda: client.restore_database("r", path), "snapshot_path")]
        if where == "long name":  # under a file, an export folder simply does not exist
            calls.append((lambda: db.import_collection("i", path), "export_path"))
        for call, param in calls:
            with pytest.raises(vecstore.InvalidArgumentError, match=param):
                call()
        assert db.show_collections() == ["c"]
    remote.close()


def test_export_and_import_keep_the_order_of_field_keys(db, tmp_path):
    col = db.require_collection("c", dim=2)
    col.add_item([1, 0], id=1, field={"zeta": 1, "alpha": {"y": 2, "b": 3}})
    col.export_to(tmp_path / "ex")
    back = db.import_collection("c2", tmp_path / "ex").read_by_only_id(1).fields[0]
    assert list(back) == ["zeta", "alpha"] and list(back["alpha"]) == ["y", "b"]


def test_backup_calls_return_the_path_spelled_as_the_library_spells_it(client, tmp_path, monkeypatch):
    """Remote echoed the request's spelling (``snaps//a.snap``), the library returns
    ``str(Path(p))``; the same call now returns the same string in both modes. Relative paths:
    the server resolves them in its data folder, the library in the working directory."""
    monkeypatch.chdir(tmp_path)
    db = client.create_database("app")
    col = build(db, "items", n=5)
    for call, given in [(col.snapshot_to, "snaps//a.snap"), (col.export_to, "exports/./items/"),
                        (lambda p: client.snapshot_database("app", p), "./snaps//db.snap/")]:
        assert call(given) == str(Path(given))
