"""The behaviour suite of the core API, run against the local library and the remote client
(the ``client`` fixture), so both modes stay identical."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import vecstore
from conftest import FD_PRESSURE
from vecstore import (AlreadyExistsError, ClosedError, ConflictError, CorruptionError, DimensionMismatchError,
                      InvalidArgumentError, InvalidNameError, NotFoundError, NotSupportedError, VecstoreError)


@pytest.fixture
def col(db):
    c = db.require_collection("items", dim=4, description="demo")
    c.bulk_add_items([
        {"vector": [1, 0, 0, 0], "id": 1, "field": {"lang": "en", "rank": 3}},
        {"vector": [0, 1, 0, 0], "id": 2, "field": {"lang": "de", "rank": 1}},
        {"vector": [0, 0, 1, 0], "id": 3, "field": {"lang": "en", "rank": 2, "tags": ["a", "b"]}},
        {"vector": [0.5, 0.5, 0, 0], "id": 4},
    ])
    return c


def snapshot_state(c):
    """Everything a reader can see, to check that a rejected call changed nothing."""
    return (c.shape, c.query(), c.list_deleted_ids(), c.search([1, 1, 1, 1], k=10).ids)


# --------------------------------------------------------------------------- databases ----
def test_databases_lifecycle(client):
    assert client.list_databases() == []
    db = client.create_database("app")
    assert client.database_exists("app")
    assert client.create_database("app").name == "app"  # idempotent, like LynseDB
    client.create_database("other")
    assert client.list_databases() == ["app", "other"]
    client.drop_database("other")
    assert client.list_databases() == ["app"]
    client.drop_database("never-existed")  # missing is fine
    with pytest.raises(NotFoundError):
        client.get_database("nope")
    assert db.show_collections() == []


# "items\n": "$" in a pattern also matches before a final newline, so it once passed check_name
@pytest.mark.parametrize("bad", ["", "../evil", "a/b", "..", "x" * 129, "sp ace", "é", "items\n", "a\ud800"])
def test_bad_names_never_escape(client, bad):
    with pytest.raises(InvalidNameError):
        client.create_database(bad)
    db = client.create_database("app")
    with pytest.raises(InvalidNameError):
        db.require_collection(bad, dim=2)
    assert client.list_databases() == ["app"] and db.show_collections() == []


@pytest.mark.parametrize("bad", [
    {"drop_if_exists": "false"}, {"drop_if_exists": True, "metric": "bogus"},
    {"drop_if_exists": True, "durability": "slow"}, {"drop_if_exists": True, "description": 5},
    {"drop_if_exists": True, "dim": 0}])
def test_require_collection_checks_every_argument_before_it_drops(col, bad):
    """A string flag was taken as true, and a bad argument after ``drop_if_exists`` was found
    only once the collection was gone."""
    db, before = col.database, snapshot_state(col)
    with pytest.raises(InvalidArgumentError, match=next(iter(k for k in bad if k != "drop_if_exists"), "drop")):
        db.require_collection("items", **{"dim": 4, **bad})
    assert db.show_collections() == ["items"] and snapshot_state(db.get_collection("items")) == before


def test_flags_must_be_booleans(client, col):
    db = col.database
    before = snapshot_state(col)
    calls = [
        lambda: client.create_database("app", drop_if_exists="false"),
        lambda: client.drop_database("app", missing_ok="no"),
        lambda: db.drop_collection("items", missing_ok="no"),
        lambda: col.search([1, 0, 0, 0], return_fields="false"),
        lambda: col.search([1, 0, 0, 0], approx="no"),
        lambda: col.search([1, 0, 0, 0], eps="x"),
        lambda: col.search([1, 0, 0, 0], eps=float("inf")),
        lambda: col.batch_search([[1, 0, 0, 0]], return_fields=1),
        lambda: col.search_range([1, 0, 0, 0], 0.5, return_fields="yes"),
        lambda: col.search_profile([1, 0, 0, 0], return_fields="yes"),
        lambda: col.query("rank > 1", return_ids_only="yes"),
        lambda: col.text_search("en", return_fields="yes"),
        lambda: col.sparse_search({1: 1.0}, return_fields="yes"),
        lambda: col.hybrid_search([1, 0, 0, 0], return_fields="yes"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError):
            call()
    assert client.list_databases() == ["app"] and db.show_collections() == ["items"]
    assert snapshot_state(db.get_collection("items")) == before


def test_require_collection_create_open_and_drop(db):
    db.require_collection("items", dim=4, description="demo")
    assert db.show_collections() == ["items"]
    assert db.collection_exists("items")
    again = db.require_collection("items")
    assert again.get_collection_config().dim == 4
    assert again.get_collection_config().description == "demo"
    with pytest.raises(DimensionMismatchError):
        db.require_collection("items", dim=8)
    assert db.require_collection("fresh").dim == 0  # no dim yet: the first vectors set it (test_dimless)
    db.drop_collection("fresh")
    c2 = db.require_collection("items", dim=2, drop_if_exists=True)
    assert c2.get_collection_config().dim == 2
    db.drop_collection("items")
    assert db.show_collections() == []
    db.drop_collection("items")  # missing is fine
    with pytest.raises(NotFoundError):
        db.get_collection("items")


# --------------------------------------------------------------------------- writes -------
def test_auto_ids_continue_from_max(db):
    c = db.require_collection("items", dim=2)
    assert c.bulk_add_items([{"vector": [1, 0], "id": 5}, {"vector": [0, 1]}, {"vector": [1, 1], "id": 2}]) == [5, 0, 2]
    assert c.add_item([0.2, 0.3]) == 6
    assert c.max_id() == 6


def test_max_id_scans_the_rows_once_per_change_of_liveness(local_client):
    """Once the largest int id is deleted, ``max_id`` needs a scan of every row; ``stats()``
    (and the /stats route) did that scan on every call. It is now kept until a row's liveness
    changes, and right across deletes, restores and adds."""
    col = local_client.create_database("app").require_collection("c", dim=2)
    col.add(np.ones((6, 2)), ids=[1, 7, "x", 3, 9, 4])

    class Counting(list):
        scans = 0

        def __iter__(self):
            Counting.scans += 1
            return super().__iter__()

    col._ids = Counting(col._ids)
    assert col.max_id() == 9 and Counting.scans == 0
    col.delete_items([9])
    assert [col.stats().max_id, col.max_id(), col.max_id()] == [7, 7, 7] and Counting.scans == 1
    col.delete_items([7])
    assert col.max_id() == 4 and col.max_id() == 4 and Counting.scans == 2
    col.restore_items([7])
    assert col.max_id() == 7
    col.add([[0, 1]], ids=[5])
    assert col.max_id() == 7
    col.restore_items([9])
    assert col.max_id() == 9


def test_string_ids_and_columnar_add(db):
    c = db.require_collection("items", dim=3, metric="l2")
    ids = c.add(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], fields=[{"n": 1}, None, {"n": 3}])
    assert ids == ["a", "b", "c"]
    assert c.read_by_only_id("b").fields == ({},)
    assert c.max_id() == -1
    assert c.search([0, 1, 0], k=1).ids == ("b",)
    assert c.upsert(np.ones((1, 3)), ids=["a"]) == ["a"]
    assert c.read_by_only_id("a").fields == ({"n": 1},)  # fields=None keeps them


def _nested_list(depth: int) -> list:
    out: list = [1]
    for _ in range(depth - 1):
        out = [out]
    return out


@pytest.mark.parametrize("bad_call, error", [
    (lambda c: c.add_item([1, 2, 3], id=9), DimensionMismatchError),
    (lambda c: c.add_item([1, float("nan"), 0, 0], id=9), InvalidArgumentError),
    (lambda c: c.add_item([1, float("inf"), 0, 0], id=9), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=1), AlreadyExistsError),
    (lambda c: c.add_item([1, 0, 0, 0], id=-1), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=1.5), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=True), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=""), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": {1, 2}}), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": float("nan")}), InvalidArgumentError),
    (lambda c: c.add_item(["a", "b", "c", "d"], id=10), InvalidArgumentError),
    (lambda c: c.bulk_add_items([]), InvalidArgumentError),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 7}, {"vector": [1, 0, 0, 0], "id": 7}]), InvalidArgumentError),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 7}, {"vector": [1, 0], "id": 8}]), InvalidArgumentError),
    (lambda c: c.upsert_items([{"vector": [1, 0, 0, 0]}]), InvalidArgumentError),
    (lambda c: c.upsert_items(None), InvalidArgumentError),
    (lambda c: c.upsert_items(5), InvalidArgumentError),
    (lambda c: c.upsert_items([[1.0, 0, 0, 0]]), InvalidArgumentError),
    (lambda c: c.bulk_add_items("x"), InvalidArgumentError),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0]}, None]), InvalidArgumentError),
    (lambda c: c.commit([1, 2]), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": _nested_list(9)}), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": _nested_list(600)}), InvalidArgumentError),
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"x": [{"y": _nested_list(8)}]}), InvalidArgumentError),
    (lambda c: c.delete_items([99]), NotFoundError),
    (lambda c: c.restore_items([99]), NotFoundError),
    (lambda c: c.read_by_only_id(99), NotFoundError),
    (lambda c: c.read_by_only_id({1: 2}), InvalidArgumentError),
    (lambda c: c.read_by_only_id({1, 2}), InvalidArgumentError),  # no order to return the rows in
    (lambda c: c.read_by_only_id(frozenset([3])), InvalidArgumentError),
    (lambda c: c.delete_items({1: 2}), InvalidArgumentError),
    (lambda c: c.search([1, 0, 0], k=1), DimensionMismatchError),
    (lambda c: c.search([1, 0, 0, 0], k=-1), InvalidArgumentError),
    (lambda c: c.head(-1), InvalidArgumentError),
    (lambda c: c.search([1, 0, 0, 0], k=0, where="lang = "), InvalidArgumentError),  # k=0 still checks the rest
    (lambda c: c.search([1, 0, 0, 0], k=1, vector_field="nope"), NotFoundError),
    # a field named id: query() overwrote it with the row's id, and `where id = ...` never reached it
    (lambda c: c.add_item([1, 0, 0, 0], id=10, field={"id": "ext-1"}), InvalidArgumentError),
    (lambda c: c.upsert_items([{"vector": [1, 0, 0, 0], "id": 1, "field": {"id": 1}}]), InvalidArgumentError),
    # a named field's dim had no upper bound: 10**9 was a MemoryError, 2**64 a ValueError (500s)
    (lambda c: c.create_vector_field("big", dim=10**9), InvalidArgumentError),
    (lambda c: c.create_vector_field("big", dim=2**64), InvalidArgumentError),
    # a TypeError locally: an int is not iterable, a list is unhashable
    (lambda c: c.add([[1, 0, 0, 0]], ids=5), InvalidArgumentError),
    (lambda c: c.add_named_vectors(["nv"], [[1, 0]], ids=[1]), InvalidArgumentError),
    (lambda c: c.build_vector_field_index(["nv"], "FLAT"), InvalidArgumentError),
    (lambda c: c.remove_vector_field_index(["nv"]), InvalidArgumentError),
    # not real numbers: numpy's cast to float32 dropped an imaginary part, made a date a day count
    # and "1.5" a number, silently (a ComplexWarning at most)
    (lambda c: c.add(np.array([[1 + 5j, 2, 3, 4]]), ids=[10]), InvalidArgumentError),
    (lambda c: c.add([[1 + 5j, 2, 3, 4]], ids=[10]), InvalidArgumentError),
    (lambda c: c.add_item(np.array([3j, 1, 0, 0]), id=10), InvalidArgumentError),
    (lambda c: c.upsert(np.array([[7 + 1j, 0, 0, 0]]), ids=[1]), InvalidArgumentError),
    (lambda c: c.bulk_add_items([{"vector": ["1.5", "2", "3", "4"], "id": 10}]), InvalidArgumentError),
    (lambda c: c.add(np.array([["2020-01-01"] * 4], dtype="datetime64[D]"), ids=[10]), InvalidArgumentError),
    (lambda c: c.upsert_items([{"vector": [b"1", b"2", b"3", b"4"], "id": 1}]), InvalidArgumentError),
    (lambda c: c.add([[1, None, 0, 0]], ids=[10]), InvalidArgumentError),
    (lambda c: c.search(np.array([1j, 0, 0, 0]), k=1), InvalidArgumentError),
    (lambda c: c.search(np.array([1, 0, 0, 0], dtype="timedelta64[s]"), k=1), InvalidArgumentError),
    (lambda c: c.batch_search(np.array([[1j, 0, 0, 0]]), k=1), InvalidArgumentError),
    (lambda c: c.search_range(np.array([1j, 0, 0, 0]), threshold=1.0), InvalidArgumentError),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(col, bad_call, error):
    before = snapshot_state(col)
    with pytest.raises(error) as exc:
        bad_call(col)
    assert str(exc.value)  # a message, naming what was wrong
    assert snapshot_state(col) == before


def test_a_results_repr_shows_small_scores_and_what_it_holds(db):
    """The repr rounded scores to 4 decimals: squared L2 distances 0, 1e-6 and 4e-6 all printed
    as 0.0, as if the three hits were ties."""
    col = db.require_collection("near", dim=2, metric="l2")
    col.add([[1, 0], [1, 0.001], [1, 0.002]], ids=[1, 2, 3])
    r = col.search([1, 0], k=3, return_fields=True)
    assert repr(r) == ("SearchResult(ids=[1, 2, 3], scores=[0, 1e-06, 4e-06], fields=[3 dicts], k=3, "
                       f"index={r.index!r})")


def test_real_numbers_of_every_kind_are_vectors(col):
    """What the refusal of complex, date and string vectors must not refuse: bools, ints
    (beyond int64 too, as objects), unsigned and float16 arrays, Decimal and numpy scalars."""
    from decimal import Decimal
    col.add(np.array([[True, False, False, False]]), ids=[10])
    col.add(np.array([[0, 2, 0, 0]], dtype=np.uint8), ids=[11])
    col.add([[2**70, 0, 0, 0]], ids=[12])
    col.add([[Decimal("0.5"), np.float64(1), 0, 0]], ids=[13])
    col.add(np.array([[0, 0, 1.5, 0]], dtype=np.float16), ids=[14])
    got = col.read_by_only_id([10, 11, 12, 13, 14]).vectors
    np.testing.assert_array_equal(got, np.array([[1, 0, 0, 0], [0, 2, 0, 0], [2.0**70, 0, 0, 0],
                                                 [0.5, 1, 0, 0], [0, 0, 1.5, 0]], dtype=np.float32))
    assert col.search(np.array([0, 1, 0, 0], dtype=np.int64), k=1).ids == (11,)


def test_fields_nested_as_deep_as_allowed_round_trip(col):
    deep = {"x": _nested_list(8), "d": {"a": {"b": {"c": {"d": {"e": {"f": {"g": [1]}}}}}}}}
    col.add_item([1, 0, 0, 0], id=10, field=deep)
    assert col.read_by_only_id(10).fields == (deep,)


def test_a_str_valued_enum_in_fields_reads_back_as_its_text(db, tmp_path):
    import enum

    class Lang(str, enum.Enum):
        EN = "en"
    c = db.require_collection("enum", dim=2)
    c.add_item([1, 0], id=1, field={"lang": Lang.EN, "tags": [Lang.EN], Lang.EN: 1})
    c.add_item([0, 1], id=Lang.EN)
    fields = c.read_by_only_id(1).fields[0]
    assert fields == {"lang": "en", "tags": ["en"], "en": 1}
    assert type(fields["lang"]) is str and type(fields["tags"][0]) is str
    assert [type(k) for k in fields] == [str, str, str]
    assert [type(i) for i in c.query(return_ids_only=True)] == [int, str]


def test_error_messages_name_the_parameter(col):
    with pytest.raises(DimensionMismatchError, match="expected dimension 4, got 3"):
        col.add_item([1, 2, 3])
    with pytest.raises(AlreadyExistsError, match="1"):
        col.add_item([1, 0, 0, 0], id=1)
    with pytest.raises(InvalidArgumentError, match="k"):
        col.search([1, 0, 0, 0], k=-3)


@pytest.mark.parametrize("bad_call, message", [
    # columns that do not line up: the remote client once chunked by len(ids) and stored a part
    (lambda c: c.add([[1, 0, 0, 0], [0, 1, 0, 0]], ids=[7]), "ids: expected 2 ids to match vectors, got 1"),
    (lambda c: c.add([[1, 0, 0, 0], [0, 1, 0, 0]], ids=[None]), "ids: expected 2 ids to match vectors, got 1"),
    (lambda c: c.add([[1, 0, 0, 0]], ids=[7], fields=[{"a": 1}, {"a": 2}]),
     "fields: expected 1 dicts to match vectors, got 2"),
    (lambda c: c.add([[1, 0, 0, 0]], fields={"a": 1}), "fields: expected a list of dicts (one per vector), got dict"),
    (lambda c: c.add(np.zeros((0, 4)), ids=[]), "vectors: expected at least one vector, got none"),
    (lambda c: c.upsert([[1, 0, 0, 0], [0, 1, 0, 0]], ids=[1]), "ids: expected 2 ids to match vectors, got 1"),
    (lambda c: c.upsert([[1, 0, 0, 0]], ids=[1], fields=[None, None]),
     "fields: expected 1 entries to match vectors, got 2"),
    (lambda c: c.upsert(np.zeros((0, 4)), ids=[]), "ids: expected at least one id, got an empty list"),
    # a key JSON would turn into a string ({1: "x"} -> {"1": "x"}), so the remote client checks it
    (lambda c: c.add_item([1, 0, 0, 0], id=9, field={1: "x"}),
     "items[0].field: expected non-empty string keys, got key 1"),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 9}, {"vector": [0, 1, 0, 0], "id": 10, "field": {2: 0}}]),
     "items[1].field: expected non-empty string keys, got key 2"),
    (lambda c: c.upsert_items([{"vector": [1, 0, 0, 0], "id": 1, "field": {3: 0}}]),
     "items[0].field: expected non-empty string keys, got key 3"),
    (lambda c: c.add([[1, 0, 0, 0]], ids=["s"], fields=[{4: 0}]), "fields[0]: expected non-empty string keys, got key 4"),
    (lambda c: c.upsert([[1, 0, 0, 0]], ids=[1], fields=[{5: 0}]), "fields[0]: expected non-empty string keys, got key 5"),
    # NaN has no JSON form: the remote client refuses it with the library's message
    (lambda c: c.add_item([1, float("nan"), 0, 0], id=9),
     "items[].vector: expected finite numbers, found NaN or inf in row(s) 0"),
    (lambda c: c.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 9}, {"vector": [0, float("inf"), 0, 0], "id": 10}]),
     "items[].vector: expected finite numbers, found NaN or inf in row(s) 1"),
])
def test_write_errors_are_the_same_locally_and_remotely(col, bad_call, message):
    before = snapshot_state(col)
    with pytest.raises(InvalidArgumentError) as exc:
        bad_call(col)
    assert type(exc.value) is InvalidArgumentError and str(exc.value) == message
    assert snapshot_state(col) == before


def test_text_without_a_utf8_form_is_refused_and_changes_nothing(col):
    """A lone surrogate ("\\ud800", a legal JSON escape) is a str that LMDB, msgpack and
    tantivy cannot encode: refused, never a bare UnicodeEncodeError (locally) or a 500."""
    before = snapshot_state(col)
    calls = [lambda: col.add_item([1, 0, 0, 0], id="x\ud800"),
             lambda: col.add_item([1, 0, 0, 0], id=9, field={"t": "\ud800"}),
             lambda: col.add_item([1, 0, 0, 0], id=9, field={"\udfff": 1}),
             lambda: col.upsert([[1, 0, 0, 0]], ids=["\ud800"]),
             lambda: col.upsert([[1, 0, 0, 0]], ids=[1], fields=[{"tags": ["\udc00"]}]),
             lambda: col.is_id_exists("\ud800"),
             lambda: col.read_by_only_id(["\ud800"]),
             lambda: col.text_search("\ud800"),
             lambda: col.query(where="lang = '\ud800'"),
             lambda: col.search([1, 0, 0, 0], where="lang = '\ud800'"),
             lambda: col.update_description("\ud800")]
    for call in calls:
        with pytest.raises(InvalidArgumentError, match="expected valid Unicode text"):
            call()
    assert snapshot_state(col) == before
    assert col.get_collection_config().description == "demo"
    col.add_item([1, 1, 0, 0], id="é\U0001F600", field={"t": "\U0001F600"})  # valid non-ASCII text is fine
    assert col.read_by_only_id("é\U0001F600").fields == ({"t": "\U0001F600"},)


def test_validators_refuse_text_without_a_utf8_form():
    from vecstore import validation as v
    for call, param in [(lambda: v.check_id("a\ud800", param="ids"), "ids"),
                        (lambda: v.check_str("\udfff", param="where"), "where"),
                        (lambda: v.check_blob_key("k\ud800"), "key"),
                        (lambda: v.check_fields({"t": ["ok", "\ud800"]}), "field['t']"),
                        (lambda: v.check_fields({"\ud800": 1}), "field key")]:
        with pytest.raises(InvalidArgumentError) as exc:
            call()
        assert str(exc.value).startswith(f"{param}: expected valid Unicode text, got "), exc.value
    with pytest.raises(InvalidNameError):
        v.check_name("a\ud800", what="collection_name")
    assert v.check_id("é" * 200) == "é" * 200  # 400 UTF-8 bytes: the limit counts bytes, not characters
    with pytest.raises(InvalidArgumentError, match="at most 400 bytes"):
        v.check_id("é" * 201)


def test_an_empty_query_of_a_collection_without_a_dim_is_a_dimension_error(db):
    col = db.require_collection("dimless")  # dim 0 until the first vectors
    for q in ([], np.zeros(0, np.float32)):  # the float32 one divided by zero in the fast path
        with pytest.raises(DimensionMismatchError, match="vector: expected a dimension in"):
            col.search(q)
        with pytest.raises(DimensionMismatchError):
            col.search_range(q, threshold=0.5)


def test_upsert_replaces_vector_and_fields(col):
    col.upsert_items([{"vector": [0, 0, 0, 1], "id": 1, "field": {"lang": "fr"}},
                      {"vector": [0, 0, 0, 2], "id": 50}])
    r = col.read_by_only_id([1, 50])
    assert r.ids == (1, 50)
    assert r.fields == ({"lang": "fr"}, {})
    np.testing.assert_allclose(r.vectors[0], [0, 0, 0, 1])
    col.upsert_items([{"vector": [0, 0, 1, 1], "id": 1}])  # no "field": keep
    assert col.read_by_only_id(1).fields == ({"lang": "fr"},)


# --------------------------------------------------------------------------- deletes ------
def test_deleted_rows_vanish_from_every_read(col):
    assert col.delete_items([1, 3]) == 2
    assert col.delete_items([1]) == 0  # already deleted: nothing to do
    assert col.list_deleted_ids() == [1, 3]
    assert 1 not in col.search([1, 0, 0, 0], k=10).ids
    assert col.head(10).ids == (2, 4)
    assert col.tail(10).ids == (2, 4)
    assert col.query(return_ids_only=True) == [2, 4]
    assert col.query_vectors().ids == (2, 4)
    assert not col.is_id_exists(1)
    with pytest.raises(NotFoundError):
        col.read_by_only_id(1)
    assert col.shape == (2, 4)
    s = col.stats()
    assert (s.n_vectors, s.n_live, s.n_tombstoned) == (4, 2, 2)
    with pytest.raises(AlreadyExistsError, match="soft-deleted"):
        col.add_item([1, 0, 0, 0], id=1)
    assert col.restore_items([1]) == 1
    assert col.search([1, 0, 0, 0], k=1).ids == (1,)
    assert col.compact() == 1  # id 3 removed for good
    assert col.list_deleted_ids() == []
    assert col.add_item([0, 0, 1, 0], id=3) == 3  # the id is free again
    assert col.head(10).ids == (1, 2, 4, 3)


def test_missing_ok_skips_unknown_ids_and_counts_the_rows_changed(col):
    assert col.delete_items([2, 99, 3, 2], missing_ok=True) == 2  # 99 skipped, 2 once
    assert col.list_deleted_ids() == [2, 3]
    assert col.delete_items([2, 98], missing_ok=True) == 0  # already deleted, and unknown
    with pytest.raises(NotFoundError, match="99"):  # the default stays strict: nothing restored
        col.restore_items([2, 99])
    assert col.list_deleted_ids() == [2, 3]
    assert col.restore_items([99, 3], missing_ok=True) == 1
    assert col.list_deleted_ids() == [2]
    assert col.search([1, 1, 1, 1], k=10).ids == (1, 3, 4)
    with pytest.raises(InvalidArgumentError, match="missing_ok"):
        col.delete_items([1], missing_ok="yes")


def test_create_vector_field_again_returns_the_field_unless_its_configuration_differs(col):
    first = col.create_vector_field("tv", dim=2, metric="cos", index_mode="FLAT-COS")
    col.add_named_vectors("tv", [[1, 0], [0, 1]], ids=[1, 2])
    assert col.create_vector_field("tv", dim=2, metric="cosine", index_mode="flat-cosine") == first
    assert col.create_vector_field("tv", dim=2, metric="cosine") == first  # no index_mode: not compared
    col.build_vector_field_index("tv", "HNSW-COS")
    assert col.create_vector_field("tv", dim=2, metric="cosine", index_mode="HNSW").index_mode == "HNSW-COS"
    for kw, differs in (({"dim": 3, "metric": "cosine"}, "dim 2 (asked 3)"),
                        ({"dim": 2, "metric": "l2"}, "metric 'cosine' (asked 'l2')"),
                        ({"dim": 2, "metric": "cosine", "index_mode": "FLAT"}, "index_mode 'HNSW-COS' (asked 'FLAT')"),
                        ({"dim": 2, "metric": "cosine", "index_mode": "HNSW-L2"}, "metric 'cosine' (asked 'l2')")):
        with pytest.raises(ConflictError, match="'tv' already exists with " + differs.replace("(", r"\(").replace(")", r"\)")):
            col.create_vector_field("tv", **kw)
    assert [(f.name, f.dimension, f.metric, f.index_mode) for f in col.list_vector_fields()][1:] == \
        [("tv", 2, "cosine", "HNSW-COS")]
    assert col.search([1, 0], k=2, vector_field="tv").ids == (1, 2)  # the vectors were kept


@pytest.mark.parametrize("mode", [None, "HNSW", "IVF"])
def test_asking_for_zero_results_is_an_empty_result_as_in_lynsedb(col, mode):
    col.add_sparse_vectors([{1: 1.0}], ids=[1])
    if mode:
        col.build_index(mode)
    q = [1, 1, 0, 0]
    before = snapshot_state(col)
    empty = [col.search(q, k=0), col.search(q, k=0, where="rank > 1"), col.search_profile(q, k=0).result,
             *col.batch_search([q, q], k=0), col.sparse_search({1: 1.0}, k=0), col.text_search("en", k=0),
             col.hybrid_search(q, text="en", k=0), col.hybrid_search(q, k=0), col.search_range(q, 10.0, max_results=0)]
    assert [(r.ids, len(r.scores)) for r in empty] == [((), 0)] * len(empty)
    assert col.search(q, k=0).k == 0 and col.search([0, 0, 1, 0], k=1).ids == (3,)  # and k=1 is still one
    assert col.head(0).ids == col.tail(0).ids == () and col.tail(1).ids == (4,) and len(col.tail(5).ids) == 4
    assert col.delete_items([]) == col.restore_items([]) == 0
    assert snapshot_state(col) == before


def test_delete_by_where(col):
    assert col.delete_items(where="lang = 'en'") == 2
    assert col.query(return_ids_only=True) == [2, 4]


# --------------------------------------------------------------------------- reads --------
def test_search_shapes_and_order(col):
    r = col.search([1, 0, 0, 0], k=2, return_fields=True)
    ids, scores, fields = r
    assert ids == (1, 4)
    assert list(np.round(scores, 4)) == [1.0, 0.5]
    assert fields == ({"lang": "en", "rank": 3}, {})
    assert r.index == "FLAT-IP"
    assert col.search([1, 0, 0, 0], k=2).fields is None
    assert len(col.search([1, 0, 0, 0], k=100)) == 4
    assert col.search([1, 0, 0, 0], k=2, where="lang = 'de'").ids == (2,)
    batch = col.batch_search([[1, 0, 0, 0], [0, 1, 0, 0]], k=1)
    assert [b.ids for b in batch] == [(1,), (2,)]
    rng = col.search_range([1, 0, 0, 0], threshold=0.4)
    assert rng.ids == (1, 4)
    prof = col.search_profile([1, 0, 0, 0], k=2, where="rank >= 1")
    assert prof.result.ids == (1, 2)  # 2 and 3 tie at 0.0: storage order breaks it
    assert prof.profile["index_path"] == "flat_mmap_filtered"
    assert prof.profile["filter_matches"] == 3


def test_reads(col):
    vectors, ids, fields = col.head(2)
    assert ids == (1, 2) and vectors.shape == (2, 4)
    assert col.tail(1).ids == (4,)
    assert col.query(where="lang = 'en'") == [{"lang": "en", "rank": 3, "id": 1},
                                              {"lang": "en", "rank": 2, "tags": ["a", "b"], "id": 3}]
    assert col.query(filter_ids=[3, 4, 77], return_ids_only=True) == [3, 4]
    assert col.list_fields() == ["lang", "rank", "tags"]
    assert col.is_id_exists(2) and not col.is_id_exists(77)
    assert col.max_id() == 4
    assert col.shape == (4, 4)
    # None, as index_mode() says ("none" is LynseDB's /stats wire value only: tests/server)
    assert col.stats().index_mode is col.index_mode() is None
    col.build_index("FLAT-L2")
    assert col.stats().index_mode == col.index_mode() == "FLAT-L2"
    col.remove_index()
    assert col.update_description("new") == "new"
    assert col.get_collection_config().description == "new"


def test_l2_and_cosine_scores(db):
    l2 = db.require_collection("l2", dim=4, metric="l2")
    l2.add_item([0, 0, 1, 0], id=0)
    l2.add_item([0, 0, 0.5, 0.5], id=1)
    r = l2.search([0, 0, 1, 0], k=2)
    assert r.ids == (0, 1) and np.allclose(r.scores, [0.0, 0.5])  # squared L2 (LynseDB §8.2)
    cos = db.require_collection("cos", dim=2, metric="cosine")
    cos.add_item([1, 0.1], id=0)
    r = cos.search([1, 0], k=1)
    assert np.isclose(r.scores[0], 0.00496, atol=1e-4)  # cosine distance = 1 - cos
    with pytest.raises(InvalidArgumentError, match="zero vector"):
        cos.add_item([0, 0], id=1)


def test_closed_handle_raises(db):
    c = db.require_collection("items", dim=2)
    with c:
        c.add_item([1, 0], id=1)
    with pytest.raises(ClosedError):
        c.search([1, 0], k=1)
    c.close()  # twice is harmless


def test_close_releases_vectors_and_indexes_while_the_handle_lives(tmp_path):
    """A handle kept after close() (a notebook variable, a cache) must not pin every vector."""
    import gc
    import weakref
    c = vecstore.connect(tmp_path).create_database("app").require_collection("big", dim=8, metric="l2")
    c.add(np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32))
    c.build_index("HNSW-L2")
    c.create_vector_field("t", dim=4)
    c.add_named_vectors("t", np.ones((3, 4)), [0, 1, 2])
    held = [weakref.ref(c._default.matrix), weakref.ref(c._default.index), weakref.ref(c._named["t"].matrix)]
    c.close()
    gc.collect()
    assert [r() for r in held] == [None, None, None]
    with pytest.raises(ClosedError):
        c.search(np.ones(8), k=1)
    assert "closed" in repr(c)


def test_reopen_restores_everything(tmp_path):
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        c = client.create_database("app").require_collection("items", dim=3, metric="l2", description="d")
        c.add(np.eye(3), ids=[1, 2, "x"], fields=[{"a": 1}, {"b": [1, 2]}, {"c": "s"}])
        c.delete_items([2])
    with vecstore.connect(path) as client:
        c = client.get_database("app").get_collection("items")
        assert c.get_collection_config().metric == "l2"
        assert c.get_collection_config().description == "d"
        assert c.query() == [{"a": 1, "id": 1}, {"c": "s", "id": "x"}]
        assert c.list_deleted_ids() == [2]
        assert c.search([0, 0, 1], k=1).ids == ("x",)


def test_second_writer_process_is_refused(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        c = client.create_database("app").require_collection("items", dim=2)
        c.add_item([1, 0], id=1)
        code = (
            "import sys, vecstore\n"
            f"c = vecstore.connect({str(path)!r})\n"
            "try:\n"
            "    c.get_database('app').get_collection('items')\n"
            "except vecstore.LockedError as e:\n"
            "    print('locked:', e); sys.exit(3)\n"
            "ro = vecstore.connect(" + repr(str(path)) + ", read_only=True)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "open for writing" in proc.stdout
        reader = (
            "import vecstore\n"
            f"c = vecstore.connect({str(path)!r}, read_only=True).get_database('app').get_collection('items')\n"
            "print(c.search([1, 0], k=1).ids)\n"
        )
        proc = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == "(1,)", proc.stderr


def test_same_collection_opened_twice_in_one_process_is_one_handle(tmp_path):
    a = vecstore.connect(tmp_path / "s").create_database("app").require_collection("c", dim=2)
    b = vecstore.connect(tmp_path / "s").get_database("app").get_collection("c")
    assert a is b
    a.close()


def test_bulk_progress_and_chunking(db):
    c = db.require_collection("big", dim=8, metric="l2")
    x = np.random.default_rng(1).standard_normal((120_000, 8)).astype(np.float32)
    ids = c.add(x, progress=True)  # three chunks, each its own transaction
    assert ids == list(range(120_000))
    assert c.shape == (120_000, 8)
    assert c.search(x[119_999], k=1).ids == (119_999,)
    assert c.search(x[7], k=1).ids == (7,)


def test_build_index_takes_lynsedb_shared_kwargs_like_lynsedb(db):
    """LynseDB's client sends one kwargs dict to every index mode and its server ignores the
    keys of other index families; ours does too (locally and remotely), keeps its own names
    strict, and maps LynseDB's names of its parameters."""
    col = db.require_collection("c", dim=4, metric="l2")
    col.add(np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32))
    shared = {"m": 8, "ef_construction": 40, "ef_search": 20, "n_centroids": 4, "nprobe": 2}
    assert col.build_index("HNSW-L2", **shared)["index_mode"] == "HNSW-L2"
    assert col.build_index("IVF-L2", **shared) == {"index_mode": "IVF-L2", "n_clusters": 4}
    assert col.search(np.zeros(4, np.float32), k=3).index == "IVF-L2"
    with pytest.raises(InvalidArgumentError, match="bogus"):
        col.build_index("HNSW-L2", bogus=1)
    with pytest.raises(InvalidArgumentError, match="n_clusters"):
        col.build_index("HNSW-L2", n_clusters=4)  # our own argument stays strict


def test_results_are_the_callers_own_copies(db):
    """Editing a returned row (nested lists and dicts included) changes nothing stored: not the
    next read, not a filter, not what an upsert with fields=None writes."""
    col = db.require_collection("owned", dim=2)
    col.add_item([1, 0], id=1, field={"tags": ["a"], "meta": {"x": 1}})
    col.query()[0]["tags"].append("secret")
    col.head(1).fields[0]["meta"]["y"] = 2
    col.read_by_only_id(1).fields[0]["tags"].append("secret")
    col.search([1, 0], k=1, return_fields=True).fields[0]["tags"].append("secret")
    col.upsert([[0, 1]], ids=[1])  # keeps the stored fields
    want = [{"tags": ["a"], "meta": {"x": 1}, "id": 1}]
    assert col.query() == want
    assert col.query(where="tags CONTAINS 'secret'") == []
    client = db.client if hasattr(db, "client") else None
    if isinstance(client, vecstore.Client):  # and on disk
        path = client.root
        client.close()
        again = vecstore.connect(path)
        assert again.get_database(db.name).get_collection("owned").query() == want
        again.close()


def test_auto_ids_stop_at_the_largest_addressable_id(db):
    col = db.require_collection("top", dim=2)
    col.add_item([1, 0], id=2**63 - 1)
    with pytest.raises(InvalidArgumentError, match="ids: no integer id is left"):
        col.add_item([0, 1])
    with pytest.raises(InvalidArgumentError, match="ids"):
        col.add([[0, 1], [1, 1]], ids=[None, None])
    assert col.shape[0] == 1 and col.query(return_ids_only=True) == [2**63 - 1]


def test_ids_given_as_a_string_are_refused(db):
    """A bare string is not a list of one-letter ids, nor a bare int a list (the remote client
    used to send ``list("ab")`` and delete rows "a" and "b")."""
    col = db.require_collection("strids", dim=2)
    with pytest.raises(InvalidArgumentError, match="ids"):
        col.add([[1, 0], [0, 1]], ids="xy")
    assert col.shape[0] == 0
    col.add([[1, 0], [0, 1]], ids=["a", "b"])
    col.create_vector_field("t", dim=2)
    for call in (lambda: col.delete_items("ab"), lambda: col.restore_items("ab"),
                 lambda: col.add_named_vectors("t", [[1, 0]], ids=3),
                 lambda: col.add_sparse_vectors([{1: 1.0}], ids="a"),
                 lambda: col.query(filter_ids=3), lambda: col.query_vectors(filter_ids="ab")):
        with pytest.raises(InvalidArgumentError, match="ids: expected a list of ids"):
            call()
    assert col.shape[0] == 2 and col.query(filter_ids=[], return_ids_only=True) == []


def test_one_process_cannot_hold_a_collection_in_two_modes(tmp_path):
    """LMDB allows one handle per folder and process, shared by the clients of the process: a
    read-only client never gets the writer's handle (it could write through it), nor a writer
    the read-only one."""
    writer = vecstore.connect(tmp_path)
    writer.create_database("app").require_collection("c", dim=2).add_item([1, 0], id=1)
    reader = vecstore.connect(tmp_path, read_only=True)
    with pytest.raises(ConflictError, match="open for writing by another client"):
        reader.get_database("app").get_collection("c")
    writer.close()
    col = reader.get_database("app").get_collection("c")
    assert col.shape[0] == 1
    with pytest.raises(ConflictError, match="open read-only by another client"):
        vecstore.connect(tmp_path).get_database("app").get_collection("c")
    reader.close()
    assert vecstore.connect(tmp_path).get_database("app").get_collection("c").add_item([0, 1]) == 2


def test_cosine_keeps_the_direction_of_huge_and_tiny_vectors(db):
    """Normalising in float32 overflowed (|x| ~ 1e20 became a zero vector) or underflowed
    (~1e-23 was refused as zero): each row is scaled first. The rows are stored as written;
    their float32 estimates are not bounded (|x|² beyond float32), so they are scored exactly."""
    col = db.require_collection("cos_extremes", dim=2, metric="cosine")
    x = np.array([[1e20, 1e20], [1e-23, 2e-23], [3e-30, 0]], np.float32)
    col.add(x, ids=[1, 2, 3])
    np.testing.assert_array_equal(col.read_by_only_id([1, 2, 3]).vectors, x)
    want = np.array([[1, 1], [1, 2], [1, 0]], np.float64)
    want /= np.linalg.norm(want, axis=1)[:, None]
    for q in ([1, 1], [0.2, 1], [1, 0.01]):
        dist = 1 - want @ (np.array(q) / np.linalg.norm(q))
        r = col.search(q, k=3)
        assert list(r.ids) == [[1, 2, 3][i] for i in np.argsort(dist)]
        np.testing.assert_allclose(r.scores, np.sort(dist), atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="zero vector"):
        col.add([[0.0, 0.0]], ids=[4])


def test_a_zero_query_beside_a_huge_vector_searches_quietly(db):
    """|x| ~ 1e20 has a float32 squared norm of inf; the exact scan's error bound multiplied it
    by a zero query's norm (inf * 0) and numpy warned "invalid value" to the user."""
    import warnings
    col = db.require_collection("huge_ip", dim=2, metric="ip")
    col.add([[1e20, 0], [1, 1], [2, 2]], ids=[1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert col.search([0, 0], k=3).ids == (1, 2, 3)           # all score 0: storage order
        assert col.search([1, 0], k=3).ids == (1, 3, 2)


def test_numbers_beyond_float_range_are_refused(db):
    """Python ints have no size limit; converting one past float range raised a bare
    OverflowError (a 500 over HTTP)."""
    col = db.require_collection("range_overflow", dim=2)
    col.add_item([1, 0], id=1)
    col.build_index("HNSW")
    huge = 10**400
    for call, param in ((lambda: col.search_range([1, 0], threshold=huge), "threshold"),
                        (lambda: col.search([huge, 0]), "vector"),
                        (lambda: col.add([[huge, 0]], ids=[2]), "vectors"),
                        (lambda: col.add_sparse_vectors([{3: huge}], ids=[1]), "vectors"),
                        (lambda: col.sparse_search({3: huge}), "vector"),
                        (lambda: col.search([1, 0], nprobe=huge), "nprobe")):
        with pytest.raises(InvalidArgumentError, match=param):
            call()
    assert col.shape[0] == 1 and col.search([1, 0], k=1).ids == (1,)


def test_a_metric_change_between_validation_and_commit_is_a_conflict(tmp_path, monkeypatch):
    """Vectors are validated for the metric read when the call is validated (cosine refuses a
    zero vector; they were once normalised then, and an l2 vector stored in a cosine collection
    scored -4 against itself); a build_index that re-targets the metric in between would let a
    zero vector into a cosine field. The commit re-checks the metric."""
    import threading
    from vecstore import validation
    col = vecstore.connect(tmp_path).create_database("a").require_collection("c", dim=4, metric="l2")
    col.add(np.random.default_rng(0).random((50, 4)) + 0.1, ids=list(range(50)))
    col.create_vector_field("t", dim=2, metric="l2")
    validated, built = threading.Event(), threading.Event()
    real = validation.check_vectors

    def check_vectors(*a, **k):
        out = real(*a, **k)
        if threading.current_thread().name == "writer":
            validated.set()
            built.wait(10)
        return out
    monkeypatch.setattr(validation, "check_vectors", check_vectors)
    for call, build in ((lambda: col.add([[3.0, 4.0, 0.0, 0.0]], ids=["x"]), lambda: col.build_index("HNSW-COS")),
                        (lambda: col.upsert([[3.0, 4.0, 0.0, 0.0]], ids=[1]), lambda: col.build_index("HNSW-L2")),
                        (lambda: col.add_named_vectors("t", [[3.0, 4.0]], ids=[2]),
                         lambda: col.build_vector_field_index("t", "HNSW-COS"))):
        errors: list = []
        validated.clear()
        built.clear()

        def run() -> None:
            try:
                call()
            except Exception as e:  # noqa: BLE001 - what the writer got, checked below
                errors.append(e)
        t = threading.Thread(target=run, name="writer")
        t.start()
        assert validated.wait(10)
        build()
        built.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ConflictError), errors
    assert "x" not in col and col.shape[0] == 50
    assert col.search([3.0, 4.0], k=1, vector_field="t").ids == ()  # the named vector was not stored
    col.database.client.close()


def _paused_in(monkeypatch, cls, name, *, thread="writer", when=lambda self: True):
    """Pause the thread named ``thread`` on entering ``cls.name`` until released; returns the
    two events (paused, release)."""
    import threading
    paused, release = threading.Event(), threading.Event()
    real = getattr(cls, name)

    def hooked(self, *a, **k):
        if threading.current_thread().name == thread and when(self):
            paused.set()
            release.wait(10)
        return real(self, *a, **k)
    monkeypatch.setattr(cls, name, hooked)
    return paused, release


@pytest.mark.parametrize("during", ["add", "compact"])
def test_counts_and_id_checks_never_see_a_half_updated_mirror(tmp_path, monkeypatch, during):
    """shape, stats, is_id_exists / in, max_id, list_fields and list_deleted_ids read the
    mirror under the read lock: in the middle of an add or a compact() they used to raise
    IndexError, or answer shape (0, dim) and "id 3 does not exist"."""
    import threading
    from vecstore.table import VectorSpace
    col = vecstore.connect(tmp_path).create_database("a").require_collection("c", dim=4, metric="l2")
    col.add(np.random.default_rng(0).random((16, 4)), ids=list(range(16)), fields=[{"f": i} for i in range(16)])
    col.delete_items([0, 1])
    paused, release = _paused_in(monkeypatch, VectorSpace, "put" if during == "add" else "fill",
                                 when=lambda space: space.name == "default")
    action = (lambda: col.add(np.ones((1, 4)), ids=[16], fields=[{"g": 1}])) if during == "add" else col.compact
    t = threading.Thread(target=action, name="writer")
    t.start()
    assert paused.wait(10)
    answers: dict = {}

    def reader() -> None:  # waits for the writer's lock, then sees the finished state
        answers.update(shape=col.shape, live=col.stats().n_live, has3=3 in col, max=col.max_id(),
                       fields=col.list_fields(), deleted=col.list_deleted_ids())
    r = threading.Thread(target=reader)
    r.start()
    r.join(0.3)
    assert r.is_alive()  # blocked behind the write, not reading half of it
    release.set()
    t.join(10)
    r.join(10)
    want_n = 15 if during == "add" else 14
    assert answers == {"shape": (want_n, 4), "live": want_n, "has3": True, "max": 16 if during == "add" else 15,
                       "fields": ["f", "g"] if during == "add" else ["f"],
                       "deleted": [0, 1] if during == "add" else []}
    col.database.client.close()


@pytest.mark.parametrize("call", ["build_index", "checkpoint", "write_blob", "read_blob", "update_description",
                                  "remove_index", "delete_ids", "delete_where", "text_search", "search",
                                  "hybrid_vector"])
def test_a_call_racing_close_gets_closed_error(tmp_path, monkeypatch, call):
    """A call that passed its open check just before another thread closed the handle gets
    ClosedError, not AttributeError from the released store, NotFoundError or an empty result."""
    import threading
    from vecstore import ClosedError
    from vecstore.collection import Collection
    col = vecstore.connect(tmp_path).create_database("a").require_collection("c", dim=4, metric="l2")
    col.add(np.random.default_rng(0).random((50, 4)), ids=list(range(50)), fields=[{"t": "hello world"}] * 50)
    col.write_blob("b", b"x")
    col.text_search("hello")
    calls = {"build_index": lambda: col.build_index("HNSW"), "checkpoint": col.checkpoint,
             "write_blob": lambda: col.write_blob("k", b"v"), "read_blob": lambda: col.read_blob("b"),
             "update_description": lambda: col.update_description("d"), "remove_index": col.remove_index,
             "delete_ids": lambda: col.delete_items([1]), "delete_where": lambda: col.delete_items(where="id = 1"),
             "text_search": lambda: col.text_search("hello"), "search": lambda: col.search([0.1] * 4, k=5),
             "hybrid_vector": lambda: col.hybrid_search(vector=[0.1] * 4, k=5)}
    checked, closed = threading.Event(), threading.Event()
    for name in ("_check_open", "_check_writable"):
        real = getattr(Collection, name)

        def hooked(self, *a, _real=real, **k):
            _real(self, *a, **k)
            if threading.current_thread().name == "caller" and not checked.is_set():
                checked.set()
                closed.wait(10)
        monkeypatch.setattr(Collection, name, hooked)
    got: list = []

    def caller() -> None:
        try:
            got.append(calls[call]())
        except Exception as e:  # noqa: BLE001 - the class is the assertion
            got.append(e)
    t = threading.Thread(target=caller, name="caller")
    t.start()
    assert checked.wait(10)
    col.close()
    closed.set()
    t.join(10)
    assert len(got) == 1 and isinstance(got[0], ClosedError), got


def test_numpy_scalars_and_missing_numbers_behave_alike_locally_and_remotely(db):
    """The remote client sent numpy ints as unsendable JSON, dropped a None k (the server then
    took its default), crashed on read_by_only_id(None), and judged ragged query lists with
    other exception classes than the library."""
    col = db.require_collection("np_parity", dim=3)
    col.add_item([1, 0, 0], id=np.int64(7))
    col.bulk_add_items([{"vector": [0, 1, 0], "id": np.int64(8)}])
    assert col.search([1, 0, 0], k=np.int64(1)).ids == (7,)
    assert col.read_by_only_id([np.int64(8)]).ids == (8,) and col.is_id_exists(np.int64(7))
    assert col.delete_items(np.array([8])) == 1 and col.restore_items([np.int64(8)]) == 1
    for call in (lambda: col.search([1, 0, 0], k=None), lambda: col.batch_search([[1, 0, 0]], k=None),
                 lambda: col.search_range([1, 0, 0], threshold=1.0, max_results=None),
                 lambda: col.text_search("x", k=None), lambda: col.head(None), lambda: col.tail(None),
                 lambda: col.read_by_only_id(None), lambda: col.read_by_only_id(1.5),
                 lambda: col.batch_search([None, [1, 0, 0]], k=1)):
        with pytest.raises(InvalidArgumentError):
            call()
    with pytest.raises(DimensionMismatchError):
        col.bulk_add_items([{"vector": [[1, 2], [3]]}, {"vector": [1, 0, 0]}])
    assert col.shape == (2, 3)


def test_a_collection_folder_left_before_its_store_existed_is_still_ours(tmp_path):
    """A creation that failed after the folder and its LOCK were made, before data.mdb: the
    name can be dropped and created again (it is not someone else's folder)."""
    client = vecstore.connect(tmp_path)
    db = client.create_database("app")
    (db.path / "half").mkdir()
    (db.path / "half" / "LOCK").write_text("pid 1")
    db.drop_collection("half")
    assert not (db.path / "half").exists()
    (db.path / "half").mkdir()
    (db.path / "half" / "LOCK").write_text("pid 1")
    assert db.require_collection("half", dim=2).shape == (0, 2)
    (db.path / "theirs").mkdir()
    (db.path / "theirs" / "notes.txt").write_text("mine")
    with pytest.raises(AlreadyExistsError):
        db.require_collection("theirs", dim=2)
    client.close()


def test_an_open_racing_a_drop_never_recreates_the_collection(tmp_path, monkeypatch):
    """get_collection checks that the collection exists, then opens it; a drop in between used
    to let the open make a new, empty, config-less store in its place (every later open a 500,
    and a database name nothing could drop or create again)."""
    from vecstore.client import Database
    client = vecstore.connect(tmp_path)
    db = client.create_database("app")
    db.require_collection("c", dim=2)
    db.drop_collection("c")
    monkeypatch.setattr(Database, "collection_exists", lambda self, name: True)  # the stale check
    with pytest.raises(NotFoundError):
        db.get_collection("c")
    assert not (db.path / "c").exists()
    client.close()


def test_a_reader_opening_a_collection_being_created_gets_not_found(tmp_path):
    """data.mdb exists a moment before the writer commits the store's first transaction: a
    read-only open then is NotFoundError (404 over HTTP), not a KeyError or CorruptionError (500)."""
    import lmdb
    path = tmp_path / "app" / "c"
    path.mkdir(parents=True)
    (tmp_path / "app" / ".vecstore-database").touch()
    lmdb.open(str(path), max_dbs=12).close()  # the environment, no sub-database yet
    reader = vecstore.connect(tmp_path, read_only=True)
    with pytest.raises(NotFoundError, match="being created"):
        reader.get_database("app").get_collection("c")
    reader.close()


_CREATE_SHORT_OF_DESCRIPTORS = FD_PRESSURE + r'''
import os, resource, sys, vecstore
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
db = vecstore.connect(sys.argv[1]).create_database("app")
outcomes = []
for spare in range(12):
    name = f"c{spare}"
    held = hold_all_but(spare)
    try:
        db.create_collection(name, dim=2).close()
        outcomes.append("created")
    except Exception as e:
        outcomes.append(type(e).__name__)
    for fd in held:
        os.close(fd)
    if outcomes[-1] != "created":  # "retry later": the failed create left nothing behind
        assert name not in db.show_collections(), (spare, os.listdir(db.path / name))
        db.create_collection(name, dim=2).add([[1, 2]])
        assert db.get_collection(name).shape == (1, 2)
print(outcomes)
'''


def test_a_create_out_of_descriptors_leaves_nothing_and_the_retry_works(tmp_path):
    """EMFILE once LMDB had made data.mdb left a config-less store: listed, the retry an
    AlreadyExistsError and every open a CorruptionError. Now the failed create removes it."""
    import ast
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _CREATE_SHORT_OF_DESCRIPTORS, str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(ast.literal_eval(out.stdout)) == {"UnavailableError", "created"}, out.stdout


def test_a_create_failing_before_its_config_commit_leaves_nothing(tmp_path, monkeypatch):
    from vecstore import UnavailableError
    from vecstore.collection import Collection
    client = vecstore.connect(tmp_path)
    db = client.create_database("app")

    def fail(self, create):
        raise UnavailableError("out of file descriptors; retry later")
    with monkeypatch.context() as m:
        m.setattr(Collection, "_init_new", fail)
        with pytest.raises(UnavailableError):
            db.create_collection("c", dim=2)
    assert "c" not in db.show_collections() and not db.collection_exists("c")
    assert db.create_collection("c", dim=2).shape == (0, 2)
    client.close()


def test_a_store_left_without_config_is_created_over_and_one_with_config_never(tmp_path, monkeypatch):
    """A create killed between LMDB making data.mdb and its config commit leaves a store no open
    can read: a create takes it over. A store with a config is never taken over, even when the
    look before the lock missed it (another process created it meanwhile)."""
    import vecstore.client as client_mod
    from vecstore.storage import Storage
    client = vecstore.connect(tmp_path)
    db = client.create_database("app")
    Storage(db.path / "dead", create=True).close()  # the killed create: sub-dbs, no config
    with pytest.raises(CorruptionError, match="create it again"):
        db.get_collection("dead")
    col = db.create_collection("dead", dim=2)
    col.add([[1, 2]], ids=[7])
    col.close()
    monkeypatch.setattr(client_mod, "_configured", lambda path: False)  # the stale look
    with pytest.raises(AlreadyExistsError):
        db.create_collection("dead", dim=3)
    assert db.get_collection("dead").shape == (1, 2)  # intact, not removed nor reset
    client.close()


def test_collection_details_do_not_open_the_collections(tmp_path):
    """show_collections_details opened every collection (vectors loaded, an index maybe rebuilt)
    just to read its shape, and kept them all open. A collection not open is read from its
    store and left closed; the answer is the same as from open handles."""
    import vecstore.client as client_mod
    client = vecstore.connect(tmp_path)
    db = client.create_database("app")
    a = db.require_collection("a", dim=2, description="first")
    a.add(np.ones((10, 2)))
    a.delete_items([0, 1])
    b = db.require_collection("b", dim=3, metric="l2")
    b.add(np.random.default_rng(0).random((300, 3)))
    b.build_index("HNSW")
    db.require_collection("empty")
    from_handles = db.show_collections_details()
    assert from_handles["a"] == {"name": "a", "shape": [8, 2], "dim": 2, "index_mode": None, "description": "first"}
    assert from_handles["b"]["index_mode"] == "HNSW" and from_handles["empty"]["shape"] == [0, 0]
    client.close()
    again = vecstore.connect(tmp_path)
    assert again.get_database("app").show_collections_details() == from_handles
    assert not [k for k in client_mod._OPEN if k.startswith(str(tmp_path.resolve()))]
    b = again.get_database("app").get_collection("b")
    b.remove_index()  # no index: None, what index_mode() (and LynseDB's /index_mode) says, not "FLAT"
    assert again.get_database("app").show_collections_details()["b"]["index_mode"] is b.index_mode() is None
    again.close()


def test_collection_details_read_the_rows_outside_the_process_wide_lock(tmp_path, monkeypatch):
    """show_collections_details counts an unopened collection's live rows (a scan of every row)
    and did so under _OPEN_LOCK: every open and close of the process waited for the listing.
    Now only an open of the very store being read waits (one LMDB handle per file and process)."""
    import threading

    import vecstore.client as client_mod
    client = vecstore.connect(tmp_path)
    db = client.create_database("app")
    db.require_collection("big", dim=2).add(np.ones((20, 2)))
    db.require_collection("tiny", dim=2).add(np.ones((3, 2)))
    client.close()
    client = vecstore.connect(tmp_path)
    db = client.get_database("app")
    real_peek, seen = client_mod._peek, {}

    def peek(path):
        if path.name == "big":  # meanwhile: another collection opens, this one waits
            other = threading.Thread(target=lambda: seen.setdefault("tiny", db.get_collection("tiny").shape))
            same = threading.Thread(target=lambda: seen.setdefault("big", db.get_collection("big").shape))
            other.start()
            other.join(5)
            seen["tiny opened meanwhile"] = not other.is_alive()
            same.start()
            same.join(0.3)
            seen["big waited"] = same.is_alive()
            seen["same"] = same
        return real_peek(path)
    monkeypatch.setattr(client_mod, "_peek", peek)
    details = db.show_collections_details()
    seen["same"].join(10)
    assert seen["tiny opened meanwhile"] and seen["big waited"]
    assert seen["tiny"] == (3, 2) and seen["big"] == (20, 2)
    assert details["big"]["shape"] == [20, 2] and details["tiny"]["shape"] == [3, 2]
    client.close()


# ------------------------------------------------------------- remote parity (h6 review) ---
def test_a_none_index_mode_or_metric_is_an_error_not_the_default(db):
    """The remote client leaves ``None`` arguments out of a request and the server then takes
    its default: ``build_index(None)`` built FLAT and ``metric=None`` made an ``ip`` collection
    or field, where the library refuses them."""
    col = db.require_collection("c", dim=2)
    col.create_vector_field("f", 2)
    fields = col.list_vector_fields()
    for call in (lambda: col.build_index(None), lambda: col.build_vector_field_index("f", None),
                 lambda: col.create_vector_field("g", 2, metric=None),
                 lambda: db.create_collection("m", dim=2, metric=None),
                 lambda: db.require_collection("m", dim=2, metric=None),
                 lambda: db.require_collection("c", metric=None, drop_if_exists=True)):
        with pytest.raises(InvalidArgumentError, match="^(index_mode|metric): "):
            call()
    assert col.index_mode() is None and col.list_vector_fields() == fields
    assert db.show_collections() == ["c"]
    assert db.require_collection("c", metric=None).metric == "ip"  # an existing one: not used, as locally


def test_durability_is_checked_and_is_that_of_the_one_handle(db):
    """The remote client never sent ``durability`` (and the server ignored it): a "fast"
    collection was "safe" and "slow" was accepted. A process (the server too) has one handle
    per collection, so the other durability while it is open is a conflict, not ignored."""
    assert db.create_collection("f", dim=2, durability="fast").get_collection_config().durability == "fast"
    assert db.require_collection("s", dim=2).get_collection_config().durability == "safe"
    for call in (lambda: db.create_collection("x", dim=2, durability="slow"),
                 lambda: db.require_collection("x", dim=2, durability=5),
                 lambda: db.require_collection("s", durability="slow")):
        with pytest.raises(InvalidArgumentError, match="^durability: "):
            call()
    assert db.show_collections() == ["f", "s"]
    with pytest.raises(ConflictError, match="^durability: "):
        db.require_collection("s", durability="fast")
    with pytest.raises(ConflictError, match="^durability: "):
        db.require_collection("f", durability="safe")
    assert db.require_collection("f", durability="fast").name == "f"
    assert db.require_collection("f").get_collection_config().durability == "fast"


def test_auto_ids_are_the_librarys_however_many_requests_the_call_takes(db, monkeypatch):
    """Rows without an id get the next ints after the largest int id stored before the call
    (a soft-deleted one counts), skipping the call's own explicit ids. The remote client sends a
    long call in several requests, and the server numbered each one after the explicit ids of
    the requests before it: a 50,001-row add of [10**6] + [None] * 50_000 ended at 1000001
    remotely and at 49999 locally."""
    import vecstore.remote
    monkeypatch.setattr(vecstore.remote, "_BATCH", 3)  # rows per request of the remote client
    col = db.require_collection("ids", dim=2)
    col.add(np.ones((3, 2)), ids=[0, 4, "s"])
    col.delete_items([4])
    assert col.add(np.ones((7, 2)), ids=[None, 9, None, None, 6, None, None]) == [5, 9, 7, 8, 6, 10, 11]
    items = [{"vector": [1, 0], "id": i} for i in (None, 30, None, None, "t", 13, None)]
    assert col.bulk_add_items(items) == [12, 30, 14, 15, "t", 13, 16]
    col.commit([{"vector": [1, 0]}] * 4)
    assert col.query(where="id > 30") == [{"id": i} for i in (31, 32, 33, 34)]
    fresh = db.require_collection("fresh", dim=2)
    assert fresh.add(np.ones((5, 2)), ids=[10**6] + [None] * 4) == [10**6, 0, 1, 2, 3]
    assert fresh.bulk_add_items([{"vector": [1, 0], "id": 5}, {"vector": [0, 1]}]) == [5, 10**6 + 1]
    empty = db.require_collection("empty", dim=2)
    assert empty.bulk_add_items([{"vector": [1, 0], "id": 5}, {"vector": [0, 1]}]) == [5, 0]
    with pytest.raises(InvalidArgumentError, match="unique"):  # refused whole, not after a first request
        fresh.bulk_add_items([{"vector": [1, 0], "id": 50}, {"vector": [1, 0]}] * 2)
    with pytest.raises(InvalidArgumentError, match="unique"):
        fresh.upsert_items([{"vector": [1, 0], "id": i} for i in (60, 61, 62, 63, 60)])
    assert fresh.shape == (7, 2)


def test_job_ids_view_names_and_sparse_lists_are_checked_as_locally(db):
    """The remote client crashed with a bare TypeError on ``None`` (``int(job_id)``, ``name +
    '$'``, iterating ``vectors``), and judged job ids -1 and True the other way round."""
    col = db.require_collection("c", dim=2)
    col.add_item([1, 0], id=1)
    for job_id, cls in ((None, InvalidArgumentError), (True, InvalidArgumentError), ("x", InvalidArgumentError),
                        (-1, NotFoundError), (10**6, NotFoundError)):
        for call in (db.describe_refresh_job, db.cancel_refresh_job, lambda j: db.wait_refresh_job(j, timeout=1)):
            with pytest.raises(VecstoreError, match="^jobId: ") as e:
                call(job_id)
            assert e.type is cls, (job_id, e.value)
    for call in (lambda: db.list_refresh_jobs("bad/name"), lambda: db.list_refresh_jobs(5)):
        with pytest.raises(InvalidNameError, match="^collection_name: "):
            call()
    for name in (None, "bad/name"):
        with pytest.raises(InvalidNameError, match="^view_name: "):
            db.refresh_materialized_view(name)
    for bad in (None, 5, {1: 2.0}):
        with pytest.raises(InvalidArgumentError, match="^vectors: "):
            col.add_sparse_vectors(bad, ids=[1])


@pytest.mark.parametrize("bad", [5, None, b"backup.snap", "", "a\x00b"])
def test_a_backup_path_that_is_not_one_is_refused_before_anything_is_written(db, bad):
    """The remote client sent ``str(path)``: 5, None or b"x" became the server paths "5",
    "None" and "b'x'" (a snapshot written under that name), where the library refuses them."""
    col = db.require_collection("c", dim=2)
    col.add_item([1, 0], id=1)
    for call in (lambda: col.snapshot_to(bad), lambda: col.export_to(bad),
                 lambda: db.snapshot_collection("c", bad), lambda: db.export_collection("c", bad),
                 lambda: db.restore_collection("r", bad), lambda: db.import_collection("r", bad),
                 lambda: db.client.snapshot_database(db.name, bad), lambda: db.client.restore_database("r", bad)):
        with pytest.raises(InvalidArgumentError, match="^(snapshot|export)_path: ") as e:
            call()
        assert e.type is InvalidArgumentError, e.value
    assert db.show_collections() == ["c"] and db.client.list_databases() == [db.name]


def test_a_nan_or_inf_parameter_is_named(db):
    """JSON has no NaN: the remote client sent it anyway and the server answered "malformed
    JSON", naming no parameter."""
    col = db.require_collection("c", dim=2)
    col.add_item([1, 0], id=1)
    for param, call in (("threshold", lambda: col.search_range([1, 0], threshold=float("nan"))),
                        ("threshold", lambda: col.search_range([1, 0], threshold=-float("inf"))),
                        ("nprobe", lambda: col.search([1, 0], nprobe=float("nan"))),
                        ("nprobe", lambda: col.batch_search([[1, 0]], nprobe=float("inf")))):
        with pytest.raises(InvalidArgumentError, match=f"^{param}: "):
            call()


def test_hnsw_ip_over_small_vectors_ranks_like_flat_across_a_reopen(tmp_path):
    """hnswlib's ip distance 1 - dot rounded to 1 for vectors of norm ~1e-4: recall@10 was 0.35
    and every score one float32 ulp. The index scales them by a power of two it saves with
    its files, so a checkpoint and a reopen (with rows added after the checkpoint) keep it."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2500, 16)) * 1e-4).astype(np.float32)
    q = (rng.standard_normal((20, 16)) * 1e-4).astype(np.float32)
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("small", dim=16, metric="ip")
        col.add(x[:2000], ids=list(range(2000)))
        col.build_index("HNSW-IP")
        col.checkpoint()
        col.add(x[2000:], ids=list(range(2000, 2500)))
        before = col.batch_search(q, k=10, nprobe=64)
    exact = x.astype(np.float64) @ q.astype(np.float64).T
    truth = np.argsort(-exact, axis=0, kind="stable")[:10].T
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("small")
        after = col.batch_search(q, k=10, nprobe=64)
        assert col.search_profile(q[0], k=10).result.index == "HNSW-IP"
    for b, a, t, i in zip(before, after, truth, range(len(q))):
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_allclose(a.scores, exact[list(a.ids), i], rtol=1e-5, atol=1e-14)
    assert np.mean([len(set(a.ids) & set(t.tolist())) / 10 for a, t in zip(after, truth)]) >= 0.95


def test_a_file_in_the_way_of_the_index_folder_is_a_clear_error(local_client):
    """A file named ``indexes`` in a collection's folder made every index build raise a raw
    FileExistsError (a 500 over HTTP, for good)."""
    col = local_client.create_database("app").require_collection("items", dim=2, metric="l2")
    col.add([[0, 0], [1, 0], [0, 1]], ids=[1, 2, 3])
    shutil.rmtree(col.path / "indexes", ignore_errors=True)
    (col.path / "indexes").write_bytes(b"a backup of someone's")
    with pytest.raises(CorruptionError, match=r"'indexes' is not a folder"):
        col.build_index("HNSW")
    assert col.search([1, 0.1], k=1).ids == (2,)                    # still searched exactly
    (col.path / "indexes").unlink()
    col.build_index("HNSW")
    assert col.index_mode() == "HNSW" and col.search([1, 0.1], k=1).ids == (2,)


# ------------------------------------------------------------- the remote client's API ----
def test_connect_checks_its_options_and_refuses_the_local_ones_for_a_url(tmp_path, server_url):
    """``connect(url, read_only=True)`` gave a client that wrote and dropped, and
    ``durability="bogus"`` was taken for a URL: both were ignored, unchecked, for a server."""
    writer = vecstore.connect(server_url)
    writer.create_database("app").require_collection("c", dim=2)
    for kw, param in [({"read_only": True}, "read_only"), ({"durability": "fast"}, "durability"),
                      ({"durability": "bogus"}, "durability"), ({"read_only": "no"}, "read_only")]:
        for target in (server_url, tmp_path / "local"):
            if target != server_url and kw in ({"read_only": True}, {"durability": "fast"}):
                continue  # a folder's options
            with pytest.raises(InvalidArgumentError, match=f"^{param}: .*{kw[param]!r}"):
                vecstore.connect(target, **kw)
    assert writer.list_databases() == ["app"] and writer.get_database("app").show_collections() == ["c"]
    assert vecstore.connect(server_url, durability="safe", read_only=False).list_databases() == ["app"]
    writer.close()


# What the local objects have and the remote ones do not, on purpose:
LOCAL_ONLY = {
    "client": {"root",          # the folder
               "durability"},   # a folder's default; over HTTP it is per collection (require_collection)
    "database": {"path"},       # the folder
    "collection": {"path"},     # the folder; get_collection_path() asks the server for it
}


def _public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_remote_objects_have_the_public_members_of_local_ones(tmp_path, server_url):
    """The remote objects lacked ``Collection.kind``, ``closed``, ``Client.read_only`` and seven
    Database methods: code that type-checks against the local classes (``connect()`` is annotated
    to return a Client) died of AttributeError with a URL."""
    local, remote = vecstore.connect(tmp_path / "local"), vecstore.connect(server_url)
    objs = []
    for c in (local, remote):
        db = c.create_database("app")
        objs.append((c, db, db.require_collection("c", dim=2)))
    for what, lo, ro in zip(LOCAL_ONLY, *objs):
        assert (_public(lo) - _public(ro), _public(ro) - _public(lo)) == (LOCAL_ONLY[what], set()), what
    (_, ldb, lcol), (rc, rdb, rcol) = objs
    assert rc.read_only is False
    assert rcol.kind == lcol.kind == "collection"
    assert rdb.list_materialized_views() == ldb.list_materialized_views() == []
    assert rdb.list_refresh_external_collection_jobs() == ldb.list_refresh_external_collection_jobs() == []
    for name, args in [("create_external_collection", ("e", "{}", "{}")), ("create_materialized_view", ("v", "c", {})),
                       ("set_volumes", ({},)), ("get_volumes", ()), ("describe_external_collection", ("e",)),
                       ("describe_materialized_view", ("v",))]:
        with pytest.raises(NotSupportedError, match=f"^{name}: not supported by the remote client"):
            getattr(rdb, name)(*args)
    assert rdb.show_collections() == ["c"]
    # closed: as locally, once close() (its own, its database's or its client's) forgot the handle
    assert not (rcol.closed or rdb.closed)
    rcol.close()
    assert rcol.closed and not rdb.closed
    with pytest.raises(ClosedError):
        rcol.stats()
    other = rdb.get_collection("c")
    rdb.close()
    assert rdb.closed and other.closed
    for call in (rdb.show_collections, lambda: other.search([1, 0], k=1), rdb.list_refresh_jobs):
        with pytest.raises(ClosedError):
            call()
    again = rc.get_database("app")
    col = again.get_collection("c")
    for c in (local, remote):
        c.close()
    assert again.closed and col.closed and ldb.closed and lcol.closed


def test_every_public_remote_member_has_a_docstring():
    """69 public methods of the remote classes had none: ``help(RemoteCollection.search)`` was
    empty. Each has its own or, being the same call, the local one's."""
    from vecstore.remote import RemoteClient, RemoteCollection, RemoteDatabase
    for cls, local in ((RemoteClient, vecstore.Client), (RemoteDatabase, vecstore.Database),
                       (RemoteCollection, vecstore.Collection)):
        for name in _public(cls):
            assert (getattr(cls, name).__doc__ or "").strip(), f"{cls.__name__}.{name}"
    assert RemoteCollection.search.__doc__.startswith(vecstore.Collection.search.__doc__.split(">>>")[0])
    assert RemoteCollection.metric.__doc__ == vecstore.Collection.metric.__doc__


def test_every_type_a_public_method_returns_is_exported():
    """``describe_refresh_job`` and its kin return a RefreshJob, which ``vecstore`` did not
    export: a caller could not name the type of what it got."""
    import inspect
    import re
    for cls in (vecstore.Client, vecstore.Database, vecstore.Collection):
        for name in _public(cls):
            member = getattr(cls, name)
            fn = member.fget if isinstance(member, property) else member
            if callable(fn):
                returned = str(inspect.signature(fn).return_annotation)
                for word in set(re.findall(r"\b[A-Z]\w+", returned)) - {"None", "Id"}:  # Id: int | str
                    assert word in vecstore.__all__ and hasattr(vecstore, word), f"{cls.__name__}.{name} -> {word}"
