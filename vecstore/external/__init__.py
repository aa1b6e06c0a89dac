"""External collections: a read-only collection kept in sync with an Apache Iceberg table.

The package has four modules: ``source`` (where the table is), ``spec`` (how its columns map
to rows), ``plan`` (what changed, and reading it) and ``refresh`` (the jobs that keep a
collection in sync, and the :class:`DatabaseExternal` mixin of :class:`vecstore.Database`).
The first three know nothing about collections. They answer four questions for a refresh job:

1. *Where is the table?* :class:`ExternalSource` parses ``externalSource`` (a pyiceberg catalog,
   a ``metadata.json`` location, or a Zilliz-style ``volume://`` URL mapped to a local folder) and
   loads a fresh :class:`pyiceberg.table.Table` per job.
2. *How do its columns map to rows?* :class:`ExternalSpec` parses ``externalSpec`` (primary key,
   vector column(s), scalar fields, full-text fields, snapshot pin) and :meth:`ExternalSpec.bind`
   resolves it against the table schema into a :class:`BoundSpec` that holds Iceberg **field ids**
   (of the mapped columns and of those ``rowFilter`` names), so a later column rename at the
   source is harmless. Unpinned, it binds the *current* schema: a column added with no snapshot
   since reads as null, as pyiceberg's own scan gives it. ``BoundSpec.to_json()`` is what the
   collection persists.
3. *What changed since the last sync?* :func:`plan_refresh` compares snapshots and data-file sets
   and returns a :class:`ChangePlan` (``noop`` / ``full`` / ``append`` / ``diff``).
4. *Give me the rows.* :func:`read_files` streams only the planned data files (projected columns,
   positional deletes applied); :meth:`BoundSpec.convert` turns a record batch into ids,
   a float32 ``(n, dim)`` matrix and JSON-like field dicts, validating as it goes.

File identity. A data file is identified by a *file key*: its path, plus a digest of the
positional-delete files that apply to it (``<path>#deletes=<sha1-16>``). A new delete file on an
old data file therefore shows up as "old key removed, new key added", which the diff path handles
like any rewrite. Tables written by pyiceberg (copy-on-write) never have delete files, so their
keys are plain paths.

Failure semantics. Every problem raises a :class:`~vecstore.errors.VecstoreError` whose message
names the parameter (``externalSource``, ``externalSpec.<key>``) or the source column and shows a
sample of the offending primary keys. Nothing here writes to the source; a ``sql`` catalog is
opened with ``init_catalog_tables=false`` so a mistyped URI cannot create an empty catalog.

pyiceberg 0.12 limits handled here (see ``shared/research/refresh.md`` §4):

* equality-delete files cannot be read: planning raises, and we refuse with a clear reason;
* positional deletes (and v3 deletion vectors) are applied per file by pyiceberg's ``ArrowScan``;
* ``StaticTable`` cannot ``refresh()``: :meth:`ExternalSource.load_table` builds a new one per call;
* ``incremental_append_scan`` ignores deletes and overwrites, so it is only used when every
  snapshot in the range is a pure append (``append`` operation, no delete files added).
"""

from .plan import ChangePlan, deleted_keys, file_key, plan_refresh, read_files, read_keys
from .source import ExternalSource, redact, snapshot_schema
from .spec import BoundColumn, BoundSpec, BoundVector, ConvertedRows, ExternalSpec, FieldSpec, VectorSpec

__all__ = [
    "ExternalSource", "ExternalSpec", "VectorSpec", "FieldSpec", "BoundSpec", "BoundColumn",
    "BoundVector", "ConvertedRows", "ChangePlan", "plan_refresh", "read_files", "read_keys",
    "deleted_keys", "snapshot_schema", "file_key", "redact",
]
