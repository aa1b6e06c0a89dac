"""Storage edge cases: a full disk, automatic map growth under concurrent readers, damaged files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import vecstore
from vecstore import storage

FULL_DISK_CHILD = textwrap.dedent("""
    import resource, signal, sys, numpy as np, vecstore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
    col = vecstore.connect(sys.argv[1]).create_database("app").require_collection("c", dim=64)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))   # "the disk" holds 3 MiB
    b = 0
    try:
        while True:
            col.add(np.full((100, 64), b, np.float32), ids=list(range(b * 100, b * 100 + 100)))
            print("ack", b, flush=True)
            b += 1
    except vecstore.StorageFullError as e:
        print("full", e, flush=True)
        print("live", col.shape[0], flush=True)
""")


def test_full_disk_is_a_clear_error_and_loses_nothing(tmp_path):
    path = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(path)], capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("full ") and "nothing committed was lost" in ln for ln in lines), proc.stdout[-500:] + proc.stderr
    acked = [int(ln.split()[1]) for ln in lines if ln.startswith("ack")]
    assert acked, "the limit was hit before any write: the test exercised nothing"
    live_in_child = int([ln for ln in lines if ln.startswith("live")][0].split()[1])
    assert live_in_child == 100 * len(acked)   # the failed call left the mirror untouched
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        assert col.shape[0] == 100 * len(acked)
        for b in (acked[0], acked[-1]):
            r = col.read_by_only_id(list(range(b * 100, b * 100 + 100)))
            assert np.all(r.vectors == b)
        col.add(np.ones((10, 64), np.float32), ids=list(range(10**6, 10**6 + 10)))  # writable again


def test_map_grows_automatically_while_readers_run(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "DEFAULT_MAP_SIZE", 1 << 20)   # start at 1 MiB to force growth
    col = vecstore.connect(tmp_path / "store").create_database("app").require_collection("c", dim=32, metric="l2")
    x = np.random.default_rng(0).standard_normal((30_000, 32)).astype(np.float32)
    errors: list = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                col.stats()
                col._get_meta("version")            # a read transaction during the growth
                col.search(x[0], k=3)
            except Exception as e:  # noqa: BLE001 - any exception is a failure
                errors.append(e)
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(0, 30_000, 3_000):
        col.add(x[start:start + 3_000], ids=list(range(start, start + 3_000)))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert col._storage.env.info()["map_size"] >= 8 << 20   # it grew several times
    assert col.shape[0] == 30_000
    assert col.search(x[29_999], k=1).ids == (29_999,)
    col.close()


def test_damaged_store_is_a_clear_error(tmp_path):
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        client.create_database("app").require_collection("c", dim=4).add(np.eye(4), ids=[1, 2, 3, 4])
    data = path / "app" / "c" / "data.mdb"
    data.write_bytes(b"\0" * 64 + b"not an lmdb file" * 100)
    with vecstore.connect(path) as client:
        with pytest.raises(vecstore.VecstoreError) as exc:
            client.get_database("app").get_collection("c")
        assert "LMDB" in str(exc.value) or "damaged" in str(exc.value)


def _mirror(col) -> tuple:
    def space(d):
        return (d.labels[:d.n].tolist(), d.matrix[:d.n].tobytes(), d.live[:d.n].tolist(),
                d.lookup(np.arange(d.n + 5)).tolist(), d.n_live)
    return (list(col._ids), [dict(f) for f in col._fields], dict(col._id_pos), space(col._default),
            {name: space(d) for name, d in col._named.items()})


def test_bulk_open_rebuilds_the_same_mirror_as_row_by_row(tmp_path, monkeypatch):
    """The bulk loaders of an open (two C-level passes, vectors joined in chunks) against the
    mirror the writes built in memory: ids of both types, fields, deletes, upserts, and chunk
    boundaries that do not divide the row count."""
    monkeypatch.setattr(storage, "_LOAD_CHUNK_BYTES", 7 * 4 * 24 + 5)   # 7 rows and a bit per chunk
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 24)).astype(np.float32)
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("c", dim=24, metric="l2")
        col.add(x[:200], ids=list(range(200)), fields=[{"n": i, "tag": f"t{i % 7}"} for i in range(200)])
        col.add(x[200:], ids=[f"s{i}" for i in range(100)], fields=[{"n": i} for i in range(100)])
        col.delete(list(range(0, 200, 9)))
        col.upsert(x[:5] + 1, ids=[1, 2, 3, "s1", 9], fields=[{"up": True}] * 5)
        col.create_vector_field("t", dim=8, metric="l2")
        col.add_named_vectors("t", x[:60, :8], [*(i for i in range(60) if i % 9)][:50] + [f"s{i}" for i in range(10)])
        col.delete([2, 4])   # rows with a named vector too
        written = _mirror(col)
        assert written[4]["t"][4] == 58
        assert written[1][0] == {"n": 0, "tag": "t0"}
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        assert _mirror(col) == written
        with col._storage.read() as t:   # and the per-row iterators agree with the bulk ones
            labels, rows = t.load_rows()
            assert [(int(lb), r) for lb, r in zip(labels, rows)] == list(t.iter_rows())
            vl, m = t.load_vecs(24)
            assert [(storage.label_key(int(lb)), m[i].tobytes()) for i, lb in enumerate(vl)] == list(t.iter_vecs())
        assert col.search(x[250], k=1).ids == ("s50",)
        col.add(x[:3] * 2, ids=[1000, 1001, 1002])   # the adopted matrix grows on the next write
        assert col.search(x[2] * 2, k=1).ids == (1002,)


@pytest.mark.parametrize("damage", ["missing", "short", "swapped", "row-cut", "row-extra"])
def test_open_refuses_damaged_rows_and_vectors(tmp_path, damage):
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("c", dim=4)
        col.add(np.eye(4), ids=[1, 2, 3, 4])

        def tx(t):
            vec = t._dbs["vec"]
            key = storage.label_key(t.get_label(3))
            rows = t._dbs["rows"]
            if damage.startswith("row"):   # one row record's msgpack cut short, or with a byte more
                raw = t._txn.get(key, db=rows)
                t._txn.put(key, raw[:-1] if damage == "row-cut" else raw + b"\xc0", db=rows)
            elif damage == "missing":
                t._txn.delete(key, db=vec)
            elif damage == "short":
                t._txn.put(key, b"\0" * 12, db=vec)
            else:   # the vector moves to a label that has no row
                t._txn.delete(key, db=vec)
                t._txn.put(storage.label_key(999), b"\0" * 16, db=vec)
        col._storage.write(tx)
    with vecstore.connect(path) as client:
        with pytest.raises(vecstore.errors.CorruptionError):
            client.get_database("app").get_collection("c")


def log_labels(col) -> int:
    with col._storage.read() as t:
        return sum(len(labels) for _, _, labels in t.iter_log(t.log_start()))


def test_the_change_log_stays_bounded_under_rolling_writes(tmp_path, monkeypatch):
    """Rows come and go (add, delete, compact) and others are upserted over and over: the log,
    and a snapshot, stay bounded by the live rows and the checkpoint threshold, however many
    rows passed through. Before, both grew by every row ever touched."""
    from vecstore import collection
    monkeypatch.setattr(collection, "CHECKPOINT_MIN_ROWS", 500)
    rng = np.random.default_rng(0)
    with vecstore.connect(tmp_path / "s", durability="fast") as client:
        db = client.create_database("app")
        col = db.require_collection("c", dim=4, metric="l2")
        col.add(rng.standard_normal((300, 4)), ids=list(range(300)))
        nxt = 10_000
        for cycle in range(30):
            ids = list(range(nxt, nxt + 400))
            nxt += 400
            col.add(np.zeros((400, 4)), ids=ids)
            col.delete_items(ids)
            if cycle % 3 == 2:
                col.compact()
            col.upsert(rng.standard_normal((100, 4)), ids=list(range(100)))   # never compacted away
            # at most the rows since the previous checkpoint and up to one threshold more
            assert log_labels(col) <= 2 * 500 + 900, cycle
        col.snapshot_to(tmp_path / "a.snap")
        fresh = db.require_collection("fresh", dim=4, metric="l2")
        fresh.add(rng.standard_normal((300, 4)), ids=list(range(300)))
        fresh.snapshot_to(tmp_path / "b.snap")
        assert (tmp_path / "a.snap").stat().st_size < 2 * (tmp_path / "b.snap").stat().st_size
        restored = db.restore_collection("r", tmp_path / "a.snap")
        assert restored.query_vectors().ids == col.query_vectors().ids
        assert np.array_equal(restored.query_vectors().vectors, col.query_vectors().vectors)


def test_a_store_from_before_log_trimming_opens_and_is_trimmed_later(tmp_path):
    """A store without log_start/log_mark (never trimmed): its whole log is trusted, and two
    checkpoints trim it (the first only marks where the next may trim up to)."""
    x = np.random.default_rng(1).standard_normal((300, 4)).astype(np.float32)
    with vecstore.connect(tmp_path / "s") as client:
        col = client.create_database("app").require_collection("c", dim=4, metric="l2")
        col.add(x[:200])
        col.build_index("HNSW-L2")
        col.add(x[200:], ids=list(range(200, 300)))
        col.delete_items([0])
        col._storage.write(lambda t: [t.delete_meta(k) for k in ("log_start", "log_mark")
                                      if t.get_meta(k) is not None])
        col._discard()                                   # the index files predate the last writes
    with vecstore.connect(tmp_path / "s") as client:
        col = client.get_database("app").get_collection("c")
        assert all(col.search(x[i], k=1).ids == (i,) for i in range(200, 300, 7))
        assert 0 not in col.search(x[0], k=5).ids
        before = log_labels(col)
        col.checkpoint()
        col.add(x[:3], ids=[1000, 1001, 1002])
        col.checkpoint()
        assert before >= 101 and log_labels(col) == 3
