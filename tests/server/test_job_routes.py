"""The job routes' error cases and envelopes, end to end (real Iceberg tables, real views).

Zilliz family (``/v2/vectordb/jobs/external_collection/*``): every reply is HTTP 200 with
``{"code": 0, "data": ...}`` or ``{"code": <non-zero>, "message": ...}`` (1100 invalid
parameter or conflict, 100 not found, 800 database not found). Lance family
(``/v1/materialized_view/{id}/...``): the HTTP status of the error with a Lance
``ErrorResponse`` ``{"error", "code", "type"}`` (13 InvalidInput, 4 TableNotFound,
1 NamespaceNotFound, 14 ConcurrentModification). The happy paths are the examples of
``test_routes_e2e.py``.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

import vecstore
import vecstore.external.refresh as ext_refresh
from vecstore import functions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Iceberg helpers
from iceberg_util import Lake, append
from live_server import start_server

KEY = "jobs-key"
DB = "default"  # the Zilliz default, so requests without dbName land here
ZJ = "/v2/vectordb/jobs/external_collection"
SPEC = {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "cosine"}}
GATE = threading.Event()  # the slow UDF waits on it


def _slow_embed(texts):
    GATE.wait(30)
    return np.ones((len(texts), 3), np.float32)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    lake = Lake(root / "lake")
    append(lake.create_table("books", dim=8), 0, 30)
    backing = vecstore.connect(root / "data")
    db = backing.create_database(DB)
    db.create_external_collection("ext_books", lake.source("books"), SPEC)
    docs = db.create_collection("docs", dim=2)
    docs.add(np.ones((4, 2), np.float32), ids=[1, 2, 3, 4],
             fields=[{"body": f"w{i} x{i} y{i} z{i} q{i}"} for i in range(4)])
    functions.register_chunker("jr_words", lambda text, size=2: [" ".join(text.split()[i:i + size])
                                                                 for i in range(0, len(text.split()), size)])
    functions.register_udf("jr_embed", lambda texts: np.ones((len(texts), 3), np.float32), dim=3)
    functions.register_udf("jr_slow", _slow_embed, dim=3)
    chunker_def = {"kind": "chunker", "chunker": {"name": "jr_words", "input": "body"},
                   "udfs": [{"name": "jr_embed", "inputs": ["chunk_text"], "output": "vec"}], "vectorField": "vec"}
    db.create_materialized_view("chunks", source="docs", definition=chunker_def)
    db.create_materialized_view("capped", source="docs", definition=chunker_def)
    db.create_materialized_view("per_doc", source="docs", definition={
        "kind": "udf", "udfs": [{"name": "jr_embed", "inputs": ["body"], "output": "vec"}], "vectorField": "vec"})
    for name in ("slow", "slow2"):  # one per test: a cancelled job's checkpoints would make the next one quick
        db.create_materialized_view(name, source="docs", definition={
            "kind": "udf", "udfs": [{"name": "jr_slow", "inputs": ["body"], "output": "vec"}], "vectorField": "vec"})
    other = backing.create_database("app")
    other.create_collection("docs", dim=2).add(np.ones((1, 2), np.float32), ids=[1], fields=[{"body": "a b c"}])
    other.create_materialized_view("chunks", source="docs", definition=chunker_def)
    server = start_server(root / "data", backing, api_key=KEY)
    try:
        yield {"server": server, "db": db, "lake": lake, "backing": backing}
    finally:
        GATE.set()
        server.stop()
        backing.close()
        for name in ("jr_words", "jr_embed", "jr_slow"):
            functions.unregister(name)


def call(env, method, path, body=None, *, auth=f"Bearer {KEY}", raw=None):
    conn = http.client.HTTPConnection(*env["server"].server_address[:2], timeout=30)
    headers = {"Authorization": auth} if auth else {}
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if payload is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, (json.loads(data) if data else b"")


def zilliz(env, action, body, **kw):
    status, data = call(env, "POST", f"{ZJ}/{action}", body, **kw)
    assert status == 200, (status, data)
    return data


def wait_zilliz(env, job_id, db=DB):
    deadline = time.monotonic() + 60
    while True:
        data = zilliz(env, "describe", {"dbName": db, "jobId": job_id})["data"]
        if data["state"] in ("RefreshCompleted", "RefreshFailed") or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def view_path(view_id, suffix="refresh", delimiter=None):
    q = f"?delimiter={quote(delimiter, safe='')}" if delimiter else ""
    return f"/v1/materialized_view/{quote(view_id, safe='')}/{suffix}{q}"


def wait_view(env, view_id, job_id):
    deadline = time.monotonic() + 60
    while True:
        status, data = call(env, "GET", view_path(view_id, f"jobs/{job_id}"))
        assert status == 200, data
        if data["status"] in ("DONE", "FAILED") or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Zilliz family


def test_zilliz_refresh_defaults_to_database_default_and_accepts_user_password_token(env):
    data = zilliz(env, "refresh", {"collectionName": "ext_books"}, auth=f"Bearer root:{KEY}")
    assert data["code"] == 0 and isinstance(data["data"]["jobId"], int)
    job = wait_zilliz(env, data["data"]["jobId"])
    assert (job["state"], job["progress"]) == ("RefreshCompleted", 100)
    # the seed's example body, dbName and all, and the jobId sent back as a string
    data = zilliz(env, "refresh", {"dbName": "default", "collectionName": "ext_books"})
    assert wait_zilliz(env, str(data["data"]["jobId"]))["state"] == "RefreshCompleted"
    assert env["db"].get_collection("ext_books").shape == (30, 8)


def test_zilliz_refresh_with_a_new_source_and_spec(env):
    lake = env["lake"]
    append(lake.create_table("books2", dim=8), 100, 5)
    body = {"collectionName": "ext_books", "externalSource": json.dumps(lake.source("books2")),
            "externalSpec": json.dumps(SPEC)}
    job = wait_zilliz(env, zilliz(env, "refresh", body)["data"]["jobId"])
    assert job["state"] == "RefreshCompleted" and json.loads(job["externalSource"])["table"] == "ns.books2"
    assert env["db"].get_collection("ext_books").shape == (5, 8)
    # objects work as well as JSON strings; back to the first table
    body = {"collectionName": "ext_books", "externalSource": lake.source("books"), "externalSpec": SPEC}
    assert wait_zilliz(env, zilliz(env, "refresh", body)["data"]["jobId"])["state"] == "RefreshCompleted"
    assert env["db"].get_collection("ext_books").shape == (30, 8)


@pytest.mark.parametrize("body, code, words", [
    ({"collectionName": "ext_books", "externalSource": "{}"}, 1100, "both or neither"),
    ({"collectionName": "nope", "externalSpec": json.dumps(SPEC)}, 1100, "both or neither"),
    ({"collectionName": "nope"}, 100, "nope"),
    ({"dbName": "no_db", "collectionName": "ext_books"}, 800, "no_db"),
    ({"collectionName": "docs"}, 1100, "not an external collection"),
    ({}, 1100, "collectionName: missing required parameter"),
    ({"collectionName": 5}, 1100, "collectionName: expected a string"),
    ({"collectionName": "ext_books", "externalSource": "{not json", "externalSpec": "{}"}, 1100, "externalSource"),
    ({"collectionName": "ext_books", "externalSource": 3, "externalSpec": 4}, 1100, "externalSource"),
])
def test_zilliz_refresh_errors(env, body, code, words):
    data = zilliz(env, "refresh", body)
    assert set(data) == {"code", "message"} and data["code"] == code, data
    assert words in data["message"], data


def test_zilliz_refresh_already_running_is_1100(env, monkeypatch):
    gate, entered = threading.Event(), threading.Event()
    original = ext_refresh._Refresh.__call__

    def held(self, ctx):
        entered.set()
        gate.wait(30)
        return original(self, ctx)

    monkeypatch.setattr(ext_refresh._Refresh, "__call__", held)
    first = zilliz(env, "refresh", {"collectionName": "ext_books"})["data"]["jobId"]
    try:
        assert entered.wait(10)
        data = zilliz(env, "refresh", {"collectionName": "ext_books"})
        assert data["code"] == 1100 and "already in progress" in data["message"], data
        running = zilliz(env, "describe", {"jobId": first})["data"]
        assert running["state"] == "RefreshInProgress" and running["endTime"] == 0
        listed = zilliz(env, "list", {"collectionName": "ext_books"})["data"]["records"]
        assert listed[-1]["jobId"] == first and listed[-1]["state"] == "RefreshInProgress"
    finally:
        gate.set()
    assert wait_zilliz(env, first)["state"] == "RefreshCompleted"


def test_zilliz_list_excludes_view_jobs_and_filters_by_collection(env):
    zilliz_job = wait_zilliz(env, zilliz(env, "refresh", {"collectionName": "ext_books"})["data"]["jobId"])
    status, data = call(env, "POST", view_path("default$chunks"), {})
    assert status == 200, data
    wait_view(env, "default$chunks", data["job_id"])
    everything = zilliz(env, "list", {"dbName": DB})["data"]["records"]
    assert zilliz_job["jobId"] in [r["jobId"] for r in everything]
    assert {r["collectionName"] for r in everything} == {"ext_books"}  # no view jobs
    assert [r["jobId"] for r in everything] == sorted(r["jobId"] for r in everything)  # oldest first
    assert zilliz(env, "list", {"collectionName": ""})["data"]["records"] == everything
    assert zilliz(env, "list", {"collectionName": "chunks"})["data"] == {"records": []}
    assert zilliz(env, "list", {"dbName": "no_db"})["code"] == 800


def test_zilliz_describe_and_cancel_errors(env):
    for action in ("describe", "cancel"):
        assert zilliz(env, action, {"jobId": 12345})["code"] == 100
        assert zilliz(env, action, {"jobId": "abc"})["code"] == 1100
        assert zilliz(env, action, {"jobId": -1})["code"] == 1100
        assert zilliz(env, action, {"jobId": "9" * 5000})["code"] == 1100  # (past int()'s 4300 digits)
        assert zilliz(env, action, {})["code"] == 1100
        assert zilliz(env, action, {"dbName": "no_db", "jobId": 1})["code"] == 800
    status, data = call(env, "POST", f"{ZJ}/describe", raw=b"{not json")
    assert (status, data["code"]) == (200, 1100) and "malformed JSON" in data["message"]


def test_zilliz_cancel_a_running_job(env):
    GATE.clear()
    status, data = call(env, "POST", view_path("slow"), {})
    assert status == 200, data
    job_id = int(data["job_id"])
    try:
        cancelled = zilliz(env, "cancel", {"jobId": job_id})
        assert cancelled["code"] == 0 and cancelled["data"]["jobId"] == job_id
    finally:
        GATE.set()
    job = wait_zilliz(env, job_id)
    assert job["state"] == "RefreshFailed" and "cancel" in job["reason"], job
    assert env["db"].get_collection("slow").shape[0] == 0  # nothing committed


def test_zilliz_auth(env):
    for auth in (None, "Bearer nope", f"Bearer {KEY}:root", "Bearer root:"):
        status, data = call(env, "POST", f"{ZJ}/list", {}, auth=auth)
        assert (status, data) == (401, {"error": "Unauthorized", "code": "unauthorized"}), auth


def test_zilliz_unknown_action_and_wrong_method_are_404(env):
    assert call(env, "POST", f"{ZJ}/nope", {}) == (404, b"")
    assert call(env, "GET", f"{ZJ}/list") == (404, b"")


# --------------------------------------------------------------------------------------------
# Lance / Geneva family


def test_lance_refresh_with_every_seed_parameter(env):
    db = env["db"]
    body = {"identity": {"api_key": "x", "auth_token": "y"}, "id": ["default", "capped"], "src_version": None,
            "max_rows_per_fragment": 1, "concurrency": 2, "intra_applier_concurrency": 2, "cluster": None,
            "output_limit": 3, "manifest": json.dumps({"functions": {"jr_embed": {"batchSize": 2}}})}
    status, data = call(env, "POST", view_path("default$capped", delimiter="$"), body)
    assert status == 200 and set(data) == {"job_id"}, data
    job = wait_view(env, "default$capped", data["job_id"])
    assert job["status"] == "DONE" and job["stats"]["trimmed"] is True, job
    assert job["stats"]["maxRowsPerFragment"] == 1 and job["stats"]["concurrency"] == 2
    assert db.get_collection("capped").shape[0] == 3
    # a follow-up without the cap takes the rest; a bare name is in database "default"
    status, data = call(env, "POST", view_path("capped"), {"full": False})
    assert status == 200, data
    assert wait_view(env, "capped", data["job_id"])["status"] == "DONE"
    assert db.get_collection("capped").shape[0] == 12  # 4 docs x 3 chunks of 2 words
    # src_version: the source's current version is in range (a no-op now)
    version = db.describe_materialized_view("capped")["sourceVersion"]
    status, data = call(env, "POST", view_path("default$capped"), {"src_version": version})
    assert status == 200 and wait_view(env, "default$capped", data["job_id"])["status"] == "DONE"


def test_lance_other_delimiter_and_database(env):
    status, data = call(env, "POST", view_path("app#chunks", delimiter="#"), {"id": ["app", "chunks"]})
    assert status == 200, data
    job = wait_view(env, "app$chunks", data["job_id"])
    assert job["status"] == "DONE" and job["view"] == "chunks"
    assert env["backing"].get_database("app").get_collection("chunks").shape[0] == 2


@pytest.mark.parametrize("view_id, body, status, code, words", [
    ("default$per_doc", {"output_limit": 2}, 400, 13, "output_limit"),
    ("default$chunks", {"src_version": 10_000}, 400, 13, "src_version"),
    ("default$chunks", {"src_version": -1}, 400, 13, "src_version"),
    ("default$chunks", {"concurrency": 0}, 400, 13, "concurrency"),
    ("default$chunks", {"manifest": "{nope"}, 400, 13, "manifest"),
    ("default$chunks", {"manifest": json.dumps({"bogus": 1})}, 400, 13, "manifest"),
    ("default$chunks", {"id": ["default", "other"]}, 400, 13, "id"),
    ("default$chunks", {"cluster": "yarn://x"}, 400, 13, "cluster"),
    ("$", {}, 400, 13, "root namespace"),
    ("a$b$c", {}, 400, 13, "id"),
    ("default$nope", {}, 404, 4, "nope"),
    ("default$docs", {}, 404, 4, "not a materialized view"),
    ("no_db$chunks", {}, 404, 1, "no_db"),
])
def test_lance_refresh_errors(env, view_id, body, status, code, words):
    got, data = call(env, "POST", view_path(view_id), body)
    assert (got, data["code"]) == (status, code), data
    assert set(data) == {"error", "code", "type"} and words in data["error"], data


def test_lance_refresh_already_running_is_409(env):
    GATE.clear()
    status, data = call(env, "POST", view_path("default$slow2"), {})
    assert status == 200, data
    try:
        status, second = call(env, "POST", view_path("default$slow2"), {})
        assert (status, second["code"], second["type"]) == (409, 14, "conflict"), second
        status, running = call(env, "GET", view_path("default$slow2", f"jobs/{data['job_id']}"))
        assert status == 200 and running["status"] in ("PENDING", "RUNNING"), running
    finally:
        GATE.set()
    assert wait_view(env, "default$slow2", data["job_id"])["status"] == "DONE"


def test_lance_job_status_errors(env):
    status, data = call(env, "POST", view_path("default$per_doc"), {})
    assert status == 200, data
    job_id = data["job_id"]
    assert wait_view(env, "default$per_doc", job_id)["status"] == "DONE"
    # the job of another view, an unknown job, a bad id, an unknown view, a Zilliz job
    assert call(env, "GET", view_path("default$chunks", f"jobs/{job_id}"))[1]["code"] == 4
    assert call(env, "GET", view_path("default$per_doc", "jobs/123"))[0] == 404
    for bad in ("abc", "9" * 5000):  # (past int()'s 4300 digits)
        status, data = call(env, "GET", view_path("default$per_doc", f"jobs/{bad}"))
        assert (status, data["code"]) == (400, 13), data
    assert call(env, "GET", view_path("default$nope", f"jobs/{job_id}"))[0] == 404
    zjob = zilliz(env, "refresh", {"collectionName": "ext_books"})["data"]["jobId"]
    wait_zilliz(env, zjob)
    assert call(env, "GET", view_path("default$per_doc", f"jobs/{zjob}"))[0] == 404
    # methods the paths lack
    assert call(env, "POST", view_path("default$per_doc", f"jobs/{job_id}"), {}) == (404, b"")
    assert call(env, "GET", view_path("default$per_doc")) == (404, b"")
    assert call(env, "POST", "/v1/materialized_view/default$per_doc/refresh/extra", {}) == (404, b"")


def test_lance_auth(env):
    status, data = call(env, "POST", view_path("default$chunks"), {}, auth=None)
    assert (status, data["code"]) == (401, "unauthorized")
    status, _ = call(env, "GET", view_path("default$chunks", "jobs/1"), auth="Bearer nope")
    assert status == 401


def test_openapi_documents_the_job_paths(env):
    status, doc = call(env, "GET", "/openapi.json")
    assert status == 200
    refresh = doc["paths"]["/v1/materialized_view/{id}/refresh"]["post"]
    assert {(p["name"], p["in"], p["required"]) for p in refresh["parameters"]} == {
        ("id", "path", True), ("delimiter", "query", False)}
    body = doc["components"]["schemas"][refresh["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                        .rsplit("/", 1)[1]]
    assert {"id", "src_version", "max_rows_per_fragment", "concurrency", "intra_applier_concurrency", "cluster",
            "output_limit", "manifest", "identity"} <= set(body["properties"])
    job = doc["paths"]["/v1/materialized_view/{id}/jobs/{job_id}"]["get"]
    assert {p["name"] for p in job["parameters"]} == {"id", "job_id", "delimiter"}
    assert refresh["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("LanceError")
    zref = doc["paths"][f"{ZJ}/refresh"]["post"]
    schema = doc["components"]["schemas"][zref["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                          .rsplit("/", 1)[1]]
    assert schema["required"] == ["collectionName"]
    assert {"dbName", "collectionName", "externalSource", "externalSpec"} == set(schema["properties"])
    assert zref["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("ZillizReply")
