"""Real Iceberg tables for tests: pyiceberg ``SqlCatalog`` on a local SQLite file plus a
``file://`` warehouse, all under a temporary folder. No server, no network.

    lake = Lake(tmp_path)                         # catalog "lake", namespace "ns"
    tbl = lake.create_table("docs", dim=8)        # id long, vec list<float>, title, year, price
    s1 = append(tbl, 0, 1000)                     # one APPEND snapshot, one data file
    s2 = delete_rows(tbl, "id < 100")             # copy-on-write: OVERWRITE (or DELETE) snapshot
    s3 = overwrite(tbl, make_rows(5, 3, version=1), "id >= 5 and id < 8")
    s4 = add_data_file(tbl, make_rows(9000, 2), "b-named.parquet")   # a file at a chosen path
    rename_column(tbl, "title", "headline")
    lake.source()                                 # the externalSource dict for this table

Vectors are a deterministic function of ``(id, version)`` (:func:`vector_for`), so a test can
check that an updated row carries its new vector. ``encoding="list"`` writes Arrow
``fixed_size_list<float32, dim>`` (stored by Iceberg as ``list<float>``); ``encoding="fixed"``
writes ``fixed_size_binary(4*dim)`` little-endian float32 (Iceberg ``fixed[4*dim]``).

``add_position_deletes`` and ``add_equality_deletes`` commit merge-on-read delete files, which
pyiceberg itself never writes (its ``delete`` is copy-on-write): they go through pyiceberg's
private snapshot producer and exist only so the read path's handling of such tables can be
tested.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table


def vector_for(ids, dim: int, version: int = 0) -> np.ndarray:
    """The vectors rows ``ids`` carry at ``version``: float32 ``(len(ids), dim)``."""
    ids = np.asarray(ids, dtype=np.float64).reshape(-1, 1)
    return np.sin(ids * 0.013 + np.arange(dim) * 0.7 + version * 1.9).astype(np.float32)


def vector_array(vectors: np.ndarray, encoding: str = "list") -> pa.Array:
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    n, dim = vectors.shape
    if encoding == "fixed":
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * dim), n, [None, pa.py_buffer(vectors.tobytes())])
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)


def make_rows(start: int, n: int, *, dim: int = 8, encoding: str = "list", version: int = 0,
              names: dict | None = None) -> pa.Table:
    """Rows ``start .. start+n-1``: ``id`` int64, ``vec``, ``title`` string, ``year`` int32,
    ``price`` float64. ``names`` renames columns (after a schema rename at the source)."""
    ids = np.arange(start, start + n, dtype=np.int64)
    cols = {
        "id": pa.array(ids, pa.int64()),
        "vec": vector_array(vector_for(ids, dim, version), encoding),
        "title": pa.array([f"title {i} v{version}" for i in ids.tolist()], pa.string()),
        "year": pa.array((1990 + ids % 30).astype(np.int32), pa.int32()),
        "price": pa.array(ids * 0.5 + version, pa.float64()),
    }
    t = pa.table(cols)
    if names:
        t = t.rename_columns([names.get(c, c) for c in t.column_names])
    return t


class Lake:
    """A SqlCatalog named ``name`` in ``root`` with namespace ``ns``."""

    def __init__(self, root: Path, name: str = "lake", namespace: str = "ns") -> None:
        self.root = Path(root)
        self.name = name
        self.namespace = namespace
        self.uri = f"sqlite:///{self.root}/catalog.db"
        self.warehouse = f"file://{self.root}/warehouse"
        self.root.mkdir(parents=True, exist_ok=True)
        self.catalog = SqlCatalog(name, uri=self.uri, warehouse=self.warehouse)
        self.catalog.create_namespace(namespace)

    def catalog_props(self) -> dict:
        return {"type": "sql", "name": self.name, "uri": self.uri, "warehouse": self.warehouse}

    def source(self, table: str = "docs") -> dict:
        """The ``externalSource`` (catalog form) of ``ns.<table>``."""
        return {"type": "iceberg", "catalog": self.catalog_props(), "table": f"{self.namespace}.{table}"}

    def table_dir(self, table: str = "docs") -> Path:
        return self.root / "warehouse" / self.namespace / table

    def create_table(self, table: str = "docs", *, dim: int = 8, encoding: str = "list", rows: int = 0,
                     start: int = 0) -> Table:
        schema = make_rows(0, 1, dim=dim, encoding=encoding).schema
        tbl = self.catalog.create_table(f"{self.namespace}.{table}", schema=schema,
                                        properties={"test.dim": str(dim)})
        if rows:
            append(tbl, start, rows, dim=dim, encoding=encoding)
        return tbl

    def load(self, table: str = "docs") -> Table:
        return self.catalog.load_table(f"{self.namespace}.{table}")


def _sid(tbl: Table) -> int:
    snap = tbl.current_snapshot()
    assert snap is not None
    return snap.snapshot_id


def append(tbl: Table, start: int, n: int, *, dim: int | None = None, encoding: str | None = None,
           version: int = 0) -> int:
    """Append rows (one snapshot, one data file); returns the new snapshot id."""
    dim, encoding = _shape(tbl, dim, encoding)
    tbl.append(_conform(tbl, make_rows(start, n, dim=dim, encoding=encoding, version=version)))
    return _sid(tbl)


def append_table(tbl: Table, rows: pa.Table) -> int:
    tbl.append(_conform(tbl, rows))
    return _sid(tbl)


def add_data_file(tbl: Table, rows: pa.Table, name: str) -> int:
    """Write ``rows`` to ``<table>/data/<name>`` and commit it with ``add_files`` (one APPEND
    snapshot): unlike ``append``, whose files are named by random UUIDs, the test chooses the
    path, e.g. to make path order disagree with commit order. Returns the new snapshot id."""
    path = Path(tbl.location().removeprefix("file://")) / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_conform(tbl, rows), path)
    tbl.add_files([f"file://{path}"])
    return _sid(tbl)


def delete_rows(tbl: Table, row_filter: str) -> int:
    """``table.delete(filter)``: copy-on-write rewrite (OVERWRITE) or whole-file DELETE."""
    tbl.delete(row_filter)
    return _sid(tbl)


def overwrite(tbl: Table, rows: pa.Table, row_filter: str) -> int:
    """Replace the rows matching ``row_filter`` with ``rows`` (OVERWRITE + APPEND snapshots)."""
    tbl.overwrite(_conform(tbl, rows), overwrite_filter=row_filter)
    return _sid(tbl)


def rename_column(tbl: Table, old: str, new: str) -> None:
    with tbl.update_schema() as upd:
        upd.rename_column(old, new)


def add_column(tbl: Table, name: str, type_) -> None:
    with tbl.update_schema() as upd:
        upd.add_column(name, type_)


def data_files(tbl: Table, snapshot_id: int | None = None) -> list[str]:
    return sorted(t.file.file_path for t in tbl.scan(snapshot_id=snapshot_id).plan_files())


def _shape(tbl: Table, dim: int | None, encoding: str | None) -> tuple[int, str]:
    from pyiceberg.types import FixedType, ListType

    vec = next(f for f in tbl.schema().fields if f.field_id == 2)  # "vec" (whatever it is called now)
    enc = "fixed" if isinstance(vec.field_type, FixedType) else "list"
    if isinstance(vec.field_type, FixedType) and dim is None:
        dim = len(vec.field_type) // 4
    if dim is None:
        assert isinstance(vec.field_type, ListType) and "test.dim" in tbl.properties, "give dim="
        dim = int(tbl.properties["test.dim"])
    return dim, encoding or enc


def _conform(tbl: Table, rows: pa.Table) -> pa.Table:
    """Rename ``rows``' columns to the table's current names (by position of the original
    schema: id, vec, title, year, price = field ids 1..5)."""
    by_id = {f.field_id: f.name for f in tbl.schema().fields}
    original = ["id", "vec", "title", "year", "price"]
    names = [by_id.get(original.index(c) + 1, c) if c in original else c for c in rows.column_names]
    return rows.rename_columns(names)


def _commit_delete_file(tbl: Table, data_file) -> int:
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    with tbl.transaction() as tx:
        producer = _FastAppendFiles(operation=Operation.DELETE, transaction=tx, io=tbl.io)
        producer.append_data_file(data_file)
        producer.commit()
    return _sid(tbl)


def add_position_deletes(tbl: Table, data_file_path: str, positions: list[int]) -> int:
    """Commit a positional-delete file removing rows ``positions`` of one data file (what a
    merge-on-read writer such as Spark does). Returns the new snapshot id."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    folder = Path(tbl.location().removeprefix("file://")) / "data"
    path = folder / f"pos-deletes-{uuid.uuid4()}.parquet"
    pq.write_table(pa.table({"file_path": pa.array([data_file_path] * len(positions), pa.string()),
                             "pos": pa.array(positions, pa.int64())}), path)
    df = DataFile.from_args(content=DataFileContent.POSITION_DELETES, file_path=f"file://{path}",
                            file_format=FileFormat.PARQUET, partition=Record(), record_count=len(positions),
                            file_size_in_bytes=os.path.getsize(path),
                            # path bounds, as Spark writes them, scope the file to one data file
                            lower_bounds={2147483546: data_file_path.encode()},
                            upper_bounds={2147483546: data_file_path.encode()})
    df.spec_id = 0
    return _commit_delete_file(tbl, df)


def add_equality_deletes(tbl: Table, ids: list[int]) -> int:
    """Commit an equality-delete file on ``id`` (field id 1), which pyiceberg 0.12 cannot read."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    folder = Path(tbl.location().removeprefix("file://")) / "data"
    path = folder / f"eq-deletes-{uuid.uuid4()}.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64())}), path)
    df = DataFile.from_args(content=DataFileContent.EQUALITY_DELETES, file_path=f"file://{path}",
                            file_format=FileFormat.PARQUET, partition=Record(), record_count=len(ids),
                            file_size_in_bytes=os.path.getsize(path), equality_ids=[1])
    df.spec_id = 0
    return _commit_delete_file(tbl, df)
