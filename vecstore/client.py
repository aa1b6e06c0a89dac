"""Client (a root folder) and Database (a sub-folder of collections).

>>> import tempfile
>>> client = connect(tempfile.mkdtemp())
>>> db = client.create_database("app")
>>> client.list_databases()
['app']
>>> col = db.require_collection("items", dim=3)
>>> db.show_collections()
['items']
>>> client.close()
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from . import validation as v
from .collection import Collection
from .errors import (AlreadyExistsError, ClosedError, ConflictError, DimensionMismatchError, InvalidArgumentError,
                     NotFoundError, ReadOnlyError, UnavailableError, VecstoreError, out_of_descriptors)
from .indexes.base import parse_metric
from .jobs import JobManager, RefreshJob
from .external.refresh import KIND as EXTERNAL_KIND
from .external.refresh import META_STATE as EXTERNAL_STATE
from .external.refresh import DatabaseExternal
from .portability import _STAGING, ClientPortability, DatabasePortability, database_lock, drop_folder, sweep_staging
from .views import JOB_KIND as VIEW_KIND
from .views import META_STATE as VIEW_STATE
from .views import DatabaseViews

log = logging.getLogger(__name__)

_DB_MARKER = ".vecstore-database"
_DURABILITY = ("safe", "fast")

# One Collection object per folder per process, with the Database objects using it: LMDB must
# not be opened twice in one process (closing the second handle would drop the first one's
# locks), and notebooks re-create clients all the time. A Database's close() releases its share;
# the handle closes with its last user (an empty set: being closed, see _handle).
_OPEN: dict[str, tuple[Collection, set[Database]]] = {}
_OPEN_LOCK = threading.RLock()
# Stores show_collections_details is reading without opening (_peek, outside _OPEN_LOCK: it
# reads every row): an open of one of them waits for that read to end (_wait_for_peek).
_PEEKING: dict[str, threading.Event] = {}
# One job manager per job store (and mode) per process too, with the Database objects using it:
# a second one could not take the store's lock (a notebook re-creating its client would get
# LockedError), nor see the first one's jobs. A Database's close() stops it for its last user.
_JOBS: dict[tuple[str, bool], tuple[JobManager, set[Database]]] = {}
# Per refresh job kind: the target's sync-state meta record, and its key holding the id of the
# job that committed last (Database._commit_landed).
_JOB_MARKS = {EXTERNAL_KIND: (EXTERNAL_STATE, "jobId"), VIEW_KIND: (VIEW_STATE, "lastJobId")}


def connect(path: str | os.PathLike, *, api_key: str | None = None, read_only: bool = False,
            durability: str = "safe", timeout: float = 60.0) -> "Client":
    """Open a store: a folder (created if missing), or a server URL (``http://host:port``)
    for the same API over HTTP.

    ``durability="fast"`` skips the fsync of each commit (``commit()`` is then the barrier);
    ``read_only=True`` opens without taking the writer lock, for a second process. Both are
    options of a folder: for a URL, what a client may do is the server's to decide (its API
    key), and a collection's durability is that of the server's one handle of it (given to
    ``require_collection``), so ``read_only=True`` or ``durability="fast"`` with a URL is an
    InvalidArgumentError.

    >>> import tempfile
    >>> connect(tempfile.mkdtemp()).list_databases()
    []
    """
    text = os.fspath(path)
    read_only = v.check_bool(read_only, param="read_only")
    if durability not in _DURABILITY:
        raise InvalidArgumentError(f"durability: expected 'safe' or 'fast', got {durability!r}")
    if isinstance(text, str) and text.startswith(("http://", "https://")):
        # Taken and ignored, these gave a "read-only" remote client that wrote and dropped.
        if read_only:
            raise InvalidArgumentError("read_only: not supported for a server URL, got True; access over HTTP "
                                       "is controlled by the server (its API key)")
        if durability != "safe":
            raise InvalidArgumentError(f"durability: not supported for a server URL, got {durability!r}; "
                                       "pass it to require_collection (the server's handle of a collection "
                                       "is shared by all its clients)")
        from .remote import RemoteClient
        return RemoteClient(text, api_key=api_key, timeout=timeout)  # type: ignore[return-value]
    return Client(Path(text), read_only=read_only, durability=durability)


class Client(ClientPortability):
    """A root folder holding databases. Use :func:`vecstore.connect`."""

    def __init__(self, root: Path, *, read_only: bool = False, durability: str = "safe") -> None:
        self.root = Path(root)
        self.read_only = read_only
        self.durability = durability
        if not read_only:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InvalidArgumentError(f"path: {str(self.root)!r} is not a folder vecstore can use "
                                           f"({e.strerror or e})") from None
            sweep_staging(self.root)  # a restore_database killed midway
        elif not self.root.is_dir():
            raise NotFoundError(f"path: no vecstore folder at {self.root}")
        self._databases: dict[str, Database] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<vecstore.Client {str(self.root)!r}>"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("client is closed")

    def _check_writable(self) -> None:
        """A read-only client creates and deletes nothing (its drops deleted data)."""
        self._check_open()
        if self.read_only:
            raise ReadOnlyError("the client is read-only")

    def _db_path(self, name: str) -> Path:
        return self.root / v.check_name(name, what="database_name")

    def create_database(self, name: str, drop_if_exists: bool = False) -> "Database":
        """Create a database (or return the existing one, unless ``drop_if_exists``).

        >>> client.create_database("app")  # doctest: +SKIP
        <vecstore.Database 'app'>
        """
        self._check_writable()
        path = self._db_path(name)
        if v.check_bool(drop_if_exists, param="drop_if_exists") and path.exists():
            self.drop_database(name)
        try:
            while True:
                if _foreign(path, _DB_MARKER):
                    raise AlreadyExistsError(
                        f"database_name: {name!r} is taken by a file or folder that is not a database")
                try:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / _DB_MARKER).touch()
                    break
                except (FileNotFoundError, FileExistsError):  # dropped by another process meanwhile
                    continue
        except OSError as e:  # a root this process may not write
            raise VecstoreError(f"database_name: cannot create {name!r} in {str(self.root)!r} ({e.strerror or e})") from None
        return self.get_database(name)

    def get_database(self, name: str) -> "Database":
        """An existing database; NotFoundError otherwise."""
        self._check_open()
        path = self._db_path(name)
        if not (path / _DB_MARKER).exists():
            raise NotFoundError(f"database_name: no database {name!r}")
        db = self._databases.get(name)
        if db is None or db._closed:
            db = self._databases[name] = Database(self, name, path)
        return db

    def list_databases(self) -> list[str]:
        """Names of the databases, sorted."""
        self._check_open()
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / _DB_MARKER).exists())

    def database_exists(self, name: str) -> bool:
        """True when a database of that name exists.

        >>> client.database_exists("app")  # doctest: +SKIP
        True
        """
        self._check_open()
        return (self._db_path(name) / _DB_MARKER).exists()

    def drop_database(self, name: str, missing_ok: bool = True) -> None:
        """Delete a database and everything in it (open handles are closed first)."""
        self._check_writable()
        path = self._db_path(name)
        missing_ok = v.check_bool(missing_ok, param="missing_ok")
        db = self._databases.pop(name, None)
        if db is not None:
            db.close()  # outside the locks below: its running jobs may need _OPEN_LOCK to finish
        _stop_jobs(path)  # other clients' too: the drop locks the job store
        try:
            # Exclusive: no other process creates or opens a collection in it until it is gone.
            drop_folder(path, lambda: _close_under(path), database_lock(path / _DB_MARKER, exclusive=True))
        except NotFoundError:  # none (a name not a database's included), or dropped meanwhile
            if not missing_ok:
                raise NotFoundError(f"database_name: no database {name!r}") from None

    delete_database = drop_database

    def close(self) -> None:
        """Release every collection opened through this client: each one closes unless another
        client of this process still uses it (see :meth:`Database.close`). Idempotent."""
        with _OPEN_LOCK:  # no database of it takes a share after this (Database._open checks)
            self._closed = True
            dbs, self._databases = list(self._databases.values()), {}
        for db in dbs:
            db.close()


# What a collection folder holds before its data.mdb exists (a creation that failed midway, or
# running in another process): still vecstore's, so it can be dropped or created again.
_BEFORE_STORE = {"LOCK", "lock.mdb"}


def _foreign(path: Path, marker: str) -> bool:
    """``path`` is a file, or a folder holding files but no ``marker``: not something vecstore
    made (a backup written into the data folder, the user's own files). Such a name is never
    adopted as a database or collection, and never deleted by a drop."""
    try:  # one look: another process may be creating or dropping it, or writing its marker
        names = os.listdir(path)
    except FileNotFoundError:
        return path.is_symlink()  # free, unless a dangling link holds the name
    except NotADirectoryError:
        return True
    except OSError as e:
        if out_of_descriptors(e):
            raise UnavailableError(f"{path}: out of file descriptors; retry later") from None
        raise
    # a staging folder: another process's restore or drop of a collection in a database being
    # made again (its marker not written yet)
    return marker not in names and any(n not in _BEFORE_STORE and not n.startswith(_STAGING) for n in names)


def _check_durability(durability: Any) -> str | None:
    """``None`` (the client's) or ``"safe"`` / ``"fast"``; also the remote client's check."""
    if durability is None or (isinstance(durability, str) and durability in _DURABILITY):
        return durability
    raise InvalidArgumentError(f"durability: expected 'safe' or 'fast', got {durability!r}")


def _check_dim(dim: object) -> int:
    dim = v.check_positive_int(dim, param="dim", allow_none=False)
    if dim > v.MAX_DIM:
        raise InvalidArgumentError(f"dim: expected at most {v.MAX_DIM}, got {dim}")
    return dim


def _check_create_args(metric: object, description: object, durability: object) -> str:
    """The metric (parsed), description and durability (``None``: the client's) of a new collection."""
    if description is not None:
        v.check_str(description, param="description")
    _check_durability(durability)
    return parse_metric(metric)


def _close_under(path: Path) -> None:
    prefix = str(path.resolve()) + os.sep
    with _OPEN_LOCK:
        for key, (col, _) in list(_OPEN.items()):
            if key.startswith(prefix):
                _release(col)


def _handle(key: str) -> tuple[Collection, set[Database]] | None:
    """The open handle of the store at ``key`` and its users (caller holds ``_OPEN_LOCK``). A
    handle its last user is closing (outside the lock), or closed and not yet forgotten, is never
    handed out: its close is finished (or waited for) first, as the store may not be opened
    again while that handle still holds it."""
    entry = _OPEN.get(key)
    if entry is not None and (entry[0]._closed or not entry[1]):
        _release(entry[0])
        return None
    return entry


def _wait_for_peek(key: str) -> None:
    """Wait until no :func:`_peek` reads the store at ``key`` (caller holds ``_OPEN_LOCK``, so
    no peek starts meanwhile; a peek never needs that lock to end)."""
    peek = _PEEKING.get(key)
    if peek is not None:
        peek.wait()


def _peek(path: Path) -> tuple[tuple[int, int], str | None, str | None]:
    """``(shape, index mode, description)`` of a collection store, read in one transaction
    without loading it (the store is in ``_PEEKING``: no thread of this process opens it
    meanwhile). No stored live count exists: the live rows are counted, a scan of every row."""
    from .storage import Storage
    storage = Storage(path, read_only=True, create=False)
    try:
        with storage.read() as t:
            cfg = t.get_meta("config") or {}
            index = t.get_meta("index:default")
            live = sum(1 for _, row in t.iter_rows() if not row[2])
    finally:
        storage.close()
    mode = index.get("mode") if isinstance(index, dict) else None
    return (live, int(cfg.get("dim", 0))), mode, cfg.get("description")


def _configured(path: Path) -> bool:
    """Whether the store at ``path`` committed its config. One that did not was left by a
    create killed before its first commit (a failed one removes its files): a create may take it
    over, under the store's lock, which the creator would still hold if it were alive."""
    from .storage import Storage
    try:
        storage = Storage(path, read_only=True, create=False)
    except NotFoundError:  # gone, or no meta sub-db yet
        return False
    try:
        with storage.read() as t:
            return t.get_meta("config") is not None
    finally:
        storage.close()


def _stop_jobs(path: Path) -> None:
    """Stop the job manager of the database at ``path`` whoever uses it (it is being dropped or
    replaced); outside ``_OPEN_LOCK``, which its running jobs may need to finish."""
    with _OPEN_LOCK:
        jobs = [_JOBS.pop(key)[0] for key in list(_JOBS) if key[0] == str((path / ".jobs").resolve())]
    for jm in jobs:
        jm.close()


def _release(col: Collection, *, discard: bool = False) -> None:
    """Close a handle before its folder is locked and dropped or replaced (``discard``: write
    nothing, the store is being deleted). A close that another thread began (its client's
    ``close()``) is waited for: until it ends, the store's lock is still held."""
    with col._wlock:
        if not col._closed:
            (col._discard if discard else col.close)()


class Database(DatabasePortability, DatabaseExternal, DatabaseViews):
    """A folder of collections. Obtain one from :meth:`Client.create_database` or
    :meth:`Client.get_database`."""

    def __init__(self, client: Client, name: str, path: Path) -> None:
        self.client = client
        self.name = name
        self.path = path
        self._collections: dict[str, Collection] = {}
        self._closed = False
        self._job_manager: JobManager | None = None
        if not client.read_only and path.is_dir():
            sweep_staging(path)  # a restore_collection / import_collection killed midway

    def __repr__(self) -> str:
        return f"<vecstore.Database {self.name!r}>"

    # -- jobs (refreshes of external collections and materialized views) ----------------------
    @property
    def closed(self) -> bool:
        """True once :meth:`close` released the database's collections and jobs."""
        return self._closed

    def _jobs_key(self) -> tuple[str, bool]:
        return str((self.path / ".jobs").resolve()), self.client.read_only

    def _jobs(self) -> JobManager:
        with _OPEN_LOCK:
            if self._closed or self.client._closed:  # closed by another thread since the caller's
                raise ClosedError(f"database {self.name!r} is closed")  # check: it would never release
            if self._job_manager is None or self._job_manager.closed:
                key = self._jobs_key()
                jm, users = _JOBS.get(key) or (None, set())
                if jm is None or jm.closed:
                    with self._shared_lock():
                        jm = JobManager(self.path / ".jobs", read_only=self.client.read_only,
                                        landed=self._commit_landed)
                    users = set()
                    _JOBS[key] = (jm, users)
                users.add(self)
                self._job_manager = jm
            return self._job_manager

    def _commit_landed(self, job: RefreshJob) -> bool:
        """Whether ``job``, left unfinished by a dead process, had committed: a refresh writes
        its job id into the target's sync state in the same transaction as its rows, so that id
        there means the result is in; only derived work (index, compaction, text index) may be
        missing, and the next open or refresh catches it up. Called under ``_OPEN_LOCK`` when
        the job store is recovered: the target is read through this process's handle if it has
        one (one LMDB handle per folder), else straight from its store, without loading it."""
        mark = _JOB_MARKS.get(job.kind)
        path = self.path / job.collection_name
        if mark is None or not (path / "data.mdb").exists():
            return False
        entry = _handle(str(path.resolve()))
        _wait_for_peek(str(path.resolve()))
        if entry is not None:
            state = entry[0]._get_meta(mark[0])
        else:
            from .storage import Storage
            storage = Storage(path, read_only=True, create=False)
            try:
                with storage.read() as t:
                    state = t.get_meta(mark[0])
            finally:
                storage.close()
        return isinstance(state, dict) and state.get(mark[1]) == job.job_id

    def _check_not_refreshing(self, name: str) -> None:
        """A collection whose refresh job runs in this process is not dropped or replaced under
        it (the job would write through a closed handle): ConflictError, as for a second refresh."""
        jm = (_JOBS.get(self._jobs_key()) or (None,))[0]
        job = None if jm is None or jm.closed else jm.active_job(name)
        if job is not None:
            raise ConflictError(f"collection_name: a refresh of {name!r} is running (job {job}); "
                                "wait for it or cancel it first")

    def describe_refresh_job(self, job_id: int) -> RefreshJob:
        """The record of a refresh job: state, progress 0-100, times in ms, reason when failed.

        >>> db.describe_refresh_job(job_id).state  # doctest: +SKIP
        'COMPLETED'
        """
        self._check_open()
        return self._jobs().describe(job_id)

    def list_refresh_jobs(self, collection_name: str | None = None) -> list[RefreshJob]:
        """Refresh jobs of one collection or view, or of all of them, oldest first."""
        self._check_open()
        if collection_name is not None:
            v.check_name(collection_name, what="collection_name")
        return self._jobs().list(collection_name)

    def wait_refresh_job(self, job_id: int, timeout: float | None = None, *,
                         raise_on_failure: bool = False) -> RefreshJob:
        """Block until a job ends; ``TimeoutError_`` after ``timeout`` seconds."""
        self._check_open()
        return self._jobs().wait(job_id, timeout, raise_on_failure=raise_on_failure)

    def cancel_refresh_job(self, job_id: int) -> RefreshJob:
        """Stop a pending or running job; what it did is never committed."""
        self._check_open()
        return self._jobs().cancel(job_id)

    def _col_path(self, name: str) -> Path:
        return self.path / v.check_name(name, what="collection_name")

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"database {self.name!r} is closed")
        self.client._check_open()
        if not (self.path / _DB_MARKER).exists():  # dropped, by another client or process
            raise NotFoundError(f"database_name: no database {self.name!r} (dropped)")

    def _shared_lock(self) -> Any:
        """:func:`database_lock`, shared: held (under ``_OPEN_LOCK``) while a store in the
        database is created or opened, so that no drop moves the database away meanwhile. A
        read-only client creates nothing and a drop does not wait for readers: no lock."""
        return nullcontext() if self.client.read_only else database_lock(self.path / _DB_MARKER, exclusive=False)

    def _open(self, name: str, create: dict | None, durability: str | None = None) -> Collection:
        path = self._col_path(name)
        key = str(path.resolve())
        with _OPEN_LOCK:
            if self._closed or self.client._closed:  # closed by another thread since the caller's
                raise ClosedError(f"database {self.name!r} is closed")  # check: it would never release
            entry = _handle(key)
            if entry is not None:
                col, users = entry
                if create is not None:
                    raise AlreadyExistsError(f"collection_name: collection {name!r} already exists")
                if col._read_only != self.client.read_only:  # one LMDB handle per folder and process
                    mode = "read-only" if col._read_only else "for writing"
                    raise ConflictError(
                        f"collection_name: {name!r} is open {mode} by another client of this process; "
                        "use that client, or close it first")
                if durability is not None and durability != col._storage.durability:  # the same one handle
                    raise ConflictError(
                        f"durability: {name!r} is open with durability {col._storage.durability!r} by another "
                        f"client of this process, got {durability!r}; use that client, or close it first")
                users.add(self)
                self._collections[name] = col
                return col
            _wait_for_peek(key)
            with self._shared_lock():
                if create is not None:  # checked here, where no other thread or process creates it
                    if (path / "data.mdb").exists() and _configured(path):
                        raise AlreadyExistsError(f"collection_name: collection {name!r} already exists")
                    if _foreign(path, "data.mdb"):
                        raise AlreadyExistsError(
                            f"collection_name: {name!r} is taken by a file or folder that is not a collection")
                col = Collection(self, name, path, create=create, read_only=self.client.read_only,
                                 durability=durability or (self.client.durability if create is None else None))
            _OPEN[key] = (col, {self})
            self._collections[name] = col
            return col

    def _forget(self, col: Collection) -> None:
        """``col`` was closed (by its last user, by ``col.close()``, by a drop): no Database of
        this process holds it any more, and the next open of its folder opens it afresh."""
        with _OPEN_LOCK:
            key = str(col.path.resolve())
            entry = _OPEN.get(key)
            users = _OPEN.pop(key)[1] if entry is not None and entry[0] is col else set()
            for db in (self, *users):
                if db._collections.get(col.name) is col:
                    del db._collections[col.name]

    def collection_exists(self, name: str) -> bool:
        """True when a collection of that name exists."""
        self._check_open()
        return (self._col_path(name) / "data.mdb").exists()

    is_collection_exists = collection_exists

    def require_collection(self, name: str, dim: int | None = None, metric: str = "ip",
                           description: str | None = None, drop_if_exists: bool = False,
                           durability: str | None = None) -> Collection:
        """Open a collection, creating it if it does not exist.

        ``metric`` is ``"ip"`` (default), ``"l2"`` or ``"cosine"`` (scored on the vectors'
        directions; they are stored and read back as written, and a zero vector is refused). A new collection without ``dim`` takes the dimension of its first vectors
        (``dim`` reads 0 until then; see :meth:`create_collection`). Opening an existing
        collection needs no arguments; a ``dim`` that disagrees with the stored one is an
        error, and a ``dim`` given for an existing collection that has no dim yet fixes it.
        ``durability`` (``"safe"`` or ``"fast"``, default the client's) is that of the handle: a
        process has one per collection, so asking for the other one while it is open is a
        ConflictError (the server shares its handle among its clients likewise).

        >>> col = db.require_collection("items", dim=4, description="demo")  # doctest: +SKIP
        """
        self._check_open()
        # every argument before anything is dropped or opened: a bad metric after the drop lost
        # the collection
        self._col_path(name)
        if dim is not None:
            dim = _check_dim(dim)
        drop = v.check_bool(drop_if_exists, param="drop_if_exists")
        # metric=None opens an existing collection as it is (creating one refuses it)
        _check_create_args(metric if metric is not None or drop else "ip", description, durability)
        if drop:
            self.drop_collection(name)
        if not self.collection_exists(name):
            try:
                return self.create_collection(name, dim, metric=metric, description=description,
                                              durability=durability)
            except AlreadyExistsError:  # created meanwhile by another thread: open it as it is
                if not self.collection_exists(name):  # a name taken by something not a collection
                    raise
        col = self._open(name, None, durability)
        if dim is not None and dim != col.dim:
            if col.dim:
                raise DimensionMismatchError(f"dim: collection {name!r} has dimension {col.dim}, got {dim}")
            col._set_dim(dim)
        return col

    def create_collection(self, name: str, dim: int | None = None, metric: str = "ip",
                          description: str | None = None, durability: str | None = None) -> Collection:
        """Create a new collection; AlreadyExistsError if the name is taken.

        Without ``dim`` the dimension is not known yet: ``dim`` reads 0, a search finds nothing,
        only a FLAT index can be built, and the first write that brings vectors fixes the dim
        (in the same transaction as its rows; all its vectors must have one dimension).

        >>> db.create_collection("items", dim=4, metric="l2")  # doctest: +SKIP
        <Collection app/items dim=4 0 rows>
        >>> db.create_collection("later").dim  # doctest: +SKIP
        0
        """
        return self._create(name, dim, metric=metric, description=description, durability=durability)

    def _create(self, name: str, dim: int | None, *, metric: str = "ip", description: str | None = None,
                durability: str | None = None, kind: str = "collection", meta: dict | None = None) -> Collection:
        """Create a collection of ``kind`` (``collection``, ``external``, ``view``), storing the
        extra ``meta`` keys (e.g. an external source and spec) in its first transaction."""
        self._check_open()
        self.client._check_writable()
        self._col_path(name)  # the name is checked before the arguments
        dim = 0 if dim is None else _check_dim(dim)  # 0: not known until the first vectors
        metric = _check_create_args(metric, description, durability)
        durability = durability or self.client.durability
        create = {"dim": dim, "metric": metric, "description": description,
                  "chunk_size": 100_000, "durability": durability, "name": name, "kind": kind,
                  "meta": meta or {}}
        return self._open(name, create, durability)

    def get_collection(self, name: str) -> Collection:
        """An existing collection; NotFoundError otherwise."""
        self._check_open()
        if not self.collection_exists(name):
            raise NotFoundError(f"collection_name: no collection {name!r} in database {self.name!r}")
        return self._open(name, None)

    def show_collections(self) -> list[str]:
        """Collection names, sorted."""
        self._check_open()
        try:
            return sorted(p.name for p in self.path.iterdir()
                          if not p.name.startswith(".") and (p / "data.mdb").exists())
        except FileNotFoundError:  # dropped since the check
            raise NotFoundError(f"database_name: no database {self.name!r} (dropped)") from None

    list_collections = show_collections

    def show_collections_details(self) -> dict[str, dict]:
        """Per collection: name, shape, dim, index mode (None when no index was built, as
        :meth:`Collection.index_mode` and ``/index_mode`` say), description. A collection this process
        has not opened is read from its store and left closed: opening each one (its vectors,
        maybe an index rebuild) just to list it kept every collection in memory. Its live rows
        are counted, a scan of them all (no count is stored); meanwhile only an open of that
        collection in this process waits."""
        out = {}
        for name in self.show_collections():
            path = self._col_path(name)
            key = str(path.resolve())
            while True:
                with _OPEN_LOCK:
                    entry = _handle(key)
                    if entry is not None:
                        col = entry[0]
                        shape, mode, desc = col.shape, col.index_mode(), col.get_collection_config().description
                        break
                    busy = _PEEKING.get(key)  # another thread's listing reads it: wait, then look again
                    if busy is None:
                        _PEEKING[key] = done = threading.Event()
                if busy is not None:
                    busy.wait()
                    continue
                # Outside _OPEN_LOCK (the scan of the rows takes long; every open and close of
                # the process would wait for it): an open of this store waits instead.
                try:
                    shape, mode, desc = _peek(path)
                except NotFoundError:  # dropped since it was listed
                    shape = None
                finally:
                    del _PEEKING[key]
                    done.set()
                break
            if shape is not None:
                out[name] = {"name": name, "shape": list(shape), "dim": shape[1],
                             "index_mode": mode, "description": desc}
        return out

    def drop_collection(self, name: str, missing_ok: bool = True) -> None:
        """Delete a collection (its open handle is closed first)."""
        path = self._col_path(name)
        missing_ok = v.check_bool(missing_ok, param="missing_ok")

        def close_open() -> None:  # under the locks: a drop running beside this one may go first
            if not path.exists() or _foreign(path, "data.mdb"):
                raise NotFoundError(f"collection_name: no collection {name!r}")
            self._check_not_refreshing(name)
            col, _ = _OPEN.get(str(path.resolve()), (None, None))
            if col is not None:
                _release(col, discard=True)
        self.client._check_writable()
        try:
            self._check_open()
            drop_folder(path, close_open, self._shared_lock())
        except NotFoundError:  # the collection, or its whole database, is not there
            if not missing_ok:
                raise NotFoundError(f"collection_name: no collection {name!r}") from None

    def close(self) -> None:
        """Stop its jobs and release its collections, each unless another client of this
        process still uses it. Idempotent.

        Collections are shared: a folder has one handle per process, handed to every client that
        opens it. Closing a database (or its client) releases only its share; the handle closes
        (index files written, the store synced) when its last user releases it, or at once on
        ``col.close()``, which closes it for every client of the process, as a drop does. Every
        write is committed when its call returns; with ``durability="fast"`` the sync to disk
        waits for that last close, or ``col.commit()``."""
        with _OPEN_LOCK:
            jm, self._job_manager = self._job_manager, None
            key = self._jobs_key()
            shared, users = _JOBS.get(key, (None, set()))
            if jm is not None and jm is shared:
                users.discard(self)
                if users:
                    jm = None  # another client of this process still uses it
                else:
                    del _JOBS[key]
        if jm is not None:
            jm.close()  # outside _OPEN_LOCK: its running jobs may need it to finish
        with _OPEN_LOCK:
            self._closed = True  # takes no share after this (_open checks)
            cols, self._collections = list(self._collections.values()), {}
            last = [col for col in cols if self._let_go(col)]
        first: Exception | None = None
        for col in last:  # outside _OPEN_LOCK: an open or a drop meanwhile finishes it (_handle)
            try:
                col.close()
            except Exception as e:  # noqa: BLE001 - still closed (close() discards it whatever happens): raised below
                first = first or e
        if first is not None:
            raise first

    def _let_go(self, col: Collection) -> bool:
        """Release this database's share of ``col`` (under ``_OPEN_LOCK``); True when it was the
        last one, so the caller closes it."""
        entry = _OPEN.get(str(col.path.resolve()))
        if entry is None or entry[0] is not col:  # closed and forgotten meanwhile
            return False
        users = entry[1]
        users.discard(self)
        if users and col.database is self:  # its back-reference stays a database that is open
            col.database = next(iter(users))
        return not users
