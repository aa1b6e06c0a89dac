"""The source side of external collections (vecstore/external.py) on real Iceberg tables.

Every table is written by pyiceberg into ``tmp_path`` (SqlCatalog on SQLite + file://
warehouse, see ``iceberg_util``). Run with ``-s`` to see the read-throughput numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import time

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pyiceberg")

from vecstore.errors import DimensionMismatchError, InvalidArgumentError, NotFoundError  # noqa: E402
from vecstore.external import (  # noqa: E402
    BoundSpec,
    ExternalSource,
    ExternalSpec,
    deleted_keys,
    file_key,
    plan_refresh,
    read_files,
    read_keys,
)

from iceberg_util import (  # noqa: E402
    add_column,
    add_data_file,
    add_equality_deletes,
    add_position_deletes,
    append,
    append_table,
    data_files,
    delete_rows,
    make_rows,
    overwrite,
    rename_column,
    vector_array,
    vector_for,
)

DIM = 8
SPEC = {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "cosine"}}


def sync(tbl, bound: BoundSpec, plan) -> dict:
    """What a collection would hold after applying ``plan``: {id: (vector, fields)}."""
    out = {}
    for rows in bound.read(tbl, plan):
        for i, key in enumerate(rows.ids):
            out[key] = (rows.vectors[i], rows.fields[i])
    return out


def all_ids(tbl, snapshot_id=None) -> set:
    return set(tbl.scan(snapshot_id=snapshot_id, selected_fields=("id",)).to_arrow().column(0).to_pylist())


# ------------------------------------------------------------------------------------ source


def test_source_catalog_form_loads_and_round_trips(lake, table):
    as_json = json.dumps(lake.source())
    src = ExternalSource.parse(as_json)
    assert (src.kind, src.table) == ("catalog", ("ns", "docs"))
    loaded = src.load_table()
    assert loaded.current_snapshot().snapshot_id == table.current_snapshot().snapshot_id
    assert ExternalSource.parse(src.to_json()) == src
    listed = ExternalSource.parse({**lake.source(), "table": ["ns", "docs"]})
    assert listed == src


def test_source_metadata_location_and_table_folder(lake, table):
    src = ExternalSource.parse({"type": "iceberg", "metadataLocation": table.metadata_location})
    assert src.kind == "metadata"
    assert src.load_table().current_snapshot().snapshot_id == table.current_snapshot().snapshot_id
    plain = ExternalSource.parse(table.metadata_location)  # a bare string works too
    assert plain == src
    folder = ExternalSource.parse({"metadataLocation": str(lake.table_dir())})
    assert folder.load_table().current_snapshot().snapshot_id == table.current_snapshot().snapshot_id


def test_source_volume_maps_to_local_folder_and_sees_new_commits(lake, table):
    volumes = {"my-volume": str(lake.root / "warehouse")}
    src = ExternalSource.parse({"type": "volume", "path": "volume://my-volume/ns/docs"}, volumes=volumes)
    assert src.local_path == str(lake.table_dir())
    assert src.to_json() == {"type": "volume", "path": "volume://my-volume/ns/docs"}
    assert ExternalSource.parse("volume://my-volume/ns/docs", volumes=volumes) == src
    first = src.load_table().current_snapshot().snapshot_id
    append(table, 5000, 10)
    again = src.load_table()  # newest NNNNN-*.metadata.json, no catalog involved
    assert again.current_snapshot().snapshot_id == table.current_snapshot().snapshot_id != first


def test_source_redacts_secrets(lake):
    src = ExternalSource.parse({"type": "iceberg", "table": "ns.docs",
                                "catalog": {**lake.catalog_props(), "s3.secret-access-key": "hunter2",
                                            "uri": "postgresql://me:pw@db/cat"}})
    shown = json.dumps(src.to_json(redact_secrets=True))
    assert "hunter2" not in shown and ":pw@" not in shown and "***" in shown
    assert "hunter2" in json.dumps(src.to_json())


@pytest.mark.parametrize("value, volumes, needle", [
    ("{not json", None, "externalSource: not valid JSON"),
    (42, None, "externalSource: expected a JSON object"),
    ("", None, "externalSource"),
    ({"type": "s3", "path": "x"}, None, "externalSource.type"),
    ({"type": "iceberg", "catalog": {"type": "sql"}, "table": "docs"}, None, "externalSource.table"),
    ({"type": "iceberg", "catalog": {}, "table": "ns.docs"}, None, "externalSource.catalog"),
    ({"type": "iceberg", "catalog": {"type": "sql"}}, None, "externalSource.table"),
    ({"type": "iceberg", "catalog": {"type": "sql"}, "table": "ns.t", "metadataLocation": "/x.metadata.json"},
     None, "not both"),
    ({"type": "iceberg", "tabel": "ns.t"}, None, "unknown key(s) 'tabel'"),
    ({"type": "volume", "path": "volume://nope/t"}, {"lake": "/data"}, "volume 'nope' is not mapped"),
    ({"type": "volume", "path": "volume://lake/../etc"}, {"lake": "/data"}, "'..' are not allowed"),
    ({"type": "volume", "path": "s3://bucket/t"}, {"lake": "/data"}, "externalSource.path"),
])
def test_source_bad_input_names_the_field(value, volumes, needle):
    with pytest.raises(InvalidArgumentError) as e:
        ExternalSource.parse(value, volumes=volumes)
    assert needle in str(e.value)


def test_source_load_errors(lake, table, tmp_path):
    missing_db = tmp_path / "nowhere" / "c.db"
    src = ExternalSource.parse({"type": "iceberg", "table": "ns.docs",
                                "catalog": {**lake.catalog_props(), "uri": f"sqlite:///{missing_db}"}})
    with pytest.raises(NotFoundError, match="does not exist"):
        src.load_table()
    assert not missing_db.exists()  # a read-only source never creates a catalog
    wrong_name = ExternalSource.parse({**lake.source(), "catalog": {**lake.catalog_props(), "name": "other"}})
    with pytest.raises(NotFoundError, match="catalog.name"):
        wrong_name.load_table()
    with pytest.raises(NotFoundError, match="ns.nope"):
        ExternalSource.parse(lake.source("nope")).load_table()
    with pytest.raises(NotFoundError):
        ExternalSource.parse(str(tmp_path / "missing" / "v1.metadata.json")).load_table()
    with pytest.raises(NotFoundError):
        ExternalSource.parse("volume://v/ns/none", volumes={"v": str(tmp_path)}).load_table()


# -------------------------------------------------------------------------------------- spec


def test_spec_compact_and_design_forms_agree():
    compact = ExternalSpec.parse({"primaryKey": "book_id", "snapshot_id": "123",
                                  "vector": {"externalField": "vec", "dim": 4, "metric": "COS", "index": "HNSW",
                                             "M": 16},
                                  "fields": {"title": "title", "year": "pub_year"}, "fullText": ["title"]})
    design = ExternalSpec.parse(json.dumps({  # refresh.md §5.2.3
        "format": "iceberg-table", "snapshotId": 123, "primaryKey": "id",
        "fields": [{"name": "id", "externalField": "book_id", "type": "int64"},
                   {"name": "title", "externalField": "title", "type": "varchar", "maxLength": 1024},
                   {"name": "year", "externalField": "pub_year", "type": "int64", "nullable": True},
                   {"name": "embedding", "externalField": "vec", "type": "float_vector", "dim": 4,
                    "encoding": "auto"}],
        "vectorField": "embedding", "index": {"metric": "cosine", "M": 16}, "fullText": ["title"]}))
    untyped = dataclasses.replace(design, fields=tuple(dataclasses.replace(f, type=None) for f in design.fields))
    assert compact == untyped
    assert [f.type for f in design.fields] == ["varchar", "int64"]
    assert design.primary_key == "book_id" and design.snapshot_id == 123
    assert design.vector.name == "default" and design.vector.params == {"M": 16}
    assert design.vector.index_mode == "HNSW-COS"
    assert ExternalSpec.parse(design.to_json()) == design


@pytest.mark.parametrize("value, needle", [
    ("[1, 2]", "externalSpec: expected a JSON object"),
    ({"vector": "vec"}, "externalSpec.primaryKey"),
    ({"primaryKey": "id"}, "no vector column"),
    ({"primaryKey": "id", "vector": {"externalField": "vec", "metric": "hamming"}}, "externalSpec.vector.metric"),
    ({"primaryKey": "id", "vector": {"externalField": "vec", "encoding": "f16"}}, "externalSpec.vector.encoding"),
    ({"primaryKey": "id", "vector": {"externalField": "vec", "dim": -3}}, "externalSpec.vector.dim"),
    ({"primaryKey": "id", "vector": {"externalField": "vec", "index": "ANNOY"}}, "externalSpec.vector.index"),
    ({"primaryKey": "id", "vector": "vec", "snapshotId": "latest"}, "externalSpec.snapshotId"),
    ({"primaryKey": "id", "vector": "vec", "primarykey": "x"}, "unknown key(s) 'primarykey'"),
    ({"primaryKey": "id", "vector": "vec", "fields": ["title"], "fullText": ["body"]}, "externalSpec.fullText"),
    ({"primaryKey": "id", "vector": "vec", "rowFilter": "id >>> 3"}, "externalSpec.rowFilter"),
    ({"primaryKey": "id", "vector": "vec", "onNullVector": "zero"}, "externalSpec.onNullVector"),
    ({"primaryKey": "id", "vector": "vec", "fields": [{"name": "t", "type": "blob"}]}, "externalSpec.fields[0].type"),
    ({"primaryKey": "id", "vectors": {"a": "v1", "b": "v2"}}, "externalSpec.vectorField"),
])
def test_spec_bad_input_names_the_field(value, needle):
    with pytest.raises(InvalidArgumentError) as e:
        ExternalSpec.parse(value)
    assert needle in str(e.value)


def test_bind_defaults_detects_dim_and_round_trips(table):
    bound = ExternalSpec.parse(SPEC).bind(table)
    assert bound.vector.dim == DIM and bound.vector.encoding == "list"
    assert [f.name for f in bound.fields] == ["title", "year", "price"]
    assert bound.table_uuid == str(table.metadata.table_uuid)
    again = BoundSpec.from_json(json.loads(json.dumps(bound.to_json())))
    assert again == bound and again.mapping_hash == bound.mapping_hash


@pytest.mark.parametrize("spec, error, needle", [
    ({"primaryKey": "pk", "vector": "vec"}, InvalidArgumentError, "primaryKey column 'pk' does not exist"),
    ({"primaryKey": "price", "vector": "vec"}, InvalidArgumentError, "expected int, long, string or uuid"),
    ({"primaryKey": "id", "vector": "title"}, InvalidArgumentError, "column 'title' has type string"),
    ({"primaryKey": "id", "vector": "vec", "fields": ["title", "body"]}, InvalidArgumentError, "'body' does not exist"),
    ({"primaryKey": "id", "vector": "vec", "fields": [{"name": "y", "externalField": "year", "type": "varchar"}]},
     InvalidArgumentError, "declared varchar"),
    ({"primaryKey": "id", "vector": "vec", "fullText": ["year"]}, InvalidArgumentError, "expected string"),
    ({"primaryKey": "id", "vector": {"externalField": "vec", "encoding": "fixed"}}, InvalidArgumentError,
     "encoding 'fixed_f32le'"),
])
def test_bind_errors_name_the_column(table, spec, error, needle):
    with pytest.raises(error) as e:
        ExternalSpec.parse(spec).bind(table)
    assert needle in str(e.value)


def test_bind_by_field_id_survives_rename(lake, table):
    bound = ExternalSpec.parse({**SPEC, "fields": ["title", "year"], "fullText": ["title"]}).bind(table)
    persisted = json.dumps(bound.to_json())
    rename_column(table, "title", "headline")
    rename_column(table, "vec", "embedding")
    rename_column(table, "id", "doc_id")
    append(table, 2000, 10)  # written with the new names
    tbl = lake.load()
    bound = BoundSpec.from_json(persisted)
    assert bound.columns_for(tbl.schema()) == ["doc_id", "embedding", "headline", "year"]
    plan = plan_refresh(tbl, None, None, None)
    got = sync(tbl, bound, plan)
    assert len(got) == 2010
    assert got[5][1] == {"title": "title 5 v0", "year": 1995}  # vecstore keeps its own field names
    assert got[2003][1]["title"] == "title 2003 v0"
    np.testing.assert_array_equal(got[2003][0], vector_for([2003], DIM)[0])


def test_row_filter_is_bound_by_field_id(lake, table):
    spec = {**SPEC, "fields": ["title"], "rowFilter": "year >= 2010 and not title in ('title 25 v0', 'x')"}
    bound = ExternalSpec.parse(spec).bind(table)
    persisted = json.dumps(bound.to_json())
    rename_column(table, "year", "pub_year")
    rename_column(table, "title", "headline")
    tbl = lake.load()
    bound = BoundSpec.from_json(persisted)
    assert bound.filter_fields == (("year", 4), ("title", 3))
    assert "pub_year" in repr(bound.row_filter_for(tbl.schema())) and "'year'" not in repr(bound.row_filter_for(tbl.schema()))
    got = sync(tbl, bound, plan_refresh(tbl, None, None, None))
    assert set(got) == {i for i in range(2000) if i % 30 >= 20} - {25}
    with tbl.update_schema() as upd:
        upd.delete_column("pub_year")
    with pytest.raises(InvalidArgumentError, match=r"rowFilter: .* uses column 'year' \(field id 4\).*no longer exists"):
        bound.row_filter_for(lake.load().schema())
    # checked once, at bind: columns that do not exist, literals that do not fit
    with pytest.raises(InvalidArgumentError, match="rowFilter: 'nope > 1' names column 'nope'"):
        ExternalSpec.parse({**SPEC, "rowFilter": "nope > 1"}).bind(table)
    with pytest.raises(InvalidArgumentError, match="rowFilter: .* does not apply"):
        ExternalSpec.parse({**SPEC, "rowFilter": "id > 'abc'"}).bind(lake.load())


def test_dropped_column_is_reported(lake, table):
    bound = ExternalSpec.parse({**SPEC, "fields": ["title", "price"]}).bind(table)
    with table.update_schema() as upd:
        upd.delete_column("price")
    with pytest.raises(InvalidArgumentError, match="'price'.*no longer exists"):
        bound.columns_for(lake.load().schema())


def test_columns_added_after_the_snapshot_read_as_null(lake, table):
    from pyiceberg.types import LongType, StringType

    add_column(table, "note", StringType())
    append_table(table, make_rows(2000, 2, dim=DIM).append_column("note", pa.array(["a", "b"])))
    with table.update_schema() as upd:  # dropped, then added again: another column of that name
        upd.delete_column("note")
    add_column(table, "note", StringType())
    add_column(table, "later", LongType())  # schema changes only: the snapshot predates them
    bound = ExternalSpec.parse(SPEC).bind(table)  # binds the current schema's columns
    got = {k: f for k, (_, f) in sync(table, bound, plan_refresh(table, None, None, None)).items()}
    want = {r.pop("id"): r for r in table.scan().to_arrow().drop_columns(["vec"]).to_pylist()}  # pyiceberg's read
    assert got == want and len(got) == 2002
    assert got[2001] == {"title": "title 2001 v0", "year": 2011, "price": 1000.5, "note": None, "later": None}
    with table.update_schema() as upd:  # in neither the snapshot's schema nor the current one
        upd.delete_column("later")
    with pytest.raises(InvalidArgumentError, match="'later'.*no longer exists"):
        sync(table, bound, plan_refresh(table, None, None, None))


# -------------------------------------------------------------------------- vector encodings


@pytest.mark.parametrize("encoding", ["list", "fixed"])
def test_vector_encodings_read_bit_exact(lake, encoding):
    tbl = lake.create_table("enc", dim=16, encoding=encoding)
    append(tbl, 0, 300)
    assert str(tbl.schema().find_field("vec").field_type) == ("list<float>" if encoding == "list" else "fixed[64]")
    bound = ExternalSpec.parse(SPEC).bind(tbl)
    assert (bound.vector.encoding, bound.vector.dim) == ({"list": "list", "fixed": "fixed_f32le"}[encoding], 16)
    got = [r for r in bound.read(tbl, plan_refresh(tbl, None, None, None).added_files, batch_rows=64)]
    assert len(got) == 5  # sliced batches (non-zero Arrow offsets) convert correctly
    ids = [i for r in got for i in r.ids]
    vecs = np.vstack([r.vectors for r in got])
    assert vecs.dtype == np.float32 and vecs.flags.c_contiguous and vecs.flags.writeable
    np.testing.assert_array_equal(vecs, vector_for(ids, 16))


def test_fixed_encoding_dim_mismatch_is_caught_at_bind(lake):
    tbl = lake.create_table("fx", dim=4, encoding="fixed")
    with pytest.raises(DimensionMismatchError, match="holds dim 4"):
        ExternalSpec.parse({"primaryKey": "id", "vector": {"externalField": "vec", "dim": 8}}).bind(tbl)


# ----------------------------------------------------------------------------------- planning


def test_plan_first_sync_is_full(table):
    plan = plan_refresh(table, None, None, None)
    assert plan.kind == "full" and plan.removed_files == []
    assert sorted(plan.added_files) == data_files(table) and len(plan.added_files) == 2
    assert read_keys(table, plan.added_files[:1], "id") == set(range(1000))  # oldest first, not by path
    assert plan.files_after == set(plan.added_files) and plan.added_records == 2000
    assert not plan.deletes_everything and plan.to_stats()["mode"] == "rebuild"


def test_plan_orders_files_oldest_first_not_by_path(lake):
    tbl = lake.create_table("named", dim=DIM)
    add_data_file(tbl, make_rows(0, 3, dim=DIM), "z-first.parquet")
    add_data_file(tbl, make_rows(1, 1, dim=DIM, version=1), "m-second.parquet")
    add_data_file(tbl, make_rows(1, 1, dim=DIM, version=2), "a-third.parquet")
    plan = plan_refresh(tbl, None, None, None)
    names = [k.rsplit("/", 1)[1] for k in plan.added_files]
    assert names == ["z-first.parquet", "m-second.parquet", "a-third.parquet"]  # commit order
    assert [file_key(t) for t in plan.added_tasks] == plan.added_files
    seqs = [plan.order_of(k)[0] for k in plan.added_files]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3  # data sequence numbers
    bound = ExternalSpec.parse({**SPEC, "onDuplicatePk": "last_wins"}).bind(tbl)
    assert sync(tbl, bound, plan)[1][1]["title"] == "title 1 v2"  # the newest data file's row
    # an append plan orders its new files; a diff orders every live file
    add_data_file(tbl, make_rows(7, 1, dim=DIM), "b-fourth.parquet")
    nxt = plan_refresh(tbl, plan.to_snapshot, None, plan.files_after)
    assert nxt.kind == "append" and nxt.order_of(nxt.added_files[0]) > max(map(plan.order_of, plan.added_files))
    delete_rows(tbl, "id == 2")  # rewrites z-first: the rewrite is the newest file now
    diff = plan_refresh(tbl, nxt.to_snapshot, None, nxt.files_after)
    assert diff.kind == "diff" and set(diff.file_order) == diff.files_after
    assert max(diff.files_after, key=diff.order_of) == diff.added_files[0]


def test_plan_noop(table):
    first = plan_refresh(table, None, None, None)
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    assert plan.kind == "noop" and plan.added_files == plan.removed_files == []
    assert plan.files_after == first.files_after


def test_plan_append_reads_only_new_files(lake, table, count_reads):
    bound = ExternalSpec.parse(SPEC).bind(table)
    first = plan_refresh(table, None, None, None)
    for start in (2000, 3000, 4000):
        append(table, start, 1000)
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    assert plan.kind == "append", plan.reason
    assert len(plan.added_files) == 3 and plan.removed_files == []
    assert plan.files_after == set(data_files(table))
    count_reads.clear()
    got = sync(table, bound, plan)
    assert sorted(got) == list(range(2000, 5000))
    assert sorted(count_reads) == sorted(plan.added_files)  # 3 of the 5 files, nothing else
    assert deleted_keys(table, plan, bound.primary_key.field_id) == set()
    # the next refresh only sees the one newer file
    append(table, 9000, 5)
    nxt = plan_refresh(table, plan.to_snapshot, None, plan.files_after)
    assert nxt.kind == "append" and len(nxt.added_files) == 1
    count_reads.clear()
    assert sorted(sync(table, bound, nxt)) == list(range(9000, 9005))
    assert len(count_reads) == 1


def test_plan_delete_is_a_diff(table):
    bound = ExternalSpec.parse(SPEC).bind(table)
    first = plan_refresh(table, None, None, None)
    delete_rows(table, "id < 100")  # partial: copy-on-write rewrite of file 1
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    assert plan.kind == "diff" and "overwrite" in plan.reason
    assert len(plan.added_files) == 1 and len(plan.removed_files) == 1
    assert deleted_keys(table, plan, bound.primary_key.field_id) == set(range(100))
    assert sorted(sync(table, bound, plan)) == list(range(100, 1000))  # rows of the rewritten file
    # a delete matching a whole file drops it without a rewrite
    delete_rows(table, "id >= 1000")
    plan2 = plan_refresh(table, plan.to_snapshot, None, plan.files_after)
    assert plan2.kind == "diff" and plan2.added_files == [] and len(plan2.removed_files) == 1
    assert deleted_keys(table, plan2, bound.primary_key.field_id) == set(range(1000, 2000))


def test_plan_overwrite_upserts_new_vectors(table):
    bound = ExternalSpec.parse(SPEC).bind(table)
    first = plan_refresh(table, None, None, None)
    overwrite(table, make_rows(5, 3, dim=DIM, version=1), "id >= 5 and id < 8")
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    assert plan.kind == "diff"
    got = sync(table, bound, plan)
    np.testing.assert_array_equal(np.vstack([got[i][0] for i in (5, 6, 7)]), vector_for([5, 6, 7], DIM, 1))
    assert got[6][1]["title"] == "title 6 v1"
    np.testing.assert_array_equal(got[4][0], vector_for([4], DIM, 0)[0])
    assert deleted_keys(table, plan, bound.primary_key.field_id) == set()
    assert plan.files_after == set(data_files(table))


def test_snapshot_pin_to_an_older_snapshot(table):
    bound = ExternalSpec.parse(SPEC).bind(table)
    s1 = table.snapshots()[0].snapshot_id  # only ids 0..999
    now = plan_refresh(table, None, None, None)
    pinned = plan_refresh(table, now.to_snapshot, s1, now.files_after)
    assert pinned.kind == "diff" and "pinned back" in pinned.reason
    assert pinned.to_snapshot == s1 and pinned.added_files == [] and len(pinned.removed_files) == 1
    assert deleted_keys(table, pinned, bound.primary_key.field_id) == set(range(1000, 2000))
    assert pinned.files_after == set(data_files(table, s1))
    fresh = plan_refresh(table, None, s1, None)
    assert set(sync(table, bound, fresh)) == all_ids(table, s1) == set(range(1000))
    spec = ExternalSpec.parse({**SPEC, "snapshotId": str(s1)})
    assert spec.snapshot_id == s1
    with pytest.raises(NotFoundError, match="snapshotId: snapshot 12345"):
        plan_refresh(table, None, 12345, None)


def test_empty_snapshot_is_flagged(table):
    first = plan_refresh(table, None, None, None)
    delete_rows(table, "id >= 0")
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    assert plan.empty and plan.deletes_everything and plan.source_records == 0
    assert len(plan.removed_files) == 2 and plan.added_files == []
    assert plan_refresh(table, None, None, None).deletes_everything is False  # nothing synced: nothing lost


def test_positional_deletes_are_applied_and_diffed(table):
    bound = ExternalSpec.parse(SPEC).bind(table)
    first = plan_refresh(table, None, None, None)
    target = next(f for f in data_files(table) if 0 in read_keys(table, [f], "id"))
    add_position_deletes(table, target, [1, 3, 5])  # ids 1, 3, 5 (file 1 holds 0..999 in order)
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    assert plan.kind == "diff"
    assert plan.removed_files == [target] and plan.added_files[0].startswith(target + "#deletes=")
    assert deleted_keys(table, plan, bound.primary_key.field_id) == {1, 3, 5}
    assert set(sync(table, bound, plan)) == set(range(1000)) - {1, 3, 5}
    assert file_key(plan.added_tasks[0]) == plan.added_files[0]


def test_equality_deletes_are_refused_clearly(table):
    first = plan_refresh(table, None, None, None)
    add_equality_deletes(table, [1, 2])
    with pytest.raises(InvalidArgumentError, match="equality-delete files"):
        plan_refresh(table, first.to_snapshot, None, first.files_after)
    with pytest.raises(InvalidArgumentError, match="equality-delete"):
        plan_refresh(table, None, None, None)


def test_read_files_streams_in_bounded_batches(table):
    plan = plan_refresh(table, None, None, None)
    sizes = [b.num_rows for b in read_files(table, plan.added_files, ["id", "vec"], batch_rows=300)]
    assert sum(sizes) == 2000 and max(sizes) <= 300
    with pytest.raises(InvalidArgumentError, match="columns"):
        list(read_files(table, plan.added_files, ["nope"]))


# ---------------------------------------------------------------------------------- conversion


def _batch(ids, vectors, titles=None):
    cols = {"id": pa.array(ids, pa.int64()), "vec": vectors,
            "title": pa.array(titles or [f"t{i}" for i in range(len(ids))]),
            "year": pa.array([2000] * len(ids), pa.int32()), "price": pa.array([1.0] * len(ids))}
    return pa.record_batch(cols)


@pytest.fixture
def bound(table):
    return ExternalSpec.parse(SPEC).bind(table)


def test_convert_null_vector(bound, lake, table):
    vecs = pa.array([[0.1] * DIM, None, [0.2] * DIM], pa.list_(pa.float32()))
    with pytest.raises(InvalidArgumentError, match=r"null in 1 row\(s\); keys: 11"):
        bound.convert(_batch([10, 11, 12], vecs))
    skip = ExternalSpec.parse({**SPEC, "onNullVector": "skip"}).bind(table)
    rows = skip.convert(_batch([10, 11, 12], vecs))
    assert rows.ids == [10, 12] and rows.skipped == [11] and rows.vectors.shape == (2, DIM)
    # the same through a real table: Iceberg accepts the null
    append_table(table, pa.table({"id": pa.array([7000, 7001], pa.int64()),
                                  "vec": pa.array([None, [0.5] * DIM], pa.list_(pa.float32())),
                                  "title": ["a", "b"], "year": pa.array([1, 2], pa.int32()), "price": [1.0, 2.0]}))
    plan = plan_refresh(table, None, None, None)
    with pytest.raises(InvalidArgumentError, match="keys: 7000"):
        list(bound.read(table, plan.added_files))


def test_convert_wrong_dim(bound, table):
    vecs = pa.array([[0.1] * DIM, [0.1] * 3, [0.1] * (DIM + 1)], pa.list_(pa.float32()))
    with pytest.raises(DimensionMismatchError, match=rf"expected dimension {DIM}, got 3, {DIM + 1} in 2 row\(s\); keys: 21, 22"):
        bound.convert(_batch([20, 21, 22], vecs))
    # ragged vectors are accepted by Iceberg on write; the read catches them
    append_table(table, pa.table({"id": pa.array([8000], pa.int64()), "vec": pa.array([[1.0, 2.0]], pa.list_(pa.float32())),
                                  "title": ["x"], "year": pa.array([1], pa.int32()), "price": [1.0]}))
    plan = plan_refresh(table, None, None, None)
    with pytest.raises(DimensionMismatchError, match="keys: 8000"):
        list(bound.read(table, plan.added_files))


def test_convert_nan(bound):
    bad = vector_for([1, 2, 3], DIM)
    bad[1, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"NaN or infinite components in 1 row\(s\); keys: 2"):
        bound.convert(_batch([1, 2, 3], vector_array(bad)))


def test_convert_duplicate_and_bad_keys(bound, table):
    vecs = vector_array(vector_for([1, 2, 3, 4], DIM))
    with pytest.raises(InvalidArgumentError, match=r"2 duplicated value\(s\) in one batch: 1, 2"):
        bound.convert(_batch([1, 2, 1, 2], vecs))
    last = ExternalSpec.parse({**SPEC, "onDuplicatePk": "last_wins"}).bind(table)
    rows = last.convert(_batch([1, 2, 1, 3], vecs, ["a", "b", "c", "d"]))
    assert sorted(zip(rows.ids, (f["title"] for f in rows.fields))) == [(1, "c"), (2, "b"), (3, "d")]
    seen: set = set()
    bound.convert(_batch([1, 2, 3, 4], vecs), seen_keys=seen)
    with pytest.raises(InvalidArgumentError, match="already read"):
        bound.convert(_batch([4, 5, 6, 7], vecs), seen_keys=seen)
    with pytest.raises(InvalidArgumentError, match="negative"):
        bound.convert(_batch([1, -2, 3, 4], vecs))
    null_ids = pa.record_batch({"id": pa.array([1, None, 3, 4], pa.int64()), "vec": vecs,
                                "title": ["a"] * 4, "year": pa.array([1] * 4, pa.int32()), "price": [1.0] * 4})
    with pytest.raises(InvalidArgumentError, match="primary key column 'id' is null"):
        bound.convert(null_ids)


def test_convert_field_types(lake):
    import pyarrow.compute as pc  # noqa: F401

    n = 3
    rows = pa.table({
        "key": pa.array(["a", "b", "c"]),
        "vec": vector_array(vector_for([0, 1, 2], 4)),
        "day": pa.array([dt.date(2024, 1, 2)] * n, pa.date32()),
        "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6)] * n, pa.timestamp("us")),
        "at_tz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
        "amount": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(10, 2)),
        "blob": pa.array([b"\x00\x01"] * n, pa.binary()),
        "score": pa.array([1.5, float("nan"), None], pa.float64()),
        "tags": pa.array([["x", "y"], [], None], pa.list_(pa.string())),
        "meta": pa.array([{"a": 1, "b": "z"}] * n, pa.struct([("a", pa.int64()), ("b", pa.string())])),
        "attrs": pa.array([[("k", "v")], [], None], pa.map_(pa.string(), pa.string())),
        "codes": pa.array([[(1, "one")], [], None], pa.map_(pa.int64(), pa.string())),
        "nest": pa.array([[[("k", 1)]], [[]], [None]], pa.list_(pa.map_(pa.string(), pa.int64()))),
    })
    tbl = lake.catalog.create_table("ns.types", schema=rows.schema)
    tbl.append(rows)
    bound = ExternalSpec.parse({"primaryKey": "key", "vector": "vec"}).bind(tbl)
    assert "blob" in bound.skipped_columns  # binary is skipped by default
    got = [r for r in bound.read(tbl, plan_refresh(tbl, None, None, None).added_files)]
    f = dict(zip(got[0].ids, got[0].fields))
    assert f["a"] == {"day": "2024-01-02", "at": "2024-01-02T03:04:05.000006", "at_tz": "2024-01-02T03:04:05+00:00",
                      "amount": 1.25, "score": 1.5, "tags": ["x", "y"], "meta": {"a": 1, "b": "z"},
                      "attrs": {"k": "v"}, "codes": [[1, "one"]], "nest": [{"k": 1}]}
    assert f["b"]["score"] is None and f["c"]["score"] is None and f["c"]["tags"] is None
    # a map is an object (string keys) or a list of pairs by its type, empty or not
    assert (f["b"]["attrs"], f["b"]["codes"], f["b"]["nest"]) == ({}, [], [{}])
    assert (f["c"]["attrs"], f["c"]["codes"], f["c"]["nest"]) == (None, None, [None])
    b64 = ExternalSpec.parse({"primaryKey": "key", "vector": "vec", "binary": "base64"}).bind(tbl)
    rows64 = next(b64.read(tbl, plan_refresh(tbl, None, None, None).added_files))
    assert rows64.fields[0]["blob"] == "AAE="
    with pytest.raises(InvalidArgumentError, match="binary"):
        ExternalSpec.parse({"primaryKey": "key", "vector": "vec", "fields": ["blob"]}).bind(tbl)


def test_several_vectors_string_keys_and_list_double(lake):
    ids = [f"doc-{i}" for i in range(50)]
    v_default = vector_for(range(50), 4)
    v_title = vector_for(range(50), 6, version=3).astype(np.float64)
    rows = pa.table({"doc": pa.array(ids), "emb": vector_array(v_default, "fixed"),
                     "title_emb": pa.array(list(v_title), pa.list_(pa.float64())), "lang": ["en"] * 50})
    tbl = lake.catalog.create_table("ns.multi", schema=rows.schema)
    tbl.append(rows)
    spec = ExternalSpec.parse({"primaryKey": "doc", "vectorField": "emb",
                               "vectors": {"emb": {"externalField": "emb", "metric": "ip", "index": "FLAT"},
                                           "title": {"externalField": "title_emb", "metric": "l2"}}})
    bound = spec.bind(tbl)
    assert [(v.name, v.encoding, v.dim, v.index_mode) for v in bound.vectors] == [
        ("default", "fixed_f32le", 4, "FLAT-IP"), ("title", "list", 6, "HNSW-L2")]
    got = next(bound.read(tbl, plan_refresh(tbl, None, None, None).added_files))
    assert got.ids == ids and got.fields[0] == {"lang": "en"}
    np.testing.assert_array_equal(got.vectors, v_default)
    np.testing.assert_array_equal(got.named_vectors["title"], v_title.astype(np.float32))


def test_row_filter_limits_rows_and_counts_as_delete(table):
    spec = ExternalSpec.parse({**SPEC, "rowFilter": "year >= 2010"})
    bound = spec.bind(table)
    first = plan_refresh(table, None, None, None)
    kept = sync(table, bound, first)
    assert kept and all(f["year"] >= 2010 for _, f in kept.values())
    # rows that stop matching after a rewrite are deletes
    overwrite(table, make_rows(20, 10, dim=DIM).set_column(3, "year", pa.array([1990] * 10, pa.int32())),
              "id >= 20 and id < 30")
    plan = plan_refresh(table, first.to_snapshot, None, first.files_after)
    gone = deleted_keys(table, plan, bound.primary_key.field_id, row_filter=spec.row_filter)
    was_in = {i for i in range(20, 30) if 1990 + i % 30 >= 2010}
    assert was_in and was_in <= gone


# --------------------------------------------------------------------------------- throughput


@pytest.mark.parametrize("encoding", ["list", "fixed"])
def test_read_100k_rows_throughput(lake, encoding):
    dim, n = 128, 100_000
    tbl = lake.create_table(f"big_{encoding}", dim=dim, encoding=encoding)
    append(tbl, 0, n // 2)
    append(tbl, n // 2, n // 2)
    bound = ExternalSpec.parse({"primaryKey": "id", "vector": "vec", "fields": ["title", "year"]}).bind(tbl)
    plan = plan_refresh(tbl, None, None, None)

    t0 = time.perf_counter()
    bare = tbl.scan().to_arrow()
    t_bare = time.perf_counter() - t0
    assert bare.num_rows == n

    t0 = time.perf_counter()
    total, checksum = 0, 0.0
    for rows in bound.read(tbl, plan.added_tasks):
        total += len(rows)
        checksum += float(rows.vectors[:, 0].sum())
    t_ours = time.perf_counter() - t0
    assert total == n
    print(f"\n[{encoding}] 100k x {dim}: bare scan().to_arrow() {t_bare:.2f}s ({n / t_bare:,.0f} rows/s); "
          f"read_files+convert {t_ours:.2f}s ({n / t_ours:,.0f} rows/s)")
    assert t_ours < 20 * t_bare + 5  # generous: shared, noisy CI machines
