"""External collections and their refresh jobs: the :class:`DatabaseExternal` mixin of
:class:`vecstore.Database`.

An external collection is a read-only collection whose rows are a synchronized copy of one
Iceberg table snapshot (refresh.md §5.2): vectors in the collection's index, mapped columns as
``fields``, the source's primary key as the row id. User writes are refused
(:class:`~vecstore.errors.ReadOnlyError`); every read works.

>>> db.create_external_collection("ext_books", external_source=src, external_spec=spec)  # doctest: +SKIP
<Collection app/ext_books dim=768 0 rows>
>>> job_id = db.refresh_external_collection("ext_books")                            # doctest: +SKIP
>>> db.wait_refresh_job(job_id, timeout=60).to_zilliz()["state"]                   # doctest: +SKIP
'RefreshCompleted'

A refresh is a job (:mod:`vecstore.jobs`): asynchronous, one per collection at a time, and
**atomic**. It plans from Iceberg metadata only (``plan.plan_refresh``), reads just the data
files that changed (appends: only the new files; deletes and overwrites: the diff of the live
file sets), converts and validates every batch, and then commits upserts, deletes and the new
sync state in ONE LMDB transaction (``Collection._apply_changes``). Until that commit readers
see the previous version; a job that fails or is cancelled commits nothing and says why in its
``reason``.

Sync state, stored with the rows (collection meta keys):

* ``external:source`` / ``external:spec``: the canonical JSON of the source and spec in force
  (secrets included: they are needed to re-read; job records hold redacted copies);
* ``external:state``: synced snapshot id, table uuid, schema id, mapping hash, the bound spec
  (Iceberg field ids, so a column rename at the source is harmless), the index in force, and the
  synced file keys, each naming a per-file key;
* ``external:file:<digest>``: the primary keys read from one data file, so the rows of a removed
  file are deleted without reading it again (it may be expired at the source). A removed
  file's key is set to ``None`` (meta keys cannot be deleted in ``_apply_changes``).

Volumes (``volume://NAME/path`` sources) map to local folders per database with
:meth:`DatabaseExternal.set_volumes`, persisted in ``<database>/.volumes.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import validation as v
from ..errors import (DimensionMismatchError, InvalidArgumentError, NotFoundError, ReadOnlyError,
                      VecstoreError)
from ..jobs import RefreshJob, now_ms
from .plan import ChangePlan, plan_refresh
from .source import SOURCE, SPEC, ExternalSource, _sample
from .spec import BoundSpec, BoundVector, ExternalSpec

if TYPE_CHECKING:
    from ..client import Database
    from ..collection import Collection
    from ..jobs import JobContext

__all__ = ["DatabaseExternal", "KIND"]

log = logging.getLogger(__name__)

KIND = "external_refresh"          # the job kind of an external refresh
META_SOURCE = "external:source"
META_SPEC = "external:spec"
META_STATE = "external:state"
FILE_PREFIX = "external:file:"
VOLUMES_FILE = ".volumes.json"
# After a refresh that deleted rows, compact (drop soft-deleted rows for good) only when they are
# at least this fraction of the stored rows: compaction rebuilds the whole ANN index, O(rows),
# and soft-deleted rows are invisible to every read anyway.
COMPACT_FRACTION = 0.10
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# spec index parameter names (Milvus/Zilliz camelCase and friends) -> vecstore index keywords
_INDEX_PARAMS = {
    "m": "M", "efconstruction": "ef_construction", "ef_construction": "ef_construction",
    "ef": "ef", "efsearch": "ef", "ef_search": "ef", "seed": "seed",
    "nlist": "n_clusters", "nclusters": "n_clusters", "n_clusters": "n_clusters", "nprobe": "nprobe",
    "trainsize": "train_size", "train_size": "train_size", "iters": "iters",
}


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _index_of(vector: BoundVector) -> dict:
    """``{"mode": "HNSW-COS", "params": {...}}``: the index a spec asks for, with vecstore's
    parameter names; checked by constructing the index (no data)."""
    mode = vector.index_mode
    params: dict[str, Any] = {}
    for key, value in vector.params.items():
        name = _INDEX_PARAMS.get(str(key).lower(), str(key))
        if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
            value = int(value)
        params[name] = value
    if vector.index == "FLAT":
        if params:
            raise InvalidArgumentError(f"{SPEC}.index: FLAT takes no parameters, got {sorted(params)}")
        return {"mode": mode, "params": {}}
    from ..collection_ext import _index_class

    try:
        _index_class(vector.index)(vector.dim, vector.metric, **params)
    except (InvalidArgumentError, TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{SPEC}.index: {e}") from None
    return {"mode": mode, "params": params}


def _one_vector(bound: BoundSpec) -> None:
    if len(bound.vectors) != 1:
        raise InvalidArgumentError(
            f"{SPEC}.vectors: an external collection maps exactly one vector column for now, got "
            f"{len(bound.vectors)} ({', '.join(f'{x.name}<-{x.column}' for x in bound.vectors)})")


def _file_meta_key(file_key: str) -> str:
    return FILE_PREFIX + hashlib.sha1(file_key.encode("utf-8")).hexdigest()[:24]


class DatabaseExternal:
    """Mixin of :class:`vecstore.Database`: external collections, their refresh jobs, volumes."""

    # ----------------------------------------------------------------- volumes --------------
    def set_volumes(self: "Database", volumes: dict[str, str | os.PathLike]) -> dict[str, str]:
        """Map volume names to local folders for ``volume://NAME/path`` sources, replacing the
        previous mapping (``{}`` clears it). Persisted with the database, so a reopened database
        (or another process) resolves the same volumes. Returns the stored mapping.

        Each folder must exist; it is stored as an absolute path. Sources keep the
        ``volume://`` URL, so re-pointing a volume needs no change to its collections.

        >>> db.set_volumes({"lake": "/data/lake"})  # doctest: +SKIP
        {'lake': '/data/lake'}
        """
        self._check_open()
        if self.client.read_only:
            raise ReadOnlyError("the client is read-only")
        if not isinstance(volumes, dict):
            raise InvalidArgumentError(f"volumes: expected a dict of name -> folder, got {type(volumes).__name__}")
        out: dict[str, str] = {}
        for name, folder in volumes.items():
            if not isinstance(name, str) or not _VOLUME_NAME.match(name):
                raise InvalidArgumentError(
                    f"volumes: expected names of 1-64 characters of [A-Za-z0-9._-], got {name!r}")
            try:
                path = Path(os.fspath(folder)).expanduser().resolve()
            except TypeError:
                raise InvalidArgumentError(f"volumes[{name!r}]: expected a folder path, got {folder!r}") from None
            if not path.is_dir():
                raise NotFoundError(f"volumes[{name!r}]: {str(path)!r} is not an existing folder")
            out[name] = str(path)
        target = self.path / VOLUMES_FILE
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".volumes-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(out, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dict(out)

    def get_volumes(self: "Database") -> dict[str, str]:
        """The persisted volume mapping (name -> absolute folder); ``{}`` when none is set."""
        self._check_open()
        target = self.path / VOLUMES_FILE
        if not target.exists():
            return {}
        try:
            data = json.loads(target.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise VecstoreError(f"volumes: cannot read {target}: {e}") from None
        return {str(k): str(p) for k, p in data.items()} if isinstance(data, dict) else {}

    # ----------------------------------------------------------------- collections ----------
    def create_external_collection(self: "Database", name: str, external_source: str | dict,
                                   external_spec: str | dict, *, description: str | None = None) -> "Collection":
        """Create an empty external collection mapped to an Iceberg table; load it with
        :meth:`refresh_external_collection`.

        ``external_source`` and ``external_spec`` are JSON strings or dicts (forms in
        :class:`~vecstore.external.ExternalSource` and :class:`~vecstore.external.ExternalSpec`).
        The table is opened and the spec bound now, so a missing table or column, a wrong
        vector type or an undetectable dimension is an error here, before anything is created.
        The collection takes the vector's dimension and metric, and the spec's index is built
        (``HNSW`` by default). Raises :class:`AlreadyExistsError` if the name is taken.
        """
        self._check_open()
        v.check_name(name, what="collection_name")
        if external_source is None or external_spec is None or external_source == "" or external_spec == "":
            raise InvalidArgumentError(f"{SOURCE} and {SPEC}: both are required to create an external collection")
        if description is not None:
            v.check_str(description, param="description")
        if self.collection_exists(name):
            from ..errors import AlreadyExistsError
            raise AlreadyExistsError(f"collection_name: collection {name!r} already exists")
        source = ExternalSource.parse(external_source, volumes=self.get_volumes())
        spec = ExternalSpec.parse(external_spec)
        table = source.load_table()
        bound = spec.bind(table)
        _one_vector(bound)
        index = _index_of(bound.vector)
        state = {"synced": False, "snapshotId": None, "tableUuid": bound.table_uuid, "schemaId": bound.schema_id,
                 "mappingHash": bound.mapping_hash, "bound": bound.to_json(), "files": {}, "index": None,
                 "jobId": None, "syncedAt": 0}
        col = self._create(name, bound.vector.dim, metric=bound.vector.metric, description=description,
                           kind="external", meta={META_SOURCE: source.to_json(), META_SPEC: spec.to_json(),
                                                  META_STATE: state})
        try:
            col.build_index(index["mode"], **index["params"])
        except BaseException:
            self.drop_collection(name)
            raise
        return col

    def _external(self: "Database", name: str) -> "Collection":
        col = self.get_collection(name)
        if col.kind != "external":
            raise InvalidArgumentError(f"collection_name: {name!r} is not an external collection (kind {col.kind!r})")
        return col

    def refresh_external_collection(self: "Database", name: str, external_source: str | dict | None = None,
                                    external_spec: str | dict | None = None) -> int:
        """Start a refresh job that re-syncs ``name`` from its Iceberg table; returns the job id
        at once (follow it with :meth:`describe_refresh_job` / :meth:`wait_refresh_job`).

        ``external_source`` and ``external_spec`` are given both or neither (``None`` or ``""``
        = omitted): omitted, the persisted ones are reused; given, they are used for this job
        and replace the persisted ones **only if the job succeeds**. A spec that changes the
        mapping (columns, key, encoding, row filter...) re-reads every file; one that changes
        the vector dimension or metric is refused (create a new collection).

        Refused at once with :class:`ConflictError` when a refresh of ``name`` is pending or
        running. Problems with the table or its data (missing table or column, wrong vector
        type or dimension, null vectors, duplicate keys, a snapshot that would delete every row
        because it is empty or none of its rows passes ``rowFilter``) fail the job with a
        ``reason`` naming the problem; the collection keeps serving its last good version.
        """
        self._check_open()
        if self.client.read_only:
            raise ReadOnlyError("the client is read-only")
        col = self._external(name)
        given_source = external_source not in (None, "")
        given_spec = external_spec not in (None, "")
        if given_source != given_spec:
            raise InvalidArgumentError(
                f"{SOURCE} and {SPEC} must be given together (both or neither); got only "
                f"{SOURCE if given_source else SPEC}")
        if given_source:
            source = ExternalSource.parse(external_source, volumes=self.get_volumes())  # type: ignore[arg-type]
            spec = ExternalSpec.parse(external_spec)  # type: ignore[arg-type]
        else:
            source = ExternalSource.parse(col._get_meta(META_SOURCE), volumes=self.get_volumes())
            spec = ExternalSpec.parse(col._get_meta(META_SPEC))
        work = _Refresh(self, name, source, spec, override=given_source)
        return self._jobs().submit(
            KIND, name, work, external_source=_compact_json(source.to_json(redact_secrets=True)),
            params={"externalSpec": _compact_json(spec.to_json(redact_secrets=True)), "override": given_source})

    def describe_external_collection(self: "Database", name: str) -> dict:
        """The source, spec (both redacted JSON strings) and sync state of an external
        collection: ``syncedSnapshotId``, ``tableUuid``, ``dataFiles``, ``rows``, ``index``,
        ``lastJobId``, ``lastSyncTime`` (ms; 0 before the first refresh), ``skippedColumns`` (source
        columns ``fields: null`` left out: a type with no JSON form, binary, a column named ``id``)."""
        self._check_open()
        col = self._external(name)
        state = col._get_meta(META_STATE) or {}
        source = ExternalSource.parse(col._get_meta(META_SOURCE), volumes=self.get_volumes())
        spec = ExternalSpec.parse(col._get_meta(META_SPEC))
        return {"collectionName": name,
                "externalSource": _compact_json(source.to_json(redact_secrets=True)),
                "externalSpec": _compact_json(spec.to_json(redact_secrets=True)),
                "synced": bool(state.get("synced")), "syncedSnapshotId": state.get("snapshotId"),
                "tableUuid": state.get("tableUuid"), "dataFiles": len(state.get("files") or {}),
                "rows": len(col), "dim": col.dim, "metric": col.metric, "index": state.get("index"),
                "lastJobId": state.get("jobId"), "lastSyncTime": state.get("syncedAt", 0),
                "skippedColumns": list((state.get("bound") or {}).get("skippedColumns") or [])}

    # pymilvus names (refresh.md §2.3)
    def get_refresh_external_collection_progress(self: "Database", job_id: int) -> RefreshJob:
        """Alias of :meth:`describe_refresh_job` (pymilvus' name)."""
        return self.describe_refresh_job(job_id)

    def list_refresh_external_collection_jobs(self: "Database", collection_name: str | None = None) -> list[RefreshJob]:
        """Refresh jobs of external collections only (not of materialized views), oldest first:
        of one collection, or of every external collection of the database when omitted."""
        self._check_open()
        if collection_name is not None and collection_name != "":
            v.check_name(collection_name, what="collection_name")
        return self._jobs().list(collection_name or None, kind=KIND)


class _Clock:
    """Milliseconds per phase of a job (``stats["phaseMs"]``)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, int] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0) + int((now - self.last) * 1000)
        self.last = now

    def total(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)


class _Refresh:
    """The work of one refresh job (called on a job thread with its :class:`JobContext`)."""

    def __init__(self, db: "Database", name: str, source: ExternalSource, spec: ExternalSpec, *,
                 override: bool) -> None:
        self.db = db
        self.name = name
        self.source = source
        self.spec = spec
        self.override = override

    # -- helpers -------------------------------------------------------------------------------
    def _bind(self, table: Any, state: dict, col: "Collection") -> BoundSpec:
        uuid = str(table.metadata.table_uuid)
        if self.override or not state.get("bound") or state.get("tableUuid") != uuid:
            # a new mapping, or a new table behind the same source. A vector without "dim" takes
            # the collection's (detection needs data, and the table may be empty by now); each
            # batch is still checked against it.
            spec = self.spec
            if any(x.dim is None for x in spec.vectors):
                spec = dataclasses.replace(spec, vectors=tuple(
                    dataclasses.replace(x, dim=col.dim) if x.dim is None and x.name == "default" else x
                    for x in spec.vectors))
            bound = spec.bind(table)
        else:
            bound = BoundSpec.from_json(state["bound"])
        _one_vector(bound)
        vec = bound.vector
        if vec.dim != col.dim:
            raise DimensionMismatchError(
                f"{SPEC}: vector column {vec.column!r} has dimension {vec.dim}, but collection {self.name!r} was "
                f"created with dimension {col.dim}; create a new external collection for another dimension")
        if vec.metric != col.metric:
            raise InvalidArgumentError(
                f"{SPEC}: metric {vec.metric!r} differs from collection {self.name!r}'s {col.metric!r}; "
                f"create a new external collection for another metric")
        return bound

    @staticmethod
    def _live_ids(col: "Collection") -> list:
        with col._rw.read:
            n = col._default.n
            return [col._ids[p] for p in np.flatnonzero(col._default.live[:n]).tolist()]

    @staticmethod
    def _file_ids(col: "Collection", entry: Any) -> list:
        ids = col._get_meta(entry[0]) if entry else None
        return list(ids or ())

    # -- the job -------------------------------------------------------------------------------
    def __call__(self, ctx: "JobContext") -> dict:
        clock = _Clock()
        ctx.progress(1)
        col = self.db._external(self.name)
        state = dict(col._get_meta(META_STATE) or {})
        table = self.source.load_table()
        ctx.check_cancelled()
        bound = self._bind(table, state, col)
        spec = bound.spec
        uuid = str(table.metadata.table_uuid)
        rebuild = (not state.get("synced") or bound.mapping_hash != state.get("mappingHash")
                   or uuid != state.get("tableUuid"))
        files: dict[str, list] = {} if rebuild else dict(state.get("files") or {})
        plan = plan_refresh(table, None if rebuild else state.get("snapshotId"), spec.snapshot_id,
                            None if rebuild else set(files))
        index = _index_of(bound.vector)
        stats: dict[str, Any] = {**plan.to_stats(), "planReason": plan.reason, "rowsRead": 0, "rowsInserted": 0,
                                 "rowsUpdated": 0, "rowsDeleted": 0, "rowsUnchanged": 0, "rowsSkipped": 0,
                                 "rowsReread": 0,
                                 "committed": False, "resultVersion": col.version, "phaseMs": clock.laps}
        clock.lap("plan")
        ctx.progress(5)
        live_now = len(col)
        if plan.empty and live_now and not spec.allow_empty:
            raise InvalidArgumentError(
                f"{SPEC}.allowEmpty: snapshot {plan.to_snapshot} of {self.source.describe()} has no rows; refusing to "
                f"delete all {live_now} rows of {self.name!r} (set allowEmpty: true to allow an empty sync)")
        new_state = {**state, "synced": True, "snapshotId": plan.to_snapshot, "tableUuid": uuid,
                     "schemaId": plan.schema_id, "mappingHash": bound.mapping_hash, "bound": bound.to_json(),
                     "index": index, "jobId": ctx.job_id, "syncedAt": now_ms()}
        meta: dict[str, Any] = {}
        if self.override:
            meta[META_SOURCE] = self.source.to_json()
            meta[META_SPEC] = self.spec.to_json()

        if plan.kind == "noop":
            if plan.to_snapshot == state.get("snapshotId") and not self.override and state.get("index") == index:
                stats["durationMs"] = clock.total()
                return stats          # nothing new: nothing to commit
            ctx.check_cancelled()
            meta[META_STATE] = new_state
            stats.update(committed=True, resultVersion=col._apply_changes("refresh", meta=meta))
            clock.lap("commit")
            self._after_commit(col, state, index, stats, deleted=False)
            clock.lap("after")
            stats["durationMs"] = clock.total()
            return stats

        # 1. read and convert the added files (nothing is written yet), oldest data file first
        ids, vectors, fields, per_file, skipped, origin = self._read(ctx, table, bound, plan)
        stats["rowsRead"], stats["rowsSkipped"] = len(ids) + skipped, skipped
        removed_ids: set = set()   # the keys stored per removed file (no lock: only this job writes them)
        for key in plan.removed_files:
            removed_ids.update(self._file_ids(col, files.get(key)))
        if spec.on_duplicate_pk == "last_wins":
            if len(set(ids)) != len(ids):  # files were read oldest first: a key's last row is the newest
                last = {k: j for j, k in enumerate(ids)}
                keep = np.fromiter(sorted(last.values()), dtype=np.int64, count=len(last))
                ids = [ids[j] for j in keep.tolist()]
                vectors = vectors[keep]
                fields = [fields[j] for j in keep.tolist()]
                origin = [origin[j] for j in keep.tolist()]
            if plan.kind == "diff":   # files kept from earlier syncs hold keys too
                ids, vectors, fields, stats["rowsReread"] = self._newest_wins(
                    ctx, col, table, bound, plan, files, removed_ids, ids, vectors, fields, origin)
        clock.lap("read")

        # 2. diff against the collection and commit, all under the collection's write lock
        with col._wlock:
            if rebuild:
                removed_ids = set(self._live_ids(col))
            if col.metric == "cosine" and len(ids):
                self._refuse_zero(vectors, ids, bound)
            up_mask, counts = self._diff(col, ids, vectors, fields, removed_ids, spec, plan, files)
            new_ids = set(ids)
            deletes = removed_ids - new_ids
            stats.update(counts)
            stats["rowsDeleted"] = sum(1 for i in deletes if (p := col._id_pos.get(i)) is not None
                                       and col._default.live[p])
            if live_now and live_now - stats["rowsDeleted"] + stats["rowsInserted"] == 0 and not spec.allow_empty:
                # the snapshot has rows (checked above), but none that passes rowFilter (or every
                # one was skipped): the same loss as an empty snapshot, so the same refusal
                raise InvalidArgumentError(
                    f"{SPEC}.allowEmpty: snapshot {plan.to_snapshot} of {self.source.describe()} leaves no rows "
                    + (f"after rowFilter {spec.row_filter!r}" if spec.row_filter else "(every row was skipped)")
                    + f"; refusing to delete all {live_now} rows of {self.name!r} (set allowEmpty: true to allow "
                      f"an empty sync)")

            # the new file table: kept entries, tombstones for removed files, keys of new files
            after: dict[str, list] = {}
            for key in plan.files_after:
                if key in files and key not in plan.added_files:
                    after[key] = files[key]
            for key in plan.added_files:
                mkey = _file_meta_key(key)
                got = per_file.get(key, [])
                meta[mkey] = got
                after[key] = [mkey, len(got)]
            stale = set(state.get("files") or {}) if rebuild else set(plan.removed_files)
            for key in stale - set(after):
                entry = (state.get("files") or {}).get(key)
                if entry:
                    meta[entry[0]] = None
            new_state["files"] = after
            meta[META_STATE] = new_state

            if up_mask is not None:
                sel = np.flatnonzero(up_mask)
                up_ids = [ids[j] for j in sel.tolist()]
                up_vectors = np.ascontiguousarray(vectors[sel])
                up_fields = [fields[j] for j in sel.tolist()]
            else:
                up_ids, up_vectors, up_fields = ids, vectors, fields
            ctx.check_cancelled()     # the last chance: from here on the job completes
            ctx.progress(70)
            clock.lap("diff")
            version = col._apply_changes("refresh", upsert=(up_ids, up_vectors, up_fields) if up_ids else None,
                                         delete_ids=deletes, meta=meta)
            clock.lap("commit")       # rows, sync state and the index update
        stats.update(committed=True, resultVersion=version)
        ctx.progress(95)
        self._after_commit(col, state, index, stats, deleted=bool(stats["rowsDeleted"]))
        clock.lap("after")
        stats["durationMs"] = clock.total()
        return stats

    def _read(self, ctx: "JobContext", table: Any, bound: BoundSpec, plan: ChangePlan
              ) -> tuple[list, np.ndarray, list, dict[str, list], int, list[str]]:
        """Every row of the plan's added files (oldest data file first, as the plan orders
        them), converted and validated, and the file key of each row; progress 5-65."""
        spec = bound.spec
        ids: list = []
        chunks: list[np.ndarray] = []
        fields: list[dict] = []
        origin: list[str] = []
        per_file: dict[str, list] = {}
        skipped = 0
        total = max(plan.added_records, 1)
        seen: set | None = set() if spec.on_duplicate_pk == "error" else None
        check = any(f.conv == "nested" for f in bound.fields)
        for rows in bound.read(table, plan, seen_keys=seen):
            ctx.check_cancelled()
            ids.extend(rows.ids)
            chunks.append(rows.vectors)
            if check:   # nested values: bound the depth as every write does
                fields.extend(v.check_fields(f, param=f"{SPEC}: field") for f in rows.fields)
            else:
                fields.extend(rows.fields)
            origin.extend([rows.file or ""] * len(rows.ids))
            per_file.setdefault(rows.file or "", []).extend(rows.ids)
            skipped += len(rows.skipped)
            ctx.progress(5 + 60 * min(1.0, (len(ids) + skipped) / total))
        ctx.check_cancelled()
        return ids, self._stack(chunks, bound), fields, per_file, skipped, origin

    @staticmethod
    def _stack(chunks: list[np.ndarray], bound: BoundSpec) -> np.ndarray:
        vectors = np.concatenate(chunks) if len(chunks) > 1 else (
            chunks[0] if chunks else np.empty((0, bound.vector.dim), dtype=np.float32))
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _newest_wins(self, ctx: "JobContext", col: "Collection", table: Any, bound: BoundSpec, plan: ChangePlan,
                     files: dict, removed_ids: set, ids: list, vectors: np.ndarray, fields: list,
                     origin: list[str]) -> tuple[list, np.ndarray, list, int]:
        """``onDuplicatePk: last_wins`` across the files of a ``diff`` plan: a key's row comes
        from the newest live data file holding it (:meth:`ChangePlan.order_of`), the files kept
        from earlier syncs included, so an incremental sync ends where a full one would.

        Two cases need a kept file's row, re-read from it (key-filtered): a key of a removed
        file that a kept file still holds (the newer copy was deleted: the older one is live
        again), and an added row older than a kept file's (a pin back to an older snapshot).
        The per-file key lists say which kept files hold which keys, so only those are read.
        Returns the rows to upsert (the added rows that win, then the re-read ones) and how many
        rows were re-read."""
        touched = set(ids) | removed_ids
        holder: dict = {}   # touched key -> the newest kept file holding it
        for key in sorted((k for k in plan.files_after if k in files), key=plan.order_of):
            for i in self._file_ids(col, files[key]):
                if i in touched:
                    holder[i] = key
        order = plan.order_of
        lose = [j for j, i in enumerate(ids) if i in holder and order(holder[i]) > order(origin[j])]
        new = set(ids)
        want = {i for i in removed_ids if i in holder and i not in new}
        want.update(ids[j] for j in lose)
        if not want:
            return ids, vectors, fields, 0
        ctx.check_cancelled()
        got_ids: list = []
        chunks: list[np.ndarray] = []
        got_fields: list[dict] = []
        sources = sorted({holder[i] for i in want}, key=order)
        check = any(f.conv == "nested" for f in bound.fields)
        for rows in bound.read(table, sources, snapshot_id=plan.to_snapshot, keys=want):
            ctx.check_cancelled()
            # an older kept file may hold the key too: only the holder's row counts
            sel = [j for j, i in enumerate(rows.ids) if i in want and holder[i] == rows.file]
            got_ids.extend(rows.ids[j] for j in sel)
            chunks.append(rows.vectors[sel])
            picked = [rows.fields[j] for j in sel]
            if check:   # nested values: bound the depth as every write does
                picked = [v.check_fields(f, param=f"{SPEC}: field") for f in picked]
            got_fields.extend(picked)
        last = {k: j for j, k in enumerate(got_ids)}   # a key repeated in its file: its last row
        pick = sorted(last.values())
        keep = np.ones(len(ids), dtype=bool)
        keep[lose] = False
        kept_rows = np.flatnonzero(keep).tolist()
        out_ids = [ids[j] for j in kept_rows] + [got_ids[j] for j in pick]
        out_vectors = np.concatenate([vectors[keep], self._stack(chunks, bound)[pick]])
        out_fields = [fields[j] for j in kept_rows] + [got_fields[j] for j in pick]
        return out_ids, np.ascontiguousarray(out_vectors, dtype=np.float32), out_fields, len(pick)

    def _refuse_zero(self, vectors: np.ndarray, ids: list, bound: BoundSpec) -> None:
        """Cosine stores the vectors as read and normalises them in memory: a zero one has no
        direction."""
        zero = ~vectors.any(axis=1)
        if zero.any():
            rows = np.flatnonzero(zero)
            raise InvalidArgumentError(
                f"{SPEC}: vector column {bound.vector.column!r} holds zero vectors (no cosine direction) in "
                f"{len(rows)} row(s); keys: {_sample([ids[j] for j in rows.tolist()])}")

    def _diff(self, col: "Collection", ids: list, vectors: np.ndarray, fields: list, removed_ids: set,
              spec: ExternalSpec, plan: ChangePlan, files: dict) -> tuple[np.ndarray | None, dict]:
        """Which new rows to upsert (None: all), refusing keys that another live data file
        already holds (``onDuplicatePk: error``) and skipping rows identical to the stored ones
        (``skipUnchanged``). Caller holds the collection's write lock."""
        id_pos, live = col._id_pos, col._default.live
        pos = np.fromiter((id_pos.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        exists = pos >= 0
        exists[exists] = live[pos[exists]]
        counts = {"rowsInserted": int(len(ids) - exists.sum()), "rowsUpdated": int(exists.sum()), "rowsUnchanged": 0}
        if not exists.any():
            return None, counts
        idx = np.flatnonzero(exists)
        if spec.on_duplicate_pk == "error":
            clash = [ids[j] for j in idx.tolist() if ids[j] not in removed_ids]
            if clash:
                raise InvalidArgumentError(
                    f"{SPEC}: primary key column {spec.primary_key!r} repeats {len(clash)} key(s) that other live "
                    f"data files already hold: {_sample(clash)} (set onDuplicatePk: last_wins to keep the newest)")
        if not spec.skip_unchanged:
            return None, counts
        p = pos[idx]
        same = (col._default.matrix[p] == vectors[idx]).all(axis=1)
        stored = col._fields
        unchanged = np.zeros(len(ids), dtype=bool)
        for j, pp, s in zip(idx.tolist(), p.tolist(), same.tolist()):
            if s and stored[pp] == fields[j]:
                unchanged[j] = True
        n_same = int(unchanged.sum())
        counts.update(rowsUpdated=counts["rowsUpdated"] - n_same, rowsUnchanged=n_same)
        return (~unchanged if n_same else None), counts

    def _after_commit(self, col: "Collection", state: dict, index: dict, stats: dict, *, deleted: bool) -> None:
        """Derived work after the commit (the data is already in): compaction, an index whose
        mode or parameters changed, warming the text index. A failure here is logged and
        reported in ``stats["warnings"]``; it never fails the job, whose rows are committed."""
        warnings: list[str] = []
        try:
            if state.get("index") is not None and state.get("index") != index:
                col.build_index(index["mode"], **index["params"])
                stats["indexRebuilt"] = True
            if deleted:
                st = col.stats()
                if st.n_tombstoned and st.n_tombstoned >= COMPACT_FRACTION * max(st.n_vectors, 1):
                    stats["compacted"] = col.compact()
            full_text = (col._get_meta(META_STATE) or {}).get("bound", {}).get("fullText") or []
            if full_text:
                with col._wlock:
                    col._ensure_text()
                    col._text_catch_up()
        except Exception as e:  # noqa: BLE001 - derived work only; the rows are committed
            log.warning("external refresh of %r: post-commit step failed: %s", self.name, e)
            warnings.append(f"{type(e).__name__}: {e}")
        if warnings:
            stats["warnings"] = warnings
