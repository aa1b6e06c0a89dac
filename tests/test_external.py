"""External collections synced from real Iceberg tables (vecstore/external/refresh.py).

Every table is written by pyiceberg into ``tmp_path`` (SqlCatalog on SQLite + file://
warehouse, see ``iceberg_util``). Refreshes run as jobs; each test waits for them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pyiceberg")

import vecstore  # noqa: E402
from vecstore.errors import (ConflictError, InvalidArgumentError,  # noqa: E402
                             NotFoundError, ReadOnlyError)
from vecstore.external import BoundSpec  # noqa: E402

from conftest import clustered  # noqa: E402
from iceberg_util import (add_column, add_data_file, append, append_table, data_files,  # noqa: E402
                          delete_rows, make_rows, overwrite, rename_column, vector_array, vector_for)

DIM = 8
SPEC = {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "cosine", "M": 8, "efConstruction": 64}}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(local_client):  # external collections are created in the process that owns the data
    return local_client.create_database("app")


@pytest.fixture
def gate(monkeypatch):
    """Makes refresh reads block before each batch until ``gate.open.set()``;
    ``gate.entered`` counts the reads that reached a batch."""
    class Gate:
        open = threading.Event()
        entered: list = []
        lock = threading.Lock()

        def wait_entered(self, n: int, timeout: float = 10) -> None:
            deadline = time.time() + timeout
            while len(self.entered) < n and time.time() < deadline:
                time.sleep(0.01)
            assert len(self.entered) >= n, "the refresh never reached its read"
    g = Gate()
    g.open = threading.Event()
    g.entered = []
    real = BoundSpec.read

    def slow(self, *args, **kwargs):
        for rows in real(self, *args, **kwargs):
            with g.lock:
                g.entered.append(threading.current_thread().name)
            assert g.open.wait(20)
            yield rows
    monkeypatch.setattr(BoundSpec, "read", slow)
    yield g
    g.open.set()


def refresh(db, name="ext", **kw):
    job = db.wait_refresh_job(db.refresh_external_collection(name, **kw), timeout=60)
    return job


def make_ext(db, lake, name="ext", spec=None, table="docs", sync=True):
    col = db.create_external_collection(name, lake.source(table), spec or SPEC)
    if sync:
        job = refresh(db, name)
        assert job.state == "COMPLETED", job.reason
    return col


def ids_of(col) -> set:
    return set(col.query(return_ids_only=True))


# ------------------------------------------------------------------------------- first sync


def test_first_sync_serves_reads_and_refuses_writes(db, lake, table):
    col = db.create_external_collection("ext", json.dumps(lake.source()), json.dumps(SPEC), description="books")
    assert col.kind == "external" and len(col) == 0 and col.dim == DIM and col.index_mode() == "HNSW-COS"
    job_id = db.refresh_external_collection("ext")
    assert isinstance(job_id, int) and 0 < job_id < 2**53
    job = db.wait_refresh_job(job_id, timeout=60)
    assert job.state == "COMPLETED", job.reason
    z = db.describe_refresh_job(job_id).to_zilliz()
    assert set(z) == {"jobId", "collectionName", "state", "progress", "externalSource", "startTime", "endTime"}
    assert (z["jobId"], z["collectionName"], z["state"], z["progress"]) == (job_id, "ext", "RefreshCompleted", 100)
    assert json.loads(z["externalSource"])["table"] == "ns.docs"
    assert 1e12 < z["startTime"] <= z["endTime"]  # milliseconds
    assert job.stats["mode"] == "rebuild" and job.stats["rowsInserted"] == 2000

    assert len(col) == 2000 and ids_of(col) == set(range(2000))
    rows = col.read_by_only_id([5, 1999])
    assert rows.fields[0] == {"title": "title 5 v0", "year": 1995, "price": 2.5}
    np.testing.assert_array_equal(rows.vectors, vector_for([5, 1999], DIM))  # as in the table (cosine too)
    hits = col.search(vector_for([1251], DIM)[0], k=10, where="year > 2010", return_fields=True)
    assert len(hits.ids) == 10 and all(f["year"] > 2010 for f in hits.fields) and hits.scores[0] < 1e-3
    assert db.get_collection("ext").search(vector_for([7], DIM)[0], k=1).ids[0] in ids_of(col)

    for write in (lambda: col.add_item(vector_for([1], DIM)[0], id=5000),
                  lambda: col.upsert(vector_for([1], DIM), ids=[1]),
                  lambda: col.delete_items([1])):
        with pytest.raises(ReadOnlyError, match="external collection"):
            write()
    assert len(col) == 2000
    col.build_index("HNSW", M=12)  # structural changes stay allowed

    assert [j.job_id for j in db.list_refresh_jobs("ext")] == [job_id]
    assert [j.job_id for j in db.list_refresh_external_collection_jobs()] == [job_id]
    info = db.describe_external_collection("ext")
    assert info["syncedSnapshotId"] == table.current_snapshot().snapshot_id and info["rows"] == 2000
    assert info["dataFiles"] == 2 and info["lastJobId"] == job_id


def test_create_validates_before_creating(db, lake, table):
    with pytest.raises(NotFoundError, match="ns.nope"):
        db.create_external_collection("ext", lake.source("nope"), SPEC)
    with pytest.raises(InvalidArgumentError, match="'nope' does not exist"):
        db.create_external_collection("ext", lake.source(), {"primaryKey": "id", "vector": "nope"})
    with pytest.raises(InvalidArgumentError, match="exactly one vector"):
        db.create_external_collection("ext", lake.source(), {"primaryKey": "id", "vectors": {"a": "vec", "b": "vec"},
                                                             "vectorField": "a"})
    with pytest.raises(InvalidArgumentError, match="index"):
        db.create_external_collection("ext", lake.source(), {**SPEC, "vector": {"externalField": "vec", "M": 1}})
    assert not db.collection_exists("ext")
    db.create_external_collection("ext", lake.source(), SPEC)
    with pytest.raises(vecstore.AlreadyExistsError):
        db.create_external_collection("ext", lake.source(), SPEC)
    db.create_collection("plain", dim=DIM)
    with pytest.raises(InvalidArgumentError, match="not an external collection"):
        db.refresh_external_collection("plain")
    with pytest.raises(NotFoundError):
        db.refresh_external_collection("missing")


# ------------------------------------------------------------------------ incremental paths


def test_append_reads_only_the_new_files(db, lake, table, count_reads):
    col = make_ext(db, lake)
    v0 = col.version
    new = [append(table, start, 100) for start in (2000, 2100, 2200)]
    assert len(new) == 3
    count_reads.clear()
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert job.stats["mode"] == "append" and job.stats["filesAdded"] == 3
    assert (job.stats["rowsRead"], job.stats["rowsInserted"], job.stats["rowsDeleted"]) == (300, 300, 0)
    assert len(count_reads) == 3 and set(count_reads) <= set(data_files(table))
    assert len(col) == 2300 and col.version == v0 + 1
    assert 2250 in col.search(vector_for([2250], DIM)[0], k=10).ids


def test_delete_diff_and_whole_file_delete_without_reading(db, lake, table, count_reads):
    col = make_ext(db, lake)
    delete_rows(table, "id < 100")  # copy-on-write rewrite of the first file
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert job.stats["mode"] == "file_diff"
    assert (job.stats["rowsDeleted"], job.stats["rowsUnchanged"], job.stats["rowsUpdated"]) == (100, 900, 0)
    assert len(col) == 1900 and not (ids_of(col) & set(range(100)))
    assert all(i >= 100 for i in col.search(vector_for([3], DIM)[0], k=50).ids)
    # a delete matching a whole file: its rows go by their stored keys, nothing is read
    delete_rows(table, "id >= 1000")
    count_reads.clear()
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert count_reads == [] and job.stats["rowsDeleted"] == 1000
    assert ids_of(col) == set(range(100, 1000))
    assert job.stats.get("compacted") == 1100 and col.stats().n_tombstoned == 0  # over the threshold


def test_overwrite_carries_the_new_vectors(db, lake, table):
    col = make_ext(db, lake)
    overwrite(table, make_rows(500, 3, dim=DIM, version=1), "id >= 500 and id < 503")
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert job.stats["rowsUpdated"] == 3 and job.stats["rowsDeleted"] == 0
    rows = col.read_by_only_id([500, 501, 502, 503])
    np.testing.assert_array_equal(rows.vectors[:3], vector_for([500, 501, 502], DIM, 1))
    np.testing.assert_array_equal(rows.vectors[3], vector_for([503], DIM, 0)[0])
    assert [f["title"] for f in rows.fields] == ["title 500 v1", "title 501 v1", "title 502 v1", "title 503 v0"]
    assert 501 in col.search(vector_for([501], DIM, 1)[0], k=10).ids
    assert len(col) == 2000


def test_nothing_new_is_a_noop_job(db, lake, table):
    col = make_ext(db, lake)
    version = col.version
    job = refresh(db)
    assert job.state == "COMPLETED" and job.progress == 100
    assert job.stats["mode"] == "no_op" and job.stats["committed"] is False
    assert col.version == version and len(col) == 2000


def test_column_rename_at_the_source_is_harmless(db, lake, table):
    col = make_ext(db, lake)
    rename_column(table, "title", "headline")
    append(table, 2000, 10)
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert col.read_by_only_id([2005]).fields[0]["title"] == "title 2005 v0"


def fields_by_id(tbl) -> dict:
    """The oracle: pyiceberg's scan of the current table, as {id: fields of the other columns}."""
    rows = tbl.scan().to_arrow().drop_columns(["vec"]).to_pylist()
    return {r.pop("id"): r for r in rows}


def stored_fields(col) -> dict:
    _, ids, fields = col.query_vectors()
    return dict(zip(ids, fields))


def test_a_source_column_named_id_is_not_a_field(db, lake):
    """A field named id is refused (reads put the row's id there, filters mean the row's id):
    with fields: null a non-key column "id" is skipped and listed, an explicit field named id
    is refused, and mapping the column under another name keeps it."""
    t = pa.table({"pk": pa.array([0, 1], pa.int64()),
                  "vec": pa.FixedSizeListArray.from_arrays(pa.array([1.0, 0, 0, 1], pa.float32()), 2),
                  "id": pa.array([100, 7], pa.int64()), "n": pa.array([1, 2], pa.int64())})
    lake.catalog.create_table("ns.withid", schema=t.schema).append(t)
    spec = {"primaryKey": "pk", "vector": {"externalField": "vec", "metric": "l2"}}
    col = make_ext(db, lake, name="auto", spec=spec, table="withid")
    assert stored_fields(col) == {0: {"n": 1}, 1: {"n": 2}}
    assert db.describe_external_collection("auto")["skippedColumns"] == ["id"]
    with pytest.raises(InvalidArgumentError, match="may not be named 'id'"):
        db.create_external_collection("named", lake.source("withid"), {**spec, "fields": ["id"]})
    renamed = make_ext(db, lake, name="renamed", spec={**spec, "fields": {"source_id": "id"}}, table="withid")
    assert stored_fields(renamed) == {0: {"source_id": 100}, 1: {"source_id": 7}}
    assert renamed.query(where="source_id = 7", return_ids_only=True) == [1]


def test_a_column_added_without_a_snapshot_reads_as_null(db, lake, table):
    from pyiceberg.types import StringType

    # ALTER TABLE ADD COLUMN commits a schema, no snapshot: the data files predate the column
    add_column(table, "note", StringType())
    col = make_ext(db, lake)  # fields: null maps the current schema's columns, "note" included
    want = fields_by_id(lake.load())
    assert set(next(iter(want.values()))) == {"title", "year", "price", "note"}
    assert stored_fields(col) == want
    # a synced collection picks up a column added since with a spec that names it
    synced = make_ext(db, lake, name="synced", spec={**SPEC, "fields": ["title"]})
    add_column(table, "note2", StringType())
    job = refresh(db, "synced", external_source=lake.source(), external_spec={**SPEC, "fields": ["title", "note2"]})
    assert job.state == "COMPLETED", job.reason
    assert stored_fields(synced) == {i: {"title": f["title"], "note2": None} for i, f in fields_by_id(lake.load()).items()}
    # a table dropped and re-created behind the same source, its column added before the sync
    lake.catalog.drop_table("ns.docs")
    again = lake.create_table("docs", dim=DIM, rows=50)
    add_column(again, "extra", StringType())
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert stored_fields(col) == fields_by_id(lake.load()) and len(col) == 50
    # a column in neither the snapshot's schema nor the current one is still an error
    with again.update_schema() as upd:
        upd.delete_column("extra")
    version = col.version
    append(again, 50, 5)
    job = refresh(db)
    assert job.state == "FAILED" and "'extra'" in job.reason and "no longer exists" in job.reason, job.reason
    assert col.version == version


def test_row_filter_survives_a_rename_of_its_column(db, lake, table):
    spec = {**SPEC, "fields": ["title"], "rowFilter": "year >= 2010"}
    col = make_ext(db, lake, spec=spec)
    assert ids_of(col) == {i for i in range(2000) if i % 30 >= 20}
    rename_column(table, "year", "pub_year")  # the filter is bound by field id, as mapped columns are
    append(table, 2000, 30)
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert ids_of(col) == {i for i in range(2030) if i % 30 >= 20}
    version = col.version
    with table.update_schema() as upd:  # a dropped filter column fails the job, naming both
        upd.delete_column("pub_year")
    append_table(table, make_rows(3000, 5, dim=DIM).drop_columns(["year"]))
    job = refresh(db)
    assert job.state == "FAILED" and "rowFilter: 'year >= 2010' uses column 'year'" in job.reason, job.reason
    assert "no longer exists" in job.reason and col.version == version


def test_snapshot_pin_and_overrides_persist_only_on_success(db, lake, table):
    s1 = table.snapshots()[0].snapshot_id
    col = make_ext(db, lake)
    with pytest.raises(InvalidArgumentError, match="both or neither"):
        db.refresh_external_collection("ext", external_source=lake.source())
    with pytest.raises(InvalidArgumentError, match="both or neither"):
        db.refresh_external_collection("ext", external_spec=SPEC)
    pinned = {**SPEC, "snapshotId": str(s1)}  # Milvus sends it as a string
    job = refresh(db, external_source=lake.source(), external_spec=pinned)
    assert job.state == "COMPLETED", job.reason
    assert ids_of(col) == set(range(1000)) and job.stats["toSnapshotId"] == s1
    assert json.loads(db.describe_external_collection("ext")["externalSpec"])["snapshotId"] == s1
    append(table, 2000, 10)
    job = refresh(db)  # the persisted (pinned) spec is reused: still s1
    assert job.stats["mode"] == "no_op" and ids_of(col) == set(range(1000))
    bad = {"primaryKey": "id", "vector": "nope"}
    job = refresh(db, external_source=lake.source(), external_spec=bad)
    assert job.state == "FAILED" and "'nope'" in job.reason
    assert json.loads(db.describe_external_collection("ext")["externalSpec"])["snapshotId"] == s1  # unchanged
    job = refresh(db, external_source=lake.source(), external_spec=SPEC)  # unpin: back to the latest
    assert job.state == "COMPLETED", job.reason
    assert ids_of(col) == set(range(2010))


# ------------------------------------------------------------------------------ failures


def test_failures_keep_the_last_good_version_serving(db, lake, table):
    col = make_ext(db, lake)
    version, before = col.version, ids_of(col)
    q = vector_for([42], DIM)[0]
    expected = col.search(q, k=5).ids

    def fails(needle, **kw):
        job = refresh(db, **kw)
        assert job.state == "FAILED", job.stats
        z = job.to_zilliz()
        assert z["state"] == "RefreshFailed" and needle in z["reason"], z["reason"]
        assert z["progress"] < 100 and z["endTime"] >= z["startTime"]
        assert col.version == version and ids_of(col) == before and col.search(q, k=5).ids == expected

    fails("'ns.nope' not found", external_source=lake.source("nope"), external_spec=SPEC)
    fails("column 'nope' does not exist", external_source=lake.source(), external_spec={"primaryKey": "id", "vector": "nope"})
    fails("has type string", external_source=lake.source(), external_spec={"primaryKey": "id", "vector": "title"})
    fails("create a new external collection",
          external_source=lake.source(), external_spec={"primaryKey": "id", "vector": {"externalField": "vec", "dim": 4}})

    def rows(ids, vecs):
        n = len(ids)
        return pa.table({"id": pa.array(ids, pa.int64()), "vec": vecs, "title": [f"t{i}" for i in ids],
                         "year": pa.array([2000] * n, pa.int32()), "price": [1.0] * n})

    def bad_append(table_rows, needle):
        s = append_table(table, table_rows)
        fails(needle)
        return s

    # each bad commit is deleted at the source before the next one
    bad_append(rows([5000, 5001], pa.array([[0.5] * DIM, [0.5] * 3], pa.list_(pa.float32()))),
               "expected dimension 8, got 3")
    delete_rows(table, "id >= 5000")
    bad_append(rows([5002, 5003], pa.array([None, [0.5] * DIM], pa.list_(pa.float32()))), "null in 1 row(s); keys: 5002")
    delete_rows(table, "id >= 5000")
    bad_append(rows([7, 8], vector_array(vector_for([7, 8], DIM))), "repeats 2 key(s)")
    delete_rows(table, "id >= 0")
    fails("refusing to delete all 2000 rows")
    # allowEmpty lets it through
    job = refresh(db, external_source=lake.source(), external_spec={**SPEC, "allowEmpty": True})
    assert job.state == "COMPLETED", job.reason
    assert len(col) == 0


def test_row_filter_that_leaves_no_rows_is_refused_unless_allow_empty(db, lake, table):
    spec = {**SPEC, "rowFilter": "year >= 2010"}
    col = make_ext(db, lake, spec=spec)
    version, before = col.version, ids_of(col)
    assert len(before) == 660
    # a new filter that matches nothing (a rebuild), then a source change that leaves no row
    # passing the filter (a diff): the snapshot has rows, but the collection would lose them all
    job = refresh(db, external_source=lake.source(), external_spec={**SPEC, "rowFilter": "year >= 3000"})
    assert job.state == "FAILED" and "after rowFilter 'year >= 3000'; refusing to delete all 660 rows" in job.reason
    delete_rows(table, "year >= 2010")
    job = refresh(db)
    assert job.state == "FAILED" and "allowEmpty" in job.reason and "refusing to delete all 660" in job.reason
    assert col.version == version and ids_of(col) == before
    job = refresh(db, external_source=lake.source(), external_spec={**spec, "allowEmpty": True})
    assert job.state == "COMPLETED", job.reason
    assert len(col) == 0 and job.stats["rowsDeleted"] == 660


def test_null_vectors_skipped_and_duplicates_last_wins_when_asked(db, lake, table):
    col = make_ext(db, lake, spec={**SPEC, "onNullVector": "skip", "onDuplicatePk": "last_wins"})
    append_table(table, pa.table({"id": pa.array([3000, 7], pa.int64()),
                                  "vec": pa.array([None, vector_for([7], DIM, 1)[0].tolist()], pa.list_(pa.float32())),
                                  "title": ["null", "dup"], "year": pa.array([2000, 2000], pa.int32()),
                                  "price": [1.0, 2.0]}))
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert (job.stats["rowsSkipped"], job.stats["rowsUpdated"], job.stats["rowsInserted"]) == (1, 1, 0)
    assert not col.is_id_exists(3000) and len(col) == 2000
    assert col.read_by_only_id([7]).fields[0]["title"] == "dup"  # the newer data file won


def test_last_wins_brings_back_the_older_row_when_the_newer_file_goes(db, lake, table):
    col = make_ext(db, lake, spec={**SPEC, "onDuplicatePk": "last_wins"})
    append_table(table, make_rows(5, 1, dim=DIM, version=1))  # a newer file holding id 5 again
    assert refresh(db).state == "COMPLETED"
    assert col.read_by_only_id([5]).fields[0]["title"] == "title 5 v1"
    delete_rows(table, "title == 'title 5 v1'")  # removes that whole file: the first file's row is live again
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert (job.stats["rowsDeleted"], job.stats["rowsUpdated"], job.stats["rowsReread"]) == (0, 1, 1)
    rows = col.read_by_only_id([5])
    assert rows.fields[0] == {"title": "title 5 v0", "year": 1995, "price": 2.5}
    np.testing.assert_array_equal(rows.vectors[0], vector_for([5], DIM)[0])
    delete_rows(table, "id == 5")  # now no file holds it
    job = refresh(db)
    assert job.state == "COMPLETED" and job.stats["rowsDeleted"] == 1 and not col.is_id_exists(5)
    assert len(col) == 1999


def test_last_wins_takes_the_newest_data_file_and_incremental_agrees_with_full(db, lake):
    def synced(name, pin=None):  # {id: (title, vector)} of a collection synced afresh
        col = make_ext(db, lake, name=name, spec={**spec, "snapshotId": pin})
        return content(col)

    def content(col):
        got = col.query_vectors()
        return {i: (f["title"], np.round(v, 5).tolist()) for v, i, f in zip(got.vectors, got.ids, got.fields)}

    tbl = lake.create_table("docs", dim=DIM)
    spec = {**SPEC, "onDuplicatePk": "last_wins"}
    # commit order and path order disagree: the newer file's path sorts first
    s1 = add_data_file(tbl, make_rows(0, 3, dim=DIM), "z-older.parquet")
    s2 = add_data_file(tbl, make_rows(1, 1, dim=DIM, version=1), "a-newer.parquet")
    col = make_ext(db, lake, spec=spec)
    assert col.read_by_only_id([1]).fields[0]["title"] == "title 1 v1" and len(col) == 3
    # a copy-on-write rewrite of the older file makes its copy of id 1 the newest
    delete_rows(tbl, "id == 2")
    assert refresh(db).state == "COMPLETED"
    assert col.read_by_only_id([1]).fields[0]["title"] == "title 1 v0"
    assert content(col) == synced("full_now")
    # back to s2: the rewrite is gone and the added older file loses to the kept newer one
    job = refresh(db, external_source=lake.source(), external_spec={**spec, "snapshotId": s2})
    assert job.state == "COMPLETED" and job.stats["mode"] == "file_diff", job.reason
    assert col.read_by_only_id([1]).fields[0]["title"] == "title 1 v1" and job.stats["rowsReread"] == 1
    assert content(col) == synced("full_s2", pin=s2)
    assert synced("full_s1", pin=s1)[1][0] == "title 1 v0"


def test_cancel_changes_nothing_and_releases_the_lock(db, lake, table, gate):
    gate.open.set()
    col = make_ext(db, lake)
    gate.open.clear()
    gate.entered.clear()
    version = col.version
    append(table, 2000, 500)
    job_id = db.refresh_external_collection("ext")
    gate.wait_entered(1)
    assert db.describe_refresh_job(job_id).state == "RUNNING"
    db.cancel_refresh_job(job_id)
    gate.open.set()
    job = db.wait_refresh_job(job_id, timeout=30)
    assert (job.state, job.cancelled, job.reason) == ("FAILED", True, "cancelled by user")
    assert job.to_zilliz()["state"] == "RefreshFailed"
    assert col.version == version and len(col) == 2000
    job = refresh(db)  # the lock was released; the same delta is picked up again
    assert job.state == "COMPLETED" and job.stats["rowsInserted"] == 500


def test_one_refresh_per_collection_others_in_parallel(db, lake, table, gate):
    lake.create_table("other", dim=DIM)
    append(lake.load("other"), 0, 300)
    a = db.create_external_collection("ext", lake.source(), SPEC)
    b = db.create_external_collection("ext2", lake.source("other"), SPEC)
    ja = db.refresh_external_collection("ext")
    with pytest.raises(ConflictError, match="already in progress"):
        db.refresh_external_collection("ext")
    jb = db.refresh_external_collection("ext2")
    gate.wait_entered(2)  # both jobs are reading at the same time
    running = [db.describe_refresh_job(j).to_zilliz() for j in (ja, jb)]
    assert [r["state"] for r in running] == ["RefreshInProgress"] * 2 and all(r["endTime"] == 0 for r in running)
    assert all(0 < r["progress"] < 100 for r in running)
    assert {r.collection_name for r in db.list_refresh_jobs()} == {"ext", "ext2"}
    gate.open.set()
    assert db.wait_refresh_job(ja, timeout=60).state == "COMPLETED"
    assert db.wait_refresh_job(jb, timeout=60).state == "COMPLETED"
    assert (len(a), len(b)) == (2000, 300)


def test_progress_is_monotonic_and_100_only_when_completed(db, lake, table):
    db.create_external_collection("ext", lake.source(), {**SPEC, "batchRows": 100})
    job_id = db.refresh_external_collection("ext")
    seen = []
    while True:
        job = db.describe_refresh_job(job_id)
        seen.append((job.state, job.progress))
        if job.done:
            break
        time.sleep(0.002)
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and seen[-1] == ("COMPLETED", 100)
    assert all(p < 100 for s, p in seen if s != "COMPLETED")


def test_running_job_is_interrupted_by_process_death(tmp_path, lake, table):
    store = tmp_path / "store"
    child = textwrap.dedent(f"""
        import sys, time
        import vecstore
        from vecstore.external import BoundSpec
        def say(line):  # one write per line: with PYTHONUNBUFFERED, print() is several writes
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()
        db = vecstore.connect({str(store)!r}).create_database("app")
        db.create_external_collection("ext", {json.dumps(lake.source())!r}, {json.dumps(SPEC)!r})
        first = db.refresh_external_collection("ext")
        db.wait_refresh_job(first, timeout=60)
        say(f"first {{first}}")
        real = BoundSpec.read
        def stuck(self, *a, **k):
            say("reading")
            time.sleep(120)
            yield from real(self, *a, **k)
        BoundSpec.read = stuck
        sys.stdin.readline()  # the parent appends rows at the source meanwhile
        say(f"second {{db.refresh_external_collection('ext')}}")
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    watchdog = threading.Timer(60, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        lines = [proc.stdout.readline().split()]
        append(table, 2000, 100)  # something new for the second refresh
        proc.stdin.write("go\n")
        proc.stdin.flush()
        lines += [proc.stdout.readline().split() for _ in range(2)]
    finally:
        watchdog.cancel()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # "second" (main thread) and "reading" (the job's thread) may come in either order
    assert lines[0][0] == "first" and sorted(w[0] for w in lines[1:]) == ["reading", "second"], lines
    first, second = int(lines[0][1]), int(next(w for w in lines if w[0] == "second")[1])
    client = vecstore.connect(store)
    try:
        db = client.get_database("app")
        job = db.describe_refresh_job(second)
        assert (job.state, job.reason) == ("FAILED", "interrupted")
        assert job.to_zilliz()["reason"] == "interrupted" and job.end_time > 0
        assert db.describe_refresh_job(first).state == "COMPLETED"  # job records survive restarts
        col = db.get_collection("ext")
        assert len(col) == 2000
        job = refresh(db)  # the lock was released
        assert job.state == "COMPLETED" and len(col) == 2100
    finally:
        client.close()


def test_a_refresh_killed_after_its_commit_is_completed(tmp_path, lake, table):
    store = tmp_path / "store"
    child = textwrap.dedent(f"""
        import os, signal
        import vecstore
        from vecstore.collection import Collection
        db = vecstore.connect({str(store)!r}).create_database("app")
        db.create_external_collection("ext", {json.dumps(lake.source())!r}, {json.dumps(SPEC)!r})
        real = Collection._apply_changes
        def commit_then_die(self, *args, **kwargs):
            real(self, *args, **kwargs)
            print("job", self._get_meta("external:state")["jobId"], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # committed: the job dies in its post-commit work
        Collection._apply_changes = commit_then_die
        db.wait_refresh_job(db.refresh_external_collection("ext"), timeout=60)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.startswith("job "), proc.stderr[-2000:]
    job_id = int(proc.stdout.split()[1])
    client = vecstore.connect(store)
    try:
        db = client.get_database("app")
        [job] = db.list_refresh_jobs("ext")
        assert (job.job_id, job.state, job.progress, job.reason) == (job_id, "COMPLETED", 100, "")
        assert job.to_zilliz()["state"] == "RefreshCompleted" and "after the job's commit" in job.stats["warnings"][0]
        assert db.describe_external_collection("ext")["lastJobId"] == job_id
        col = db.get_collection("ext")
        assert ids_of(col) == set(range(2000))  # the source's rows
        q = vector_for([1234], DIM)[0]
        assert col.search(q, k=1).ids[0] == 1234 and col.index_mode() is not None  # the index caught up
        job = refresh(db)  # the lock was released, and nothing is left to do
        assert job.state == "COMPLETED" and job.stats["mode"] == "no_op", job.stats
    finally:
        client.close()


# --------------------------------------------------------------------- other source forms


def test_volume_and_metadata_sources(tmp_path, db, lake, table):
    with pytest.raises(InvalidArgumentError, match="not mapped"):
        db.create_external_collection("v", {"type": "volume", "path": "volume://wh/ns/docs"}, SPEC)
    assert db.set_volumes({"wh": lake.root / "warehouse"}) == {"wh": str((lake.root / "warehouse").resolve())}
    col = make_ext_source(db, "v", "volume://wh/ns/docs")
    assert len(col) == 2000
    record = db.list_refresh_jobs("v")[-1].to_zilliz()
    assert json.loads(record["externalSource"]) == {"type": "volume", "path": "volume://wh/ns/docs"}
    meta = make_ext_source(db, "m", {"type": "iceberg", "metadataLocation": table.metadata_location})
    assert len(meta) == 2000
    # volumes persist with the database
    db.client.close()
    again = vecstore.connect(tmp_path / "store").get_database("app")
    try:
        assert again.get_volumes() == {"wh": str((lake.root / "warehouse").resolve())}
        append(table, 2000, 5)
        job = refresh(again, "v")  # a volume source always sees the newest commit
        assert job.state == "COMPLETED" and len(again.get_collection("v")) == 2005
    finally:
        again.client.close()


def make_ext_source(db, name, source):
    col = db.create_external_collection(name, source, SPEC)
    job = refresh(db, name)
    assert job.state == "COMPLETED", job.reason
    return col


def test_full_text_fields(db, lake, table):
    spec = {"primaryKey": "id", "vector": "vec", "fields": ["title", "year"], "fullText": ["title"]}
    col = make_ext(db, lake, spec=spec)
    assert col.read_by_only_id([3]).fields[0] == {"title": "title 3 v0", "year": 1993}
    assert col.text_search("1234", k=3).ids[0] == 1234


# --------------------------------------------------------------------------- at scale


def test_100k_rows_searchable_with_recall(db, lake):
    n, dim = 100_000, 16
    x = clustered(n, dim, seed=3)
    tbl = lake.create_table("big", dim=dim, encoding="fixed")
    step = n // 4
    for start in range(0, n, step):  # four data files
        ids = np.arange(start, start + step, dtype=np.int64)
        append_table(tbl, pa.table({"id": pa.array(ids), "vec": vector_array(x[start:start + step], "fixed"),
                                    "title": pa.array([f"doc {i}" for i in ids.tolist()]),
                                    "year": pa.array((1990 + ids % 30).astype(np.int32)),
                                    "price": pa.array(ids * 0.5)}))
        if start == 0:
            spec = {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "l2", "M": 16, "efConstruction": 64}}
            col = db.create_external_collection("big", lake.source("big"), spec)
        elif start == n - step:
            t0 = time.perf_counter()
            assert refresh(db, "big").stats["mode"] == "rebuild"  # first sync: 100k rows
            first = time.perf_counter() - t0
    append_table(tbl, pa.table({"id": pa.array(np.arange(n, n + 10, dtype=np.int64)),
                                "vec": vector_array(x[:10] + 100, "fixed"), "title": pa.array(["x"] * 10),
                                "year": pa.array([2000] * 10, pa.int32()), "price": pa.array([0.0] * 10)}))
    job = refresh(db, "big")
    assert job.state == "COMPLETED" and job.stats["mode"] == "append" and job.stats["rowsRead"] == 10
    assert len(col) == n + 10
    x = np.vstack([x, x[:10] + 100])
    rng = np.random.default_rng(4)
    qs = (x[rng.choice(n, 50, replace=False)] + 0.05 * rng.standard_normal((50, dim))).astype(np.float32)
    d = (qs ** 2).sum(1)[:, None] - 2 * qs @ x.T + (x ** 2).sum(1)[None, :]
    truth = np.argsort(d, axis=1)[:, :10]
    recall = np.mean([len(set(col.search(q, k=10).ids) & set(t.tolist())) / 10 for q, t in zip(qs, truth)])
    print(f"\n100k x {dim}: first sync {first:.1f}s, recall@10 {recall:.3f} vs brute force")
    assert recall >= 0.9
    hits = col.search(qs[0], k=10, where="year >= 2015", return_fields=True)
    assert len(hits.ids) == 10 and all(f["year"] >= 2015 for f in hits.fields)
    assert col.search(x[n + 3], k=1).ids == (n + 3,)
