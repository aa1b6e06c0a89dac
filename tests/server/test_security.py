"""Security, end to end against the real library (reliability.md §5, T12).

``test_app_unit.py`` pins these against a fake client on a few paths; here every route of the
table is covered on a real store, and the assertion is about effects, not only statuses: a
refused request changes nothing, and no file appears outside the data folder.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from live_server import read_until_closed

import vecstore
from vecstore.server.__main__ import parse_args
from vecstore.server.app import ServerConfig, make_server
from vecstore.server.routes import PUBLIC_PATHS, ROUTES

KEY = "k3y-for-security-tests"
DB, COLL, DIM = "sec", "c", 4


@pytest.fixture
def env(tmp_path):
    """A keyed server over a real store with one collection of 3 rows, plus an ``outside``
    folder (a sibling of the data folder) and a symlink from inside the data folder to it."""
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    backing = vecstore.connect(data)
    col = backing.create_database(DB).require_collection(COLL, dim=DIM)
    col.add(vectors=np.eye(3, DIM, dtype=np.float32), ids=[0, 1, 2])
    (data / "link_out").symlink_to(outside)
    config = ServerConfig(data_dir=data, host="127.0.0.1", port=0, api_key=KEY,
                          max_json_bytes=64 * 1024, max_binary_bytes=256 * 1024)
    server = make_server(config, backing)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield {"server": server, "data": data, "outside": outside, "tmp": tmp_path, "backing": backing}
    finally:
        server.stop()
        backing.close()


def request(server, method, path, body=None, *, headers=None, raw=None, auth=KEY):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    hdrs = {"Authorization": f"Bearer {auth}"} if auth is not None else {}
    hdrs.update(headers or {})
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if payload is not None:
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, resp.headers, data


def state(env) -> tuple:
    """What a refused request must not change: databases, the collection's rows, the files."""
    col = env["backing"].get_database(DB).get_collection(COLL)
    files = sorted(str(p.relative_to(env["tmp"])) for p in env["tmp"].rglob("*")
                   if "lock" not in p.name and not str(p.relative_to(env["tmp"])).startswith("data/sec/c/"))
    return tuple(sorted(env["backing"].list_databases())), col.shape, tuple(col.list_deleted_ids()), tuple(files)


# --------------------------------------------------------------------------------------------
# auth: every non-public route


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


WRONG = {
    "no header": None,
    "wrong bearer": "Bearer nope",
    "empty bearer": "Bearer ",
    "key with a suffix": f"Bearer {KEY}x",
    "key as the Basic user": _basic(KEY, "nope"),
    "wrong Basic password": _basic("user", "nope"),
    "Basic not base64": "Basic !!!",
    "unknown scheme": f"Token {KEY}",
    "bare key": KEY,
}


def _example_request(route):
    """A request that would succeed (or at least reach the library) with the key."""
    body = {"database_name": DB, "collection_name": COLL, "vector": [1, 0, 0, 0], "ids": [0], "id": 0,
            "items": [{"vector": [1, 0, 0, 0]}], "vectors": [[1, 0, 0, 0]], "text": "x", "description": "d",
            "field_name": "f", "dim": DIM, "threshold": 0.5, "snapshot_path": "s", "export_path": "e"}
    body.update({"dbName": DB, "collectionName": COLL, "jobId": 1})  # the Zilliz job routes
    path = route.path.replace("{id}", f"{DB}%24{COLL}").replace("{job_id}", "1")  # the Lance ones
    if route.body == "json":
        return path, body, None
    query = f"?database_name={DB}&collection_name={COLL}&dim={DIM}&n_vectors=1&n_queries=1"
    return path + query, None, (np.zeros(DIM, "<f4").tobytes() if route.body == "binary" else None)


@pytest.mark.parametrize("case", sorted(WRONG))
def test_every_non_public_route_is_401_without_the_key(env, case):
    server, before = env["server"], state(env)
    checked = 0
    for route in ROUTES:
        if route.path in PUBLIC_PATHS:
            continue
        path, body, raw = _example_request(route)
        headers = {} if WRONG[case] is None else {"Authorization": WRONG[case]}
        status, hdrs, data = request(server, route.method, path, body, raw=raw, headers=headers, auth=None)
        assert status == 401, (case, route.path, status, data)
        assert json.loads(data) == {"error": "Unauthorized", "code": "unauthorized"}
        assert any(v.startswith("Bearer") for v in hdrs.get_all("WWW-Authenticate")), route.path
        checked += 1
    assert checked == len(ROUTES) - len(PUBLIC_PATHS)
    assert state(env) == before  # nothing was created, deleted or written


def test_public_routes_need_no_key(env):
    server = env["server"]
    assert PUBLIC_PATHS == {"/", "/healthz", "/readyz"}
    for path in sorted(PUBLIC_PATHS):
        for auth in (None, "wrong"):
            status, _, data = request(server, "GET", path, auth=auth)
            assert status == 200, (path, data)
            assert json.loads(data)["status"] in ("success", "ok", "ready")


def test_the_key_works_as_bearer_and_as_basic_password(env):
    server = env["server"]
    body = {"database_name": DB, "collection_name": COLL}
    assert request(server, "POST", "/collection_shape", body)[0] == 200
    for header in (_basic("anyone", KEY), _basic("", KEY), f"bearer {KEY}", f"Bearer   {KEY}  "):
        status, _, data = request(server, "POST", "/collection_shape", body, headers={"Authorization": header}, auth=None)
        assert status == 200, (header, data)
        assert json.loads(data)["params"]["shape"] == [3, DIM]


def test_unknown_paths_are_401_before_404_without_the_key(env):
    # an unauthenticated caller cannot probe which paths exist
    assert request(env["server"], "GET", "/set_environment", auth=None)[0] == 401
    assert request(env["server"], "GET", "/set_environment")[0] == 404


# --------------------------------------------------------------------------------------------
# bodies over the limit: 413 before the server reads them


def _declare_only(server, path: str, length: int, *, ctype="application/json") -> tuple[bytes, float]:
    """Send headers that declare ``length`` bytes and none of the body; return the answer."""
    started = time.monotonic()
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n").encode())
        out = read_until_closed(s)
    return out, time.monotonic() - started


@pytest.mark.parametrize("path, ctype, limit", [
    ("/bulk_add_items", "application/json", 64 * 1024),
    (f"/bulk_add_binary?database_name={DB}&collection_name={COLL}&dim={DIM}&n_vectors=100000",
     "application/octet-stream", 256 * 1024),
])
def test_413_without_reading_the_body(env, path, ctype, limit):
    server, before = env["server"], state(env)
    for length in (limit + 1, 10 ** 13):
        out, seconds = _declare_only(server, path, length, ctype=ctype)
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert b'"code":"payload_too_large"' in out
        assert seconds < 3, seconds  # answered at once: the server did not wait for the body
    assert state(env) == before
    assert request(server, "GET", "/healthz")[0] == 200


def test_413_while_the_client_is_sending(env):
    server, before = env["server"], state(env)
    items = [{"vector": [1.0, 0.0, 0.0, 0.0], "id": 100 + i} for i in range(5000)]  # ~150 KB JSON
    status, _, data = request(server, "POST", "/bulk_add_items",
                              {"database_name": DB, "collection_name": COLL, "items": items})
    assert status == 413 and json.loads(data)["code"] == "payload_too_large"
    assert state(env) == before


def test_just_under_the_limit_is_accepted(env):
    server = env["server"]
    n = (256 * 1024) // (DIM * 4)
    raw = np.ones((n, DIM), "<f4").tobytes()
    status, _, data = request(server, "POST", f"/bulk_add_binary?database_name={DB}&collection_name={COLL}"
                                              f"&dim={DIM}&n_vectors={n}", raw=raw,
                              headers={"Content-Type": "application/octet-stream"})
    assert status == 200, data
    assert json.loads(data)["params"]["n_vectors"] == n


@pytest.mark.parametrize("raw", [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
def test_deep_json_is_400(env, raw):
    status, _, data = request(env["server"], "POST", "/search", raw=raw)
    assert status == 400 and json.loads(data)["code"] == "invalid_argument"


def test_bad_content_lengths(env):
    server = env["server"]
    for cl in ("-1", "abc", "1e3", "+5"):
        with socket.create_connection(server.server_address[:2], timeout=5) as s:
            s.sendall((f"POST /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                       f"Content-Length: {cl}\r\n\r\n").encode())
            out = s.recv(65536)
        assert out.startswith(b"HTTP/1.1 400"), (cl, out[:100])


# --------------------------------------------------------------------------------------------
# server-side paths: confined to the data folder


# (route, body without the path, the path key). The restores/imports read from the path; the
# snapshots/exports write to it.
PATH_ROUTES = [
    ("/snapshot_collection", {"database_name": DB, "collection_name": COLL}, "snapshot_path"),
    ("/export_collection", {"database_name": DB, "collection_name": COLL}, "export_path"),
    ("/snapshot_database", {"database_name": DB}, "snapshot_path"),
    ("/restore_collection", {"database_name": DB, "collection_name": "restored"}, "snapshot_path"),
    ("/import_collection", {"database_name": DB, "collection_name": "imported"}, "export_path"),
    ("/restore_database", {"database_name": "restored_db"}, "snapshot_path"),
]


def _bad_paths(env) -> dict[str, str]:
    outside, data = env["outside"], env["data"]
    return {
        "dotdot": "../outside/x",
        "dotdot inside": "snaps/../../outside/y",
        "dotdot after a real folder": f"{DB}/../../outside/z",
        "absolute outside": str(outside / "abs"),
        "absolute root file": "/etc/vecstore_should_not_exist",
        "absolute via the data folder": str(data / ".." / "outside" / "w"),
        "symlink escape": "link_out/snap",
        "the symlink itself": "link_out",
        "NUL": "snap\x00/../../outside/n",
        "NUL plain": "a\x00b",
        "the data folder itself": str(data),
        "dot": ".",
    }


@pytest.mark.parametrize("path, body, key", PATH_ROUTES, ids=[r[0] for r in PATH_ROUTES])
def test_server_paths_outside_the_data_folder_are_403(env, path, body, key):
    server, before = env["server"], state(env)
    outside_before = sorted(os.listdir(env["outside"]))
    for case, value in _bad_paths(env).items():
        status, _, data = request(server, "POST", path, {**body, key: value})
        reply = json.loads(data)
        assert (status, reply["code"]) == (403, "forbidden_path"), (path, case, status, reply)
        if str(env["data"]) not in value:
            assert str(env["data"]) not in reply["error"]  # the message tells nothing of the server's folders
    assert sorted(os.listdir(env["outside"])) == outside_before
    assert not Path("/etc/vecstore_should_not_exist").exists()
    assert state(env) == before


def test_symlink_to_a_file_outside_cannot_be_restored(env):
    # a snapshot "inside" that is really a symlink to an outside folder is refused too
    (env["outside"] / "fake_snapshot").mkdir()
    (env["data"] / "innocent").symlink_to(env["outside"] / "fake_snapshot")
    status, _, data = request(env["server"], "POST", "/restore_collection",
                              {"database_name": DB, "collection_name": "r", "snapshot_path": "innocent"})
    assert status == 403, data


def test_paths_inside_work_and_existing_targets_are_refused(env):
    server = env["server"]
    body = {"database_name": DB, "collection_name": COLL, "snapshot_path": "snaps/one"}
    assert request(server, "POST", "/snapshot_collection", body)[0] == 200
    assert (env["data"] / "snaps" / "one").exists()
    status, _, data = request(server, "POST", "/snapshot_collection", body)  # never overwritten
    assert 400 <= status < 500 and status != 403, data
    status, _, data = request(server, "POST", "/restore_collection",
                              {"database_name": DB, "collection_name": "back", "snapshot_path": "snaps/one"})
    assert status == 200, data
    assert env["backing"].get_database(DB).get_collection("back").shape == (3, DIM)


def test_paths_in_a_database_or_collection_folder_are_403(env):
    """Server paths could point into the store's own folders: a snapshot at a collection's
    ``indexes`` made every later build_index a 500, an export at its ``text`` was deleted by
    the next text search, a snapshot at ``<db>/ghost/data.mdb`` listed ``ghost`` as a
    collection. Those, and vecstore's own names anywhere below the data folder, are 403."""
    server, data = env["server"], env["data"]
    col = {"database_name": DB, "collection_name": COLL}
    (data / "plain").mkdir()
    (data / "db_link").symlink_to(data / DB)
    before = state(env)
    refused = [f"{DB}/{COLL}/indexes", f"{DB}/{COLL}/text", f"{DB}/ghost/data.mdb", f"{DB}/s.snap", DB,
               f"{DB}/{COLL}", f"{DB}/{COLL}/data.mdb", str(data / DB / COLL / "indexes"), "db_link/s.snap",
               "plain/.vecstore-database", "plain/data.mdb", "plain/LOCK", ".vecstore-tmp-x/s"]
    for route, key in (("/snapshot_collection", "snapshot_path"), ("/export_collection", "export_path"),
                       ("/restore_collection", "snapshot_path"), ("/import_collection", "export_path")):
        body = {**col, "collection_name": "restored"} if route.startswith(("/restore", "/import")) else col
        for value in refused:
            status, _, reply = request(server, "POST", route, {**body, key: value})
            error = json.loads(reply)
            assert (status, error["code"]) == (403, "forbidden_path"), (route, value, reply)
            assert error["error"].startswith(f"{key}: ") and str(data) not in error["error"].replace(value, "")
    assert state(env) == before
    # the collection is unharmed: an index builds, a text search runs, no collection appeared
    assert request(server, "POST", "/build_index", {**col, "index_mode": "HNSW"})[0] == 200
    assert request(server, "POST", "/text_search", {**col, "text": "x"})[0] == 200
    status, _, reply = request(server, "POST", "/show_collections", {"database_name": DB})
    assert (status, json.loads(reply)["params"]["collections"]) == (200, [COLL])
    # plain folders of the data folder stay allowed
    status, _, _ = request(server, "POST", "/snapshot_collection", {**col, "snapshot_path": "plain/s.snap"})
    assert status == 200 and (data / "plain" / "s.snap").is_file()


def test_backups_in_the_data_folder_are_never_adopted_or_dropped(env):
    """Backups written beside the databases (the default base of relative paths) share their
    names' namespace: a database or collection of that name is refused (409), a drop of it is
    a no-op that deletes nothing, and no store is created inside an export. (A backup may not
    be written into a database's folder, but files put there by other means are not adopted
    either.)"""
    server = env["server"]
    col = {"database_name": DB, "collection_name": COLL}
    for route, body in (("/snapshot_collection", {**col, "snapshot_path": "s1.snap"}),
                        ("/export_collection", {**col, "export_path": "exp1"}),
                        ("/snapshot_database", {"database_name": DB, "snapshot_path": "bk"})):
        assert request(server, "POST", route, body)[0] == 200
    env["backing"].get_database(DB).get_collection(COLL).export_to(env["data"] / "exp2")
    os.rename(env["data"] / "exp2", env["data"] / DB / "ghost")
    before = state(env)
    for name in ("s1.snap", "exp1", "bk"):
        status, _, data = request(server, "POST", "/create_database", {"database_name": name})
        assert status == 409 and json.loads(data)["code"] == "already_exists", data
        assert request(server, "POST", "/drop_database", {"database_name": name})[0] == 200
    status, _, data = request(server, "POST", "/required_collection", {**col, "collection_name": "ghost", "dim": DIM})
    assert status == 409, data
    assert request(server, "POST", "/drop_collection", {**col, "collection_name": "ghost"})[0] == 200
    # nor replaced by a restore or an import, with or without overwrite (that deleted the
    # backups: restore_database("bk", "bk") moved the snapshot folder aside and removed it)
    for overwrite in (False, True):
        for route, body in (("/restore_database", {"database_name": "bk", "snapshot_path": "bk"}),
                            ("/restore_database", {"database_name": "exp1", "snapshot_path": "bk"}),
                            ("/restore_collection", {**col, "collection_name": "ghost", "snapshot_path": "s1.snap"}),
                            ("/import_collection", {**col, "collection_name": "ghost", "export_path": "exp1"})):
            status, _, data = request(server, "POST", route, {**body, "overwrite": overwrite})
            assert status == 409 and json.loads(data)["code"] == "already_exists", (route, data)
    assert state(env) == before
    assert sorted(p.name for p in (env["data"] / DB / "ghost").iterdir()) == [
        "export_manifest.json", "metadata.jsonl", "vectors.npy"]


@pytest.mark.parametrize("route, key, target", [
    ("/restore_collection", "snapshot_path", "note.txt"),
    ("/restore_collection", "snapshot_path", "folder"),
    ("/restore_database", "snapshot_path", "note.txt"),
    ("/import_collection", "export_path", "folder"),
    ("/import_collection", "export_path", "note.txt"),
])
def test_restoring_from_something_that_is_not_a_backup_is_400(env, route, key, target):
    (env["data"] / "note.txt").write_text("not a snapshot")
    (env["data"] / "folder").mkdir()
    before = state(env)
    names = {"database_name": "restored"} if route == "/restore_database" else {"database_name": DB,
                                                                                 "collection_name": "r"}
    status, _, data = request(env["server"], "POST", route, {**names, key: target})
    assert status == 400 and json.loads(data)["code"] == "bad_backup", data
    assert state(env) == before


# --------------------------------------------------------------------------------------------
# binding and browsers


def test_loopback_addresses():
    from vecstore.server.http11 import is_loopback
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "", "::", "::ffff:10.0.0.1", "10.0.0.1", "example.org")] == [False] * 6


def test_binds_loopback_by_default():
    assert ServerConfig(data_dir=Path(".")).host == "127.0.0.1"
    assert parse_args([]).host == "127.0.0.1"


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port: expected a port"),
    (["--port", "-1"], "--port: expected a port"),
    (["--max-json-mb", "-1"], "--max-json-mb: expected MiB"),
    (["--max-binary-mb", "0"], "--max-binary-mb: expected MiB"),
    (["--workers", "-3"], "--workers: expected a number of threads"),
    (["--workers", "100000"], "--workers: expected a number of threads"),
    (["--max-connections", "-1"], "--max-connections: expected a number of connections"),
    (["--max-connections", "many"], "--max-connections: expected a number of connections"),
    (["--api-key", ""], "--api-key: the key is empty"),
    (["--api-key", "   "], "--api-key: the key is empty"),
])
def test_bad_flags_exit_with_a_message(argv, message, capsys, monkeypatch):
    """Nonsense flag values used to end in a traceback (a port out of range), or to take effect:
    a negative body limit refused every request, an empty --api-key (an unset $KEY) turned
    authentication off even with $VECSTORE_API_KEY set."""
    monkeypatch.setenv("VECSTORE_API_KEY", "from-the-environment")
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_key_in_the_environment_is_refused_too(value, capsys, monkeypatch):
    """README's `VECSTORE_API_KEY="$KEY" python -m vecstore.server` with $KEY unset started the
    server without authentication: the empty variable was read as "no key"."""
    monkeypatch.setenv("VECSTORE_API_KEY", value)
    with pytest.raises(SystemExit) as e:
        parse_args([])
    assert e.value.code == 2 and "--api-key: the key is empty" in capsys.readouterr().err
    monkeypatch.delenv("VECSTORE_API_KEY")
    assert parse_args([]).api_key is None


def test_a_data_or_backup_path_that_is_no_folder_is_a_message_not_a_traceback(tmp_path, caplog):
    from vecstore.server.__main__ import main
    (tmp_path / "afile").write_text("x")
    for argv in (["--data", str(tmp_path / "afile")], ["--data", str(tmp_path / "afile" / "sub")],
                 ["--data", str(tmp_path / "d"), "--backup-dir", str(tmp_path / "afile")]):
        assert main([*argv, "--port", "0"]) == 1
    assert "not a writable folder" in caplog.text
    # a backup folder inside a database: every snapshot there was refused, a drop deleted them
    with vecstore.connect(tmp_path / "d") as c:
        c.create_database("app")
    assert main(["--data", str(tmp_path / "d"), "--backup-dir", str(tmp_path / "d" / "app" / "bk"), "--port", "0"]) == 1
    assert "inside the database or collection folder" in caplog.text
    with pytest.raises(vecstore.InvalidArgumentError, match="not a folder vecstore can use"):
        vecstore.connect(tmp_path / "afile")


def test_no_cors_headers(env):
    status, headers, _ = request(env["server"], "GET", "/list_databases", headers={"Origin": "http://evil.example"})
    assert status == 200
    assert not any(h.lower().startswith("access-control-") for h in headers)
    assert request(env["server"], "OPTIONS", "/list_databases", headers={"Origin": "http://evil.example"})[0] == 404
