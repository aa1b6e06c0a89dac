"""Snapshots, restores, exports and imports of collections and databases.

Two formats, for two jobs:

**Snapshot** (``col.snapshot_to(p)``, ``client.snapshot_database(name, p)``): one file, private
to vecstore, that restores *exactly* what was stored: rows, soft-deleted rows, labels, named
and sparse vectors, blobs, config, index modes, the commit counter. It is written from **one LMDB read
transaction** per collection, so it is a consistent point in time even while writers run. It
holds the LMDB records (not the LMDB file, and never the derived hnswlib/IVF/tantivy files):
restoring writes them into a fresh store and rebuilds every index from the rows, so a snapshot
from someone else can never feed a crafted binary to LMDB, hnswlib or tantivy. The change log
is left out (its member is empty): a restore needs none. Layout::

    header   8 bytes b"VECSNAP\\n", u32 LE container version (1)
    members  back to back; each is records: u32 LE key length, u32 LE value length, key, value
    manifest JSON (sorted keys): {"format": "vecstore-snapshot", "format_version": 1,
             "kind": "collection" | "database", "database_name", "collection_name", "dim",
             "metric", "counts", "collections": [{"name", "dim", "metric", "store_format",
             "version", "counts" (records per sub-database), "index_modes", "subdbs" (all
             but "blobs" when the collection has none)}],
             "members": [{"name": "<collection>/<sub-database>", "offset", "size", "entries",
             "sha256"}]}
    footer   u64 LE manifest offset, u64 LE manifest length,
             32 bytes sha256 of every byte before the footer, 8 bytes b"VECSEND\\n"

A restore checks the magic, the version, the end marker and the whole-file sha256 *before*
it creates anything, then checks each member's sha256 again as it reads it.

**Export** (``col.export_to(p)``): a directory any program can read (LynseDB §9.1 where the
keys agree)::

    export_manifest.json   export_type "vecstore-collection-export", export_format,
                           export_version 1, format/format_version, collection_name, dimension,
                           metric, count, vector_dtype "float32", byte_order, metadata_file,
                           vectors_file, index_mode, index_params, description, chunk_size,
                           counts, vector_fields [...], files {name: {"bytes", "sha256"}},
                           manifest_sha256 (of the manifest without this key, as compact
                           JSON with sorted keys)
    metadata.jsonl         one line per live row, in storage order:
                           {"id": ..., "field": {...}, "sparse": {"indices", "values"}?}
    vectors.npy            (count, dim) float32, row i = line i of metadata.jsonl
    vectors.<f>.npy        named field f: (n_f, dim_f) float32, only rows that have one ...
    vectors.<f>.rows.npy   ... and their line numbers in metadata.jsonl (int64, ascending)
    blobs.jsonl            only when the collection has blobs (manifest "blobs_file"): one
                           line per blob in key order, {"base64": ..., "key": ...}

Every file is deterministic (fixed key order: the manifest's sorted, a row's fields as
written; fixed separators, no timestamps), so exporting an
import of an export gives the same bytes. Soft-deleted rows are not exported. LynseDB's own
export (``vectors.f32`` + ``metadata.jsonl``) imports too. An import checks the manifest's
checksum and every file's; a manifest without one (an older vecstore's) must still agree with
itself (``counts``), with what is imported, and with the directory (every file listed is read,
the named fields are the ``vectors.<f>.npy`` files there, ``blobs.jsonl`` is there only with
``blobs_file``).

Restores and imports build the new collection (or database) completely under a staging folder
next to the target, then swap it in with renames; a failure leaves the target as it was.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import struct
import tempfile
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator

from . import validation as v
from .errors import (
    AlreadyExistsError,
    BadBackupError,
    ClosedError,
    ForbiddenPathError,
    InvalidArgumentError,
    LockedError,
    NotFoundError,
    ReadOnlyError,
    StorageFullError,
    UnavailableError,
    UnsupportedFormatError,
    VecstoreError,
    out_of_descriptors,
)
from .exports import (
    _CHUNK,
    _IO,
    _bar,
    _Export,
    _import_rows,
    _json_bytes,
    _write_export,
)
from .fileio import fsync_path
from .storage import STORE_FORMAT, Storage, _take_writer_lock, same_file

if TYPE_CHECKING:
    from .client import Client, Database
    from .collection import Collection

SNAPSHOT_FORMAT = "vecstore-snapshot"
SNAPSHOT_VERSION = 1

_MAGIC, _END = b"VECSNAP\n", b"VECSEND\n"
_HEAD = struct.Struct("<8sI")
_FOOT = struct.Struct("<QQ32s8s")
_REC = struct.Struct("<II")
log = logging.getLogger("vecstore.portability")

_STAGING = ".vecstore-tmp-"
_STAGING_LOCK = ".in-use"
_STAGING_TARGET = ".target"  # the name of the folder a swap moved aside (see _move_aside)
_BATCH_BYTES = 16 << 20      # raw records per restore transaction


# =========================================================================== paths ==========
def resolve_confined(path: str, roots: list[Path]) -> Path:
    """Resolve a path a remote caller gave (the server's snapshot/export paths) and refuse it
    unless it lies strictly inside one of ``roots``: no ``..`` component, no NUL byte, no
    absolute path elsewhere, no symlink (anywhere along the path) that leads outside. A
    relative path is taken relative to the first root. Returns the resolved path.

    The check is made now; a symlink planted inside a root afterwards is the server's own
    folder, which only the server writes.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> resolve_confined("snaps/a.snap", [root]) == root.resolve() / "snaps" / "a.snap"
    True
    >>> resolve_confined("../etc/passwd", [root])
    Traceback (most recent call last):
    ...
    vecstore.errors.ForbiddenPathError: path: '..' is not allowed, got '../etc/passwd'
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise ForbiddenPathError(f"path: expected a string, got {type(path).__name__}")
    if "\x00" in path:
        raise ForbiddenPathError("path: contains a NUL byte")
    if not path.strip():
        raise ForbiddenPathError("path: expected a non-empty path")
    if ".." in re.split(r"[\\/]+", path):
        raise ForbiddenPathError(f"path: '..' is not allowed, got {path!r}")
    if not roots:
        raise ForbiddenPathError("path: no folder is allowed for server-side paths")
    real_roots = [os.path.realpath(os.fspath(r)) for r in roots]
    candidate = path if os.path.isabs(path) else os.path.join(real_roots[0], path)
    resolved = os.path.realpath(candidate)
    for root in real_roots:
        if resolved != root and os.path.commonpath([root, resolved]) == root:
            return Path(resolved)
    raise ForbiddenPathError(f"path: {path!r} is outside the folders allowed for server-side paths")


def _as_path(path: Any, param: str) -> Path:
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path.strip():
        raise InvalidArgumentError(f"{param}: expected a path, got {path!r}")
    if "\x00" in path:
        raise InvalidArgumentError(f"{param}: contains a NUL byte")
    try:
        os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate: no file can have this name
        raise InvalidArgumentError(f"{param}: expected a path the file system can name, got {path!r}") from None
    return Path(path)


# What the file system says about a path the caller chose (too long a name, a parent that is a
# file, no permission): a bad argument, not a bug. A full disk is StorageFullError.
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.ELOOP, errno.EACCES, errno.EPERM, errno.EROFS, errno.EINVAL}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextmanager
def _path_errors(param: str, path: Any) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno in _FULL_ERRNOS:
            raise StorageFullError(f"{param}: no room to write {path}: {e.strerror}") from None
        if e.errno in _PATH_ERRNOS:
            why = " (a folder on its way is a file)" if e.errno in (errno.EEXIST, errno.ENOTDIR) else ""
            raise InvalidArgumentError(f"{param}: cannot use {str(path)!r}: {e.strerror}{why}") from None
        raise


def store_folder(path: str | os.PathLike, below: str | os.PathLike | None = None) -> Path | None:
    """The database or collection folder ``path`` is in or is: the nearest folder on its way
    (symlinks followed; only those strictly below ``below``, if given) that holds a database
    marker or a store. None when there is none.

    A backup has no place there: a collection's ``indexes`` or ``text`` in the way of its own
    files broke its index builds or was deleted by its next text search, a ``data.mdb`` made a
    folder of a database look like a collection, and a drop deletes whatever is inside."""
    from .client import _DB_MARKER
    real = Path(os.path.realpath(path))
    stop = Path(os.path.realpath(below)) if below is not None else None
    for folder in (real, *real.parents):
        if stop is not None and (folder == stop or not folder.is_relative_to(stop)):
            break
        if os.path.exists(folder / _DB_MARKER) or os.path.exists(folder / "data.mdb"):  # an OSError: no
            return folder
    return None


def _new_target(path: Any, param: str, what: str) -> Path:
    target = _as_path(path, param)
    with _path_errors(param, path):
        folder = store_folder(target)
        if folder is not None:
            raise InvalidArgumentError(f"{param}: {str(path)!r} is inside the database or collection folder "
                                       f"{str(folder)!r}, which holds vecstore's own files: write {what}s elsewhere")
        if target.exists() or target.is_symlink():
            raise AlreadyExistsError(f"{what} target already exists: {path}")
        target.parent.mkdir(parents=True, exist_ok=True)
    return target


@contextmanager
def _atomic_file(target: Path, what: str) -> Iterator[BinaryIO]:
    """Write under a temporary name in the target's folder, fsync, then link it into place
    (``link`` refuses an existing target, where ``rename`` would replace it)."""
    with _path_errors(f"{what}_path", target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with _path_errors(f"{what}_path", target), os.fdopen(fd, "wb", buffering=_IO) as fp:
            yield fp
            fp.flush()
            os.fsync(fp.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise AlreadyExistsError(f"{what} target already exists: {target}") from None
        except OSError:  # a filesystem without hard links
            if target.exists():
                raise AlreadyExistsError(f"{what} target already exists: {target}") from None
            os.rename(tmp, target)
        fsync_path(target.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def _staging(parent: Path) -> Iterator[Path]:
    """A private folder next to the target: same filesystem (renames are atomic), and hidden
    from ``show_collections``/``list_databases`` (no store or marker at its top level). It is
    ``flock``-ed while in use, so :func:`sweep_staging` can tell a crash's leftover from the
    staging folder of a restore running in another process."""
    try:
        path = Path(tempfile.mkdtemp(prefix=_STAGING, dir=parent))
        fd = os.open(path / _STAGING_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    except FileNotFoundError:
        raise NotFoundError(f"{parent}: no such folder (dropped meanwhile?)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _put_back(staging: Path, parent: Path) -> None:
    """A swap killed between its two renames left the old target in ``staging`` and nothing in
    its place: rename it back (see :func:`_move_aside`)."""
    try:
        name = (staging / _STAGING_TARGET).read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return
    target = parent / name
    if name and "/" not in name and (staging / "old").exists() and not (target.exists() or target.is_symlink()):
        os.rename(staging / "old", target)
        fsync_path(parent)
        log.warning("put %s back: the restore replacing it was interrupted", target)


def sweep_staging(parent: Path) -> list[Path]:
    """Delete the staging folders under ``parent`` that no process holds: the leftovers of a
    restore or import killed midway (their size is the data being restored). A folder without
    its lock file yet is left alone for a minute (it may be being created). Returns the removed
    folders.

    >>> sweep_staging(Path(tempfile.mkdtemp()))
    []
    """
    removed = []
    try:
        candidates = list(parent.glob(_STAGING + "*"))
    except FileNotFoundError:  # the folder was dropped meanwhile
        return removed
    for path in candidates:
        try:
            fd = os.open(path / _STAGING_LOCK, os.O_RDWR)
        except FileNotFoundError:
            try:
                if time.time() - path.stat().st_mtime > 60:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except FileNotFoundError:
                pass
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a restore in progress
            os.close(fd)
            continue
        try:
            _put_back(path, parent)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d stale staging folder(s) under %s", len(removed), parent)
    return removed






def _writable(client: "Client") -> None:
    if client.read_only:
        raise ReadOnlyError("the client is read-only")


# =========================================================================== snapshot =======
class _SnapshotWriter:
    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.hash = hashlib.sha256()
        self.pos = 0
        self.members: list[dict] = []
        self._write(_HEAD.pack(_MAGIC, SNAPSHOT_VERSION))

    def _write(self, data: bytes) -> None:
        self.fp.write(data)
        self.hash.update(data)
        self.pos += len(data)

    def member(self, name: str, records: Iterable[tuple[bytes, bytes]], bar: Any) -> int:
        start, mh, n = self.pos, hashlib.sha256(), 0
        buf: list[bytes] = []
        size = 0
        for k, val in records:
            buf += (_REC.pack(len(k), len(val)), k, val)
            size += 8 + len(k) + len(val)
            n += 1
            if size >= _IO:
                data = b"".join(buf)
                mh.update(data)
                self._write(data)
                bar.update(len(buf) // 3)
                buf, size = [], 0
        if buf:
            data = b"".join(buf)
            mh.update(data)
            self._write(data)
            bar.update(len(buf) // 3)
        self.members.append({"name": name, "offset": start, "size": self.pos - start,
                             "entries": n, "sha256": mh.hexdigest()})
        return n

    def finish(self, manifest: dict) -> None:
        body = _json_bytes({**manifest, "format": SNAPSHOT_FORMAT, "format_version": SNAPSHOT_VERSION,
                            "members": self.members})
        offset = self.pos
        self._write(body)
        self.fp.write(_FOOT.pack(offset, len(body), self.hash.digest(), _END))


def _dump_collection(col: "Collection", w: _SnapshotWriter, progress: bool) -> dict:
    """Every record of the collection's store, from one read transaction."""
    with col._storage.read() as t:
        cfg = t.get_meta("config")
        # The change log stays out (an empty member): a restore rebuilds every index from the
        # rows and starts a log of its own, and a view of the restored collection (another
        # identity) rebuilds too. It grew with every row ever written, not with the data.
        counts = {s: 0 if s == "log" else t.count_raw(s) for s in Storage.subdb_names()}
        # Blobs, a member added later, only when there are some: a vecstore from before blobs
        # refuses a member it does not know, and restores a snapshot without it as it should.
        subdbs = [s for s in counts if s != "blobs" or counts[s]]
        counts = {s: counts[s] for s in subdbs}
        bar = _bar(progress, sum(counts.values()), f"snapshot {col.name}", "records")
        try:
            for s in subdbs:
                w.member(f"{col.name}/{s}", iter(()) if s == "log" else t.iter_raw(s), bar)
        finally:
            bar.close()
        index_modes = {k[len("index:"):]: rec.get("mode") for k, rec in t.iter_meta("index:")}
        version = t.get_meta("version", 0)
    return {"name": col.name, "dim": cfg["dim"], "metric": cfg["metric"],
            "store_format": cfg.get("format", 1), "version": version, "counts": counts,
            "index_modes": index_modes, "subdbs": list(subdbs)}


class _SnapshotReader:
    """Opens a snapshot and verifies it whole before anything reads its records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with _path_errors("snapshot_path", path):
                # O_NONBLOCK: opening a FIFO for reading blocks until a writer comes, forever
                # if none does; the file type is checked on the open descriptor (no race).
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotFoundError(f"snapshot path does not exist: {path}") from None
        except OSError as e:
            if e.errno != errno.ENXIO:  # a socket, or a device that is not there
                raise
            raise BadBackupError(f"snapshot_path: {path} is not a regular file, not a vecstore snapshot file") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise BadBackupError(f"snapshot_path: {path} is {what}, not a vecstore snapshot file")
        os.set_blocking(fd, True)
        self.fp = os.fdopen(fd, "rb", buffering=_IO)
        try:
            self.manifest = self._verify()
        except BaseException:
            self.fp.close()
            raise

    def __enter__(self) -> "_SnapshotReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fp.close()

    def _bad(self, why: str) -> BadBackupError:
        return BadBackupError(f"{self.path}: {why}")

    def _verify(self) -> dict:
        fp, p = self.fp, self.path
        size = os.fstat(fp.fileno()).st_size
        head = fp.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:8] != _MAGIC:
            raise self._bad("not a vecstore snapshot (no VECSNAP header)")
        version = _HEAD.unpack(head)[1]
        if version != SNAPSHOT_VERSION:
            raise UnsupportedFormatError(
                f"{p}: snapshot container version {version}; this vecstore reads version {SNAPSHOT_VERSION}")
        if size < _HEAD.size + _FOOT.size:
            raise self._bad("truncated: the snapshot was not completely written")
        fp.seek(size - _FOOT.size)
        offset, length, digest, end = _FOOT.unpack(fp.read(_FOOT.size))
        if end != _END:
            raise self._bad("truncated or damaged: no end marker (the snapshot was not completely written)")
        if offset < _HEAD.size or offset + length != size - _FOOT.size:
            raise self._bad("damaged: the footer does not match the file size")
        fp.seek(0)
        h, left = hashlib.sha256(), size - _FOOT.size
        while left:
            chunk = fp.read(min(_IO, left))
            if not chunk:
                raise self._bad("truncated while reading")
            h.update(chunk)
            left -= len(chunk)
        if h.digest() != digest:
            raise self._bad("checksum mismatch: the snapshot file is damaged")
        fp.seek(offset)
        try:
            manifest = json.loads(fp.read(length))
        except ValueError as e:
            raise self._bad(f"unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != SNAPSHOT_FORMAT:
            raise self._bad("not a vecstore snapshot manifest")
        fv = manifest.get("format_version")
        if fv != SNAPSHOT_VERSION:
            raise UnsupportedFormatError(f"{p}: snapshot format_version {fv!r}; this vecstore reads {SNAPSHOT_VERSION}")
        self.members: dict[str, dict] = {}
        pos = _HEAD.size
        for m in manifest.get("members") or []:
            ok = (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("size"), int)
                  and m.get("offset") == pos and isinstance(m.get("entries"), int)
                  and isinstance(m.get("sha256"), str) and m["name"] not in self.members and m["size"] >= 0)
            if not ok:
                raise self._bad(f"bad member entry in the manifest: {str(m)[:120]}")
            self.members[m["name"]] = m
            pos += m["size"]
        if pos != offset:
            raise self._bad("the members do not fill the file")
        cols = manifest.get("collections")
        if manifest.get("kind") not in ("collection", "database") or not isinstance(cols, list):
            raise self._bad("manifest has no kind or collections")
        for c in cols:
            if not isinstance(c, dict) or not isinstance(c.get("subdbs"), list) or not isinstance(c.get("counts"), dict):
                raise self._bad(f"bad collection entry in the manifest: {str(c)[:120]}")
            try:
                v.check_name(c.get("name"), what="collection_name")
            except InvalidArgumentError as e:
                raise self._bad(str(e)) from None
            if c.get("store_format", 1) > STORE_FORMAT:
                raise UnsupportedFormatError(f"{p}: store format {c['store_format']} is newer than this vecstore")
            for s in c["subdbs"]:
                if s not in Storage.subdb_names() or f"{c['name']}/{s}" not in self.members:
                    raise self._bad(f"unknown or missing member {c['name']}/{s}")
        return manifest

    def records(self, name: str) -> Iterator[tuple[bytes, bytes]]:
        """The records of one member, re-checking its sha256 as they are read."""
        m = self.members[name]
        fp = self.fp
        fp.seek(m["offset"])
        left, h, n = m["size"], hashlib.sha256(), 0
        while left:
            head = fp.read(8)
            if len(head) < 8 or left < 8:
                raise self._bad(f"member {name} ends inside a record")
            kl, vl = _REC.unpack(head)
            if 8 + kl + vl > left:
                raise self._bad(f"member {name}: a record runs past the member")
            key, val = fp.read(kl), fp.read(vl)
            h.update(head)
            h.update(key)
            h.update(val)
            left -= 8 + kl + vl
            n += 1
            yield key, val
        if h.hexdigest() != m["sha256"] or n != m["entries"]:
            raise self._bad(f"member {name} changed while it was read (checksum mismatch)")


def _restore_store(r: _SnapshotReader, entry: dict, dest: Path, name: str) -> None:
    """Write the snapshot's records into a new store at ``dest``; drop what must be rebuilt
    (index file names, the text index watermark)."""
    size = os.fstat(r.fp.fileno()).st_size
    st = Storage(dest, durability="fast", map_size=max(1 << 30, 4 * size))
    try:
        for s in entry["subdbs"]:
            if s == "log":  # snapshots written before the log was left out carry it: not needed
                continue
            batch: list[tuple[bytes, bytes]] = []
            nbytes = 0
            for k, val in r.records(f"{entry['name']}/{s}"):
                batch.append((k, val))
                nbytes += len(k) + len(val)
                if nbytes >= _BATCH_BYTES or len(batch) >= _CHUNK:
                    _put_raw(st, s, batch)
                    batch, nbytes = [], 0
            if batch:
                _put_raw(st, s, batch)

        def fix(t) -> None:
            cfg = t.get_meta("config")
            if not isinstance(cfg, dict):
                raise BadBackupError(f"{r.path}: collection {entry['name']!r} has no config")
            t.put_meta("config", {**cfg, "name": name})
            for key, rec in list(t.iter_meta("index:")):
                if not isinstance(rec, dict):
                    raise BadBackupError(f"{r.path}: bad index record {key!r}")
                # Never trust index files named by a snapshot: the open rebuilds from the rows.
                t.put_meta(key, {k: x for k, x in rec.items() if k != "files"})
            if t.get_meta("index_dropped") is not None:  # names files of the original store
                t.delete_meta("index_dropped")
            if t.get_meta("text") is not None:
                t.delete_meta("text")
            # no log was restored: it starts at the snapshot's version, which nothing predates
            # (every index is rebuilt, and the store is a new file to readers and views)
            version = t.get_meta("version", 0)
            if type(version) is int:  # anything else fails the open's checks (BadBackupError)
                t.put_meta("log_start", version)
                t.put_meta("log_mark", version)
        st.write(fix)
        st.sync()
    except (VecstoreError, OSError):
        raise
    except Exception as e:  # msgpack or type errors from a crafted store
        raise BadBackupError(f"{r.path}: collection {entry['name']!r} does not restore ({e})") from e
    finally:
        st.close()


def _put_raw(st: Storage, subdb: str, batch: list[tuple[bytes, bytes]]) -> None:
    def tx(t) -> None:
        for k, val in batch:
            t.put_raw(subdb, k, val)
    try:
        st.write(tx)
    except (StorageFullError, LockedError):
        raise
    except VecstoreError as e:  # LMDB refused a key (empty, longer than 511 bytes)
        raise BadBackupError(f"bad record in sub-database {subdb}: {e}") from e


def _open_restored(db: "Database", name: str, dest: Path, entry: dict, source: Path) -> None:
    """Open the restored store once (the same checks as any open, and the index rebuild), check
    the row count against the manifest, then close it, which writes the rebuilt index files."""
    from .collection import Collection
    try:
        col = Collection(db, name, dest, create=None, durability=db.client.durability)
    except (UnsupportedFormatError, BadBackupError, StorageFullError, LockedError, NotFoundError):
        raise  # NotFoundError: the staging folder was dropped with its database, not the backup's fault
    except Exception as e:  # CorruptionError included: the records came from the backup
        raise BadBackupError(f"{source}: collection {entry['name']!r} in it does not load ({e})") from e
    try:
        for i in col._ids:  # the store trusts its own ids; a snapshot's are checked once, here
            if not (type(i) is int and 0 <= i <= v.MAX_INT_ID or type(i) is str and i):
                raise BadBackupError(f"{source}: collection {entry['name']!r} in it has a bad id {str(i)[:80]!r}")
        if col.stats().n_vectors != entry["counts"].get("rows"):
            raise BadBackupError(f"{source}: collection {entry['name']!r} has "
                                  f"{col.stats().n_vectors} rows, the manifest says {entry['counts'].get('rows')}")
        col.close()
    except BaseException:
        col._discard()
        raise


def _swap_in(new: Path, final: Path, staging: Path, *, exists: Callable[[], bool], overwrite: bool, what: str,
             close_old: Callable[[], None], marker: str, lock: AbstractContextManager | None = None) -> None:
    """Rename ``new`` to ``final``; an existing ``final`` (only with ``overwrite``) is closed,
    locked against other processes, moved into ``staging`` and deleted with it. A ``final``
    vecstore did not make (no ``marker`` in it: the user's files, a backup written into the data
    folder) is never moved or deleted, whatever ``overwrite`` says. ``lock`` is held with
    ``_OPEN_LOCK`` for the renames (not the deletion)."""
    from .client import _OPEN_LOCK, _foreign
    # The files are fsynced by their writers; the folders naming them must be too before the
    # rename publishes them, or a power loss could leave the new collection's folders empty.
    for folder, _, _ in os.walk(new):
        fsync_path(Path(folder))
    with _OPEN_LOCK, lock or nullcontext():
        if _foreign(final, marker):
            raise AlreadyExistsError(f"{what} is taken by a file or folder vecstore did not make")
        if not overwrite and exists():
            raise AlreadyExistsError(f"{what} already exists")
        fds: list[int] = []
        old = staging / "old"
        swapped = False
        try:
            if final.exists() or final.is_symlink():
                close_old()
                try:
                    for lock_file in [final / "LOCK", *final.glob("*/LOCK")]:
                        fds.append(_take_writer_lock(lock_file))
                except LockedError:
                    if overwrite:
                        raise
                    raise AlreadyExistsError(f"{what} is being made by another process") from None
                # Without overwrite this must be a leftover of a creation that died midway, but
                # another process may have made it since the check above (its creates do not
                # take this lock): then it is theirs, never moved aside and deleted.
                if not overwrite and exists():
                    raise AlreadyExistsError(f"{what} already exists (made meanwhile by another process)")
                swapped = _exchange(new, final)  # then the old one is at ``new``, deleted with ``staging``
                if not swapped:
                    _move_aside(final, staging)
            try:
                if not swapped:
                    os.rename(new, final)
            except BaseException as e:
                if old.exists():
                    os.rename(old, final)
                if isinstance(e, OSError) and e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    # made by another process since the last look: a folder does not rename over it
                    raise AlreadyExistsError(f"{what} already exists (made meanwhile by another process)") from None
                raise
            fsync_path(final.parent)
        finally:
            for fd in fds:
                os.close(fd)
    shutil.rmtree(staging, ignore_errors=True)


_RENAME_EXCHANGE = 2   # linux/fs.h
_AT_FDCWD = -100


def _exchange(new: Path, final: Path) -> bool:
    """Swap two existing folders in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so
    ``final`` is never missing: with two renames, another process could create ``final`` in
    between (``create_database``, ``create_collection`` of the same name); the second rename
    then failed, the old folder could not be put back, and it was deleted with the staging
    folder. False where the system or file system has no exchange (then two renames)."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(final), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.ENOENT):  # ENOENT: ``final`` was
        return False                                                      # dropped meanwhile
    raise OSError(err, os.strerror(err), str(final))


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


_LIBC: ctypes.CDLL | None = None


def _move_aside(final: Path, staging: Path) -> None:
    """Rename ``final`` to ``staging/old``, having first written its name into the staging folder
    (fsynced): if the process dies before ``final`` is there again (a restore's second rename),
    :func:`sweep_staging` moves it back instead of deleting it with the staging folder."""
    with open(staging / _STAGING_TARGET, "w", encoding="utf-8") as f:
        f.write(final.name)
        f.flush()
        os.fsync(f.fileno())
    os.rename(final, staging / "old")
    fsync_path(final.parent)


@contextmanager
def database_lock(marker: Path, *, exclusive: bool, missing_ok: bool = False) -> Iterator[None]:
    """An ``flock`` on a database's marker file: shared while a collection or job store of the
    database is created or opened, exclusive while the database is dropped or replaced. Otherwise another process could make a collection folder
    in a database whose stores a drop has already locked, and have its acknowledged rows
    deleted with it. Shared waits; exclusive does not (LockedError): a process opening a
    collection in the database is about to hold that collection's lock anyway.

    NotFoundError when there is no database (nothing locked with ``missing_ok``), including one
    dropped while this waited. Take it under ``client._OPEN_LOCK``: two ``flock`` of one process
    exclude each other, and only that lock orders this process's own threads."""
    fd: int | None = None
    while fd is None:
        try:
            fd = os.open(marker, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):  # the name is free, or a file
            if missing_ok:
                break
            raise NotFoundError(f"database_name: no database {marker.parent.name!r}") from None
        except OSError as e:
            if out_of_descriptors(e):
                raise UnavailableError(f"{marker.parent}: out of file descriptors; retry later") from None
            raise VecstoreError(f"{marker.parent}: cannot lock the database ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"database {marker.parent.name!r} is in use by another process (a collection of it "
                              "is being created or opened); retry") from None
        if not same_file(fd, marker):  # dropped or replaced while this waited: look again
            os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def drop_folder(path: Path, close_open: Callable[[], None], lock: AbstractContextManager) -> None:
    """Delete a database or collection folder: close this process's handles on it, lock each
    store in it against other processes (:class:`LockedError` while another process has one open
    for writing: its acknowledged writes would go to a deleted file), move it aside in one
    atomic rename and delete it. A crash leaves the whole folder or a staging leftover, never a
    half-deleted store.

    ``lock`` (:func:`database_lock`: exclusive for a database, shared for a collection) is held
    with ``_OPEN_LOCK`` until the rename; ``close_open`` runs under both, so it also checks that
    ``path`` is there to drop (NotFoundError otherwise, as when another process dropped it
    first)."""
    from .client import _OPEN_LOCK
    with _staging(path.parent) as staging, _OPEN_LOCK, lock:
        close_open()
        fds: list[int] = []
        try:
            for lock_file in [path / "LOCK", *path.glob("*/LOCK")]:
                if lock_file.exists():
                    fds.append(_take_writer_lock(lock_file))
            _move_aside(path, staging)
            (staging / _STAGING_TARGET).unlink()  # gone for good: nothing to put back
        except FileNotFoundError:
            raise NotFoundError(f"{path} was dropped meanwhile") from None
        finally:
            for fd in fds:
                os.close(fd)


def _discard_under(path: Path) -> None:
    from .client import _OPEN, _OPEN_LOCK, _release
    with _OPEN_LOCK:
        for key, (col, _) in list(_OPEN.items()):
            if key.startswith(str(path.resolve()) + os.sep):
                _release(col, discard=True)


# =========================================================================== mixins =========
class CollectionPortability:
    """Mixin of :class:`vecstore.Collection`: snapshots and exports."""

    def snapshot_to(self: "Collection", path: str | os.PathLike, *, progress: bool = False) -> str:
        """Write a snapshot of this collection to the file ``path`` (which must not exist) and
        return the path. It is one consistent point in time even while writers run, holds
        soft-deleted rows too, and restores with :meth:`Database.restore_collection`.

        >>> col.snapshot_to("backups/items.snap")  # doctest: +SKIP
        'backups/items.snap'
        """
        self._check_open()
        target = _new_target(path, "snapshot_path", "snapshot")
        with _atomic_file(target, "snapshot") as fp:
            w = _SnapshotWriter(fp)
            entry = _dump_collection(self, w, progress)
            w.finish({"kind": "collection", "database_name": self.database.name, "collection_name": self.name,
                      "dim": entry["dim"], "metric": entry["metric"], "counts": entry["counts"],
                      "collections": [entry]})
        return str(target)

    def export_to(self: "Collection", path: str | os.PathLike, *, progress: bool = False) -> str:
        """Export the live rows to the new directory ``path``: ``export_manifest.json``,
        ``metadata.jsonl`` (ids, fields, sparse vectors) and ``.npy`` vectors, readable without
        vecstore (see the module docstring). Soft-deleted rows are left out. Memory stays
        bounded: rows stream from one read transaction.

        >>> col.export_to("exports/items")  # doctest: +SKIP
        'exports/items'
        """
        self._check_open()
        target = _new_target(path, "export_path", "export")
        with _path_errors("export_path", path):
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            with _path_errors("export_path", path):
                _write_export(self, tmp, progress)
            fsync_path(tmp)
            if target.exists() or target.is_symlink():
                raise AlreadyExistsError(f"export target already exists: {path}")
            os.rename(tmp, target)
            fsync_path(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(target)


class DatabasePortability:
    """Mixin of :class:`vecstore.Database`: snapshot, restore, export and import of collections."""

    def snapshot_collection(self: "Database", name: str, path: str | os.PathLike) -> str:
        """:meth:`Collection.snapshot_to` by collection name.

        >>> db.snapshot_collection("items", "backups/items.snap")  # doctest: +SKIP
        'backups/items.snap'
        """
        return self.get_collection(name).snapshot_to(path)

    def export_collection(self: "Database", name: str, path: str | os.PathLike) -> str:
        """:meth:`Collection.export_to` by collection name.

        >>> db.export_collection("items", "exports/items")  # doctest: +SKIP
        'exports/items'
        """
        return self.get_collection(name).export_to(path)

    def _portability_target(self: "Database", name: str, overwrite: Any) -> tuple[Path, bool]:
        from .client import _foreign
        self._check_open()
        _writable(self.client)
        final = self._col_path(name)
        overwrite = v.check_bool(overwrite, param="overwrite")
        if not overwrite and self.collection_exists(name):
            raise AlreadyExistsError(f"collection_name: collection {name!r} already exists")
        if _foreign(final, "data.mdb"):
            raise AlreadyExistsError(f"collection_name: {name!r} is taken by a file or folder vecstore did not make")
        self._check_not_refreshing(name)
        return final, overwrite

    def _portability_publish(self: "Database", name: str, final: Path, staging: Path, overwrite: bool) -> "Collection":
        from .client import _OPEN, _OPEN_LOCK, _release

        def close_old() -> None:
            with _OPEN_LOCK:
                col, _ = _OPEN.get(str(final.resolve()), (None, None))
                if col is not None:
                    _release(col, discard=True)
        _swap_in(staging / "new", final, staging, exists=lambda: self.collection_exists(name), overwrite=overwrite,
                 what=f"collection_name: collection {name!r}", close_old=close_old, marker="data.mdb")
        # Not acknowledged before this open, which waits for a drop of the database in another
        # process (database_lock): a collection renamed into a database being dropped goes with it.
        return self.get_collection(name)

    def restore_collection(self: "Database", name: str, path: str | os.PathLike,
                           overwrite: bool = False) -> "Collection":
        """Restore a snapshot file as collection ``name`` (rows, deletions, named and sparse
        vectors, config, index modes; indexes are rebuilt from the rows). ``overwrite=False``
        refuses an existing collection (one another process makes meanwhile too:
        AlreadyExistsError); ``overwrite=True`` replaces it only once the restored one is
        complete (its open handle is closed). A damaged, truncated or foreign file raises
        BadBackupError (UnsupportedFormatError for another version) and changes nothing.

        >>> db.restore_collection("items", "backups/items.snap", overwrite=True)  # doctest: +SKIP
        <Collection app/items dim=4 1000 rows>
        """
        final, overwrite = self._portability_target(name, overwrite)
        src = _as_path(path, "snapshot_path")
        with _SnapshotReader(src) as r:
            if r.manifest["kind"] != "collection" or len(r.manifest["collections"]) != 1:
                raise InvalidArgumentError(f"snapshot_path: {path} is a database snapshot; use Client.restore_database")
            entry = r.manifest["collections"][0]
            with _staging(self.path) as staging:
                _restore_store(r, entry, staging / "new", name)
                _open_restored(self, name, staging / "new", entry, src)
                return self._portability_publish(name, final, staging, overwrite)

    def import_collection(self: "Database", name: str, path: str | os.PathLike, overwrite: bool = False,
                          *, progress: bool = False) -> "Collection":
        """Create collection ``name`` from an export directory (vecstore's, or LynseDB's
        ``vectors.f32`` + ``metadata.jsonl``): config, named vector fields, sparse vectors, and
        the exported index modes, built once at the end. Rows are added 50,000 at a time.
        ``overwrite`` works as in :meth:`restore_collection`.

        >>> db.import_collection("items2", "exports/items")  # doctest: +SKIP
        <Collection app/items2 dim=4 1000 rows>
        """
        from .collection import Collection
        final, overwrite = self._portability_target(name, overwrite)
        src = _as_path(path, "export_path")
        with _path_errors("export_path", path):
            if not src.exists():
                raise NotFoundError(f"export path does not exist: {path}")
            ex = _Export(src)
        with _staging(self.path) as staging:
            create = {"dim": ex.dim, "metric": ex.metric, "description": ex.description,
                      "chunk_size": ex.chunk_size, "durability": self.client.durability, "name": name,
                      "kind": "collection"}
            col = Collection(self, name, staging / "new", create=create)
            try:
                _import_rows(col, ex, progress)
                col.close()
            except BaseException:
                col._discard()
                raise
            return self._portability_publish(name, final, staging, overwrite)


class ClientPortability:
    """Mixin of :class:`vecstore.Client`: snapshot and restore of whole databases."""

    def snapshot_database(self: "Client", name: str, path: str | os.PathLike) -> str:
        """Write every collection of database ``name`` into one snapshot file. Each collection
        is a consistent point in time (one read transaction each; there is no transaction across
        collections). A collection dropped while the snapshot runs (by another thread or process)
        is left out: the snapshot holds the collections there when it reached them. The database
        itself dropped meanwhile is NotFoundError, and no file is written.

        >>> client.snapshot_database("app", "backups/app.snap")  # doctest: +SKIP
        'backups/app.snap'
        """
        db = self.get_database(name)
        target = _new_target(path, "snapshot_path", "snapshot")
        with _atomic_file(target, "snapshot") as fp:
            w = _SnapshotWriter(fp)
            entries = []
            for c in db.show_collections():
                try:
                    entries.append(_dump_collection(db.get_collection(c), w, False))
                except (NotFoundError, ClosedError):
                    # Dropped since it was listed, before its read began: nothing of it was
                    # written (a drop waits for a running read; a read after it starts with
                    # ClosedError). The database gone or closed is no snapshot of it.
                    if not self.database_exists(name):
                        raise NotFoundError(f"database_name: no database {name!r} (dropped during the snapshot)") from None
                    db._check_open()
                    if (db.path / c / "data.mdb").exists():
                        raise
            w.finish({"kind": "database", "database_name": name, "collections": entries})
        return str(target)

    def restore_database(self: "Client", name: str, path: str | os.PathLike,
                         overwrite: bool = False) -> "Database":
        """Restore a database snapshot as database ``name``, built completely next to it and
        renamed into place. ``overwrite`` works as in :meth:`Database.restore_collection`.

        >>> client.restore_database("app2", "backups/app.snap")  # doctest: +SKIP
        <vecstore.Database 'app2'>
        """
        from .client import _DB_MARKER, Database, _foreign, _stop_jobs
        self._check_open()
        _writable(self)
        final = self._db_path(name)
        overwrite = v.check_bool(overwrite, param="overwrite")
        if not overwrite and self.database_exists(name):
            raise AlreadyExistsError(f"database_name: database {name!r} already exists")
        if _foreign(final, _DB_MARKER):
            raise AlreadyExistsError(f"database_name: {name!r} is taken by a file or folder vecstore did not make")
        src = _as_path(path, "snapshot_path")
        with _SnapshotReader(src) as r:
            if r.manifest["kind"] != "database":
                raise InvalidArgumentError(f"snapshot_path: {path} is a collection snapshot; use Database.restore_collection")
            with _staging(self.root) as staging:
                new = staging / "new"
                new.mkdir()
                tmp_db = Database(self, name, new)
                for entry in r.manifest["collections"]:
                    _restore_store(r, entry, new / entry["name"], entry["name"])
                    _open_restored(tmp_db, entry["name"], new / entry["name"], entry, src)
                (new / _DB_MARKER).touch()
                fsync_path(new)

                old = self._databases.pop(name, None) if overwrite else None
                if old is not None:  # its jobs end (cancelled) before their handles go; outside the
                    old.close()      # swap's lock, which a job may need to finish
                if overwrite:
                    _stop_jobs(final)  # other clients' too: the swap locks the job store
                _swap_in(new, final, staging, exists=lambda: self.database_exists(name), overwrite=overwrite,
                         what=f"database_name: database {name!r}", close_old=lambda: _discard_under(final),
                         marker=_DB_MARKER, lock=database_lock(final / _DB_MARKER, exclusive=True, missing_ok=True))
        return self.get_database(name)

