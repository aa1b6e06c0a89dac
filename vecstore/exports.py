"""The export directory format: ``col.export_to(p)`` writes it, ``db.import_collection``
reads it (vecstore's own, or LynseDB's ``vectors.f32`` + ``metadata.jsonl``). The layout is in
:mod:`vecstore.portability`'s docstring; the public methods are its mixins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import struct
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from . import validation as v
from .errors import (
    AlreadyExistsError,
    BadBackupError,
    CorruptionError,
    ForbiddenPathError,
    InvalidArgumentError,
    UnsupportedFormatError,
)
from .fileio import fsync_path, sha256_file
from .storage import label_key

if TYPE_CHECKING:
    from .collection import Collection

log = logging.getLogger(__name__)

EXPORT_TYPE = "vecstore-collection-export"
EXPORT_FORMAT = "vecstore-collection-jsonl-npy-export"
EXPORT_VERSION = 1
LYNSE_EXPORT_TYPE = "lynsedb-collection-export"
_CHUNK = 50_000              # rows per import transaction
_IO = 1 << 20
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
_DIGEST = "manifest_sha256"  # the manifest's own checksum, over its other keys (_manifest_digest)
# What every vecstore export's manifest holds (besides the checks _Export makes of each): one
# missing is a damaged key, and its absence would import silently less (no index, no fields).
_KEYS = ("metadata_file", "vectors_file", "index_mode", "index_params", "description", "chunk_size",
         "counts", "vector_fields", "files")
_FIELD_KEYS = ("name", "dimension", "metric", "index_mode", "index_params", "count", "vectors_file", "rows_file")
_NAMED_FILE = re.compile(r"^vectors\.(.+?)(\.rows)?\.npy$")


def _json_bytes(obj: Any, *, indent: int | None = None, sort_keys: bool = True) -> bytes:
    return json.dumps(obj, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False, indent=indent,
                      separators=(",", ": ") if indent else (",", ":")).encode("utf-8")


def _manifest_digest(m: dict) -> str:
    """sha256 of the manifest without its own checksum, in the canonical form of _json_bytes
    (sorted keys, no indentation): a reader computes it from the parsed JSON, whatever the
    file's whitespace. Raises ValueError for what no export holds (NaN)."""
    return hashlib.sha256(_json_bytes({k: x for k, x in m.items() if k != _DIGEST})).hexdigest()


def _bar(enabled: bool, total: int | None, desc: str, unit: str = "rows"):
    from tqdm.auto import tqdm
    # disable=None: tqdm switches itself off when stderr is not a terminal.
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True)


# =========================================================================== export =========
class _NpyWriter:
    """A ``.npy`` file written row by row: the header is rewritten with the final row count
    (its length does not change: numpy pads 2-D headers to 128 bytes)."""

    def __init__(self, path: Path, descr: str, tail: tuple[int, ...]) -> None:
        self.path, self.descr, self.tail, self.n = path, descr, tail, 0
        self.fp = open(path, "wb", buffering=_IO)
        self.head_len = len(self._header(0))
        self.fp.write(self._header(0))

    def _header(self, n: int) -> bytes:
        import io
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            out, {"descr": self.descr, "fortran_order": False, "shape": (n, *self.tail)})
        return out.getvalue()

    def write(self, data: bytes, rows: int) -> None:
        self.fp.write(data)
        self.n += rows

    def close(self) -> None:
        head = self._header(self.n)
        assert len(head) == self.head_len, "npy header length changed"
        self.fp.seek(0)
        self.fp.write(head)
        self.fp.flush()
        os.fsync(self.fp.fileno())
        self.fp.close()


def _write_export(col: "Collection", d: Path, progress: bool) -> None:
    """Stream the live rows of one read transaction into the export files in ``d``."""
    f32 = np.dtype(np.float32).str
    with col._storage.read() as t:
        cfg = t.get_meta("config")
        dim = cfg["dim"]
        named = [(k[len("vfield:"):], spec) for k, spec in t.iter_meta("vfield:")]
        records = {k[len("index:"):]: rec for k, rec in t.iter_meta("index:")}
        live = array("Q")
        n_sparse = 0
        bar = _bar(progress, t.count_rows(), f"export {col.name}")
        vw = _NpyWriter(d / "vectors.npy", f32, (dim,))
        try:
            with open(d / "metadata.jsonl", "wb", buffering=_IO) as mf:
                sparse = t.iter_sparse()
                nxt = next(sparse, None)
                vecs = t.iter_vecs()
                for label, row in t.iter_rows():
                    key, blob = next(vecs, (None, None))
                    if key != label_key(label) or len(blob) != 4 * dim:
                        raise CorruptionError(f"{col.path}: row {label} has no matching vector")
                    bar.update(1)
                    while nxt is not None and nxt[0] < label:
                        nxt = next(sparse, None)
                    if row[2]:
                        continue
                    line: dict = {"id": row[0], "field": row[1]}
                    if nxt is not None and nxt[0] == label:
                        line["sparse"] = {"indices": np.frombuffer(nxt[1], np.uint32).tolist(),
                                          "values": np.frombuffer(nxt[2], np.float32).tolist()}
                        n_sparse += 1
                    mf.write(_json_bytes(line, sort_keys=False) + b"\n")  # fields keep their order
                    vw.write(blob, 1)
                    live.append(label)
                mf.flush()
                os.fsync(mf.fileno())
        finally:
            vw.close()
            bar.close()
        live_labels = np.frombuffer(live, dtype=np.uint64) if len(live) else np.empty(0, np.uint64)
        fields = []
        for fname, spec in named:
            vf, rf = f"vectors.{fname}.npy", f"vectors.{fname}.rows.npy"
            fw = _NpyWriter(d / vf, f32, (spec["dim"],))
            rw = _NpyWriter(d / rf, np.dtype("<i8").str, ())
            try:
                for chunk in _chunked(t.iter_named(fname), _CHUNK):
                    labels = np.fromiter((lb for lb, _ in chunk), dtype=np.uint64, count=len(chunk))
                    pos = np.searchsorted(live_labels, labels)
                    ok = pos < len(live_labels)
                    ok[ok] = live_labels[pos[ok]] == labels[ok]
                    for (_, blob), p, keep in zip(chunk, pos.tolist(), ok.tolist()):
                        if keep:
                            fw.write(blob, 1)
                            rw.write(struct.pack("<q", p), 1)
            finally:
                fw.close()
                rw.close()
            rec = records.get(fname) or {}
            fields.append({"name": fname, "dimension": spec["dim"], "metric": spec["metric"],
                           "index_mode": rec.get("mode"), "index_params": rec.get("params"),
                           "count": fw.n, "vectors_file": vf, "rows_file": rf})
        n_blobs = 0
        if t.count_raw("blobs"):  # only then a blobs file: exports without blobs stay as they were
            with open(d / "blobs.jsonl", "wb", buffering=_IO) as bf:
                for key, data in t.iter_raw("blobs"):
                    bf.write(_json_bytes({"key": bytes(key).decode(), "base64": base64.b64encode(data).decode()}) + b"\n")
                    n_blobs += 1
                bf.flush()
                os.fsync(bf.fileno())
    rec = records.get("default") or {}
    manifest = {
        "export_type": EXPORT_TYPE, "export_format": EXPORT_FORMAT, "export_version": EXPORT_VERSION,
        "format": "vecstore-export", "format_version": EXPORT_VERSION,
        "collection_name": col.name, "dimension": dim, "metric": cfg["metric"], "count": vw.n,
        "vector_dtype": "float32", "byte_order": "little-endian" if f32[0] == "<" else "big-endian",
        "metadata_file": "metadata.jsonl", "vectors_file": "vectors.npy",
        "index_mode": rec.get("mode"), "index_params": rec.get("params"),
        "description": cfg.get("description"), "chunk_size": cfg.get("chunk_size", 100_000),
        "counts": {"rows": vw.n, "sparse": n_sparse, "vector_fields": {f["name"]: f["count"] for f in fields}},
        "vector_fields": fields,
    }
    names = ["metadata.jsonl", "vectors.npy"] + [n for f in fields for n in (f["vectors_file"], f["rows_file"])]
    if n_blobs:
        manifest["blobs_file"], manifest["counts"]["blobs"] = "blobs.jsonl", n_blobs
        names.append("blobs.jsonl")
    manifest["files"] = {n: {"bytes": (d / n).stat().st_size, "sha256": sha256_file(d / n)} for n in names}
    manifest[_DIGEST] = _manifest_digest(manifest)
    (d / "export_manifest.json").write_bytes(_json_bytes(manifest, indent=2) + b"\n")
    fsync_path(d / "export_manifest.json")


def _chunked(it: Iterable, n: int) -> Iterator[list]:
    buf: list = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


# =========================================================================== import =========
class _Export:
    """A validated export directory (ours or LynseDB's), its arrays opened read-only."""

    def __init__(self, src: Path) -> None:
        self.src = src
        mpath = src / "export_manifest.json"
        if not src.is_dir() or not mpath.is_file():
            raise BadBackupError(f"{src}: not an export directory (no export_manifest.json)")
        try:
            m = json.loads(mpath.read_bytes())
        except (ValueError, RecursionError) as e:  # Recursion: nested deeper than json decodes
            raise BadBackupError(f"{mpath}: unreadable manifest ({e})") from None
        if not isinstance(m, dict):
            raise BadBackupError(f"{mpath}: expected a JSON object")
        kind = m.get("export_type")
        if kind not in (EXPORT_TYPE, LYNSE_EXPORT_TYPE):
            raise UnsupportedFormatError(f"{mpath}: export_type {kind!r} is not a vecstore or LynseDB export")
        if m.get("export_version") != EXPORT_VERSION or (kind == EXPORT_TYPE and m.get("format_version") != EXPORT_VERSION):
            raise UnsupportedFormatError(f"{mpath}: export version {m.get('export_version')!r}; "
                                         f"this vecstore reads version {EXPORT_VERSION}")
        self.m, self.lynse = m, kind == LYNSE_EXPORT_TYPE
        self.counts: dict = {}  # a vecstore export's "counts", checked by _check_files
        if _DIGEST in m:
            try:
                ok = m[_DIGEST] == _manifest_digest(m)
            except (ValueError, RecursionError):
                ok = False
            if not ok:
                raise BadBackupError(f"{mpath}: {_DIGEST} does not match the manifest: the manifest is damaged")
        self.count = self._int(m.get("count"), 0, 1 << 62, "count")
        # 0: a collection created without a dim that had no vectors yet (no rows either)
        self.dim = self._int(m.get("dimension"), 0 if not self.count else 1, v.MAX_DIM, "dimension")
        self.metric = self._metric(m.get("metric", "ip"), "metric")
        desc = m.get("description")
        self.description = desc if isinstance(desc, str) else None
        cs = m.get("chunk_size", 100_000)
        self.chunk_size = cs if isinstance(cs, int) and not isinstance(cs, bool) and cs > 0 else 100_000
        if not self.lynse:
            self._check_files()
        self.metadata = self._file(m.get("metadata_file", "metadata.jsonl"))
        if self.lynse:
            if m.get("vector_dtype", "f32") not in ("f32", "float32") or m.get("byte_order", "little-endian") != "little-endian":
                raise UnsupportedFormatError(f"{mpath}: vectors must be little-endian float32")
            vpath = self._file(m.get("vectors_file", "vectors.f32"))
            if vpath.stat().st_size != self.count * self.dim * 4:
                raise BadBackupError(f"{vpath}: {vpath.stat().st_size} bytes, expected count x dimension x 4 = "
                                      f"{self.count * self.dim * 4}")
            self.vectors = (np.memmap(vpath, dtype="<f4", mode="r", shape=(self.count, self.dim))
                            if self.count else np.empty((0, self.dim), np.float32))
            self.index_mode, self.index_params, self.fields = None, None, []
            return
        self.vectors = self._npy(m.get("vectors_file"), (self.count, self.dim), "f")
        self.index_mode, self.index_params = m.get("index_mode"), m.get("index_params")
        self.fields = []
        for f in m["vector_fields"]:
            if any(f["name"] == g["name"] for g in self.fields):
                raise BadBackupError(f"{mpath}: vector field {f['name']!r} is listed twice")
            fdim = self._int(f.get("dimension"), 1, v.MAX_DIM, f"{f['name']}.dimension")
            n = self._int(f.get("count"), 0, self.count, f"{f['name']}.count")
            rows = np.asarray(self._npy(f.get("rows_file"), (n,), "i"), dtype=np.int64)
            if n and (rows[0] < 0 or rows[-1] >= self.count or (np.diff(rows) <= 0).any()):
                raise BadBackupError(f"{src / f['rows_file']}: row numbers must ascend within [0, {self.count})")
            self.fields.append({"name": f["name"], "dim": fdim, "metric": self._metric(f.get("metric"), f["name"]),
                                "mode": f.get("index_mode"), "params": f.get("index_params"),
                                "rows": rows, "vectors": self._npy(f.get("vectors_file"), (n, fdim), "f")})
        listed = {f["name"]: len(f["rows"]) for f in self.fields}
        if self.counts["vector_fields"] != listed:
            raise BadBackupError(f"{mpath}: counts.vector_fields {self.counts['vector_fields']} does not match "
                                 f"vector_fields {listed}")

    def _int(self, x: Any, lo: int, hi: int, key: str) -> int:
        if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
            raise BadBackupError(f"{self.src}: manifest {key} must be an int in [{lo}, {hi}], got {x!r}")
        return x

    def _metric(self, x: Any, what: str) -> str:
        from .indexes.base import parse_metric
        try:
            return parse_metric(x, param=what)
        except InvalidArgumentError as e:
            raise BadBackupError(f"{self.src}: {e}") from None

    def _file(self, name: Any) -> Path:
        """A file the manifest names: a plain name inside the export, never a path elsewhere."""
        if not isinstance(name, str) or not _FILE_NAME.match(name):
            raise ForbiddenPathError(f"{self.src}: the manifest names a file outside the export: {str(name)[:80]!r}")
        p = self.src / name
        real = os.path.realpath(p)
        if os.path.dirname(real) != os.path.realpath(self.src):
            raise ForbiddenPathError(f"{self.src}: {name} leads outside the export (symlink)")
        if not p.is_file():
            raise BadBackupError(f"{self.src}: {name} is missing")
        return p

    def _check_files(self) -> None:
        """A vecstore manifest's structure, checked against itself and the directory: what an
        export without a manifest checksum (an older vecstore's) still lets us tell from a
        damaged one, and the files' checksums."""
        m, where = self.m, f"{self.src / 'export_manifest.json'}"
        missing = [k for k in _KEYS if k not in m]
        if missing:
            raise BadBackupError(f"{where}: the manifest has no {', '.join(missing)}")
        files, counts, specs = m["files"], m["counts"], m["vector_fields"]
        if not isinstance(files, dict) or not isinstance(specs, list) or not isinstance(counts, dict) \
                or not isinstance(counts.get("vector_fields"), dict):
            raise BadBackupError(f"{where}: files and counts must be objects, vector_fields a list")
        for f in specs:
            if not isinstance(f, dict) or any(k not in f for k in _FIELD_KEYS) or not isinstance(f["name"], str) \
                    or not _FIELD_NAME.match(f["name"]) or f["name"] == "default" \
                    or (f["vectors_file"], f["rows_file"]) != (f"vectors.{f['name']}.npy", f"vectors.{f['name']}.rows.npy"):
                raise BadBackupError(f"{where}: bad vector field entry {str(f)[:120]}")
        self.counts = {"rows": self._int(counts.get("rows"), 0, 1 << 62, "counts.rows"),
                       "sparse": self._int(counts.get("sparse"), 0, self.count, "counts.sparse"),
                       "blobs": self._int(counts.get("blobs", 0), 0, 1 << 62, "counts.blobs"),
                       "vector_fields": counts["vector_fields"]}
        if self.counts["rows"] != self.count:
            raise BadBackupError(f"{where}: counts.rows {self.counts['rows']} does not match count {self.count}")
        if ("blobs_file" in m) != ("blobs" in counts):
            raise BadBackupError(f"{where}: blobs_file and counts.blobs must come together")
        # The files the directory holds that only the manifest can point at: one a damaged
        # manifest no longer names would be left out of the import, silently.
        present = set(os.listdir(self.src))
        fields = {g[1] for g in map(_NAMED_FILE.match, present) if g}
        if fields != {f["name"] for f in specs}:
            raise BadBackupError(f"{where}: vector_fields {sorted(f['name'] for f in specs)} do not match the "
                                 f"vector files present (fields {sorted(fields)})")
        if ("blobs.jsonl" in present) != ("blobs_file" in m):
            raise BadBackupError(f"{where}: blobs.jsonl is {'present' if 'blobs.jsonl' in present else 'missing'}, "
                                 f"but the manifest {'has no' if 'blobs_file' not in m else 'has a'} blobs_file")
        wanted = [m["metadata_file"], m["vectors_file"], *([m["blobs_file"]] if "blobs_file" in m else []),
                  *(n for f in specs for n in (f["vectors_file"], f["rows_file"]))]
        for w in wanted:
            self._file(w)
        unread, unlisted = sorted(set(files) - set(wanted)), [w for w in wanted if w not in files]
        if unread or unlisted:
            raise BadBackupError(f"{where}: files listed that nothing reads {unread}, files read without a "
                                 f"checksum {unlisted}")
        for name, info in files.items():
            p = self._file(name)
            if not isinstance(info, dict) or p.stat().st_size != info.get("bytes") or sha256_file(p) != info.get("sha256"):
                raise BadBackupError(f"{p}: checksum mismatch: the export is damaged or incomplete")

    def _npy(self, name: Any, shape: tuple[int, ...], kind: str) -> np.ndarray:
        path = self._file(name)
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version != (1, 0):
                    raise ValueError(f"npy version {version}")
                hshape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        except ValueError as e:
            raise BadBackupError(f"{path}: not a readable .npy file ({e})") from None
        ok_dtype = dtype == np.dtype("<f4" if kind == "f" else "<i8") or dtype == np.dtype(">f4" if kind == "f" else ">i8")
        if tuple(hshape) != shape or fortran or not ok_dtype:
            raise BadBackupError(f"{path}: expected {'float32' if kind == 'f' else 'int64'} of shape {shape}, "
                                  f"got {dtype} of shape {tuple(hshape)}")
        if not shape[0]:
            return np.empty(shape, np.float32 if kind == "f" else np.int64)
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise BadBackupError(f"{path}: {e}") from None


def _without_id_key(field: dict) -> dict:
    """``field`` with its key ``id`` renamed ``id_`` (or ``id__``, ...: the first name not taken),
    in place in the key order. A field named ``id`` is refused on write (reads and filters mean
    the row's id), but older vecstore stores and LynseDB's exports may hold one."""
    new = "id_"
    while new in field:
        new += "_"
    return {new if k == "id" else k: x for k, x in field.items()}


def _import_rows(col: "Collection", ex: _Export, progress: bool) -> None:
    """Rows in chunks of 50,000 (each an add, then its sparse and named vectors), then the
    indexes, built once over all rows."""
    for f in ex.fields:
        col.create_vector_field(f["name"], f["dim"], metric=f["metric"])
    bar = _bar(progress, ex.count, f"import {col.name}")
    start, line_no, n_sparse, renamed = 0, 0, 0, 0
    try:
        with open(ex.metadata, "rb") as fp:
            lines = (ln for ln in fp if ln.strip())
            for chunk in _chunked(lines, _CHUNK):
                ids, fields, sp_ids, sp_vecs = [], [], [], []
                for raw in chunk:
                    line_no += 1
                    try:
                        rec = json.loads(raw)
                        if not isinstance(rec, dict):
                            raise ValueError("expected a JSON object")
                        rid = rec.get("external_id", rec.get("id")) if ex.lynse else rec.get("id")
                        i = v.check_id(rid, param="id")
                        raw_field = rec.get("field")
                        if isinstance(raw_field, dict) and "id" in raw_field:
                            raw_field, renamed = _without_id_key(raw_field), renamed + 1
                        field = v.check_fields(raw_field, param="field")
                    except (ValueError, RecursionError, InvalidArgumentError) as e:
                        raise BadBackupError(f"{ex.metadata}: line {line_no}: {e}") from None
                    ids.append(i)
                    fields.append(field)
                    if rec.get("sparse") is not None:
                        sp_ids.append(i)
                        sp_vecs.append(rec["sparse"])
                end = start + len(ids)
                if end > ex.count:
                    raise BadBackupError(f"{ex.metadata}: more lines than the manifest's count {ex.count}")
                try:
                    _add_chunk(col, ex, start, ids, fields, sp_ids, sp_vecs)
                except (AlreadyExistsError, InvalidArgumentError) as e:
                    raise BadBackupError(f"{ex.src}: rows {start + 1}-{end}: {e}") from None
                bar.update(len(ids))
                start, n_sparse = end, n_sparse + len(sp_ids)
    finally:
        bar.close()
    if start != ex.count:
        raise BadBackupError(f"{ex.metadata}: {start} rows, the manifest says {ex.count}")
    if renamed:
        log.warning("%s: %d row(s) held a field named 'id' (the row's id in reads and filters): imported as 'id_'",
                    ex.src, renamed)
    if not ex.lynse and n_sparse != ex.counts["sparse"]:
        raise BadBackupError(f"{ex.metadata}: {n_sparse} rows with a sparse vector, the manifest's "
                             f"counts.sparse says {ex.counts['sparse']}")
    if not ex.lynse and "blobs_file" in ex.m:
        path = ex._file(ex.m["blobs_file"])
        n_blobs = _import_blobs(col, path)
        if n_blobs != ex.counts["blobs"]:
            raise BadBackupError(f"{path}: {n_blobs} blobs, the manifest's counts.blobs says {ex.counts['blobs']}")
    try:
        if ex.index_mode is not None:
            col.build_index(ex.index_mode, **_params(ex.index_params))
        for f in ex.fields:
            if f["mode"] is not None:
                col.build_vector_field_index(f["name"], f["mode"], **_params(f["params"]))
    except InvalidArgumentError as e:
        raise BadBackupError(f"{ex.src}: the exported index cannot be rebuilt ({e})") from None


def _import_blobs(col: "Collection", path: Path) -> int:
    """Write the blobs of ``path``; returns how many."""
    line_no = 0
    with open(path, "rb") as fp:
        for line_no, raw in enumerate(fp, 1):
            try:
                rec = json.loads(raw)
                key, data = rec["key"], base64.b64decode(rec["base64"], validate=True)
                col.write_blob(key, data)
            except (ValueError, RecursionError, TypeError, KeyError, binascii.Error, InvalidArgumentError) as e:
                raise BadBackupError(f"{path}: line {line_no}: not a blob record ({e})") from None
    return line_no


def _add_chunk(col: "Collection", ex: _Export, start: int, ids: list, fields: list, sp_ids: list,
               sp_vecs: list) -> None:
    """One chunk of rows, then the sparse and named vectors of those rows."""
    end = start + len(ids)
    # as written, for every metric (cosine refuses a zero vector: it has no direction)
    vecs = v.check_vectors(np.asarray(ex.vectors[start:end], dtype=np.float32), ex.dim, param="vectors",
                           nonzero=col.metric == "cosine")
    col._insert(ids, vecs, fields, progress=False, metric=col.metric)
    if sp_ids:
        col.add_sparse_vectors(sp_vecs, ids=sp_ids)
    for f in ex.fields:
        lo, hi = np.searchsorted(f["rows"], [start, end]).tolist()
        if hi > lo:
            col.add_named_vectors(f["name"], np.asarray(f["vectors"][lo:hi], dtype=np.float32),
                                  [ids[r - start] for r in f["rows"][lo:hi].tolist()])


def _params(p: Any) -> dict:
    return {k: x for k, x in p.items() if x is not None} if isinstance(p, dict) else {}
