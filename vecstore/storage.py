"""All LMDB access: one environment per collection, its sub-databases and key encodings.

LMDB is the single source of truth of a collection (DESIGN §4). Everything else (the in-memory
matrix, hnswlib and IVF files, the tantivy index) is derived from what is stored here and
records the ``version`` it reflects.

Layout of one environment (named sub-databases):

=========  ===============================  ============================================
sub-db     key                              value
=========  ===============================  ============================================
``meta``   utf-8 name                       msgpack (config, ``version``, index records)
``rows``   label (u64 big-endian)           msgpack ``[id, fields, deleted, version]``
``vec``    label                            float32 bytes of the ``default`` vector
``ids``    encoded public id                label
``named``  field name, NUL, label           float32 bytes of a named vector
``sparse`` label                            msgpack ``[indices u32 bytes, values f32 bytes]``
``log``    version (u64 big-endian)         msgpack ``[op, [labels...]]``: what a commit touched
``jobs``   job id (utf-8)                   msgpack job record
=========  ===============================  ============================================

Labels are big-endian so that a cursor walks rows in insertion (storage) order.

The change log is trimmed (:meth:`Txn.trim_log`): it holds every commit after the version in
meta ``log_start`` (0, the whole history, when absent: stores from before trimming). A consumer
whose position is older than that cannot catch up from the log and takes its full path instead.

>>> import tempfile, pathlib
>>> s = Storage(pathlib.Path(tempfile.mkdtemp()))
>>> s.write(lambda t: t.put_meta("hello", {"a": 1}))
>>> with s.read() as t:
...     t.get_meta("hello")
{'a': 1}
>>> s.close()
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import struct
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import lmdb
import msgpack
import numpy as np

from .errors import (ClosedError, ConflictError, CorruptionError, LockedError, NotFoundError, ReadOnlyError,
                     StorageFullError, UnavailableError, VecstoreError, out_of_descriptors)

log = logging.getLogger(__name__)
T = TypeVar("T")

_U64 = struct.Struct(">Q")
_SUBDBS = ("meta", "rows", "vec", "ids", "named", "sparse", "log", "jobs", "blobs")
DEFAULT_MAP_SIZE = 1 << 30  # 1 GiB of address space to start; the file itself is sparse
# The store format (the collection config's "format", a snapshot's "store_format"); a version
# refuses a store whose format is above its own STORE_FORMAT. 2: a cosine field (default or
# named) keeps its vectors as written. Before, cosine stored them unit length, so a version of
# then would read raw ones as unit vectors: wrong scores, no error. Stores without a cosine
# field are written as 1 (what every version reads), so they can still be opened by older ones.
STORE_FORMAT = 2
RAW_COSINE_FORMAT = 2


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(raw: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as e:  # a damaged record, wherever it is read
        raise CorruptionError(f"a stored record does not decode ({e})") from None


def label_key(label: int) -> bytes:
    return _U64.pack(label)


def id_key(public_id: int | str) -> bytes:
    """Ints and strings never collide: a one-byte type tag comes first."""
    if isinstance(public_id, str):
        return b"s" + public_id.encode("utf-8")
    return b"i" + _U64.pack(public_id)


# Bytes of vectors joined at a time when loading. Small enough for malloc to reuse one heap
# block: 32 MB chunks each came fresh from mmap and paid page faults again (2.0 s vs 0.5 s at
# 1M x 128).
_LOAD_CHUNK_BYTES = 2 << 20


def _labels(keys: Iterator[bytes]) -> np.ndarray:
    """Big-endian u64 label keys, as one uint64 array."""
    return np.frombuffer(b"".join(keys), dtype=">u8").astype(np.uint64)


def _load_matrix(labels: np.ndarray, values: Iterator[bytes], dim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, matrix)`` from the vectors ``values`` of ``labels`` (one per label, in order),
    copied chunk by chunk into one preallocated matrix."""
    n, row = len(labels), 4 * dim
    matrix = np.empty((n, dim), dtype=np.float32)
    flat = matrix.reshape(-1).view(np.uint8)
    at = 0
    while chunk := b"".join(itertools.islice(values, max(1, _LOAD_CHUNK_BYTES // max(row, 1)))):
        if at + len(chunk) > n * row:
            break
        flat[at:at + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        at += len(chunk)
    if at != n * row or len(chunk):
        raise CorruptionError(f"{where}: {n} vectors of dim {dim} expected {n * row} bytes, found "
                              f"{at + len(chunk)} or more")
    return labels, matrix


class Txn:
    """A transaction over one collection environment, with typed accessors.

    Obtain one with :meth:`Storage.read` or inside :meth:`Storage.write`; never keep it after
    the ``with`` block or the write callback returns.
    """

    def __init__(self, env: lmdb.Environment, dbs: dict[str, Any], txn: lmdb.Transaction) -> None:
        self._env = env
        self._dbs = dbs
        self._txn = txn
        self.logged = 0  # labels appended to the log (Storage.logged_rows counts the committed ones)

    @property
    def id(self) -> int:
        """LMDB's id of this transaction (of the commit a read sees): see :meth:`Storage.stamp`."""
        return self._txn.id()

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        raw = self._txn.get(key.encode(), db=self._dbs["meta"])
        return default if raw is None else _unpack(raw)

    def put_meta(self, key: str, value: Any) -> None:
        self._txn.put(key.encode(), _pack(value), db=self._dbs["meta"])

    def delete_meta(self, key: str) -> None:
        self._txn.delete(key.encode(), db=self._dbs["meta"])

    def iter_meta(self, prefix: str) -> Iterator[tuple[str, Any]]:
        cur = self._txn.cursor(db=self._dbs["meta"])
        p = prefix.encode()
        if cur.set_range(p):
            for k, v in cur:
                if not k.startswith(p):
                    break
                yield k.decode(), _unpack(v)

    # -- rows -------------------------------------------------------------------------------
    def get_row(self, label: int) -> list | None:
        raw = self._txn.get(label_key(label), db=self._dbs["rows"])
        return None if raw is None else _unpack(raw)

    def put_row(self, label: int, public_id: int | str, fields: dict, deleted: bool, version: int) -> None:
        self._txn.put(label_key(label), _pack([public_id, fields, deleted, version]), db=self._dbs["rows"])

    def put_rows(self, labels: list[int], ids: list, fields: list[dict], deleted: bool, version: int,
                 blobs: list[bytes] | None) -> None:
        """Many rows at once (and their vectors and id entries when ``blobs`` is given): the
        bulk path of every write call, through ``putmulti`` and one reused msgpack packer."""
        keys = [_U64.pack(lb) for lb in labels]
        pack = msgpack.Packer(use_bin_type=True).pack
        self._txn.cursor(db=self._dbs["rows"]).putmulti(
            zip(keys, [pack([i, f, deleted, version]) for i, f in zip(ids, fields)]))
        if blobs is not None:
            self._txn.cursor(db=self._dbs["vec"]).putmulti(zip(keys, blobs))
            self._txn.cursor(db=self._dbs["ids"]).putmulti(zip(map(id_key, ids), keys))

    def delete_row(self, label: int) -> None:
        self._txn.delete(label_key(label), db=self._dbs["rows"])
        self._txn.delete(label_key(label), db=self._dbs["vec"])
        self._txn.delete(label_key(label), db=self._dbs["sparse"])

    def iter_rows(self) -> Iterator[tuple[int, list]]:
        """``(label, [id, fields, deleted, version])`` in storage order."""
        for k, v in self._txn.cursor(db=self._dbs["rows"]):
            yield _U64.unpack(k)[0], _unpack(v)

    def load_rows(self) -> tuple[np.ndarray, list[list]]:
        """Every row at once, for opening a collection: ``(labels uint64, [[id, fields, deleted,
        version], ...])`` in storage order. Keys and values are read in two C-level passes (no
        per-row generator or tuple: ~2x faster than :meth:`iter_rows` at 1M rows)."""
        labels = _labels(self._txn.cursor(db=self._dbs["rows"]).iternext(keys=True, values=False))
        rows = list(map(_unpack, self._txn.cursor(db=self._dbs["rows"]).iternext(keys=False, values=True)))
        if len(rows) != len(labels):
            raise CorruptionError(f"{self._env.path()}: {len(labels)} row keys but {len(rows)} rows")
        return labels, rows

    def count_rows(self) -> int:
        return self._txn.stat(self._dbs["rows"])["entries"]

    # -- default vectors ----------------------------------------------------------------------
    def put_vec(self, label: int, data: bytes) -> None:
        self._txn.put(label_key(label), data, db=self._dbs["vec"])

    def get_vec(self, label: int) -> bytes | None:
        return self._txn.get(label_key(label), db=self._dbs["vec"])

    def iter_vecs(self) -> Iterator[tuple[bytes, bytes]]:
        """``(label key, float32 bytes)`` in storage order."""
        return iter(self._txn.cursor(db=self._dbs["vec"]))

    def load_vecs(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Every default vector at once, for opening a collection: ``(labels uint64, matrix
        float32 (n, dim))`` in storage order. The values are copied chunk by chunk into one
        preallocated matrix, which the caller may keep (writable, no further copy): the
        mirror's single copy of the vectors, with no list of a million ``bytes`` on the way."""
        db = self._dbs["vec"]
        labels = _labels(self._txn.cursor(db=db).iternext(keys=True, values=False))
        return _load_matrix(labels, self._txn.cursor(db=db).iternext(keys=False, values=True), dim, self._env.path())

    # -- ids ----------------------------------------------------------------------------------
    def get_label(self, public_id: int | str) -> int | None:
        raw = self._txn.get(id_key(public_id), db=self._dbs["ids"])
        return None if raw is None else _U64.unpack(raw)[0]

    def put_label(self, public_id: int | str, label: int) -> None:
        self._txn.put(id_key(public_id), label_key(label), db=self._dbs["ids"])

    def delete_label(self, public_id: int | str) -> None:
        self._txn.delete(id_key(public_id), db=self._dbs["ids"])

    # -- named vectors ------------------------------------------------------------------------
    def put_named(self, field: str, label: int, data: bytes) -> None:
        self._txn.put(field.encode() + b"\0" + label_key(label), data, db=self._dbs["named"])

    def delete_named(self, field: str, label: int) -> None:
        self._txn.delete(field.encode() + b"\0" + label_key(label), db=self._dbs["named"])

    def iter_named(self, field: str) -> Iterator[tuple[int, bytes]]:
        prefix = field.encode() + b"\0"
        cur = self._txn.cursor(db=self._dbs["named"])
        if cur.set_range(prefix):
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                yield _U64.unpack(k[len(prefix):])[0], v

    def get_named(self, field: str, label: int) -> bytes | None:
        return self._txn.get(field.encode() + b"\0" + label_key(label), db=self._dbs["named"])

    def load_named(self, field: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`load_vecs` for the named vector field ``field``."""
        prefix = field.encode() + b"\0"
        keys: list[bytes] = []
        cur = self._txn.cursor(db=self._dbs["named"])
        if cur.set_range(prefix):
            for k in cur.iternext(keys=True, values=False):
                if not k.startswith(prefix):
                    break
                keys.append(k[len(prefix):])
        cur = self._txn.cursor(db=self._dbs["named"])
        cur.set_range(prefix)
        values = itertools.islice(cur.iternext(keys=False, values=True), len(keys))
        return _load_matrix(_labels(keys), values, dim, f"{self._env.path()} field {field!r}")

    def drop_named(self, field: str) -> None:
        labels = [label for label, _ in self.iter_named(field)]
        for label in labels:
            self.delete_named(field, label)

    # -- sparse vectors -----------------------------------------------------------------------
    def put_sparse(self, label: int, indices: bytes, values: bytes) -> None:
        self._txn.put(label_key(label), _pack([indices, values]), db=self._dbs["sparse"])

    def get_sparse(self, label: int) -> tuple[bytes, bytes] | None:
        raw = self._txn.get(label_key(label), db=self._dbs["sparse"])
        return None if raw is None else tuple(_unpack(raw))  # type: ignore[return-value]

    def iter_sparse(self) -> Iterator[tuple[int, bytes, bytes]]:
        for k, v in self._txn.cursor(db=self._dbs["sparse"]):
            idx, val = _unpack(v)
            yield _U64.unpack(k)[0], idx, val

    # -- change log ---------------------------------------------------------------------------
    def append_log(self, version: int, op: str, labels: list[int]) -> None:
        self._txn.put(_U64.pack(version), _pack([op, labels]), db=self._dbs["log"])
        self.logged += len(labels)

    def log_start(self) -> int:
        """The log holds every commit after this version: :meth:`iter_log` of an older
        ``after_version`` would miss commits (they were trimmed)."""
        return self.get_meta("log_start", 0)

    def trim_log(self, upto: int) -> int:
        """Delete the log's commits up to version ``upto`` and record that the log now starts
        there; returns how many records went."""
        if upto <= self.log_start():
            return 0
        cur = self._txn.cursor(db=self._dbs["log"])
        n = 0
        cur.first()
        while (key := cur.key()) and _U64.unpack(key)[0] <= upto:  # b"" past the last record
            cur.delete()  # and moves to the next record
            n += 1
        self.put_meta("log_start", upto)
        return n

    def touched_since(self, after_version: int, upto: int | None = None,
                      ops: Callable[[str], bool] | None = None) -> set[int] | None:
        """Labels the commits after ``after_version`` (up to ``upto``) touched, only those of
        commits whose op ``ops`` accepts if given; None when the log no longer reaches back
        that far (trimmed), so the caller takes its full path."""
        if self.log_start() > after_version:
            return None
        touched: set[int] = set()
        for version, op, labels in self.iter_log(after_version):
            if upto is not None and version > upto:
                break
            if ops is None or ops(op):
                touched.update(labels)
        return touched

    def iter_log(self, after_version: int) -> Iterator[tuple[int, str, list[int]]]:
        """Commits newer than ``after_version``, oldest first. Complete only when
        ``after_version >= log_start()``: callers check that in the same transaction
        (:meth:`touched_since` does)."""
        cur = self._txn.cursor(db=self._dbs["log"])
        if cur.set_range(_U64.pack(after_version + 1)):
            for k, v in cur:
                op, labels = _unpack(v)
                yield _U64.unpack(k)[0], op, labels

    # -- jobs ---------------------------------------------------------------------------------
    def put_job(self, job_id: str, record: dict) -> None:
        self._txn.put(job_id.encode(), _pack(record), db=self._dbs["jobs"])

    def get_job(self, job_id: str) -> dict | None:
        raw = self._txn.get(job_id.encode(), db=self._dbs["jobs"])
        return None if raw is None else _unpack(raw)

    def iter_jobs(self) -> Iterator[dict]:
        for _, v in self._txn.cursor(db=self._dbs["jobs"]):
            yield _unpack(v)

    # -- raw records (snapshots, portability.py) ----------------------------------------------
    def put_blob(self, key: str, data: bytes) -> None:
        self._txn.put(key.encode(), data, db=self._dbs["blobs"])

    def get_blob(self, key: str) -> bytes | None:
        if "blobs" not in self._dbs:  # a read-only open of a store written before blobs
            return None
        raw = self._txn.get(key.encode(), db=self._dbs["blobs"])
        return None if raw is None else bytes(raw)

    def delete_blob(self, key: str) -> bool:
        return self._txn.delete(key.encode(), db=self._dbs["blobs"])

    def iter_blob_keys(self) -> Iterator[str]:
        if "blobs" in self._dbs:
            for k in self._txn.cursor(db=self._dbs["blobs"]).iternext(keys=True, values=False):
                yield bytes(k).decode()

    def iter_raw(self, subdb: str) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)`` of one sub-database exactly as stored, in key order."""
        if subdb not in self._dbs:  # read-only open of an older store: that sub-db is empty
            return iter(())
        return iter(self._txn.cursor(db=self._dbs[subdb]))

    def count_raw(self, subdb: str) -> int:
        return self._txn.stat(self._dbs[subdb])["entries"] if subdb in self._dbs else 0

    def put_raw(self, subdb: str, key: bytes, value: bytes) -> None:
        """Store a record as given (a restore writing back what :meth:`iter_raw` read)."""
        self._txn.put(key, value, db=self._dbs[subdb])


class Storage:
    """One LMDB environment (a collection folder's ``data.mdb``).

    ``durability="safe"`` (default) fsyncs every commit: when a write call returns, its rows
    survive a power loss. ``durability="fast"`` skips the per-commit fsync (LMDB ``sync=False``;
    a crash of the *process* still loses nothing, an OS crash may lose the last commits);
    :meth:`sync` is then the barrier. A writer holds an exclusive ``flock`` on ``LOCK`` for as
    long as it is open, so a second writing process gets :class:`LockedError` instead of
    corrupting anything (LMDB itself would serialise the writers but not their in-memory
    mirrors).
    """

    def __init__(self, path: Path, *, read_only: bool = False, durability: str = "safe",
                 map_size: int | None = None, create: bool = True) -> None:
        """``create=False``: open an existing store only (NotFoundError when there is none, for
        instance dropped a moment ago), never make an empty one in its place."""
        self.path = Path(path)
        self.read_only = read_only
        self.durability = "fast" if durability == "fast" else "safe"
        self.logged_rows = 0  # labels this handle's committed writes appended to the change log
        self._lock_fd: int | None = None
        self._map_guard = _MapGuard()
        create = create and not read_only
        if not create and not (self.path / "data.mdb").exists():
            raise NotFoundError(f"no collection store at {self.path}")
        if not read_only:
            try:
                if create:  # never its parents: a database dropped meanwhile is not made again
                    self.path.mkdir(exist_ok=True)
                self._lock_fd = _take_writer_lock(self.path / "LOCK")
            except FileNotFoundError:  # dropped between the check above and the lock
                raise NotFoundError(f"no collection store at {self.path} (dropped meanwhile?)") from None
            except OSError as e:
                raise VecstoreError(f"{self.path}: cannot create the collection folder ({e.strerror or e})") from None
        size = map_size or DEFAULT_MAP_SIZE
        existed = (self.path / "data.mdb").exists()  # under the lock: no other writer makes it
        if existed:
            size = max(size, (self.path / "data.mdb").stat().st_size * 2)
        try:
            # writemap stays off: with it, a full disk kills the process with SIGBUS.
            self.env = lmdb.open(
                str(self.path), map_size=size, max_dbs=len(_SUBDBS) + 2, readonly=read_only,
                lock=True, sync=(durability != "fast"), metasync=(durability != "fast"),
                max_readers=1024, max_spare_txns=4, subdir=True, create=create)
        except lmdb.Error as e:
            if create and not existed:  # EMFILE once LMDB made its files: leave no half-made store
                self._remove_files()
            self._release_lock()
            if not self.path.is_dir():  # dropped since its lock was taken
                raise NotFoundError(f"no collection store at {self.path} (dropped meanwhile?)") from None
            raise _translate(e, "open") from e
        self.env.reader_check()  # clears slots left by killed readers
        try:
            if read_only:
                # A DBI opened inside a read txn dies with it; let py-lmdb open them itself.
                self._dbs = {}
                for name in _SUBDBS:
                    try:
                        self._dbs[name] = self.env.open_db(name.encode(), create=False)
                    except lmdb.NotFoundError:  # a sub-db newer than the store (blobs): empty
                        pass
                if "meta" not in self._dbs:  # the writer has not committed the store's first transaction
                    self.close()
                    raise NotFoundError(f"{self.path}: the collection is being created")
            else:
                with self.env.begin(write=True) as txn:
                    self._dbs = {name: self.env.open_db(name.encode(), txn=txn) for name in _SUBDBS}
        except lmdb.Error as e:
            self.close(remove=create and not existed)
            raise _translate(e, "open") from e

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """A read transaction: a consistent snapshot while the block runs (however long: a
        snapshot export holds one while writers go on)."""
        while True:
            with self._map_guard.read():
                if self.env is None:  # closed by another thread after this caller's own check
                    raise ClosedError(f"{self.path}: the store is closed")
                try:
                    txn = self.env.begin(write=False, buffers=False)
                except lmdb.MapResizedError:
                    txn = None
                if txn is not None:
                    with txn:
                        yield Txn(self.env, self._dbs, txn)
                    return
            self._adopt_map_size()

    def _adopt_map_size(self) -> None:
        # Another process (the writer) grew the file past this process's map: LMDB refuses new
        # transactions until the map is re-read, which, like a grow, waits for no read to be open.
        if self._map_guard.held_here():
            raise ConflictError(f"{self.path}: the store grew in another process while this thread "
                                "held a read; retry the call")
        with self._map_guard.exclusive():
            self.env.set_mapsize(0)

    def stamp(self) -> int:
        """LMDB's last committed transaction id, for any process's commit: a change check that
        opens no transaction."""
        return self.env.info()["last_txnid"]

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in one write transaction: all of it commits, or none of it.

        On ``MapFullError`` the transaction is aborted, the map is doubled and ``fn`` runs again,
        so ``fn`` must not have side effects outside the transaction. A full disk raises
        :class:`StorageFullError` with nothing committed.
        """
        if self.read_only:
            raise ReadOnlyError(f"collection store {self.path} is open read-only")
        while True:
            if self.env is None:
                raise ClosedError(f"{self.path}: the store is closed")
            try:
                with self.env.begin(write=True) as txn:
                    t = Txn(self.env, self._dbs, txn)
                    out = fn(t)
                self.logged_rows += t.logged  # committed
                return out
            except lmdb.MapFullError:
                self._grow()
            except lmdb.Error as e:
                raise _translate(e, "write") from e

    def _grow(self) -> None:
        # set_mapsize re-maps the file under every open read transaction of this process, so it
        # waits until no read is open; the write transaction that hit the limit has already
        # been aborted, and writes are serialised by the caller.
        with self._map_guard.exclusive():
            new = self.env.info()["map_size"] * 2
            log.info("growing LMDB map of %s to %d MiB", self.path, new >> 20)
            self.env.set_mapsize(new)

    def sync(self) -> None:
        """Flush to disk (the barrier of ``durability="fast"``)."""
        if self.env is None:
            raise ClosedError(f"{self.path}: the store is closed")
        if not self.read_only:
            try:
                self.env.sync(True)
            except lmdb.Error as e:
                raise _translate(e, "sync") from e

    def close(self, *, remove: bool = False) -> None:
        """``remove``: delete the store's LMDB files before the writer lock is released, so no
        other writer sees them meanwhile (a create that failed before committing anything)."""
        # Waits for the reads of other threads (a snapshot or an export of a collection being
        # dropped): closing the environment aborts their transactions under cursors that
        # py-lmdb runs without the GIL. Reads starting meanwhile find it closed (ClosedError).
        with self._map_guard.exclusive():
            env = getattr(self, "env", None)
            if env is not None:
                env.close()
                self.env = None  # type: ignore[assignment]
        if remove and self._lock_fd is not None:
            self._remove_files()
        self._release_lock()

    def _remove_files(self) -> None:
        # data.mdb is what makes a folder a collection; LOCK stays, as in a folder being created.
        for name in ("data.mdb", "lock.mdb"):
            with suppress(OSError):  # best effort, on a path that is raising already
                (self.path / name).unlink()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd drops the flock
            self._lock_fd = None

    @staticmethod
    def subdb_names() -> tuple[str, ...]:
        """The named sub-databases of every environment (what a snapshot holds)."""
        return _SUBDBS



class _MapGuard:
    """Reads shared (and re-entrant: a reader never waits for another reader); growing the map
    exclusive. Reader-preferring on purpose: a grow waits for reads to drain, and blocks new
    reads only while it re-maps, so a thread holding a read can always open another."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._growing = False
        self._local = threading.local()

    def held_here(self) -> bool:
        """Whether this thread is inside a read (an exclusive section would wait for itself)."""
        return getattr(self._local, "depth", 0) > 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._growing:
                self._cond.wait()
            self._readers += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._readers or self._growing:
                self._cond.wait()
            self._growing = True
        try:
            yield
        finally:
            with self._cond:
                self._growing = False
                self._cond.notify_all()


def _take_writer_lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # its folder is gone (dropped): the caller says what that means
        raise
    except OSError as e:  # a folder this process may not write (permissions, read-only mount)
        if out_of_descriptors(e):
            raise UnavailableError(f"{path.parent}: out of file descriptors; retry later") from None
        raise VecstoreError(f"{path.parent}: cannot open for writing ({e.strerror or e}); "
                            "open it read-only (vecstore.connect(..., read_only=True))") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LockedError(
            f"{path.parent} is open for writing by {holder}; open it read-only "
            f"(vecstore.connect(..., read_only=True)) or serve it with python -m vecstore.server") from None
    if not same_file(fd, path):  # its folder was moved aside (dropped) while this waited for it
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "dropped while being locked", str(path))
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    return fd


def same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a lock taken on a file that a drop
    has moved aside, or a restore replaced, locks nothing that matters)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _translate(e: lmdb.Error, what: str) -> VecstoreError:
    """LMDB errors as vecstore errors: a full disk is StorageFullError; corruption says so."""
    text = str(e)
    # ENOSPC (disk full), EDQUOT (quota), EFBIG (file size limit) and EIO (what a failed write
    # often surfaces as) all mean "no room"; LMDB has already rolled the transaction back.
    if isinstance(e, lmdb.DiskError) or any(m in text for m in ("No space left", "Input/output error",
                                                                 "File too large", "Disk quota")) \
            or getattr(e, "errno", None) in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
        return StorageFullError(f"{what}: the disk is full or failing ({text}); nothing committed was lost")
    if out_of_descriptors(e):
        return UnavailableError(f"{what}: out of file descriptors ({text}); retry later")
    if isinstance(e, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                      lmdb.VersionMismatchError)):
        return CorruptionError(f"{what}: the LMDB store is damaged or not an LMDB file ({text})")
    return VecstoreError(f"{what}: LMDB error: {text}")
