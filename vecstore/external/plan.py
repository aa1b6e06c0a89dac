"""What changed at the source, and reading exactly that: planning and streaming data files.

:func:`plan_refresh` compares snapshots and data-file sets and returns a :class:`ChangePlan`
(``noop`` / ``full`` / ``append`` / ``diff``); :func:`read_files` streams only the planned data
files (projected columns, positional deletes applied); :func:`read_keys` and
:func:`deleted_keys` give primary keys. Only metadata is read while planning. See the package
docstring for file identity and pyiceberg's limits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..errors import InvalidArgumentError, NotFoundError
from .source import SOURCE, SPEC, read_schema

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import FileScanTask, Table

__all__ = ["ChangePlan", "plan_refresh", "read_files", "read_keys", "deleted_keys", "file_key"]


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------

_DELETES_TAG = "#deletes="


def file_key(task: "FileScanTask") -> str:
    """The identity of a data file as read: its path, plus a digest of the positional-delete
    files applied to it (a new delete file changes the key, so the diff re-reads the file)."""
    path = task.file.file_path
    if not task.delete_files:
        return path
    digest = hashlib.sha1("\n".join(sorted(d.file_path for d in task.delete_files)).encode()).hexdigest()[:16]
    return f"{path}{_DELETES_TAG}{digest}"


def _key_path(key: str) -> tuple[str, bool]:
    path, tag, _ = key.partition(_DELETES_TAG)
    return path, bool(tag)



def _summary(snap: Any) -> dict:
    if snap is None or snap.summary is None:
        return {}
    return dict(snap.summary.additional_properties)


def _op(snap: Any) -> str:
    if snap is None or snap.summary is None:
        return "unknown"
    op = snap.summary.operation
    return getattr(op, "value", str(op))


def _plan_live(table: "Table", snapshot_id: int | None) -> dict[str, "FileScanTask"]:
    if snapshot_id is None:
        return {}
    snap = table.metadata.snapshot_by_id(snapshot_id)
    if int(_summary(snap).get("total-equality-deletes", "0") or 0) > 0:
        raise InvalidArgumentError(_equality_msg(snapshot_id))
    try:
        tasks = table.scan(snapshot_id=snapshot_id).plan_files()
    except ValueError as e:
        if "equality" in str(e).lower():
            raise InvalidArgumentError(_equality_msg(snapshot_id)) from None
        raise
    return {file_key(t): t for t in tasks}


def _data_order(table: "Table", snapshot_id: int | None, added_by: set[int] | None = None) -> dict[str, tuple]:
    """Data file path -> its place in "newest data file wins" order (``onDuplicatePk:
    last_wins``, refresh.md §5.2.3): ``(data sequence number, commit time of the snapshot that
    added it, that snapshot's id, path)``. Sequence numbers order commits in format v2+ tables;
    v1 tables have none (all 0), hence the commit time; the id and the path only make the order
    total (files of one commit). Path order alone means nothing: pyiceberg names files by UUID.

    Reads the manifests of ``snapshot_id``, only those written by the ``added_by`` snapshots if
    given (metadata only; plan_files' tasks do not carry sequence numbers)."""
    from pyiceberg.manifest import ManifestContent

    meta = table.metadata
    snap = meta.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    if snap is None:
        return {}
    times = {s.snapshot_id: s.timestamp_ms for s in meta.snapshots}
    out: dict[str, tuple] = {}
    for m in snap.manifests(table.io):
        if m.content != ManifestContent.DATA or (added_by is not None and m.added_snapshot_id not in added_by):
            continue
        for e in m.fetch_manifest_entry(table.io, discard_deleted=True):
            path = e.data_file.file_path
            sid = e.snapshot_id or 0
            out[path] = (e.sequence_number or 0, times.get(sid, 0), sid, path)
    return out


def _equality_msg(snapshot_id: int | None) -> str:
    return (f"{SOURCE}: snapshot {snapshot_id} has equality-delete files (merge-on-read, e.g. Flink/Spark "
            f"upserts), which pyiceberg 0.12 cannot apply; compact the table (rewrite_data_files) or "
            f"switch its writers to copy-on-write, then refresh")


@dataclass
class ChangePlan:
    """What a refresh must read to bring a collection from ``from_snapshot`` to ``to_snapshot``.

    ``kind``:

    * ``noop``: no data file changed (``to_snapshot`` may still differ: record it);
    * ``full``: nothing synced yet; read ``added_files`` (every live file);
    * ``append``: every snapshot in between is a pure append; read only ``added_files``,
      nothing to delete;
    * ``diff``: anything else (delete, overwrite, compaction, rollback, a pin to an older
      snapshot, expired history). Rows of ``added_files`` are upserts; keys that were in
      ``removed_files`` and are not in ``added_files`` must be deleted (:func:`deleted_keys`,
      or the labels the collection stored per file).

    ``files_after`` is the synced file-key set once the plan is applied (persist it with
    ``to_snapshot``). ``deletes_everything`` is true when the target snapshot is empty while
    files were synced: the caller refuses unless ``allowEmpty``. ``added_tasks`` carries the
    planned pyiceberg tasks so :func:`read_files` need not plan again (not persisted).

    ``added_files`` (and ``added_tasks``) are ordered oldest data file first (:meth:`order_of`),
    so a reader that lets the last row of a key win keeps the newest file's row. ``file_order``
    holds that order for the added files and, for ``full`` and ``diff`` plans, for every file of
    ``files_after`` (an ``append`` plan's other files are all older than its added ones).
    """

    from_snapshot: int | None
    to_snapshot: int | None
    kind: str
    added_files: list[str]
    removed_files: list[str]
    files_after: set[str] = field(default_factory=set, repr=False)
    reason: str = ""
    table_uuid: str | None = None
    schema_id: int | None = None
    source_records: int = 0
    added_records: int = 0
    added_bytes: int = 0
    empty: bool = False
    deletes_everything: bool = False
    added_tasks: list = field(default_factory=list, repr=False, compare=False)
    file_order: dict = field(default_factory=dict, repr=False, compare=False)

    def order_of(self, key: str) -> tuple:
        """The sort key of file ``key`` in "newest data file wins" order (see ``_data_order``);
        a file the plan did not order sorts first."""
        order = self.file_order.get(key)
        return order if order is not None else (-1, -1, 0, _key_path(key)[0])

    def to_stats(self) -> dict:
        """The job-record view: ``mode`` uses the names of refresh.md §5.1."""
        mode = {"noop": "no_op", "full": "rebuild", "append": "append", "diff": "file_diff"}[self.kind]
        return {"mode": mode, "fromSnapshotId": self.from_snapshot, "toSnapshotId": self.to_snapshot,
                "filesAdded": len(self.added_files), "filesRemoved": len(self.removed_files),
                "recordsToRead": self.added_records, "bytesToRead": self.added_bytes}


def plan_refresh(table: "Table", from_snapshot: int | None, to_snapshot: int | None,
                 synced_files: set[str] | None) -> ChangePlan:
    """Plan the change from the last synced state to ``to_snapshot`` (None: the current one).

    ``from_snapshot`` / ``synced_files`` describe the collection: the snapshot id and the file
    keys (:func:`file_key`) it was last synced to; ``synced_files=None`` means nothing synced yet
    (or a rebuild is wanted). Only metadata is read (manifests), never data files.

    Raises :class:`NotFoundError` if ``to_snapshot`` is not in the table metadata, and
    :class:`InvalidArgumentError` if the target has equality-delete files.
    """
    meta = table.metadata
    if to_snapshot is None:
        cur = meta.current_snapshot()
        to_id = cur.snapshot_id if cur is not None else None
    else:
        if meta.snapshot_by_id(to_snapshot) is None:
            raise NotFoundError(
                f"{SPEC}.snapshotId: snapshot {to_snapshot} not found in table metadata (expired, or from another table?)")
        to_id = to_snapshot
    to_snap = meta.snapshot_by_id(to_id) if to_id is not None else None
    summary = _summary(to_snap)
    source_records = max(0, int(summary.get("total-records", 0) or 0) - int(summary.get("total-position-deletes", 0) or 0))
    schema_id = to_snap.schema_id if to_snap is not None and to_snap.schema_id is not None else meta.current_schema_id
    base = dict(from_snapshot=from_snapshot, to_snapshot=to_id, table_uuid=str(meta.table_uuid),
                schema_id=schema_id, source_records=source_records)
    synced = set(synced_files) if synced_files is not None else None

    def finish(kind: str, added: dict, removed: list[str], files_after: set[str], reason: str,
               live_empty: bool, ordered: dict, order: dict[str, tuple]) -> ChangePlan:
        # ``ordered``: the tasks whose order is known (every live file, or the appended ones)
        if kind in ("append", "diff") and not added and not removed:
            kind, reason = "noop", reason + "; no data file changed"
        file_order = {k: order.get(t.file.file_path) or (-1, -1, 0, t.file.file_path) for k, t in ordered.items()}
        keys = sorted(added, key=file_order.__getitem__)
        return ChangePlan(kind=kind, added_files=keys, removed_files=sorted(removed), files_after=files_after,
                          reason=reason, added_records=sum(added[k].file.record_count for k in keys),
                          added_bytes=sum(added[k].file.file_size_in_bytes for k in keys),
                          empty=live_empty, deletes_everything=live_empty and bool(synced),
                          added_tasks=[added[k] for k in keys], file_order=file_order, **base)

    # 1. nothing changed
    if synced is not None and from_snapshot is not None and from_snapshot == to_id:
        return ChangePlan(kind="noop", added_files=[], removed_files=[], files_after=synced,
                          reason=f"already at snapshot {to_id}", empty=not synced and source_records == 0,
                          **base)

    # 2. first sync (or rebuild)
    if synced is None or (not synced and from_snapshot is None):
        live = _plan_live(table, to_id)
        return finish("full", live, [], set(live), "first sync" if synced is None else "nothing synced yet",
                      live_empty=not live or source_records == 0, ordered=live, order=_data_order(table, to_id))

    # 3. append fast path: every snapshot in (from, to] is a pure append
    if from_snapshot is not None and to_id is not None:
        chain = _append_chain(table, from_snapshot, to_id)
        if chain is not None:
            tasks = table.incremental_append_scan(from_snapshot_id_exclusive=from_snapshot,
                                                  to_snapshot_id_inclusive=to_id).plan_files()
            added = {file_key(t): t for t in tasks}
            added = {k: t for k, t in added.items() if k not in synced}
            after = synced | set(added)
            return finish("append", added, [], after,
                          f"{len(chain)} append snapshot(s) since {from_snapshot}",
                          live_empty=not after and source_records == 0, ordered=added,
                          order=_data_order(table, to_id, added_by=set(chain)))

    # 4. anything else: diff the live file set against what was synced
    live = _plan_live(table, to_id)
    added = {k: t for k, t in live.items() if k not in synced}
    removed = [k for k in synced if k not in live]
    reason = _diff_reason(table, from_snapshot, to_id)
    return finish("diff", added, removed, set(live), reason, live_empty=not live or source_records == 0,
                  ordered=live, order=_data_order(table, to_id))


def _append_chain(table: "Table", from_id: int, to_id: int) -> list[int] | None:
    """The ids of the snapshots in ``(from, to]`` if ``from`` is an ancestor of ``to`` and every
    snapshot in between is an append that added no delete files; else None."""
    from pyiceberg.table.snapshots import ancestors_between_ids, is_parent_ancestor_of

    meta = table.metadata
    try:
        if not is_parent_ancestor_of(to_id, from_id, meta):
            return None
        snaps = list(ancestors_between_ids(from_snapshot_id_exclusive=from_id, to_snapshot_id_inclusive=to_id,
                                           table_metadata=meta))
    except ValueError:
        return None
    for s in snaps:
        summ = _summary(s)
        if _op(s) != "append" or int(summ.get("added-delete-files", 0) or 0) > 0 \
                or int(summ.get("added-equality-delete-files", 0) or 0) > 0:
            return None
    return [s.snapshot_id for s in snaps]


def _diff_reason(table: "Table", from_id: int | None, to_id: int | None) -> str:
    from pyiceberg.table.snapshots import ancestors_between_ids, is_ancestor_of, is_parent_ancestor_of

    meta = table.metadata
    if to_id is None:
        return "the table has no snapshot"
    if from_id is None:
        return "no synced snapshot recorded"
    try:
        if meta.snapshot_by_id(from_id) is not None and is_ancestor_of(from_id, to_id, meta):
            return f"snapshot {to_id} is older than the synced snapshot {from_id} (pinned back)"
        if not is_parent_ancestor_of(to_id, from_id, meta):
            return f"synced snapshot {from_id} is not an ancestor of {to_id} (rollback, expiry or another branch)"
        ops = sorted({_op(s) for s in ancestors_between_ids(from_id, to_id, meta)})
        return f"operations since {from_id}: {', '.join(ops)}"
    except ValueError as e:
        return f"history not comparable ({e})"


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _synth_task(path: str) -> "FileScanTask":
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.table import FileScanTask
    from pyiceberg.typedef import Record

    fmt = FileFormat.ORC if path.lower().endswith(".orc") else \
        FileFormat.AVRO if path.lower().endswith(".avro") else FileFormat.PARQUET
    df = DataFile.from_args(content=DataFileContent.DATA, file_path=path, file_format=fmt, partition=Record(),
                            record_count=0, file_size_in_bytes=0)
    df.spec_id = 0
    return FileScanTask(df)


def _resolve_tasks(table: "Table", files: Sequence["str | FileScanTask"], snapshot_id: int | None) -> list:
    from pyiceberg.table import FileScanTask

    wanted = [f for f in files if not isinstance(f, FileScanTask)]
    live: dict = {}
    if wanted:
        sid = snapshot_id
        if sid is None:
            cur = table.metadata.current_snapshot()
            sid = cur.snapshot_id if cur is not None else None
        if sid is not None and table.metadata.snapshot_by_id(sid) is not None:
            live = _plan_live(table, sid)
    out = []
    for f in files:
        if isinstance(f, FileScanTask):
            out.append(f)
            continue
        if not isinstance(f, str):
            raise InvalidArgumentError(f"files: expected file keys or FileScanTasks, got {type(f).__name__}")
        t = live.get(f)
        if t is None:
            path, has_deletes = _key_path(f)
            if has_deletes:
                raise NotFoundError(
                    f"{SOURCE}: data file {path!r} was synced with positional deletes that are not in snapshot "
                    f"{snapshot_id} any more (expired?); its rows cannot be re-read exactly; do a full refresh")
            t = _synth_task(path)  # a file without deletes reads the same from any snapshot
        out.append(t)
    return out


def read_files(table: "Table", files: Sequence["str | FileScanTask"], columns: Sequence[str | int], *,
               snapshot_id: int | None = None, batch_rows: int = 65536,
               row_filter: "str | BooleanExpression | None" = None, with_file: bool = False) -> Iterator[Any]:
    """Stream the rows of exactly these data files, projected to ``columns``.

    ``files`` are file keys from a :class:`ChangePlan` (resolved against ``snapshot_id``'s plan,
    default current, so their positional deletes are applied) or the plan's ``added_tasks``.
    ``columns`` are names in the snapshot's :func:`~.source.read_schema` (:meth:`BoundSpec.columns_for`)
    or Iceberg field ids; files written before a rename or an added column are read by field
    id, as Iceberg requires (a column added later, even after the snapshot, reads as null).
    ``row_filter`` (Iceberg filter text or a pyiceberg expression) names columns as the table's
    *current* schema does, which is what pyiceberg binds it to
    (:meth:`BoundSpec.row_filter_for` rewrites a spec's filter that way).
    Batches have at most ``batch_rows`` rows. One file is decoded at a time, so memory is
    bounded by the projected size of the largest data file, not the table. With
    ``with_file=True`` yields ``(file_key, batch)`` pairs (for per-file bookkeeping).

    Raises :class:`NotFoundError` if a data file vanished (expired snapshot cleaned up while the
    job ran: a transient error worth one retry), :class:`InvalidArgumentError` for an unknown
    column.
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    if batch_rows < 1:
        raise InvalidArgumentError(f"batch_rows: expected a positive int, got {batch_rows!r}")
    tasks = _resolve_tasks(table, files, snapshot_id)
    schema = read_schema(table, snapshot_id)
    try:
        top = {f.field_id: f.name for f in schema.fields}
        names = []
        for c in columns:
            if isinstance(c, int) and not isinstance(c, bool):
                if c not in top:
                    raise ValueError(f"no column with field id {c}")
                c = top[c]
            names.append(c)
        projected = schema.select(*names)
    except ValueError as e:
        raise InvalidArgumentError(f"columns: {e}; table columns: {', '.join(f.name for f in schema.fields)}") from None
    if isinstance(row_filter, str) and row_filter:
        from pyiceberg.expressions.parser import parse as _parse_filter

        bound_filter = _parse_filter(row_filter)
    elif row_filter is None or isinstance(row_filter, str):
        bound_filter = AlwaysTrue()
    else:
        bound_filter = row_filter
    order = [f.name for f in projected.fields]
    for task in tasks:
        scan = ArrowScan(table.metadata, table.io, projected, bound_filter)
        key = file_key(task)
        try:
            batches = scan.to_record_batches([task])  # decodes this one file (pyiceberg materialises per task)
            for batch in batches:
                if batch.schema.names != order:
                    batch = batch.select(order)
                for off in range(0, batch.num_rows, batch_rows):
                    part = batch.slice(off, batch_rows) if batch.num_rows > batch_rows else batch
                    yield (key, part) if with_file else part
        except FileNotFoundError as e:
            raise NotFoundError(
                f"{SOURCE}: data file {task.file.file_path!r} vanished while reading ({e}); "
                f"was the snapshot expired and its files cleaned up? retry the refresh") from None


def read_keys(table: "Table", files: Sequence["str | FileScanTask"], key_column: str | int, *,
              snapshot_id: int | None = None, row_filter: "str | BooleanExpression | None" = None) -> set:
    """The primary keys in these files (only the key column is read; ``key_column`` is a name in
    the snapshot's schema or, rename-proof, a field id).

    For a plan's ``removed_files`` pass ``snapshot_id=plan.from_snapshot`` so that positional
    deletes in force at the last sync are applied; a file without deletes is read directly even
    if that snapshot expired.
    """
    out: set = set()
    for batch in read_files(table, files, [key_column], snapshot_id=snapshot_id, batch_rows=1 << 20,
                            row_filter=row_filter):
        col = batch.column(0)
        if col.null_count:
            col = col.drop_null()
        out.update(col.to_pylist())
    return out


def deleted_keys(table: "Table", plan: ChangePlan, key_field_id: int, *,
                 row_filter: "str | BooleanExpression | None" = None) -> set:
    """Keys to delete for a ``diff`` plan: keys in the removed files that the added files do not
    bring back (with ``row_filter``, rows that stop matching count as deleted). Empty for the
    other kinds. ``key_field_id`` is ``BoundSpec.primary_key.field_id``, so the key is found in
    old files whatever the column was called then.

    A collection that stores the labels of each synced file (refresh.md §5.2.4) does not need
    this: it deletes a removed file's rows without reading it.
    """
    if plan.kind != "diff" or not plan.removed_files:
        return set()
    old = plan.from_snapshot if plan.from_snapshot is not None and \
        table.metadata.snapshot_by_id(plan.from_snapshot) is not None else None
    removed = read_keys(table, plan.removed_files, key_field_id, snapshot_id=old)
    if not removed or not plan.added_files:
        return removed
    added = read_keys(table, plan.added_tasks or plan.added_files, key_field_id, snapshot_id=plan.to_snapshot,
                      row_filter=row_filter)
    return removed - added
