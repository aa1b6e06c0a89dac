"""Every route of the table, end to end: a real server over the real library, raw HTTP.

One example per path in :data:`EXAMPLES` (status and LynseDB's reply shape, lynse_api §2-§6);
``test_every_route_has_an_example`` fails when a route is added to ``ROUTES`` without one. Each
example runs on its own freshly seeded collection, so examples are independent. Also here:
every method-name route maps to a public, documented method of the class it runs on, and the
generic error paths (missing database / collection → 404 JSON, never 500) for every route.
The job routes (Zilliz and Lance shapes) run on a real Iceberg table and a real view; their
error cases are in ``test_job_routes.py``.
"""

from __future__ import annotations

import http.client
import inspect
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

import numpy as np
import pytest

import vecstore
from vecstore import wire
from vecstore import functions
from vecstore.server.app import VecstoreHTTPServer
from vecstore.server.routes import ROUTES, route_map

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Iceberg helpers
from iceberg_util import Lake, append  # noqa: E402
from live_server import start_server

KEY = "e2e-key"
DB = "e2e"
DIM = 4
ROWS = [
    (0, [1.0, 0.0, 0.0, 0.0], {"lang": "en", "n": 0, "title": "apple pie"}),
    (1, [0.0, 1.0, 0.0, 0.0], {"lang": "de", "n": 1, "title": "apple strudel"}),
    (2, [0.0, 0.0, 1.0, 0.0], {"lang": "en", "n": 2, "title": "blue sky"}),
    (3, [0.0, 0.0, 0.0, 1.0], {"lang": "fr", "n": 3, "title": "green apple"}),
    (4, [0.5, 0.5, 0.0, 0.0], {"lang": "en", "n": 4, "title": "red car"}),
    (5, [0.0, 0.0, 0.5, 0.5], {"lang": "de", "n": 5, "title": "fast car"}),
]
E0 = [1.0, 0.0, 0.0, 0.0]
_names = itertools.count()


# --------------------------------------------------------------------------------------------
# a live server and a raw HTTP helper


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e") / "served"
    data.mkdir()
    backing = vecstore.connect(data)
    server = start_server(data, backing, api_key=KEY)
    http_ = Http(server)
    http_.backing = backing
    http_.lake = Lake(tmp_path_factory.mktemp("lake"))
    status, body = http_.post("/create_database", {"database_name": DB})
    assert status == 200, body
    # the view examples' functions, registered in this process (the server's)
    functions.register_chunker("e2e_words", lambda text, size=2: [" ".join(text.split()[i:i + size])
                                                                   for i in range(0, len(text.split()), size)])
    functions.register_udf("e2e_embed", lambda texts: [[float(len(t)), 1.0, 0.0] for t in texts], dim=3)
    try:
        yield http_
    finally:
        functions.unregister("e2e_words")
        functions.unregister("e2e_embed")
        server.stop()
        backing.close()


class Http:
    def __init__(self, server: VecstoreHTTPServer) -> None:
        self.server = server
        self.host, self.port = server.server_address[:2]

    def request(self, method: str, path: str, *, body: dict | None = None, query: dict | None = None,
                raw: bytes | None = None, key: str | None = KEY) -> tuple[int, str, Any]:
        """(status, content type, decoded body): JSON parsed, anything else as bytes."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        payload = None
        if body is not None:
            payload, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif raw is not None:
            payload, headers["Content-Type"] = raw, "application/octet-stream"
        target = path + ("?" + urlencode(query) if query else "")
        try:
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, ctype, (json.loads(data) if ctype.startswith("application/json") and data else data)

    def post(self, path: str, body: dict) -> tuple[int, Any]:
        status, _, data = self.request("POST", path, body=body)
        return status, data


def fresh_collection(live: Http, *, rows=ROWS) -> str:
    name = f"c{next(_names)}"
    status, data = live.post("/required_collection", {"database_name": DB, "collection_name": name, "dim": DIM})
    assert status == 200, data
    if rows:
        items = [{"vector": v, "id": i, "field": f} for i, v, f in rows]
        status, data = live.post("/bulk_add_items", {"database_name": DB, "collection_name": name, "items": items})
        assert status == 200, data
    return name


# --------------------------------------------------------------------------------------------
# the examples: one per route


@dataclass
class Ex:
    """``body``/``query`` get ``database_name``/``collection_name`` filled in (``{db}``/``{coll}``
    placeholders in strings are formatted too). ``setup``: requests run first, each
    ``(path, body)`` or ``(path, query, raw)``. ``check(params_or_bytes, ctx)`` asserts the reply."""

    body: dict | None = None
    query: dict | None = None
    raw: bytes | None = None
    setup: tuple = ()
    check: Callable[[Any, dict], None] = lambda p, ctx: None
    status: int = 200
    names: bool = True  # add database_name/collection_name automatically
    envelope: bool = True  # the reply is {"status": "success", "params": {...}}
    echo: tuple[str, ...] = ("database_name", "collection_name")
    path: dict | None = None  # values of the path's {parameters}
    prepare: Callable[[Any, dict], None] | None = None  # library-side setup: prepare(live, ctx)


def f32(*vectors) -> bytes:
    return np.asarray(vectors, dtype="<f4").tobytes()


def keys(*expected):
    def check(params, ctx):
        missing = set(expected) - set(params)
        assert not missing, (missing, params)
    return check


def eq(**expected):
    def check(params, ctx):
        for k, v in expected.items():
            assert params[k] == v, (k, params[k], v)
    return check


def both(*checks):
    def check(params, ctx):
        for c in checks:
            c(params, ctx)
    return check


def items_shape(index: str | None = None, first: int | None = None, k: int | None = None):
    def check(params, ctx):
        items = params["items"]
        assert {"k", "ids", "scores", "fields"} <= set(items), items
        assert len(items["ids"]) == len(items["scores"])
        if k is not None:
            assert items["k"] == k
        if index is not None:
            assert items["index"] == index, items
        if first is not None:
            assert items["ids"][0] == first, items
    return check


def rows_triple(key: str, ids: list | None = None):
    def check(params, ctx):
        vectors, got_ids, fields = params[key]
        assert len(vectors) == len(got_ids) == len(fields)
        assert all(len(v) == DIM for v in vectors)
        if ids is not None:
            assert got_ids == ids, got_ids
    return check


def search_block(first: int, n: int):
    def check(data, ctx):
        ids, scores, fields, end = wire.decode_search_block(data)
        assert end == len(data) and len(ids) == n and ids[0] == first, (ids, scores)
    return check


def rows_block(ids: list):
    def check(data, ctx):
        vectors, got, fields = wire.decode_rows_block(data)
        assert vectors.shape == (len(ids), DIM) and got == ids and len(fields) == len(ids)
    return check


def path_name(label: str) -> str:
    return f"backups/{label}_{next(_names)}"


# Server-side paths used by setup and by the example must be the same: made once per example
# via the ctx dict ("{snap}" / "{export}" placeholders).
SNAP, EXPORT = "{snap}", "{export}"
ZJ = "/v2/vectordb/jobs/external_collection"

EXAMPLES: dict[str, Ex] = {
    # -- system (no envelope) -----------------------------------------------------------------
    "/": Ex(names=False, envelope=False, check=lambda d, c: d == {"status": "success", "message": "vecstore HTTP API"} or _fail(d)),
    "/healthz": Ex(names=False, envelope=False, check=lambda d, c: d == {"status": "ok"} or _fail(d)),
    "/readyz": Ex(names=False, envelope=False, check=lambda d, c: d["status"] == "ready" or _fail(d)),
    "/metrics": Ex(names=False, envelope=False, check=lambda d, c: b"vecstore_up 1" in d or _fail(d)),
    "/openapi.json": Ex(names=False, envelope=False,
                        check=lambda d, c: set(d["paths"]) == {r.path for r in ROUTES} or _fail(sorted(d["paths"]))),

    # -- databases ----------------------------------------------------------------------------
    "/create_database": Ex(body={"database_name": "{newdb}"}, names=False, echo=("database_name",)),
    "/drop_database": Ex(body={"database_name": "{newdb}"}, names=False, echo=("database_name",),
                         setup=(("/create_database", {"database_name": "{newdb}"}),)),
    "/delete_database": Ex(body={"database_name": "{newdb}"}, names=False, echo=("database_name",),
                           setup=(("/create_database", {"database_name": "{newdb}"}),)),
    "/database_exists": Ex(body={"database_name": DB}, names=False, echo=("database_name",), check=eq(exists=True)),
    "/list_databases": Ex(names=False, echo=(), check=lambda p, c: DB in p["databases"] or _fail(p)),
    "/snapshot_database": Ex(body={"database_name": DB, "snapshot_path": SNAP}, names=False, echo=("database_name",),
                             check=lambda p, c: p["snapshot_path"] == c["snap"] or _fail(p)),
    "/restore_database": Ex(body={"database_name": "{newdb}", "snapshot_path": SNAP}, names=False,
                            echo=("database_name",),
                            setup=(("/snapshot_database", {"database_name": DB, "snapshot_path": SNAP}),),
                            check=lambda p, c: p["snapshot_path"] == c["snap"] or _fail(p)),

    # -- collections --------------------------------------------------------------------------
    "/required_collection": Ex(body={"collection_name": "{newcoll}", "dim": 3, "description": "d"},
                               echo=("database_name",)),
    "/drop_collection": Ex(echo=("database_name", "collection_name")),
    "/show_collections": Ex(body={"database_name": DB}, names=False, echo=("database_name",),
                            check=lambda p, c: c["coll"] in p["collections"] or _fail(p)),
    "/show_collections_details": Ex(body={"database_name": DB}, names=False, echo=("database_name",),
                                    check=lambda p, c: p["collections"][c["coll"]]["shape"] == [6, DIM] or _fail(p)),
    "/is_collection_exists": Ex(check=eq(exists=True)),
    "/restore_collection": Ex(body={"collection_name": "{newcoll}", "snapshot_path": SNAP},
                              setup=(("/snapshot_collection", {"snapshot_path": SNAP}),),
                              check=lambda p, c: p["snapshot_path"] == c["snap"] or _fail(p), echo=("database_name",)),
    "/import_collection": Ex(body={"collection_name": "{newcoll}", "export_path": EXPORT},
                             setup=(("/export_collection", {"export_path": EXPORT}),),
                             check=lambda p, c: p["export_path"] == c["export"] or _fail(p), echo=("database_name",)),
    "/collection_shape": Ex(check=eq(shape=[6, DIM])),
    "/stats": Ex(check=lambda p, c: p["stats"].items() >= {"n_vectors": 6, "n_live": 6, "n_tombstoned": 0, "dimension": DIM,
                                                           "index_mode": "none", "max_id": 5}.items() or _fail(p)),
    "/get_collection_config": Ex(check=lambda p, c: (p["config"]["dim"] == DIM
                                                     and {"chunk_size", "description"} <= set(p["config"])) or _fail(p)),
    "/update_description": Ex(body={"description": "new"}, check=eq(description="new")),
    "/update_collection_description": Ex(body={"description": "new2"}, check=eq(description="new2")),
    "/get_collection_path": Ex(check=lambda p, c: isinstance(p["collection_path"], str) or _fail(p)),
    "/close_collection": Ex(),

    # -- writes -------------------------------------------------------------------------------
    "/add_item": Ex(body={"item": {"vector": [0.1, 0.2, 0.3, 0.4], "id": 10, "field": {"a": 1}}},
                    check=eq(item={"id": 10})),
    "/bulk_add_items": Ex(body={"items": [{"vector": [1, 1, 1, 1], "id": 20}, {"vector": [2, 2, 2, 2]}]},
                          check=eq(ids=[20, 6])),
    "/upsert_items": Ex(body={"items": [{"vector": [1, 1, 1, 1], "id": 0}, {"vector": [2, 2, 2, 2], "id": 30}]},
                        check=eq(ids=[0, 30])),
    "/bulk_add_binary": Ex(query={"dim": DIM, "n_vectors": 2}, raw=f32([1, 2, 3, 4], [5, 6, 7, 8]),
                           check=eq(n_vectors=2)),
    "/commit": Ex(body={"items": [{"vector": [1, 0, 1, 0], "id": 40, "field": {}}]}, echo=(),
                  check=lambda p, c: p == {"status": "Success", "result": {"database_name": DB,
                                                                            "collection_name": c["coll"]}} or _fail(p)),
    "/flush": Ex(),
    "/checkpoint": Ex(),
    "/add": Ex(body={"ids": [50, "s1"], "vectors": [[1, 0, 0, 1], [0, 1, 1, 0]], "fields": [{"a": 1}, None]},
               check=eq(ids=[50, "s1"])),
    "/upsert": Ex(body={"ids": [0, 51], "vectors": [[1, 0, 0, 1], [0, 1, 1, 0]]}, check=eq(ids=[0, 51])),
    "/add_records_binary": Ex(query={"dim": DIM, "n_vectors": 2, "ids_encoding": "raw"},
                              raw=wire.encode_records(np.ones((2, DIM), np.float32), [60, 61], [{"a": 1}, None]),
                              check=eq(ids=[60, 61])),
    "/upsert_records_binary": Ex(query={"dim": DIM, "n_vectors": 2, "ids_encoding": "raw"},
                                 raw=wire.encode_records(np.ones((2, DIM), np.float32), [0, 62], None),
                                 check=eq(ids=[0, 62])),

    # -- indexes and vector fields ----------------------------------------------------------------
    "/build_index": Ex(body={"index_mode": "HNSW-L2"}, check=eq(index_mode="HNSW-L2", n_clusters=None)),
    "/remove_index": Ex(setup=(("/build_index", {"index_mode": "FLAT"}),)),
    "/index_mode": Ex(check=eq(index_mode=None)),
    "/build_vector_field_index": Ex(
        body={"field_name": "tv", "index_mode": "FLAT-COS"},
        setup=(("/create_vector_field", {"field_name": "tv", "dim": 2, "metric": "cos"}),),
        check=eq(field_name="tv", index_mode="FLAT-COS")),
    "/remove_vector_field_index": Ex(
        body={"field_name": "tv"},
        setup=(("/create_vector_field", {"field_name": "tv", "dim": 2, "metric": "cos"}),
               ("/build_vector_field_index", {"field_name": "tv", "index_mode": "FLAT-COS"})),
        check=eq(field_name="tv")),
    "/create_vector_field": Ex(body={"field_name": "tv", "dim": 2, "metric": "cos"},
                               check=lambda p, c: (p["field"]["name"], p["field"]["dimension"]) == ("tv", 2) or _fail(p)),
    "/list_vector_fields": Ex(check=lambda p, c: p["fields"][0]["name"] == "default"
                              and {"name", "dimension", "metric", "index_mode"} <= set(p["fields"][0]) or _fail(p)),
    "/add_named_vectors": Ex(body={"field_name": "tv", "vectors": [[1, 0], [0, 1]], "ids": [0, 1]},
                             setup=(("/create_vector_field", {"field_name": "tv", "dim": 2, "metric": "cos"}),),
                             check=eq(field_name="tv", ids=[0, 1])),
    "/add_sparse_vectors": Ex(body={"vectors": [{"indices": [1, 3], "values": [1.0, 2.0]}], "ids": [0]},
                              check=eq(ids=[0])),

    # -- search -----------------------------------------------------------------------------------
    "/search": Ex(body={"vector": E0, "k": 3, "return_fields": True},
                  check=both(items_shape(first=0, k=3),
                             lambda p, c: p["items"]["fields"][0]["title"] == "apple pie" or _fail(p))),
    "/search_binary": Ex(query={"dim": DIM, "k": 3}, raw=f32(E0), check=search_block(first=0, n=3)),
    "/batch_search": Ex(body={"vectors": [E0, [0, 1, 0, 0]], "k": 2},
                        check=lambda p, c: [r["ids"][0] for r in p["results"]] == [0, 1] or _fail(p)),
    "/batch_search_binary": Ex(query={"dim": DIM, "n_queries": 2, "k": 2}, raw=f32(E0, [0, 1, 0, 0]),
                               check=lambda d, c: [b[0][0] for b in wire.decode_batch_search(d)] == [0, 1] or _fail(d)),
    "/search_range": Ex(body={"vector": E0, "threshold": 0.4},
                        check=lambda p, c: sorted(p["result"]["ids"]) == [0, 4]
                        and len(p["result"]["distances"]) == 2
                        and (p["result"]["index"], p["result"]["vector_field"]) == ("FLAT-IP", "default") or _fail(p)),
    "/search_profile": Ex(body={"vector": E0, "k": 2},
                          check=lambda p, c: {"items", "profile"} <= set(p) and p["items"]["ids"][0] == 0 or _fail(p)),
    "/text_search": Ex(body={"text": "apple", "k": 10},
                       check=lambda p, c: set(p["items"]["ids"]) == {0, 1, 3} and p["items"]["index"] == "BM25-INVERTED"
                       or _fail(p)),
    "/bm25_search": Ex(body={"text": "strudel", "k": 10}, check=items_shape(first=1)),
    "/sparse_search": Ex(body={"vector": {"indices": [3], "values": [1.0]}, "k": 5},
                         setup=(("/add_sparse_vectors", {"vectors": [{"indices": [1, 3], "values": [1.0, 2.0]},
                                                                     {"indices": [3], "values": [1.0]}], "ids": [0, 1]}),),
                         check=both(items_shape(first=0, index="SPARSE-FLAT-IP"),
                                    lambda p, c: p["items"]["ids"] == [0, 1] or _fail(p))),
    "/hybrid_search": Ex(body={"vector": E0, "text": "apple", "k": 3},
                         check=both(items_shape(first=0, index="HYBRID-RRF"),
                                    lambda p, c: p["items"]["fusion"] == "rrf" or _fail(p))),

    # -- retrieval ------------------------------------------------------------------------------
    "/query": Ex(body={"where": "n >= 4"},
                 check=lambda p, c: sorted(r["id"] for r in p["result"]) == [4, 5] or _fail(p)),
    "/query_vectors": Ex(body={"where": "lang = 'fr'"}, check=rows_triple("result", ids=[3])),
    "/head": Ex(body={"n": 2}, check=rows_triple("head", ids=[0, 1])),
    "/tail": Ex(body={"n": 2}, check=rows_triple("tail", ids=[4, 5])),
    "/head_binary": Ex(query={"n": 2}, check=rows_block([0, 1])),
    # -- blobs (LynseDB HEAD) ---------------------------------------------------------------------
    "/write_blob": Ex(query={"key": "notes/é.bin"}, raw=b"\x00hello\xff", check=eq(written=True)),
    "/read_blob": Ex(query={"key": "k", "offset": 1, "length": 4}, setup=(("/write_blob", {"key": "k"}, b"abcdef"),),
                     envelope=False, check=lambda d, c: d == b"bcde" or _fail(d)),
    "/delete_blob": Ex(body={"key": "k"}, setup=(("/write_blob", {"key": "k"}, b"x"),), check=eq(deleted=True)),
    "/list_blobs": Ex(setup=(("/write_blob", {"key": "b"}, b"1"), ("/write_blob", {"key": "a"}, b"2")),
                      check=eq(keys=["a", "b"])),
    "/tail_binary": Ex(query={"n": 2}, check=rows_block([4, 5])),
    "/read_by_only_id": Ex(body={"id": [2, 3]}, check=rows_triple("item", ids=[2, 3])),
    "/list_fields": Ex(check=lambda p, c: {"lang", "n", "title"} <= set(p["fields"]) or _fail(p)),
    "/is_id_exists": Ex(body={"id": 3}, check=eq(is_id_exists=True)),
    "/max_id": Ex(check=eq(max_id=5)),

    # -- delete, restore, compact -----------------------------------------------------------------
    "/delete_items": Ex(body={"ids": [4]}, check=eq(status="ok")),
    "/delete": Ex(body={"ids": [4]}, check=eq(status="ok")),
    "/restore_items": Ex(body={"ids": [4]}, setup=(("/delete_items", {"ids": [4]}),), check=eq(status="ok")),
    "/restore": Ex(body={"ids": [4]}, setup=(("/delete_items", {"ids": [4]}),), check=eq(status="ok")),
    "/list_deleted_ids": Ex(setup=(("/delete_items", {"ids": [4, 2]}),), check=eq(ids=[2, 4])),
    "/compact": Ex(setup=(("/delete_items", {"ids": [4]}),), check=eq(vectors_removed=1)),

    # -- backup -------------------------------------------------------------------------------------
    "/snapshot_collection": Ex(body={"snapshot_path": SNAP}, check=lambda p, c: p["snapshot_path"] == c["snap"] or _fail(p)),
    "/export_collection": Ex(body={"export_path": EXPORT}, check=lambda p, c: p["export_path"] == c["export"] or _fail(p)),

    # -- jobs: Zilliz shapes (no LynseDB envelope: {"code": 0, "data": ...}) ---------------------
    f"{ZJ}/refresh": Ex(body={"dbName": DB, "collectionName": "{ext}"}, names=False, envelope=False,
                        prepare=lambda live, c: _external(live, c), check=lambda d, c: _refreshed(d, c)),
    f"{ZJ}/list": Ex(body={"dbName": DB, "collectionName": "{ext}"}, names=False, envelope=False,
                     prepare=lambda live, c: _external(live, c, refresh=True),
                     check=lambda d, c: _zilliz_records(d, c)),
    f"{ZJ}/describe": Ex(body={"dbName": DB, "jobId": "{job}"}, names=False, envelope=False,
                         prepare=lambda live, c: _external(live, c, refresh=True),
                         check=lambda d, c: _zilliz_job(d["data"], c, "RefreshCompleted") or d["code"] == 0 or _fail(d)),
    f"{ZJ}/cancel": Ex(body={"dbName": DB, "jobId": "{job}"}, names=False, envelope=False,
                       prepare=lambda live, c: _external(live, c, refresh=True),
                       check=lambda d, c: _zilliz_job(d["data"], c, "RefreshCompleted")),  # done: left as it is

    # -- jobs: Lance / Geneva shapes -------------------------------------------------------------
    "/v1/materialized_view/{id}/refresh": Ex(
        path={"id": DB + "${view}"}, query={"delimiter": "$"}, names=False, envelope=False,
        body={"id": [DB, "{view}"], "src_version": None, "max_rows_per_fragment": 2, "concurrency": 2,
              "intra_applier_concurrency": 1, "output_limit": None, "manifest": None, "cluster": None,
              "identity": {"api_key": "ignored"}},
        prepare=lambda live, c: _view(live, c), check=lambda d, c: _view_refreshed(d, c)),
    "/v1/materialized_view/{id}/jobs/{job_id}": Ex(
        path={"id": DB + "${view}", "job_id": "{job}"}, names=False, envelope=False,
        prepare=lambda live, c: _view(live, c, refresh=True),
        check=lambda d, c: (d["job_id"] == c["job"] and d["status"] == "DONE" and d["progress"] == 100
                            and d["view"] == c["view"] and d["stats"]["viewRows"] == 6) or _fail(d)),
}

# What the example's effect must look like afterwards: (path, body, check on params).
AFTER: dict[str, tuple[str, dict, Callable[[Any, dict], bool]]] = {
    "/create_database": ("/database_exists", {"database_name": "{newdb}"}, lambda p, c: p["exists"] is True),
    "/drop_database": ("/database_exists", {"database_name": "{newdb}"}, lambda p, c: p["exists"] is False),
    "/delete_database": ("/database_exists", {"database_name": "{newdb}"}, lambda p, c: p["exists"] is False),
    "/restore_database": ("/show_collections", {"database_name": "{newdb}"}, lambda p, c: c["coll"] in p["collections"]),
    "/required_collection": ("/collection_shape", {"collection_name": "{newcoll}"}, lambda p, c: p["shape"] == [0, 3]),
    "/drop_collection": ("/is_collection_exists", {}, lambda p, c: p["exists"] is False),
    "/restore_collection": ("/collection_shape", {"collection_name": "{newcoll}"}, lambda p, c: p["shape"] == [6, DIM]),
    "/import_collection": ("/collection_shape", {"collection_name": "{newcoll}"}, lambda p, c: p["shape"] == [6, DIM]),
    "/update_description": ("/get_collection_config", {}, lambda p, c: p["config"]["description"] == "new"),
    "/add_item": ("/read_by_only_id", {"id": 10}, lambda p, c: p["item"][2] == [{"a": 1}]),
    "/bulk_add_items": ("/collection_shape", {}, lambda p, c: p["shape"] == [8, DIM]),
    "/upsert_items": ("/read_by_only_id", {"id": 0}, lambda p, c: p["item"][0] == [[1, 1, 1, 1]]),
    "/bulk_add_binary": ("/tail", {"n": 2}, lambda p, c: p["tail"][1] == [6, 7] and p["tail"][0][1] == [5, 6, 7, 8]),
    "/commit": ("/is_id_exists", {"id": 40}, lambda p, c: p["is_id_exists"] is True),
    "/add": ("/read_by_only_id", {"id": "s1"}, lambda p, c: p["item"][1] == ["s1"]),
    "/upsert": ("/read_by_only_id", {"id": 0}, lambda p, c: p["item"][0] == [[1, 0, 0, 1]]),
    "/add_records_binary": ("/read_by_only_id", {"id": 60}, lambda p, c: p["item"][2] == [{"a": 1}]),
    "/upsert_records_binary": ("/read_by_only_id", {"id": 0}, lambda p, c: p["item"][0] == [[1, 1, 1, 1]]),
    "/build_index": ("/index_mode", {}, lambda p, c: p["index_mode"] == "HNSW-L2"),
    "/remove_index": ("/index_mode", {}, lambda p, c: p["index_mode"] is None),
    "/create_vector_field": ("/list_vector_fields", {}, lambda p, c: "tv" in [f["name"] for f in p["fields"]]),
    "/add_named_vectors": ("/search", {"vector": [1, 0], "vector_field": "tv", "k": 1},
                           lambda p, c: p["items"]["ids"] == [0]),
    "/add_sparse_vectors": ("/sparse_search", {"vector": {"indices": [3], "values": [1.0]}},
                            lambda p, c: p["items"]["ids"] == [0]),
    "/delete_items": ("/list_deleted_ids", {}, lambda p, c: p["ids"] == [4]),
    "/delete": ("/list_deleted_ids", {}, lambda p, c: p["ids"] == [4]),
    "/write_blob": ("/list_blobs", {}, lambda p, c: p["keys"] == ["notes/é.bin"]),
    "/delete_blob": ("/list_blobs", {}, lambda p, c: p["keys"] == []),
    "/restore_items": ("/list_deleted_ids", {}, lambda p, c: p["ids"] == []),
    "/restore": ("/list_deleted_ids", {}, lambda p, c: p["ids"] == []),
    "/compact": ("/stats", {}, lambda p, c: (p["stats"]["n_vectors"], p["stats"]["n_tombstoned"]) == (5, 0)),
}


def _fail(got):
    raise AssertionError(f"unexpected reply: {got!r}")


# -- job helpers ------------------------------------------------------------------------------

def _external(live, ctx, *, refresh=False) -> None:
    """A real Iceberg table of 20 rows and an external collection ``ctx["ext"]`` mapped to it
    (refreshed once, the job id in ``ctx["job"]``, when ``refresh``)."""
    table = f"t{next(_names)}"
    append(live.lake.create_table(table, dim=8), 0, 20)
    db = live.backing.get_database(DB)
    db.create_external_collection(ctx["ext"], live.lake.source(table),
                                  {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "cosine"}})
    if refresh:
        job = db.wait_refresh_job(db.refresh_external_collection(ctx["ext"]), timeout=60)
        assert job.state == "COMPLETED", job
        ctx["job"] = str(job.job_id)


def _view(live, ctx, *, refresh=False) -> None:
    """A chunker view ``ctx["view"]`` of the example's collection (2-word chunks of each title:
    6 rows), refreshed once when ``refresh`` (job id in ``ctx["job"]``)."""
    db = live.backing.get_database(DB)
    db.create_materialized_view(ctx["view"], source=ctx["coll"], definition={
        "kind": "chunker", "chunker": {"name": "e2e_words", "input": "title"},
        "udfs": [{"name": "e2e_embed", "inputs": ["chunk_text"], "output": "vec"}], "vectorField": "vec"})
    if refresh:
        job = db.wait_refresh_job(db.refresh_materialized_view(ctx["view"]), timeout=60)
        assert job.state == "COMPLETED", job
        ctx["job"] = str(job.job_id)


def _poll(live, method, path, body, done, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        status, _, data = live.request(method, path, body=body)
        assert status == 200, data
        if done(data) or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def _zilliz_job(job, ctx, state) -> bool:
    assert set(job) >= {"jobId", "collectionName", "state", "progress", "externalSource", "startTime", "endTime"}, job
    assert isinstance(job["jobId"], int) and str(job["jobId"]) == ctx["job"], job
    assert (job["collectionName"], job["state"]) == (ctx["ext"], state), job
    assert json.loads(job["externalSource"])["type"] == "iceberg"
    assert job["endTime"] >= job["startTime"] > 0 and "reason" not in job
    return True


def _refreshed(d, ctx) -> bool:
    assert d["code"] == 0 and isinstance(d["data"]["jobId"], int), d
    ctx["job"] = str(d["data"]["jobId"])
    live = ctx["live"]
    job = _poll(live, "POST", f"{ZJ}/describe", {"dbName": DB, "jobId": d["data"]["jobId"]},
                lambda r: r["data"]["state"] in ("RefreshCompleted", "RefreshFailed"))["data"]
    assert (job["state"], job["progress"]) == ("RefreshCompleted", 100), job
    status, _, shape = live.request("POST", "/collection_shape", body={"database_name": DB, "collection_name": ctx["ext"]})
    return shape["params"]["shape"] == [20, 8] or _fail(shape)


def _zilliz_records(d, ctx) -> bool:
    assert d["code"] == 0 and set(d["data"]) == {"records"}, d
    records = d["data"]["records"]
    assert len(records) == 1, records
    return _zilliz_job(records[0], ctx, "RefreshCompleted")


def _view_refreshed(d, ctx) -> bool:
    assert set(d) == {"job_id"} and isinstance(d["job_id"], str) and d["job_id"].isdigit(), d
    live = ctx["live"]
    path = f"/v1/materialized_view/{quote(DB + '$' + ctx['view'])}/jobs/{d['job_id']}"
    job = _poll(live, "GET", path, None, lambda r: r["status"] in ("DONE", "FAILED"))
    assert (job["status"], job["stats"]["maxRowsPerFragment"], job["stats"]["concurrency"]) == ("DONE", 2, 2), job
    status, _, shape = live.request("POST", "/collection_shape", body={"database_name": DB, "collection_name": ctx["view"]})
    return shape["params"]["shape"] == [6, 3] or _fail(shape)


def _fill(value, ctx):
    if isinstance(value, str):
        return value.format(**ctx) if "{" in value else value
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    return value


def _send(live: Http, path: str, body: dict | None, query: dict | None, raw: bytes | None, ctx: dict,
          names: bool = True, path_params: dict | None = None):
    route = route_map()[path]
    base = {}
    if names and route.target in ("database", "collection"):
        base["database_name"] = DB
        if any(p.name == "collection_name" for p in route.all_params):
            base["collection_name"] = ctx["coll"]
    url = path
    for name, value in _fill(path_params or {}, ctx).items():
        url = url.replace("{" + name + "}", quote(str(value), safe=""))
    if route.body == "json":
        return live.request(route.method, url, body={**base, **_fill(body or {}, ctx)},
                            query=_fill(query, ctx) if query else None)
    return live.request(route.method, url, query={**base, **_fill(query or {}, ctx)}, raw=raw)


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_route(live, path):
    ex = EXAMPLES[path]
    route = route_map()[path]
    ctx = {"coll": fresh_collection(live), "newdb": f"db{next(_names)}", "newcoll": f"n{next(_names)}",
           "snap": path_name("snap"), "export": path_name("export"), "ext": f"ext{next(_names)}",
           "view": f"view{next(_names)}", "live": live}
    if ex.prepare is not None:
        ex.prepare(live, ctx)
    for step in ex.setup:
        sp, *rest = step
        body, query, raw = (rest[0], None, None) if route_map()[sp].body == "json" else (None, *rest)
        status, _, data = _send(live, sp, body, query, raw, ctx)
        assert status == 200, (sp, data)
    status, ctype, data = _send(live, path, ex.body, ex.query, ex.raw, ctx, names=ex.names, path_params=ex.path)
    assert status == ex.status, data
    if route.reply == "binary":
        assert ctype == "application/octet-stream"
        ex.check(data, ctx)
    elif not ex.envelope:
        ex.check(data, ctx)
    else:
        assert ctype.startswith("application/json")
        assert set(data) == {"status", "params"} and data["status"] == "success", data
        params = data["params"]
        expected_echo = {"database_name": DB, "collection_name": ctx["coll"]}
        for k in ex.echo:
            want = (ex.body or {}).get(k) if k in (ex.body or {}) and not ex.names else expected_echo[k]
            assert params.get(k) == _fill(want, ctx), (k, params)
        ex.check(params, ctx)
    if path in AFTER:
        apath, abody, acheck = AFTER[path]
        status, _, adata = _send(live, apath, abody, None, None, ctx)
        assert status == 200, adata
        assert acheck(adata["params"], ctx), (apath, adata)


def test_every_route_has_an_example():
    """New routes cannot go untested: add an example to EXAMPLES."""
    paths = {r.path for r in ROUTES}
    assert paths - set(EXAMPLES) == set(), f"routes without an e2e example: {sorted(paths - set(EXAMPLES))}"
    assert set(EXAMPLES) - paths == set(), f"examples for routes that do not exist: {sorted(set(EXAMPLES) - paths)}"
    assert set(AFTER) <= paths


# --------------------------------------------------------------------------------------------
# every route maps to a public, documented method


TARGET_CLASSES = {"client": vecstore.Client, "database": vecstore.Database, "collection": vecstore.Collection,
                  "server": VecstoreHTTPServer}


@pytest.mark.parametrize("route", [r for r in ROUTES if isinstance(r.call, str)], ids=lambda r: r.path)
def test_route_maps_to_a_public_documented_method(route):
    cls = TARGET_CLASSES[route.target]
    assert not route.call.startswith("_"), f"{route.path} calls a private method {route.call}"
    method = getattr(cls, route.call, None)
    assert method is not None and callable(method), f"{route.path}: {cls.__name__}.{route.call} does not exist"
    doc = inspect.getdoc(method) or ""
    assert doc.strip(), f"{route.path}: {cls.__name__}.{route.call} has no docstring"
    # every parameter the route passes is accepted by the method
    sig = inspect.signature(method)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for p in route.all_params:
        if p.kwarg == "":
            continue
        name = p.kwarg or p.name
        assert takes_kwargs or name in sig.parameters, f"{route.path}: {cls.__name__}.{route.call} has no {name!r}"


# Routes whose ``call`` is an adapter function, and the Collection members each one uses.
ADAPTERS = {
    "/collection_shape": ("shape",), "/get_collection_path": ("get_collection_path",),
    "/upsert_items": ("upsert_items", "upsert"), "/bulk_add_binary": ("add",),
    "/add_records_binary": ("add",), "/upsert_records_binary": ("upsert",), "/build_index": ("build_index",),
    "/build_vector_field_index": ("build_vector_field_index",),
    "/delete_items": ("delete_items",), "/delete": ("delete_items",),
    "/restore_items": ("restore_items",), "/restore": ("restore_items",),
    "/search_binary": ("search",), "/batch_search_binary": ("batch_search",), "/write_blob": ("write_blob",),
}
# Job routes: adapters on the Client that call these Database members.
DB_ADAPTERS = {
    f"{ZJ}/refresh": ("refresh_external_collection",), f"{ZJ}/list": ("list_refresh_external_collection_jobs",),
    f"{ZJ}/describe": ("describe_refresh_job",), f"{ZJ}/cancel": ("cancel_refresh_job",),
    "/v1/materialized_view/{id}/refresh": ("refresh_materialized_view",),
    "/v1/materialized_view/{id}/jobs/{job_id}": ("describe_materialized_view", "describe_refresh_job"),
}


def test_every_adapter_route_is_listed():
    assert {r.path for r in ROUTES if not isinstance(r.call, str)} == set(ADAPTERS) | set(DB_ADAPTERS)


@pytest.mark.parametrize("path", sorted(ADAPTERS) + sorted(DB_ADAPTERS))
def test_adapter_routes_use_public_documented_members(path):
    route = route_map()[path]
    cls, members = (vecstore.Collection, ADAPTERS[path]) if path in ADAPTERS else (vecstore.Database, DB_ADAPTERS[path])
    src = inspect.getsource(route.call) + (route.call.__qualname__ if "_records" in route.call.__qualname__ else "")
    for member in members:
        assert not member.startswith("_")
        attr = inspect.getattr_static(cls, member, None)
        assert attr is not None, f"{path}: {cls.__name__}.{member} does not exist"
        assert (inspect.getdoc(getattr(cls, member)) or "").strip(), f"{path}: {cls.__name__}.{member} has no docstring"
    if "_records" not in route.call.__qualname__:
        if path in ADAPTERS:
            assert any(f"c.{m}" in src for m in members), (path, src)
        else:
            assert all(f".{m}(" in src for m in members), (path, src)


# --------------------------------------------------------------------------------------------
# generic error paths: a missing database or collection is 404 JSON on every route


@pytest.mark.parametrize("route", [r for r in ROUTES if r.target == "collection"], ids=lambda r: r.path)
def test_missing_collection_is_404(live, route):
    ex = EXAMPLES[route.path]
    ctx = {"coll": "no_such_collection", "newdb": "x", "newcoll": "y", "snap": path_name("s"), "export": path_name("e")}
    status, ctype, data = _send(live, route.path, ex.body, ex.query, ex.raw, ctx)
    assert (status, data["code"]) == (404, "not_found"), data


@pytest.mark.parametrize("route", [r for r in ROUTES if r.target in ("database", "collection")], ids=lambda r: r.path)
def test_missing_database_is_404(live, route):
    ex = EXAMPLES[route.path]
    ctx = {"coll": "c", "newdb": "x", "newcoll": "y", "snap": path_name("s"), "export": path_name("e")}
    names = {"database_name": "no_such_db", "collection_name": "c"}
    if route.body == "json":
        status, _, data = live.request(route.method, route.path, body={**_fill(ex.body or {}, ctx), **names})
    else:
        status, _, data = live.request(route.method, route.path, raw=ex.raw, query={**(ex.query or {}), **names})
    assert (status, data["code"]) == (404, "not_found"), data


# --------------------------------------------------------------------------------------------
# the server caches resolved handles: every way a handle goes stale is seen


def _shape(live, name, db=DB):
    status, _, data = live.request("POST", "/collection_shape", body={"database_name": db, "collection_name": name})
    return status, (data["params"]["shape"] if status == 200 else data["code"])


def test_cached_handles_follow_drop_and_recreate(live):
    name = fresh_collection(live)
    assert _shape(live, name) == (200, [6, DIM])
    assert live.post("/drop_collection", {"database_name": DB, "collection_name": name})[0] == 200
    assert _shape(live, name) == (404, "not_found")
    assert live.post("/required_collection", {"database_name": DB, "collection_name": name, "dim": 3})[0] == 200
    assert live.post("/add", {"database_name": DB, "collection_name": name, "ids": [7], "vectors": [[1, 2, 3]]})[0] == 200
    assert _shape(live, name) == (200, [1, 3])
    status, _, data = live.request("POST", "/search", body={"database_name": DB, "collection_name": name,
                                                            "vector": [1, 2, 3], "k": 1})
    assert status == 200 and data["params"]["items"]["ids"] == [7]
    # drop_if_exists through /required_collection
    assert live.post("/required_collection", {"database_name": DB, "collection_name": name, "dim": 2,
                                              "drop_if_exists": True})[0] == 200
    assert _shape(live, name) == (200, [0, 2])


def test_cached_handles_follow_database_drop_restore_and_outside_changes(live):
    db = f"cachedb{next(_names)}"
    assert live.post("/create_database", {"database_name": db})[0] == 200
    assert live.post("/required_collection", {"database_name": db, "collection_name": "c", "dim": 2})[0] == 200
    assert _shape(live, "c", db) == (200, [0, 2])
    snap = path_name("cache_snap")
    assert live.post("/snapshot_collection", {"database_name": db, "collection_name": "c", "snapshot_path": snap})[0] == 200
    assert live.post("/add", {"database_name": db, "collection_name": "c", "ids": [1], "vectors": [[1, 0]]})[0] == 200
    assert _shape(live, "c", db) == (200, [1, 2])
    status, data = live.post("/restore_collection", {"database_name": db, "collection_name": "c",
                                                     "snapshot_path": snap, "overwrite": True})
    assert status == 200, data
    assert _shape(live, "c", db) == (200, [0, 2])  # the restored (empty) collection, not the old handle
    # dropped behind the server's back (same process, the library directly): the closed handle is not used
    live.backing.get_database(db).drop_collection("c")
    assert _shape(live, "c", db) == (404, "not_found")
    assert live.post("/required_collection", {"database_name": db, "collection_name": "c", "dim": 5})[0] == 200
    assert _shape(live, "c", db) == (200, [0, 5])
    assert live.post("/drop_database", {"database_name": db})[0] == 200
    assert _shape(live, "c", db) == (404, "not_found")
    assert live.post("/create_database", {"database_name": db})[0] == 200
    assert live.post("/required_collection", {"database_name": db, "collection_name": "c", "dim": 4})[0] == 200
    assert _shape(live, "c", db) == (200, [0, 4])


def test_read_blob_of_a_missing_key_is_204_and_bad_ranges_are_400(live):
    coll = fresh_collection(live, rows=())
    q = {"database_name": DB, "collection_name": coll}
    status, ctype, data = live.request("GET", "/read_blob", query={**q, "key": "nope"})
    assert (status, data) == (204, b"")
    status, _, data = live.request("GET", "/read_blob", query={**q, "key": "k", "offset": -1})
    assert status == 400 and "offset" in data["error"], data
    status, _, data = live.request("GET", "/read_blob", query=q)
    assert status == 400 and "key" in data["error"], data
    status, _, data = live.request("POST", "/write_blob", query={**q, "key": ""}, raw=b"x")
    assert status == 400 and "key" in data["error"], data


# --------------------------------------------------------------------------------------------
# bodies the library must not see, and shapes only it can judge


def _post_raw(live, path: str, raw: bytes) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=60)
    try:
        conn.request("POST", path, body=raw, headers={"Authorization": f"Bearer {KEY}",
                                                      "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("path, body, named", [
    ("/add_item", {"item": {"vector": E0, "id": 9, "field": {"t": "\ud800"}}}, "item.field.t"),
    ("/add_item", {"item": {"vector": E0, "id": 9, "field": {"\ud800": 1}}}, "item.field: a key"),
    ("/add_item", {"item": {"vector": E0, "id": "x\ud800"}}, "item.id"),
    ("/bulk_add_items", {"items": [{"vector": E0, "id": 9}, {"vector": E0, "id": "\udfff"}]}, "items[1].id"),
    ("/is_id_exists", {"id": "\ud800"}, "id"),
    ("/read_by_only_id", {"id": ["\udc00"]}, "id[0]"),
    ("/text_search", {"text": "\ud800"}, "text"),
    ("/query", {"where": "lang = '\ud800'"}, "where"),
    ("/update_description", {"description": "\ud800"}, "description"),
    ("/snapshot_collection", {"snapshot_path": "x\ud800"}, "snapshot_path"),
])
def test_lone_surrogates_are_400_naming_the_parameter(live, path, body, named):
    """``"\\ud800"`` is a legal JSON escape but no Unicode text: LMDB, msgpack and tantivy
    cannot encode it (it was a 500 on each of these routes)."""
    coll = fresh_collection(live)
    status, data = live.post(path, {"database_name": DB, "collection_name": coll, **body})
    assert status == 400 and data["code"] == "invalid_argument", data
    assert data["error"].startswith(f"{named}: expected valid Unicode text"), data
    assert _shape(live, coll) == (200, [len(ROWS), DIM])


def test_surrogate_escapes_in_any_case_and_as_raw_bytes(live):
    coll = fresh_collection(live)
    head = f'{{"database_name": "{DB}", "collection_name": "{coll}", '.encode()
    # (a path: no library check stands behind the server's here)
    status, data = _post_raw(live, "/snapshot_collection", head + b'"snapshot_path": "a\\uDBFF"}')  # upper case
    assert status == 400 and data["error"].startswith("snapshot_path: expected valid Unicode text"), data
    status, data = _post_raw(live, "/text_search", head + b'"text": "a\xed\xa0\x80"}')  # encoded: not UTF-8
    assert status == 400 and data["error"].startswith("request body: malformed JSON"), data
    # a surrogate pair is one code point, and an escaped backslash is no escape at all
    status, data = _post_raw(live, "/add_item", head + b'"item": {"vector": [0, 1, 1, 0], "id": 9, '
                                                       b'"field": {"t": "\\ud83d\\ude00", "u": "\\\\ud800"}}}')
    assert status == 200, data
    status, data = live.post("/read_by_only_id", {"database_name": DB, "collection_name": coll, "id": 9})
    assert data["params"]["item"][2] == [{"t": "\U0001F600", "u": "\\ud800"}], data


@pytest.mark.parametrize("path, body, named", [
    ("/sparse_search", {"vector": {"\u00b2": 1.0}}, "vector index"),  # "²".isdigit(), but int("²") fails
    ("/sparse_search", {"vector": {"\u0661": 1.0}}, "vector index"),  # int("١") == 1: not ASCII, refused locally
    ("/add_sparse_vectors", {"vectors": [{"\u00b3": 1.0}], "ids": [0]}, "vectors[0] index"),
])
def test_sparse_keys_must_be_ascii_digits(live, path, body, named):
    coll = fresh_collection(live)
    status, data = live.post(path, {"database_name": DB, "collection_name": coll, **body})
    assert status == 400 and data["code"] == "invalid_argument", data
    assert data["error"].startswith(f"{named}: expected an integer"), data


@pytest.mark.parametrize("path, body", [
    ("/add_sparse_vectors", {"vectors": [{"indices": [5, 5], "values": [1.0, 2.0]}], "ids": [0]}),
    ("/add_sparse_vectors", {"vectors": [{"7": 1.0, "07": 4.0}], "ids": [0]}),
    ("/sparse_search", {"vector": {"indices": [5, 5], "values": [1.0, 1.0]}}),
])
def test_duplicate_sparse_indices_are_refused_not_collapsed(live, path, body):
    """The library refuses a repeated index; the route's dict kept the last value instead."""
    coll = fresh_collection(live)
    status, data = live.post(path, {"database_name": DB, "collection_name": coll, **body})
    assert status == 400 and "duplicate sparse index" in data["error"], data


def test_scores_beyond_float32_are_sent_as_json_numbers(live):
    """A sparse dot product over float32 range is inf; JSON has no infinity (the server wrote
    ``Infinity``, which its own parser refuses), so it is sent as float32's largest value."""
    coll = fresh_collection(live)
    base = {"database_name": DB, "collection_name": coll}
    assert live.post("/add_sparse_vectors", {**base, "vectors": [{"1": 3e38}, {"1": 1.0}], "ids": [0, 1]})[0] == 200
    conn = http.client.HTTPConnection(live.host, live.port, timeout=60)
    conn.request("POST", "/sparse_search", body=json.dumps({**base, "vector": {"1": 10.0}}),
                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    raw = resp.read()
    conn.close()
    items = json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}"))["params"]["items"]
    assert items["ids"] == [0, 1] and items["scores"] == [float(np.finfo(np.float32).max), 10.0]


@pytest.mark.parametrize("path, body, call", [
    ("/search", {"vector": [E0]}, lambda c: c.search([E0])),
    ("/search", {"vector": []}, lambda c: c.search([])),
    ("/search_range", {"vector": [[1.0]], "threshold": 0.5}, lambda c: c.search_range([[1.0]], threshold=0.5)),
    ("/batch_search", {"vectors": [E0, [1.0, 0.0]]}, lambda c: c.batch_search([E0, [1.0, 0.0]])),
    ("/batch_search", {"vectors": E0}, lambda c: c.batch_search(E0)),
    ("/add", {"ids": [], "vectors": []}, lambda c: c.add([], ids=[])),
    ("/bulk_add_items", {"items": [{"vector": [E0], "id": 9}]}, lambda c: c.bulk_add_items([{"vector": [E0], "id": 9}])),
])
def test_wrong_shapes_are_the_librarys_errors(live, path, body, call):
    """The server leaves shapes to the library, which knows the dimension: the same class and
    message as a local call (it once answered InvalidArgumentError where local is
    DimensionMismatchError)."""
    coll = fresh_collection(live)
    with pytest.raises(vecstore.VecstoreError) as local:
        call(live.backing.get_database(DB).get_collection(coll))
    status, data = live.post(path, {"database_name": DB, "collection_name": coll, **body})
    assert (status, data["code"], data["error"]) == (local.value.http_status, local.value.code, str(local.value))
    assert _shape(live, coll) == (200, [len(ROWS), DIM])


def test_batch_search_of_no_queries_is_empty(live):
    coll = fresh_collection(live)
    status, data = live.post("/batch_search", {"database_name": DB, "collection_name": coll, "vectors": []})
    assert status == 200 and data["params"]["results"] == [], data


@pytest.mark.parametrize("delete, restore", [("/delete_items", "/restore_items"), ("/delete", "/restore")])
def test_unknown_ids_are_skipped_as_lynsedb_does_unless_missing_ok_is_false(live, delete, restore):
    coll = fresh_collection(live)
    names = {"database_name": DB, "collection_name": coll}

    def live_ids():
        return sorted(live.post("/search", {**names, "vector": [1, 1, 1, 1], "k": 10})[1]["params"]["items"]["ids"])

    status, data = live.post(delete, {**names, "ids": [2, 999]})  # LynseDB: 200, id 2 gone
    assert (status, data["params"]["n_deleted"]) == (200, 1), data
    assert live_ids() == [0, 1, 3, 4, 5]
    status, data = live.post(delete, {**names, "ids": [3, 999], "missing_ok": False})
    assert (status, data["code"]) == (404, "not_found") and "999" in data["error"], data
    assert live_ids() == [0, 1, 3, 4, 5]  # nothing deleted
    status, data = live.post(restore, {**names, "ids": [998, 2], "missing_ok": False})
    assert status == 404 and live_ids() == [0, 1, 3, 4, 5], data
    status, data = live.post(restore, {**names, "ids": [998, 2]})
    assert (status, data["params"]["n_restored"]) == (200, 1), data
    assert live_ids() == [0, 1, 2, 3, 4, 5]


def test_create_vector_field_again_is_200_with_the_same_configuration_and_409_otherwise(live):
    names = {"database_name": DB, "collection_name": fresh_collection(live)}
    body = {**names, "field_name": "tv", "dim": 2, "metric": "cos"}
    first = live.post("/create_vector_field", body)
    again = live.post("/create_vector_field", body)  # a script declaring its schema at every start
    assert first == again and first[0] == 200, (first, again)
    assert again[1]["params"]["field"] == {"name": "tv", "dimension": 2, "metric": "cosine", "index_mode": "FLAT-COS"}
    status, data = live.post("/create_vector_field", {**body, "dim": 3})
    assert (status, data["code"]) == (409, "conflict") and "dim 2 (asked 3)" in data["error"], data


def test_zero_sized_requests_are_empty_answers_as_in_lynsedb(live):
    coll = fresh_collection(live)
    names = {"database_name": DB, "collection_name": coll}
    no_hits = {"k": 0, "ids": [], "scores": [], "fields": []}
    for path, body, key, want in (
            ("/search", {"vector": E0, "k": 0}, "items", no_hits), ("/search_profile", {"vector": E0, "k": 0}, "items", no_hits),
            ("/batch_search", {"vectors": [E0, E0], "k": 0}, "results", [no_hits, no_hits]),
            ("/text_search", {"text": "apple", "k": 0}, "items", no_hits),
            ("/hybrid_search", {"vector": E0, "text": "apple", "k": 0}, "items", no_hits),
            ("/search_range", {"vector": E0, "threshold": 0.0, "max_results": 0}, "result", {"ids": [], "distances": []}),
            ("/head", {"n": 0}, "head", [[], [], []]), ("/tail", {"n": 0}, "tail", [[], [], []]),
            ("/delete", {"ids": []}, "n_deleted", 0), ("/restore_items", {"ids": []}, "n_restored", 0)):
        status, data = live.post(path, {**names, **body})
        assert status == 200, (path, data)
        got = data["params"][key]
        if isinstance(want, dict):
            got = {k: got[k] for k in want}
        elif isinstance(got, list) and got and isinstance(got[0], dict):
            got = [{k: r[k] for k in no_hits} for r in got]
        assert got == want, (path, got)
    status, _, data = live.request("POST", "/search_binary", query={**names, "dim": DIM, "k": 0}, raw=f32(E0))
    assert status == 200 and wire.decode_search_block(data)[0] == []
    status, _, data = live.request("POST", "/bulk_add_binary", query={**names, "dim": DIM, "n_vectors": 0}, raw=b"")
    assert (status, data["params"]["n_vectors"]) == (200, 0), data
    assert live.post("/collection_shape", names)[1]["params"]["shape"] == [6, DIM]
    for k in (-1, 10_001):  # the range the server enforces, in its message
        status, data = live.post("/search", {**names, "vector": E0, "k": k})
        assert (status, data["error"]) == (400, f"k: expected an int in [0, 10000], got {k}"), data


def test_upsert_items_without_an_id_names_the_keys_not_a_numpy_repr(live):
    names = {"database_name": DB, "collection_name": fresh_collection(live)}
    status, data = live.post("/upsert_items", {**names, "items": [{"vector": [1, 1, 1, 1], "id": 0},
                                                                   {"vector": [1, 1, 1, 1], "field": {"a": 1}}]})
    message = "items[1]: expected a dict with 'vector' and 'id', got a dict with keys ['field', 'vector']"
    assert (status, data["error"]) == (400, message), data
