"""Client and Database calls racing each other: creates, opens, drops, restores, snapshots and
closes, in threads of one process and in two processes. Each race is forced where it matters
(hooks that pause one caller at the critical point), never left to timing."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import vecstore
import vecstore.client as client_mod
import vecstore.exports as exports_mod
import vecstore.portability as portability
import vecstore.storage as storage
from vecstore.errors import AlreadyExistsError, DimensionMismatchError, LockedError, NotFoundError
from vecstore.jobs import JobManager

WAIT = 20  # seconds: only reached when something is broken


class LockProbe:
    """Stands in for a lock (``client._OPEN_LOCK``, a collection's writer mutex): ``waiting`` is
    set once a thread asks for it while another thread holds it, so a test knows that caller is
    parked exactly there."""

    def __init__(self, lock) -> None:
        self._lock = lock
        self.waiting = threading.Event()

    def __enter__(self) -> LockProbe:
        if not self._lock.acquire(blocking=False):
            self.waiting.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def probe_open_lock(monkeypatch: pytest.MonkeyPatch) -> LockProbe:
    probe = LockProbe(client_mod._OPEN_LOCK)
    monkeypatch.setattr(client_mod, "_OPEN_LOCK", probe)
    return probe


def pause(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``module.name`` stop at its first call until ``go`` is set; ``there`` says it did."""
    real, there, go = getattr(module, name), threading.Event(), threading.Event()

    def paused(*args, **kwargs):
        if not there.is_set():
            there.set()
            assert go.wait(WAIT)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, paused)
    return there, go


def run(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """``fn`` in a thread; its result or exception lands in the returned dict."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out["error"] = e
    t = threading.Thread(target=target)
    t.start()
    return t, out


def joined(t: threading.Thread, out: dict) -> dict:
    t.join(WAIT)
    assert not t.is_alive()
    return out


# ---------------------------------------------------------------- bug 1: drop vs another process
_DROPPER = textwrap.dedent("""
    import os, sys, time, vecstore, vecstore.portability as P
    root, locked, go, snap = sys.argv[1:5]
    def paused(real):  # every store it found is locked; the other process may now try
        def pause(*args):
            open(locked, "w").close()
            while not os.path.exists(go):
                time.sleep(0.005)
            return real(*args)
        return pause
    P._move_aside = paused(P._move_aside)  # a drop moves the database aside
    P._exchange = paused(P._exchange)      # a restore swaps it with the new one
    if snap == "-":
        vecstore.connect(root).drop_database("app", missing_ok=False)
    else:
        vecstore.connect(root).restore_database("app", snap, overwrite=True)
    print("done")
""")


@pytest.mark.parametrize("action", ["create", "jobs", "restore", "create in a replaced database"])
def test_drop_database_in_another_process_excludes_a_create(tmp_path, action):
    """Process B drops (or replaces, restore_database) the database and stops once it has
    locked the stores it found; A then makes a store in it (a collection, the job store, a
    restored collection): A must wait, then find the database gone (or make it in the
    replacement), never have its acknowledged rows deleted with the old one."""
    root = tmp_path / "data"
    with vecstore.connect(root) as c:
        old = c.create_database("app").require_collection("old", dim=2)
        old.add([[1, 1]])
        snap = old.snapshot_to(tmp_path / "old.snap")
        db_snap = c.snapshot_database("app", tmp_path / "app.snap")
    replace = action == "create in a replaced database"
    locked, go = tmp_path / "locked", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", _DROPPER, str(root), str(locked), str(go),
                             db_snap if replace else "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT
        while not locked.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.005)
        a = vecstore.connect(root)
        db = a.get_database("app")

        def make_a_store():
            if action == "jobs":
                return db.list_refresh_jobs()
            if action == "restore":
                return db.restore_collection("new", snap).add([[1, 0]], ids=[7])
            col = db.create_collection("new", dim=2)
            col.add([[1, 0], [0, 1]], ids=[1, 2])
            return col
        t, out = run(make_a_store)
        t.join(0.3)
        assert t.is_alive(), f"acknowledged inside a database being dropped: {out}"
        go.touch()
        stdout, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0 and "done" in stdout, stderr
        if replace:  # made in the new database, which stays
            assert joined(t, out)["value"].shape == (2, 2)
            a.close()
            with vecstore.connect(root) as fresh:
                assert fresh.get_database("app").show_collections() == ["new", "old"]
                assert fresh.get_database("app").get_collection("new").shape == (2, 2)
            return
        assert isinstance(joined(t, out).get("error"), NotFoundError), out
        assert not (root / "app").exists() and a.list_databases() == []
        assert a.create_database("app").show_collections() == []  # the name is usable again
        a.close()
    finally:
        proc.kill()
        proc.wait()


def test_drop_database_while_another_process_opens_a_collection_is_locked(tmp_path):
    c = vecstore.connect(tmp_path)
    db = c.create_database("app")
    db.require_collection("a", dim=2).close()
    # what another process's create or open of a collection holds meanwhile
    with portability.database_lock(db.path / client_mod._DB_MARKER, exclusive=False), pytest.raises(LockedError):
        c.drop_database("app")
    assert c.database_exists("app")
    c.drop_database("app")
    assert not c.database_exists("app")


def test_a_collection_dropped_while_its_lock_is_taken_is_not_made_again(tmp_path, monkeypatch):
    """Another process drops the collection being created between the LOCK file's creation
    and its flock: the lock taken is on the moved file, so the create must not go on."""
    db = vecstore.connect(tmp_path).create_database("app")
    real = storage.fcntl.flock

    def moved_first(fd, op):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/app/c/LOCK"):
            monkeypatch.setattr(storage.fcntl, "flock", real)
            os.rename(db.path / "c", tmp_path / "dropped")
        return real(fd, op)
    monkeypatch.setattr(storage.fcntl, "flock", moved_first)
    with pytest.raises(NotFoundError):
        db.create_collection("c", dim=2)
    assert not (db.path / "c").exists()


@pytest.mark.parametrize("missing_ok", [True, False])
def test_a_collection_dropped_by_another_process_during_a_drop(tmp_path, monkeypatch, missing_ok):
    db = vecstore.connect(tmp_path).create_database("app")
    db.require_collection("c", dim=2).close()
    real = portability._take_writer_lock

    def moved_first(path):  # the other process's drop of it went first
        os.rename(db.path / "c", tmp_path / "dropped")
        return real(path)
    monkeypatch.setattr(portability, "_take_writer_lock", moved_first)
    if missing_ok:
        assert db.drop_collection("c") is None
    else:
        with pytest.raises(NotFoundError):
            db.drop_collection("c", missing_ok=False)


def test_a_collection_dropped_before_lmdb_opens_it_is_not_found(tmp_path, monkeypatch):
    db = vecstore.connect(tmp_path).create_database("app")
    db.require_collection("c", dim=2).close()
    real = storage.lmdb.open

    def moved_first(path, **kwargs):
        os.rename(path, tmp_path / "dropped")
        return real(path, **kwargs)
    monkeypatch.setattr(storage.lmdb, "open", moved_first)
    with pytest.raises(NotFoundError):
        db.get_collection("c")


# ---------------------------------------------------------------- bug 2: dropped database re-made
def test_a_stale_database_handle_never_makes_the_dropped_database_again(tmp_path, monkeypatch):
    c1, c2 = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    c1.create_database("app").require_collection("c", dim=2).add([[1, 2]])
    snap = c1.get_database("app").get_collection("c").snapshot_to(tmp_path / "c.snap")
    export = c1.get_database("app").get_collection("c").export_to(tmp_path / "c.export")
    db2 = c2.get_database("app")
    c1.drop_database("app")
    calls = [lambda: db2.create_collection("x", dim=2), lambda: db2.require_collection("x", dim=2),
             lambda: db2.get_collection("c"), db2.show_collections, db2.list_refresh_jobs,
             lambda: db2.restore_collection("r", snap), lambda: db2.import_collection("i", export)]
    for call in calls:
        with pytest.raises(NotFoundError):
            call()
    # the database is what is missing, not something wrong with the caller's backup
    (tmp_path / "bad.snap").write_bytes(b"not a snapshot")
    with pytest.raises(NotFoundError):
        db2.restore_collection("r", tmp_path / "bad.snap")
    # the same calls when their own check passed just before the drop: the check under the lock
    monkeypatch.setattr(db2, "_check_open", lambda: None)
    for call in calls:
        with pytest.raises(NotFoundError):
            call()
    assert not (tmp_path / "app").exists()
    assert c1.list_databases() == [] and c1.create_database("app").show_collections() == []


def test_no_store_is_made_in_a_folder_that_is_gone(tmp_path):
    with pytest.raises(NotFoundError):
        storage.Storage(tmp_path / "dropped" / "c")
    with pytest.raises(NotFoundError):
        JobManager(tmp_path / "dropped" / ".jobs")
    assert not (tmp_path / "dropped").exists()


# ---------------------------------------------------------------- bug 3: one name, two configs
@pytest.mark.parametrize("second", ["create", "require other dim", "require same dim"])
def test_concurrent_creates_of_one_name(tmp_path, monkeypatch, second):
    db = vecstore.connect(tmp_path).create_database("app")
    real = client_mod.Collection
    creating, go = threading.Event(), threading.Event()

    def slow_create(*args, **kwargs):
        if kwargs.get("create") is not None and not creating.is_set():
            creating.set()
            assert go.wait(WAIT)
        return real(*args, **kwargs)
    monkeypatch.setattr(client_mod, "Collection", slow_create)
    probe = probe_open_lock(monkeypatch)
    t1, out1 = run(db.create_collection, "c", dim=3, metric="l2")
    assert creating.wait(WAIT)
    if second == "create":
        t2, out2 = run(db.create_collection, "c", dim=5, metric="ip")
    else:
        t2, out2 = run(db.require_collection, "c", dim=5 if second == "require other dim" else 3)
    assert probe.waiting.wait(WAIT)  # the second call passed its own checks and waits for the first
    go.set()
    col = joined(t1, out1)["value"]
    assert (col.dim, col.get_collection_config().metric) == (3, "l2")
    out2 = joined(t2, out2)
    if second == "create":
        assert isinstance(out2.get("error"), AlreadyExistsError), out2
    elif second == "require other dim":
        assert isinstance(out2.get("error"), DimensionMismatchError), out2
    else:
        assert out2.get("value") is col


# ---------------------------------------------------------------- bug 4: two drops of one name
@pytest.mark.parametrize("missing_ok", [True, False])
@pytest.mark.parametrize("what", ["collection", "database"])
def test_concurrent_drops_of_one_name(tmp_path, monkeypatch, what, missing_ok):
    c = vecstore.connect(tmp_path)
    db = c.create_database("app")
    db.require_collection("c", dim=2).add([[1, 2]])
    drop = (lambda **kw: db.drop_collection("c", **kw)) if what == "collection" else \
        (lambda **kw: c.drop_database("app", **kw))
    moving, go = pause(monkeypatch, portability, "_move_aside")
    probe = probe_open_lock(monkeypatch)
    t1, out1 = run(drop)
    assert moving.wait(WAIT)
    t2, out2 = run(drop, missing_ok=missing_ok)
    assert probe.waiting.wait(WAIT)  # the second drop found the name there and waits for the first
    go.set()
    assert joined(t1, out1) == {"value": None}
    out2 = joined(t2, out2)
    if missing_ok:
        assert out2 == {"value": None}
    else:
        assert isinstance(out2.get("error"), NotFoundError), out2
    assert not (tmp_path / "app" / "c").exists()


# ---------------------------------------------------------------- bug 5: close under a snapshot
@pytest.mark.parametrize("how", ["close", "drop"])
@pytest.mark.parametrize("what", ["snapshot", "export"])
def test_close_or_drop_waits_for_a_running_snapshot(tmp_path, monkeypatch, what, how):
    c = vecstore.connect(tmp_path / "data")
    db = c.create_database("app")
    col = db.require_collection("c", dim=2)
    col.add([[float(i), 1.0] for i in range(100)])
    # the snapshot or export holds its read transaction when it reaches its progress bar
    reading, go = pause(monkeypatch, portability if what == "snapshot" else exports_mod, "_bar")
    real_exclusive, closing = storage._MapGuard.exclusive, threading.Event()

    def exclusive(self):
        closing.set()
        return real_exclusive(self)
    monkeypatch.setattr(storage._MapGuard, "exclusive", exclusive)
    target = tmp_path / ("c.snap" if what == "snapshot" else "c.export")
    t1, out1 = run(col.snapshot_to if what == "snapshot" else col.export_to, target)
    assert reading.wait(WAIT)
    t2, out2 = run(col.close if how == "close" else lambda: db.drop_collection("c"))
    while not closing.is_set() and t2.is_alive():  # waiting for the read, or (unguarded) done
        time.sleep(0.001)
    go.set()
    assert "error" not in joined(t1, out1), out1
    assert joined(t2, out2) == {"value": None}
    assert col.closed
    monkeypatch.undo()
    restored = (db.restore_collection if what == "snapshot" else db.import_collection)("r", target)
    assert restored.shape == (100, 2)


# ---------------------------------------------------------------- bug 8: restore into a dropped database
@pytest.mark.parametrize("hook", ["_restore_store", "_open_restored", "_import_rows"])
def test_restore_or_import_into_a_database_dropped_midway(tmp_path, monkeypatch, hook):
    root = tmp_path / "data"
    c, other = vecstore.connect(root), vecstore.connect(root)
    col = c.create_database("app").require_collection("c", dim=2)
    col.add([[1, 2], [3, 4]])
    snap, export = col.snapshot_to(tmp_path / "c.snap"), col.export_to(tmp_path / "c.export")
    real = getattr(portability, hook)

    def dropped_first(*args, **kwargs):
        other.drop_database("app")
        return real(*args, **kwargs)
    monkeypatch.setattr(portability, hook, dropped_first)
    db = c.get_database("app")
    with pytest.raises(NotFoundError):
        if hook == "_import_rows":
            db.import_collection("r", export)
        else:
            db.restore_collection("r", snap)
    assert not (root / "app").exists() and c.list_databases() == []
    assert not any(p.name.startswith(".vecstore-tmp-") for p in root.iterdir())


# ---------------------------------------------------------------- a drop beside a client's close()
@pytest.mark.parametrize("paused_in", ["checkpoint", "store close"])
def test_drop_database_while_another_client_closes(tmp_path, monkeypatch, paused_in):
    """Client 1 is closing (its collection half closed) when client 2 drops the database: the
    drop waits for that close to end, then drops (no ClosedError from closing it twice, no
    LockedError from a store lock this very process is about to release)."""
    c1, c2 = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    col = c1.create_database("app").require_collection("c", dim=2)
    col.add([[1, 2]])
    if paused_in == "checkpoint":
        closing, go = pause(monkeypatch, col, "checkpoint")
    else:
        closing, go = pause(monkeypatch, col._storage, "close")
    probe = col._wlock = LockProbe(col._wlock)
    t1, out1 = run(c1.close)
    assert closing.wait(WAIT)
    t2, out2 = run(c2.drop_database, "app", missing_ok=False)
    while not probe.waiting.is_set() and t2.is_alive():
        time.sleep(0.001)
    go.set()
    assert joined(t1, out1) == {"value": None}
    assert joined(t2, out2) == {"value": None}
    assert not (tmp_path / "app").exists()


# ---------------------------------------------------------------- bug 7: one job store per process
def test_clients_of_one_process_share_the_job_store(tmp_path):
    """A second client (a notebook cell run again) uses the job store the first one opened,
    sees its jobs, keeps it when the first one closes, and can drop the database."""
    c1, c2 = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    db1 = c1.create_database("app")
    job = db1._jobs().submit("demo", "c", lambda ctx: {"rows": 3})
    db2 = c2.get_database("app")
    assert db2.wait_refresh_job(job, timeout=WAIT).state == "COMPLETED"
    assert [j.job_id for j in db2.list_refresh_jobs()] == [job]
    jobs = db2._jobs()
    c1.close()
    assert not jobs.closed and [j.job_id for j in db2.list_refresh_jobs()] == [job]
    c3 = vecstore.connect(tmp_path)
    db3 = c3.get_database("app")
    assert [j.job_id for j in db3.list_refresh_jobs()] == [job]
    # replaced, then dropped: c3's use of the job store ends with it
    snap = c2.snapshot_database("app", tmp_path / "app.snap")
    c2.restore_database("app", snap, overwrite=True)
    assert jobs.closed and db3.list_refresh_jobs() == []
    c2.drop_database("app")
    assert not (tmp_path / "app").exists()
    c3.close()
    assert not [key for key in client_mod._JOBS if key[0].startswith(str(tmp_path.resolve()))]


# ---------------------------------------------------------------- names made or dropped meanwhile
def test_create_database_beside_a_drop_in_another_process(tmp_path, monkeypatch):
    c = vecstore.connect(tmp_path)
    c.create_database("app")
    real, dropped = pathlib.Path.touch, []

    def dropped_first(self, *args, **kwargs):  # another process's drop, between mkdir and touch
        if self.name == client_mod._DB_MARKER and not dropped:
            dropped.append(self)
            shutil.rmtree(self.parent)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "touch", dropped_first)
    assert c.create_database("app").show_collections() == [] and dropped
    assert c.list_databases() == ["app"]


def test_a_name_another_process_is_making_is_not_taken_for_foreign(tmp_path, monkeypatch):
    c = vecstore.connect(tmp_path)
    # a database made again while a collection drop's staging folder is still in it: no marker yet
    (tmp_path / "app" / ".vecstore-tmp-x").mkdir(parents=True)
    db = c.create_database("app")
    # a collection folder made by another process right after this one found the name free
    real, target = pathlib.Path.is_dir, db.path / "c"

    def made_meanwhile(self):
        found = real(self)
        if self == target and not found:
            target.mkdir()
            (target / "LOCK").touch()
        return found
    monkeypatch.setattr(pathlib.Path, "is_dir", made_meanwhile)
    assert db.create_collection("c", dim=2).dim == 2
    monkeypatch.undo()
    (tmp_path / "backup.snap").write_bytes(b"x")  # a file is still foreign
    with pytest.raises(AlreadyExistsError):
        c.create_database("backup.snap")


def test_a_read_only_client_creates_and_deletes_nothing(tmp_path):
    """Its drop_collection and drop_database deleted the data, and create_database made a
    folder: read-only meant only that it could not add rows."""
    writer = vecstore.connect(tmp_path)
    writer.create_database("app").require_collection("c", dim=2).add_item([1, 0], id=1)
    writer.close()
    reader = vecstore.connect(tmp_path, read_only=True)
    db = reader.get_database("app")
    for call in (lambda: reader.create_database("new"), lambda: db.drop_collection("c"),
                 lambda: reader.drop_database("app"), lambda: db.create_collection("x", dim=2),
                 lambda: db.require_collection("y", dim=2)):
        with pytest.raises(vecstore.ReadOnlyError):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]
    assert db.get_collection("c").shape == (1, 2)
    reader.close()


def test_two_threads_closing_one_collection_both_succeed(tmp_path, monkeypatch):
    """The second close waited for the first's checkpoint, then checkpointed a closed handle:
    ClosedError from a call documented as harmless twice."""
    col = vecstore.connect(tmp_path).create_database("app").require_collection("c", dim=2)
    col.add_item([1, 0], id=1)
    entered, release = threading.Event(), threading.Event()
    checkpoint = type(col).checkpoint

    def slow_checkpoint(self):
        entered.set()
        release.wait(5)
        checkpoint(self)
    monkeypatch.setattr(type(col), "checkpoint", slow_checkpoint)
    errors = []

    def close():
        try:
            col.close()
        except Exception as e:  # noqa: BLE001 - the test reports whatever escaped
            errors.append(e)
    first = threading.Thread(target=close)
    first.start()
    entered.wait(5)
    second = threading.Thread(target=close)
    second.start()
    time.sleep(0.1)      # the second close is now waiting for the collection's writer mutex
    release.set()
    first.join(5)
    second.join(5)
    assert errors == [] and col.closed
    assert vecstore.connect(tmp_path).get_database("app").get_collection("c").shape == (1, 2)


# ---------------------------------------------------------------- a restore beside another process's create
_CREATOR = textwrap.dedent("""
    import sys, vecstore
    root, what, name = sys.argv[1:4]
    c = vecstore.connect(root)
    if what == "database":
        c.create_database(name).require_collection("theirs", dim=3).add([[0, 0, 1]])
    else:
        c.get_database("app").create_collection(name, dim=3).add([[0, 0, 1]])
""")


@pytest.mark.parametrize("when", ["after the last check", "before the rename"])
@pytest.mark.parametrize("what", ["database", "collection"])
def test_a_restore_beside_a_create_in_another_process_is_already_exists(tmp_path, monkeypatch, what, when):
    """Another process makes the name a restore (overwrite=False) is about to take. The restore
    moved theirs aside and deleted it (acknowledged rows gone), or failed with a raw OSError
    (ENOTEMPTY) from its rename: AlreadyExistsError, theirs untouched, nothing left behind."""
    root = tmp_path / "data"
    c = vecstore.connect(root)
    db = c.create_database("app")
    db.require_collection("mine", dim=2).add([[1, 0]])
    snap = (c.snapshot_database("app", tmp_path / "app.snap") if what == "database"
            else db.get_collection("mine").snapshot_to(tmp_path / "mine.snap"))

    def other_process_creates():
        subprocess.run([sys.executable, "-c", _CREATOR, str(root), what, "new"], check=True, timeout=WAIT)
    made = []
    if when == "after the last check":  # the swap's own look at the name (the restore's first is before it)
        owner = c if what == "database" else db
        name = "database_exists" if what == "database" else "collection_exists"
        real, looks = getattr(owner, name), []

        def exists(n):
            found = real(n)
            looks.append(found)
            if len(looks) == 2:
                other_process_creates()
                made.append(n)
            return found
        monkeypatch.setattr(owner, name, exists)
    else:
        real_rename = os.rename

        def rename(src, dst):
            if pathlib.Path(src).name == "new" and pathlib.Path(dst).name == "new" and not made:
                other_process_creates()
                made.append(dst)
            return real_rename(src, dst)
        monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(AlreadyExistsError, match="'new'"):
        if what == "database":
            c.restore_database("new", snap)
        else:
            db.restore_collection("new", snap)
    monkeypatch.undo()
    assert made
    if what == "database":
        assert c.get_database("new").show_collections() == ["theirs"]
        assert c.get_database("new").get_collection("theirs").shape == (1, 3)
    else:
        assert db.get_collection("new").shape == (1, 3)
    assert not list(root.glob("**/.vecstore-tmp-*"))
    c.close()


def test_a_restore_beside_a_create_still_running_in_another_process(tmp_path):
    """The name's store is locked by the process making it (no data.mdb yet): without
    overwrite that is a name being taken (AlreadyExistsError), not a LockedError to retry."""
    db = vecstore.connect(tmp_path).create_database("app")
    db.require_collection("mine", dim=2).add([[1, 0]])
    snap = db.get_collection("mine").snapshot_to(tmp_path / "mine.snap")
    (db.path / "new").mkdir()
    fd = storage._take_writer_lock(db.path / "new" / "LOCK")  # what the creating process holds
    try:
        with pytest.raises(AlreadyExistsError, match="'new' is being made"):
            db.restore_collection("new", snap)
        assert sorted(p.name for p in (db.path / "new").iterdir()) == ["LOCK"]
    finally:
        os.close(fd)
    assert db.restore_collection("new", snap).shape == (1, 2)  # a leftover once nobody holds it


# ---------------------------------------------------------------- a database snapshot beside drops
@pytest.mark.parametrize("dropped", ["after the listing", "after its open", "during its read", "the database"])
def test_snapshot_database_beside_a_drop(tmp_path, monkeypatch, dropped):
    """Another client drops a collection of the database being snapshotted: the snapshot failed
    (NotFoundError, or ClosedError from the closed store). It now holds the collections still
    there when it reached them, whole; the database itself dropped is NotFoundError, no file."""
    c, other = vecstore.connect(tmp_path / "data"), vecstore.connect(tmp_path / "data")
    db = c.create_database("app")
    for i, name in enumerate(["a", "b", "c"]):
        db.require_collection(name, dim=2).add([[float(i), 1.0]] * (i + 1))
    odb = other.get_database("app")
    t = None
    if dropped == "after the listing":
        real = vecstore.Database.show_collections

        def listed(self):
            names = real(self)
            if self is db:
                odb.drop_collection("b")
            return names
        monkeypatch.setattr(vecstore.Database, "show_collections", listed)
    elif dropped in ("after its open", "the database"):
        real = portability._dump_collection

        def opened(col, w, progress):
            if col.name == "b":
                odb.drop_collection("b") if dropped == "after its open" else other.drop_database("app")
            return real(col, w, progress)
        monkeypatch.setattr(portability, "_dump_collection", opened)
    else:  # the drop waits for the read that began: b is in the snapshot, whole
        real_bar, reading, go = portability._bar, threading.Event(), threading.Event()

        def bar(progress, total, desc, unit):  # b's read transaction is open
            if desc == "snapshot b":
                reading.set()
                assert go.wait(WAIT)
            return real_bar(progress, total, desc, unit)
        monkeypatch.setattr(portability, "_bar", bar)

        def drop_b_meanwhile():
            assert reading.wait(WAIT)
            t2, out2 = run(odb.drop_collection, "b")
            t2.join(0.2)
            assert t2.is_alive()  # waiting for the read
            go.set()
            assert joined(t2, out2) == {"value": None}
        t, out = run(drop_b_meanwhile)
    target = tmp_path / "app.snap"
    if dropped == "the database":
        with pytest.raises(NotFoundError, match="'app'"):
            c.snapshot_database("app", target)
        assert not target.exists() and not list(tmp_path.glob(".app.snap*"))
        return
    c.snapshot_database("app", target)
    if t is not None:
        assert "error" not in joined(t, out), out
    monkeypatch.undo()
    restored = c.restore_database("copy", target)
    expect = {"a": 1, "c": 3} if dropped != "during its read" else {"a": 1, "b": 2, "c": 3}
    assert {n: restored.get_collection(n).shape[0] for n in restored.show_collections()} == expect
    c.close()
    other.close()


# ---------------------------------------------------------------- one handle, several clients
def open_handles(root: pathlib.Path) -> list[str]:
    return [key for key in client_mod._OPEN if key.startswith(str(root.resolve()) + os.sep)]


def test_closing_one_client_leaves_the_others_collections_open(tmp_path):
    """Clients of one process share a collection's handle: a.close() closed it under b."""
    a, b = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    ca = a.create_database("app").require_collection("c", dim=2)
    ca.add([[1, 0]], ids=[1])
    cb = b.get_database("app").get_collection("c")
    assert cb is ca
    a.close()
    cb.add([[0, 1]], ids=[2])
    assert list(cb.search([0, 1], k=1).ids) == [2] and cb.shape == (2, 2)
    assert cb.database.client is b and cb.database.show_collections() == ["c"]  # not a's, closed
    assert open_handles(tmp_path)
    b.close()
    assert cb.closed and open_handles(tmp_path) == []
    with vecstore.connect(tmp_path) as again:
        col = again.get_database("app").get_collection("c")
        assert sorted(col.search([1, 1], k=5).ids) == [1, 2]


def test_col_close_closes_the_handle_for_every_client(tmp_path):
    """An explicit close is the handle's: every client's view of it is closed, and each gets a
    fresh one from get_collection, with every acknowledged row."""
    a, b = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    ca = a.create_database("app").require_collection("c", dim=2)
    ca.add([[1, 0]], ids=[1])
    cb = b.get_database("app").get_collection("c")
    ca.close()
    assert cb.closed and open_handles(tmp_path) == []
    with pytest.raises(vecstore.ClosedError):
        cb.add([[0, 1]], ids=[2])
    fresh = b.get_database("app").get_collection("c")
    assert fresh is not cb and fresh.shape == (1, 2)
    assert a.get_database("app").get_collection("c") is fresh
    a.close()
    b.close()
    assert fresh.closed and open_handles(tmp_path) == []


@pytest.mark.parametrize("what", ["collection", "database"])
def test_a_drop_through_one_client_closes_the_handle_for_all(tmp_path, what):
    a, b = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    a.create_database("app").require_collection("c", dim=2).add([[1, 0]])
    db_b = b.get_database("app")
    cb = db_b.get_collection("c")
    if what == "collection":
        a.get_database("app").drop_collection("c")
    else:
        a.drop_database("app")
    with pytest.raises(vecstore.ClosedError):
        cb.search([1, 0], k=1)
    with pytest.raises(NotFoundError):
        db_b.get_collection("c")
    b.close()
    a.close()
    assert open_handles(tmp_path) == []


def test_an_open_beside_the_last_users_close_gets_a_live_handle(tmp_path, monkeypatch):
    """Client a, the collection's only user, is closing it (paused in its checkpoint, outside
    the process lock) when client b opens it: b got the handle being closed (ClosedError at
    its first call), or a second one on the same store. It waits, then opens it afresh."""
    a, b = vecstore.connect(tmp_path), vecstore.connect(tmp_path)
    col = a.create_database("app").require_collection("c", dim=2)
    col.add([[1, 0], [0, 1]])
    closing, go = pause(monkeypatch, col, "checkpoint")
    t1, out1 = run(a.close)
    assert closing.wait(WAIT)
    db_b = b.get_database("app")
    t2, out2 = run(db_b.get_collection, "c")
    t2.join(0.2)
    go.set()
    assert joined(t1, out1) == {"value": None}
    got = joined(t2, out2)["value"]
    assert col.closed and got is not col and not got.closed
    got.add([[1, 1]])
    assert got.shape == (3, 2) and open_handles(tmp_path) == [str((tmp_path / "app" / "c").resolve())]
    b.close()
    assert open_handles(tmp_path) == []


def test_clients_opened_and_closed_in_threads_share_handles_without_leaks(tmp_path):
    """Threads each connect, write, search and close, over and over, beside a long-lived
    client writing too: no call fails (ClosedError when another thread's client closed the
    shared handle), every row is there afterwards, and no handle is left open."""
    with vecstore.connect(tmp_path) as c:
        c.create_database("app").require_collection("c", dim=2)
    keeper = vecstore.connect(tmp_path)
    kept = keeper.get_database("app").get_collection("c")
    errors: list[Exception] = []
    n_threads, rounds = 4, 15

    def churn(t: int) -> None:
        for i in range(rounds):
            try:
                with vecstore.connect(tmp_path) as client:
                    col = client.get_database("app").get_collection("c")
                    col.add([[float(t), float(i)]], ids=[f"{t}-{i}"])
                    assert f"{t}-{i}" in col.search([float(t), float(i)], k=n_threads * rounds * 2).ids
                kept.add([[float(-t), float(i)]], ids=[f"kept-{t}-{i}"])
            except Exception as e:  # noqa: BLE001 - the test reports whatever escaped
                errors.append(e)
    threads = [threading.Thread(target=churn, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert not kept.closed
    keeper.close()
    assert open_handles(tmp_path) == []
    with vecstore.connect(tmp_path) as again:
        assert again.get_database("app").get_collection("c").shape == (2 * n_threads * rounds, 2)


def test_a_database_closed_while_its_open_waits_takes_no_share(tmp_path, monkeypatch):
    """get_collection passed its own check, then waited for the process lock while another
    thread closed its database: the open went on and gave the closed database a share that
    nobody would ever release (the store stayed open, its writer lock held, for good)."""
    c = vecstore.connect(tmp_path)
    c.create_database("app").require_collection("c", dim=2).close()
    db = c.get_database("app")
    probe = probe_open_lock(monkeypatch)
    with probe:
        t, out = run(db.get_collection, "c")
        assert probe.waiting.wait(WAIT)
        db.close()
    assert isinstance(joined(t, out).get("error"), vecstore.ClosedError), out
    c.close()
    assert open_handles(tmp_path) == []


def test_a_job_call_racing_the_close_of_its_database_leaves_no_job_manager(tmp_path, monkeypatch):
    """A job call that passed its open check while another thread closed the database made a
    JobManager owned by the closed database: never released, its job store stayed locked for
    other processes. Now ClosedError, as Database._open does for collections."""
    from vecstore import client as cm
    c = vecstore.connect(tmp_path)
    db = c.create_database("app")
    check = cm.Database._check_open

    def check_then_closed(self):  # the close lands right after the check
        check(self)
        if threading.current_thread().name == "caller":
            closer = threading.Thread(target=c.close)
            closer.start()
            closer.join()
    monkeypatch.setattr(cm.Database, "_check_open", check_then_closed)
    out: dict = {}

    def call():
        try:
            out["v"] = db.list_refresh_jobs()
        except vecstore.VecstoreError as e:
            out["v"] = e
    caller = threading.Thread(target=call, name="caller")
    caller.start()
    caller.join()
    assert isinstance(out["v"], vecstore.ClosedError), out
    assert not [k for k in cm._JOBS if str(tmp_path.resolve()) in k[0]]
