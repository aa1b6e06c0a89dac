"""A handle shows the store as it was at open until ``refresh()``: a read-only reader in this
process against a writer in another (one writer per folder, any number of readers)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import numpy as np

import vecstore

WRITER = textwrap.dedent("""
    import sys, numpy as np, vecstore
    col = vecstore.connect(sys.argv[1]).get_database("app").get_collection("c")
    step = sys.argv[2]
    if step == "grow":
        x = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
        col.add(x, ids=list(range(1000, 1300)), fields=[{"lang": "de"}] * 300)
        col.delete_items(list(range(0, 50)))
        col.build_index("HNSW-L2")
        col.create_vector_field("t", dim=3)
        col.add_named_vectors("t", np.eye(3), ids=[1000, 1001, 1002])
    elif step == "compact":
        col.compact()
    col.database.client.close()
""")


def write(path, step: str) -> None:
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), step], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_reader_sees_other_processes_commits_after_refresh(tmp_path):
    path = tmp_path / "store"
    x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    with vecstore.connect(path) as client:
        client.create_database("app").require_collection("c", dim=8, metric="l2").add(
            x, ids=list(range(200)), fields=[{"lang": "en"}] * 200)
    reader = vecstore.connect(path, read_only=True)
    col = reader.get_database("app").get_collection("c")
    assert col.refresh() is False                      # nothing new: one small read
    write(path, "grow")
    assert col.shape == (200, 8) and col.index_mode() != "HNSW-L2"   # a snapshot until refresh
    assert col.refresh() is True
    assert col.shape == (450, 8) and col.index_mode() == "HNSW-L2"
    assert col.search(x[60], k=1).ids == (60,)
    assert 10 not in col.search(x[10], k=5).ids        # deleted by the writer
    assert col.query(where="lang = 'de'", return_ids_only=True)[:2] == [1000, 1001]
    assert col.search([1, 0, 0], k=1, vector_field="t").ids == (1000,)
    assert col.text_search("de", k=3).ids              # the text index is built again on use
    assert col.refresh() is False
    write(path, "compact")                             # removes rows: positions change
    assert col.refresh() is True
    assert col.stats().n_vectors == 450 and col.search(x[60], k=1).ids == (60,)
    reader.close()


STAGES = textwrap.dedent("""
    import sys, numpy as np, vecstore
    client = vecstore.connect(sys.argv[1])
    col = client.get_database("app").get_collection("c")
    stage, seed = sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(seed)
    def some(ids, n):
        ids = list(ids)
        return [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
    if stage == "rows":
        base = 1000 * seed
        new = [base + i for i in range(60)] + [f"s{base + i}" for i in range(20)]
        col.add(rng.standard_normal((80, 8)), ids=new,
                fields=[{"g": int(rng.integers(4)), "txt": f"word{int(rng.integers(5))}"} for _ in new])
        deleted = set(col.list_deleted_ids())
        live = [i for i in col.query(return_ids_only=True)]
        up = some(live, 8) + some(deleted, 4)                       # replaces, and revives
        col.upsert(rng.standard_normal((len(up), 8)), ids=up, fields=[{"g": 9, "txt": "upserted"}] * len(up))
        live = [i for i in col.query(return_ids_only=True)]
        col.delete_items(some(live, 12))
        col.delete_items(where="g = 3")
        deleted = col.list_deleted_ids()
        col.restore_items(some(deleted, 6))
        live = [i for i in col.query(return_ids_only=True)]
        named = some(live, 15)
        col.add_named_vectors("n", rng.standard_normal((len(named), 3)), ids=named)
        sparse = some(live, 10)
        col.add_sparse_vectors([{int(j): float(rng.random()) for j in rng.choice(50, 4, replace=False)}
                                for _ in sparse], ids=sparse)
        col.delete_items(some(named, 3) + some(sparse, 3))          # rows with named and sparse vectors
    elif stage == "index":
        col.build_index("HNSW-L2")
        col.build_vector_field_index("n", "HNSW-L2")
    elif stage == "compact":
        col.compact()
    elif stage == "blob":
        col.write_blob("k", b"x" * 10)                              # commits, changes no row
    client.close()
""")


def stage(path, name: str, seed: int = 0) -> None:
    proc = subprocess.run([sys.executable, "-c", STAGES, str(path), name, str(seed)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


OBSERVE = textwrap.dedent('''
    import numpy as np

    def observed(col) -> dict:
        """Everything a reader can see, through the public API and in the mirror itself."""
        queries = np.random.default_rng(7).standard_normal((5, 8)).astype(np.float32)
        n = col._default.n
        out = {
            "version": col.version, "shape": col.shape, "stats": col.stats(), "max_id": col.max_id(),
            "ids": list(col._ids), "fields": list(col._fields), "id_pos": dict(col._id_pos),
            "max_int": col._max_int_all, "next_label": col._next_label,
            "labels": col._default.labels[:n].tolist(), "live": col._default.live[:n].tolist(),
            "matrix": col._default.matrix[:n].tolist(), "deleted": col.list_deleted_ids(),
            "where": col.query(where="g = 1 or g = 9", return_ids_only=True),
            # ef far above the rows: exact even on HNSW, whose graphs differ between a handle
            # that caught up and one that loaded the index files
            "search": [sorted(map(str, col.search(q, k=10, nprobe=2000).ids)) for q in queries],
            "named_search": col.search([1.0, 0.0, 0.0], k=10, vector_field="n", nprobe=2000).ids,
            "sparse": col.sparse_search({1: 1.0, 2: 1.0, 3: 1.0, 30: 1.0}, k=50).ids,
            "text": sorted(map(str, col.text_search("upserted word1", k=200).ids)),
        }
        for name, space in col._named.items():
            m = space.n  # a named field's positions follow arrival, not label order: compare by label
            out["named:" + name] = sorted(zip(space.labels[:m].tolist(), space.live[:m].tolist(),
                                              space.matrix[:m].tolist()))
        return out
''')
exec(OBSERVE)

FRESH = OBSERVE + textwrap.dedent('''
    import pickle, sys, vecstore
    with vecstore.connect(sys.argv[1], read_only=True) as client:
        sys.stdout.buffer.write(pickle.dumps(observed(client.get_database("app").get_collection("c"))))
''')


def fresh_open(path) -> dict:
    """What a handle opened afresh sees, in another process (one process opens a store once)."""
    proc = subprocess.run([sys.executable, "-c", FRESH, str(path)], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return pickle.loads(proc.stdout)


def text_files(path) -> dict:
    return {f.name: f.stat().st_mtime_ns for f in (path / "app" / "c" / "text").iterdir()}


@contextmanager
def written_store(path):
    """The writer's collection of the refresh tests: 100 rows with fields, a named field."""
    rng = np.random.default_rng(0)
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("c", dim=8, metric="l2")
        col.add(rng.standard_normal((100, 8)), ids=list(range(100)),
                fields=[{"g": i % 4, "txt": f"word{i % 5}"} for i in range(100)])
        col.create_vector_field("n", dim=3, metric="l2")
        yield col


def test_refresh_catches_up_row_by_row_and_equals_a_fresh_open(tmp_path, monkeypatch):
    """Oracle: after each stage of another process's writes, the refreshed handle equals a
    handle opened afresh. Row-only stages must take the incremental path (no full reload);
    structure changes and compact() reload."""
    from vecstore.collection import Collection
    path = tmp_path / "store"
    with written_store(path) as col:
        col.text_search("word1")       # the writer's text index is on disk and current: the reader uses it
        assert col.refresh() is False  # the only writer: nothing to catch up
    reader = vecstore.connect(path, read_only=True)
    col = reader.get_database("app").get_collection("c")
    observed(col)  # noqa: F821  the reader's own text index exists before the writes
    reloads = []
    real_reload = Collection._reload
    monkeypatch.setattr(Collection, "_reload", lambda self: (reloads.append(1), real_reload(self)))
    plan = [("rows", 1, False), ("rows", 2, False), ("index", 0, True), ("rows", 3, False),
            ("compact", 0, True), ("rows", 4, False), ("rows", 5, False)]
    for name, seed, full in plan:
        stage(path, name, seed)
        reloads.clear()
        assert col.refresh() is True
        assert bool(reloads) == full, (name, seed)
        on_disk = text_files(path)
        got, want = observed(col), fresh_open(path)  # noqa: F821 (defined by exec above)
        assert text_files(path) == on_disk            # a reader never writes the writer's text index
        space = col._named["n"]                       # every live named vector is in its field's index
        for lb, vec in zip(space.labels[:space.n][space.live[:space.n]], space.matrix[:space.n][space.live[:space.n]]):
            assert col.search(vec, k=1, vector_field="n").ids == (col._ids[col._default.lookup([lb])[0]],), (name, seed)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == want[key], (name, seed, key)
        assert col.refresh() is False
    stage(path, "blob")                # a commit that changes no row: nothing to catch up
    assert col.refresh() is False and not reloads
    assert col.read_blob("k") == b"x" * 10
    reader.close()


def test_a_reader_behind_the_trimmed_log_reloads_and_equals_a_fresh_open(tmp_path, monkeypatch):
    """Every close() checkpoints and trims the change log up to the previous checkpoint; a
    compact() trims all of it. A reader that missed more than that cannot catch up row by row
    (the log no longer names every change): it reloads, and equals a handle opened afresh."""
    from vecstore.collection import Collection
    path = tmp_path / "store"
    with written_store(path) as col:
        col.build_index("HNSW-L2")
    reader = vecstore.connect(path, read_only=True)
    col = reader.get_database("app").get_collection("c")
    reloads = []
    real_reload = Collection._reload
    monkeypatch.setattr(Collection, "_reload", lambda self: (reloads.append(1), real_reload(self)))
    for stages in ([("rows", 1), ("rows", 2)],        # two checkpoints: the first one's changes trimmed
                   [("rows", 3), ("compact", 0)],     # behind a compact, whose record is trimmed too
                   [("compact", 0), ("rows", 4), ("rows", 5)]):
        for name, seed in stages:
            stage(path, name, seed)
        reloads.clear()
        assert col.refresh() is True and reloads, stages
        got, want = observed(col), fresh_open(path)  # noqa: F821 (defined by exec above)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == want[key], (stages, key)
    reader.close()


def test_a_reader_adopts_a_map_the_writer_grew(tmp_path, monkeypatch):
    """LMDB refuses a reader's transactions once another process grew the file past the
    reader's map (MDB_MAP_RESIZED); the reader re-reads the size and goes on."""
    from vecstore import storage
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        client.create_database("app").require_collection("c", dim=8, metric="l2").add(
            np.ones((10, 8)), ids=list(range(10)))
    monkeypatch.setattr(storage, "DEFAULT_MAP_SIZE", 1 << 20)
    reader = vecstore.connect(path, read_only=True)
    col = reader.get_database("app").get_collection("c")
    assert col._storage.env.info()["map_size"] < 4 << 20
    grow = textwrap.dedent("""
        import sys, numpy as np, vecstore
        col = vecstore.connect(sys.argv[1]).get_database("app").get_collection("c")
        col.add(np.ones((20000, 8)), ids=list(range(100, 20100)))   # ~10 MB: past the reader's map
        col.database.client.close()
    """)
    proc = subprocess.run([sys.executable, "-c", grow, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert col.refresh() is True and col.shape == (20010, 8)
    reader.close()
