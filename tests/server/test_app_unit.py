"""The generic handler of vecstore.server, driven against a fake Client (no storage involved).

End-to-end tests against the real library live elsewhere; these pin down the HTTP contract:
auth, limits, decoding, validation, path confinement, error mapping, reply shapes, shutdown.
"""

from __future__ import annotations

import base64
import errno
import hmac
import http.client
import json
import logging
import os
import socket
import threading
import time
from unittest import mock

import numpy as np
import pytest
from live_server import read_until_closed

try:  # installed: server/ ships as vecstore.server
    from vecstore.server import app as app_module
    from vecstore.server.openapi import build_openapi
    from vecstore.server.routes import ENVELOPES, ROUTES, TYPES, error_reply, route_map
except ImportError:  # a checkout without the package mapping: run from the repo root
    from server import app as app_module
    from server.openapi import build_openapi
    from server.routes import ENVELOPES, ROUTES, TYPES, error_reply, route_map
from vecstore import wire
from vecstore.errors import (AlreadyExistsError, CorruptionError, ForbiddenPathError, InvalidArgumentError,
                             NotFoundError, UnavailableError, VecstoreError, error_class_for)
from vecstore.types import Rows, SearchResult, VectorFieldInfo

KEY = "s3cret-key"

# --------------------------------------------------------------------------------------------
# a fake Client / Database / Collection that records what the handler passes


class FakeCollection:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.raise_on: dict[str, BaseException] = {}
        self.sleep_on: dict[str, float] = {}

    def _rec(self, name: str, **kw):
        self.calls.append((name, kw))
        if name in self.sleep_on:
            time.sleep(self.sleep_on[name])
        if name in self.raise_on:
            raise self.raise_on[name]

    @property
    def last(self) -> tuple[str, dict]:
        return self.calls[-1]

    def search(self, vector, **kw):
        self._rec("search", vector=vector, **kw)
        fields = ({"a": 1}, {"b": "x"}) if kw.get("return_fields") else None
        return SearchResult(ids=(3, 1), scores=np.array([0.9, 0.5], np.float32), fields=fields, k=kw.get("k", 10))

    def batch_search(self, vectors, **kw):
        self._rec("batch_search", vectors=vectors, **kw)
        return [self.search(v) for v in vectors]

    def add_item(self, vector, **kw):
        self._rec("add_item", vector=vector, **kw)
        return kw.get("id", 0)

    def bulk_add_items(self, items):
        self._rec("bulk_add_items", items=items)
        return [it.get("id", n) for n, it in enumerate(items)]

    def upsert_items(self, items):
        self._rec("upsert_items", items=items)
        return [it["id"] for it in items]

    def upsert(self, vectors, ids, **kw):
        self._rec("upsert", ids=ids, vectors=vectors, **kw)
        return list(ids)

    def add(self, vectors, ids=None, **kw):
        self._rec("add", ids=ids, vectors=vectors, **kw)
        return list(ids) if ids is not None else list(range(len(vectors)))

    def head(self, **kw):
        self._rec("head", **kw)
        return Rows(np.arange(6, dtype=np.float32).reshape(2, 3), (5, 6), ({}, {"a": 1}))

    def create_vector_field(self, field_name, dim, **kw):
        self._rec("create_vector_field", field_name=field_name, dim=dim, **kw)
        return VectorFieldInfo(field_name, dim, kw.get("metric", "ip"), "FLAT")

    def __getattr__(self, name):  # anything else: record and return None
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *a, **kw: self._rec(name, args=a, **kw)

    @property
    def shape(self):
        return (2, 3)


class FakeDatabase:
    def __init__(self) -> None:
        self.collections = {"c": FakeCollection()}
        self.calls: list[tuple[str, dict]] = []

    def get_collection(self, name):
        if name not in self.collections:
            raise NotFoundError(f"Collection '{name}' does not exist.")
        return self.collections[name]

    def require_collection(self, name, **kw):
        self.calls.append(("require_collection", {"name": name, **kw}))
        if name == "dup":
            raise AlreadyExistsError("Collection already exists: dup")

    def collection_exists(self, name):
        return name in self.collections

    def show_collections(self):
        return list(self.collections)


class FakeClient:
    def __init__(self) -> None:
        self.databases = {"db": FakeDatabase()}
        self.calls: list[tuple[str, dict]] = []

    def get_database(self, name):
        if name not in self.databases:
            raise NotFoundError(f"Database not found: {name}")
        return self.databases[name]

    def list_databases(self):
        return list(self.databases)

    def create_database(self, name, **kw):
        self.calls.append(("create_database", {"name": name, **kw}))

    def snapshot_database(self, name, path):
        self.calls.append(("snapshot_database", {"name": name, "path": path}))


# --------------------------------------------------------------------------------------------
# fixtures and a tiny HTTP helper


@pytest.fixture
def make(tmp_path):
    started = []

    def _make(**overrides):
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        config = app_module.ServerConfig(data_dir=data, port=0, **{"api_key": KEY, **overrides})
        client = FakeClient()
        server = app_module.make_server(config, client)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return server, client

    yield _make
    for server, thread in started:
        if not server.stopping:
            server.stop()
        thread.join(5)


@pytest.fixture
def srv(make):
    return make()


def request(server, method, path, body=None, *, key=KEY, headers=None, raw=None, conn=None):
    """(status, headers, body bytes); a dict body is sent as JSON."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    hdrs = {} if key is None else {"Authorization": f"Bearer {key}"}
    hdrs.update(headers or {})
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if payload is not None and "Content-Type" not in hdrs:
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp.status, resp.headers, data


def post(server, path, body, **kw):
    status, headers, data = request(server, "POST", path, body, **kw)
    return status, (json.loads(data) if data and headers.get("Content-Type", "").startswith("application/json") else data)


COLL = {"database_name": "db", "collection_name": "c"}


def coll(client) -> FakeCollection:
    return client.databases["db"].collections["c"]


# --------------------------------------------------------------------------------------------
# auth


def test_missing_and_wrong_key_are_401(srv):
    server, _ = srv
    for key in (None, "wrong", KEY + "x", ""):
        status, headers, data = request(server, "GET", "/list_databases", key=key)
        assert status == 401
        assert json.loads(data) == {"error": "Unauthorized", "code": "unauthorized"}
        assert any("Bearer" in v for v in headers.get_all("WWW-Authenticate"))


def test_bearer_and_basic_password_accepted(srv):
    server, _ = srv
    assert request(server, "GET", "/list_databases")[0] == 200
    basic = base64.b64encode(f"anyone:{KEY}".encode()).decode()
    assert request(server, "GET", "/list_databases", key=None, headers={"Authorization": f"Basic {basic}"})[0] == 200
    wrong = base64.b64encode(f"{KEY}:nope".encode()).decode()  # the user part is not the key
    assert request(server, "GET", "/list_databases", key=None, headers={"Authorization": f"Basic {wrong}"})[0] == 401
    assert request(server, "GET", "/list_databases", key=None, headers={"Authorization": "Basic !!!"})[0] == 401


def test_public_paths_need_no_key_everything_else_does(srv):
    server, _ = srv
    assert json.loads(request(server, "GET", "/", key=None)[2]) == {"status": "success", "message": "vecstore HTTP API"}
    assert json.loads(request(server, "GET", "/healthz", key=None)[2]) == {"status": "ok"}
    assert json.loads(request(server, "GET", "/readyz", key=None)[2]) == {"status": "ready"}
    for path in ("/openapi.json", "/metrics", "/list_databases"):
        assert request(server, "GET", path, key=None)[0] == 401
    assert request(server, "POST", "/stats", COLL, key=None)[0] == 401
    assert request(server, "POST", "/no_such_path", COLL, key=None)[0] == 401  # auth comes first


def test_no_key_configured_means_open(make):
    server, _ = make(api_key=None)
    assert request(server, "GET", "/list_databases", key=None)[0] == 200


def test_key_compare_is_constant_time():
    with mock.patch.object(app_module.hmac, "compare_digest", wraps=hmac.compare_digest) as spy:
        assert app_module.check_api_key(f"Bearer {KEY}", KEY)
        assert not app_module.check_api_key("Bearer x", KEY)
        assert not app_module.check_api_key(None, KEY)  # compared even without a header
    assert spy.call_count == 6  # the whole token and the password part, always both
    for (a, b), _ in spy.call_args_list:  # digests: equal length whatever was sent
        assert len(a) == len(b) == 32


def test_bearer_user_colon_key_is_accepted():
    # Zilliz's token form "user:password": only the password part is the key
    assert app_module.check_api_key(f"Bearer root:{KEY}", KEY)
    assert app_module.check_api_key(f"Bearer :{KEY}", KEY)
    assert not app_module.check_api_key(f"Bearer {KEY}:x", KEY)
    assert not app_module.check_api_key("Bearer root:", KEY)
    assert app_module.check_api_key("Bearer a:b", "a:b")  # a key with a colon still works whole
    assert app_module.check_api_key("Bearer x:a:b", "a:b")
    assert not app_module.check_api_key(f"Token root:{KEY}", KEY)


def test_server_uses_compare_digest(srv):
    server, _ = srv
    with mock.patch.object(app_module.hmac, "compare_digest", wraps=hmac.compare_digest) as spy:
        assert request(server, "GET", "/list_databases")[0] == 200
    assert spy.called


# --------------------------------------------------------------------------------------------
# routing


def test_unknown_path_and_wrong_method_are_404_with_empty_body(srv):
    server, _ = srv
    for method, path in (("POST", "/no_such_path"), ("GET", "/search"), ("POST", "/list_databases"),
                         ("GET", "/set_environment"), ("PUT", "/stats"), ("DELETE", "/"), ("POST", "/healthz")):
        status, headers, data = request(server, method, path, COLL if method != "GET" else None)
        assert (status, data) == (404, b""), (method, path)
        assert headers["Content-Length"] == "0"


def test_keep_alive_and_request_ids(srv):
    server, _ = srv
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    ids = []
    for _ in range(3):
        status, headers, _ = request(server, "POST", "/flush", COLL, conn=conn)
        assert status == 200
        ids.append(int(headers["x-request-id"]))
    conn.close()
    assert ids == sorted(ids) and len(set(ids)) == 3


# --------------------------------------------------------------------------------------------
# the HTTP/1.1 reader (server/app.py reads requests itself, not with http.server)


def _exchange_many(server, data: bytes, timeout=5.0) -> bytes:
    return _raw_exchange(server, data, timeout)


def test_pipelined_requests_on_one_connection(srv):
    server, client = srv
    body = json.dumps(COLL).encode()
    one = (f"POST /flush HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    last = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    out = _raw_exchange(server, one + b"\r\n" + one + last)  # an empty line between requests is tolerated
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 3, out
    assert out.endswith(b'{"status":"ok"}') and b"Connection: close" in out
    assert [c[0] for c in coll(client).calls] == ["flush", "flush"]


def test_reply_headers(srv):
    server, _ = srv
    status, headers, data = request(server, "GET", "/healthz", key=None)
    assert status == 200 and headers["Server"] == "vecstore" and headers["Date"].endswith("GMT")
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(data)
    assert int(headers["x-request-id"]) > 0


def test_head_is_every_get_route_without_its_body(srv):
    server, _ = srv
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    for path in ("/healthz", "/list_databases"):
        status, headers, data = request(server, "GET", path, conn=conn)
        head_status, head_headers, head_data = request(server, "HEAD", path, conn=conn)  # (same connection)
        assert (head_status, head_data) == (status, b"") and status == 200
        assert head_headers["Content-Length"] == headers["Content-Length"] == str(len(data))
    assert request(server, "HEAD", "/stats", conn=conn)[0] == 404  # a POST route
    assert request(server, "GET", "/healthz", conn=conn)[2] == b'{"status":"ok"}'  # the framing held
    conn.close()


@pytest.mark.parametrize("head, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /healthz\r\n\r\n", 400),
    (b"GET /healthz HTTP/2.0\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.9\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n", 400),  # a bare CR
    (b"GET /healthz HTTP/1.1\r\nX: a\0b\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHo(st: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\n: x\r\n\r\n", 400),
    (b"GET /heal\0thz HTTP/1.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\n folded: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nBad Name : x\r\n\r\n", 400),
    (b"POST /flush HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
])
def test_broken_framing_is_refused_and_closed(srv, head, status):
    server, _ = srv
    out = _raw_exchange(server, head)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out[:200]
    assert b"Connection: close" in out and b'"code":"bad_request"' in out
    assert request(server, "GET", "/healthz")[0] == 200


def test_http_1_0_closes_unless_keep_alive(srv):
    server, _ = srv
    out = _raw_exchange(server, b"GET /healthz HTTP/1.0\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 1 and b"Connection: close" in out
    out = _raw_exchange(server, b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 2
    # an HTTP/1.0 client keeps the connection only when the reply says so
    first = out.split(b"HTTP/1.1 200")[1]
    assert b"Connection: keep-alive\r\n" in first and b"Connection: close\r\n" not in first, out


@pytest.mark.parametrize("version, connection, replies", [
    (b"1.1", b"closed", 2), (b"1.1", b"x-noclose", 2), (b"1.1", b"Keep-Alive, Close", 1), (b"1.1", b"upgrade,close", 1),
    (b"1.0", b"not-keep-alive", 1), (b"1.0", b"Keep-Alive", 2), (b"1.0", b"te, keep-alive", 2),
])
def test_connection_is_read_as_comma_separated_tokens(srv, version, connection, replies):
    server, _ = srv
    one = b"GET /healthz HTTP/" + version + b"\r\nHost: x\r\nConnection: " + connection + b"\r\n\r\n"
    out = _raw_exchange(server, one + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == replies, out


def test_http_1_0_expect_100_continue_is_ignored(srv):
    server, _ = srv
    body = json.dumps(COLL).encode()
    out = _raw_exchange(server, (f"POST /flush HTTP/1.0\r\nAuthorization: Bearer {KEY}\r\nExpect: 100-continue\r\n"
                                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    assert out.startswith(b"HTTP/1.1 200") and b"100 Continue" not in out, out


def test_absolute_form_target_and_percent_encoded_query(srv):
    server, client = srv
    raw = np.ones(3, np.float32).tobytes()
    head = (f"POST http://x/search_binary?database_name=db&collection_name=c&dim=3&where=a%20%3D%20%27x%27 HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {len(raw)}\r\nConnection: close\r\n\r\n")
    out = _raw_exchange(server, head.encode() + raw)
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    assert coll(client).last[1]["where"] == "a = 'x'"


def test_repeated_query_strings_bind_the_same_way(srv):
    # binary routes memoise the bound parameters per query string: same answers, fresh kwargs
    server, client = srv
    q = "/search_binary?database_name=db&collection_name=c&dim=3&k=2"
    for i in range(3):
        status, _, _ = request(server, "POST", q, raw=np.full(3, i, np.float32).tobytes(),
                               headers={"Content-Type": "application/octet-stream"})
        assert status == 200
        kw = coll(client).last[1]
        assert kw["k"] == 2 and kw["vector"].tolist() == [i, i, i]
    status, data = post(server, q.replace("k=2", "k=x"), None, raw=b"\0" * 12,
                        headers={"Content-Type": "application/octet-stream"})
    assert status == 400 and "k: expected an integer" in data["error"]


def test_access_log_only_at_debug(srv, caplog):
    server, _ = srv
    with caplog.at_level(logging.INFO, logger="vecstore.server.access"):
        request(server, "GET", "/healthz")
        time.sleep(0.3)  # the line is written after the reply is sent
    assert not [r for r in caplog.records if r.name == "vecstore.server.access"]
    with caplog.at_level(logging.DEBUG, logger="vecstore.server.access"):
        request(server, "GET", "/healthz")
        time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records if r.name == "vecstore.server.access"]
    assert len(lines) == 1 and '"GET /healthz" 200' in lines[0]


# --------------------------------------------------------------------------------------------
# size limits and body decoding


def _raw_exchange(server, head: bytes, timeout=5.0) -> bytes:
    with socket.create_connection(server.server_address[:2], timeout=timeout) as s:
        s.sendall(head)
        return read_until_closed(s)


def test_413_before_reading_the_body(make):
    server, client = make(max_json_bytes=1000)
    started = time.monotonic()
    # Declares 10 TB and sends none of it: the answer must come without waiting for the body.
    out = _raw_exchange(server, (f"POST /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                                 "Content-Type: application/json\r\nContent-Length: 10000000000000\r\n\r\n").encode())
    assert out.startswith(b"HTTP/1.1 413")
    assert b'"code":"payload_too_large"' in out and b"Connection: close" in out
    assert time.monotonic() - started < 3
    assert coll(client).calls == []
    assert request(server, "GET", "/healthz")[0] == 200  # still serving


def test_413_with_a_body_being_sent(make):
    server, _ = make(max_json_bytes=1000)
    status, data = post(server, "/stats", {**COLL, "pad": "x" * 5000})
    assert status == 413 and data["code"] == "payload_too_large"


def test_expect_100_continue_not_sent_for_refused_body(make):
    server, _ = make(max_json_bytes=10)
    out = _raw_exchange(server, (f"POST /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                                 "Expect: 100-continue\r\nContent-Length: 500\r\n\r\n").encode())
    assert out.startswith(b"HTTP/1.1 413") and b"100 Continue" not in out


def test_expect_100_continue_for_an_accepted_body(srv):
    server, client = srv
    body = json.dumps(COLL).encode()
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall((f"POST /flush HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        assert s.recv(1024).startswith(b"HTTP/1.1 100")
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    assert coll(client).last[0] == "flush"


def test_unread_body_closes_the_connection(srv):
    server, _ = srv
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    status, headers, data = request(server, "POST", "/no_such_path", {"pad": "x" * 100_000}, conn=conn)
    assert (status, headers["Connection"]) == (404, "close")
    conn.close()
    status, headers, _ = request(server, "POST", "/flush", {**COLL, "pad": "x" * 100_000}, key="bad")
    assert (status, headers["Connection"]) == (401, "close")


def test_binary_routes_have_their_own_limit(make):
    server, _ = make(max_json_bytes=100, max_binary_bytes=10_000)
    vec = np.ones(64, np.float32).tobytes()  # 256 bytes: over the JSON limit, under the binary one
    status, _, _ = request(server, "POST", "/search_binary?database_name=db&collection_name=c&dim=64", raw=vec,
                           headers={"Content-Type": "application/octet-stream"})
    assert status == 200


def test_bad_content_length_and_chunked(srv):
    server, _ = srv
    out = _raw_exchange(server, (f"POST /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                                 "Content-Length: abc\r\n\r\n").encode())
    assert out.startswith(b"HTTP/1.1 400") and b"Content-Length" in out
    out = _raw_exchange(server, (f"POST /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    assert out.startswith(b"HTTP/1.1 411")


@pytest.mark.parametrize("raw, match", [
    (b"{", "malformed JSON"),
    (b'{"database_name": "db",}', "malformed JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'"db"', "expected a JSON object"),
    (b'{"database_name": "db", "collection_name": "c", "k": NaN}', "NaN"),
    (b"\xff\xfe\x00", "malformed JSON"),
    (b'{"a":' * 70 + b"1" + b"}" * 70, "nested 70 levels"),
    (b"[" * 200_000 + b"]" * 200_000, "nested"),
])
def test_malformed_bodies_are_400(srv, raw, match):
    server, _ = srv
    status, data = post(server, "/search", None, raw=raw)
    assert status == 400 and data["code"] == "invalid_argument"
    assert match in data["error"]
    assert request(server, "GET", "/healthz")[0] == 200


def test_empty_body_is_an_empty_object(srv):
    server, _ = srv
    status, data = post(server, "/stats", None, raw=b"")
    assert status == 400 and data["error"] == "database_name: missing required parameter"


# --------------------------------------------------------------------------------------------
# parameters: types, aliases, defaults, limits


@pytest.mark.parametrize("extra, message", [
    ({"vector": [1, 2], "k": "ten"}, "k: expected an integer, got string"),
    ({"vector": [1, 2], "k": 2.5}, "k: expected an integer, got number"),
    ({"vector": [1, 2], "k": True}, "k: expected an integer, got boolean"),
    ({"vector": ["a", "b"]}, "vector: expected an array of numbers"),
    ({"vector": [[1], [2, 3]]}, "vector: expected an array of numbers"),
    ({"vector": [1, None]}, "vector: expected an array of numbers"),
    ({"vector": [1e300]}, "vector: values must be finite"),
    ({"vector": {"x": 1}}, "vector: expected an array of numbers, got object"),
    ({}, "vector: missing required parameter"),
    ({"vector": None}, "vector: missing required parameter"),
    ({"vector": [1, 2], "where": 5}, "where: expected a string, got integer"),
    ({"vector": [1, 2], "return_fields": "yes"}, "return_fields: expected a boolean, got string"),
    ({"vector": [1, 2], "k": 20000}, "k: expected an int in [0, 10000], got 20000"),  # the server's limit
    ({"vector": [1, 2], "k": -1}, "k: expected an int in [0, 10000], got -1"),
])
def test_wrong_types_are_400_naming_the_parameter(srv, extra, message):
    server, client = srv
    status, data = post(server, "/search", {**COLL, **extra})
    assert status == 400, data
    assert data["code"] == "invalid_argument" and data["error"].startswith(message.split(":")[0])
    assert message in data["error"]
    assert coll(client).calls == []  # nothing reached the library


@pytest.mark.parametrize("path, body, method, shape", [
    ("/search", {"vector": []}, "search", (0,)),
    ("/search", {"vector": [[1, 2]]}, "search", (1, 2)),
    ("/batch_search", {"vectors": []}, "batch_search", (0,)),
    ("/batch_search", {"vectors": [1, 2]}, "batch_search", (2,)),
])
def test_shapes_are_left_to_the_library(srv, path, body, method, shape):
    """Numbers of the wrong shape reach the library as they are: it knows the dimension, so its
    error (or, for no queries at all, its empty answer) is the local one."""
    server, client = srv
    post(server, path, {**COLL, **body})
    name, kw = coll(client).calls[0]
    assert name == method and np.asarray(kw.get("vector", kw.get("vectors"))).shape == shape


def test_ragged_rows_reach_the_library_as_rows():
    """Rows of several widths go on as a list of rows (the library names the dimensions)."""
    from vecstore.server.routes import TYPES
    rows = TYPES["vectors"].convert([[1, 2], [3]], "vectors", False)
    assert [r.tolist() for r in rows] == [[1.0, 2.0], [3.0]]
    with pytest.raises(InvalidArgumentError, match=r"vectors\[1\]: expected an array of numbers"):
        TYPES["vectors"].convert([[1, 2], ["a"]], "vectors", False)


@pytest.mark.parametrize("kind", ["id", "job_id"])
def test_a_decimal_id_past_int_s_digit_limit_is_invalid_not_a_bug(kind):
    # int() refuses more than 4300 digits with a ValueError, which was answered 500
    assert TYPES[kind].convert("9" * 4300, kind, True) == 10 ** 4300 - 1
    with pytest.raises(InvalidArgumentError, match=f"{kind}: expected .* got a string of 4301 digits"):
        TYPES[kind].convert("9" * 4301, kind, True)


@pytest.mark.parametrize("path, body, message", [
    ("/bulk_add_items", {"items": [{"vector": [1]}, {"vector": "x"}]}, "items[1].vector: expected an array"),
    ("/bulk_add_items", {"items": [{"vector": [1], "id": -3}]}, "items[0].id: ids must be non-negative"),
    ("/bulk_add_items", {"items": [{"id": 1}]}, "items[0].vector: missing required parameter"),
    ("/bulk_add_items", {"items": {"vector": [1]}}, "items: expected an array of objects, got object"),
    ("/delete_items", {"ids": [1, 2.5]}, "ids[1]: expected a non-negative integer or a non-empty string id"),
    ("/delete_items", {"ids": [""]}, "ids[0]"),
    ("/add_sparse_vectors", {"ids": [1], "vectors": [{"indices": [1, 2], "values": [1.0]}]},
     "vectors[0]: 2 indices but 1 values"),
    ("/add_sparse_vectors", {"ids": [1], "vectors": [{"indices": [-1], "values": [1.0]}]}, "vectors[0] index"),
    ("/add_item", {"item": 5}, "item: expected an object"),
    ("/text_search", {"text": "a", "text_fields": ["x", 1]}, "text_fields[1]: expected a string"),
    ("/read_by_only_id", {"id": 1.5}, "id: expected a non-negative integer or a non-empty string id"),
    ("/upsert_items", {}, "items: missing required parameter"),
    ("/stats", {"database_name": 7, "collection_name": "c"}, "database_name: expected a string, got integer"),
])
def test_more_validation_errors(srv, path, body, message):
    server, _ = srv
    status, data = post(server, path, {**COLL, **body})
    assert status == 400 and message in data["error"], data


def test_only_provided_parameters_reach_the_library(srv):
    server, client = srv
    status, data = post(server, "/search", {**COLL, "vector": [1, 2], "k": None, "where": None, "n_threads": 4})
    assert status == 200
    name, kwargs = coll(client).last
    assert name == "search" and set(kwargs) == {"vector"}
    assert kwargs["vector"].dtype == np.float32 and kwargs["vector"].tolist() == [1.0, 2.0]
    assert data == {"status": "success", "params": {**COLL, "items": {
        "k": 10, "ids": [3, 1], "scores": [pytest.approx(0.9), 0.5], "fields": [], "index": "FLAT",
        "vector_field": "default"}}}


def test_search_field_name_is_an_alias_of_vector_field(srv):
    server, client = srv
    post(server, "/search", {**COLL, "vector": [1], "field_name": "title"})
    assert coll(client).last[1]["vector_field"] == "title"
    post(server, "/search", {**COLL, "vector": [1], "field_name": "x", "vector_field": "title2"})
    assert coll(client).last[1]["vector_field"] == "title2"


def test_create_vector_field_dimension_alias(srv):
    server, client = srv
    status, data = post(server, "/create_vector_field", {**COLL, "field_name": "t", "dimension": 2, "metric": "cos"})
    assert status == 200
    assert coll(client).last == ("create_vector_field", {"field_name": "t", "dim": 2, "metric": "cos"})
    assert data["params"]["field"] == {"name": "t", "dimension": 2, "metric": "cos", "index_mode": "FLAT"}


def test_add_item_nested_and_top_level(srv):
    server, client = srv
    status, data = post(server, "/add_item", {**COLL, "item": {"vector": [1, 2], "id": 7, "field": {"a": 1}}})
    assert (status, data["params"]["item"]) == (200, {"id": 7})
    name, kw = coll(client).last
    assert name == "add_item" and kw["id"] == 7 and kw["field"] == {"a": 1}
    status, data = post(server, "/add_item", {**COLL, "vector": [1, 2], "id": None, "field": {}})
    assert data["params"]["item"] == {"id": 0}
    assert set(coll(client).last[1]) == {"vector", "field"}


def test_upsert_items_both_shapes(srv):
    server, client = srv
    status, data = post(server, "/upsert_items", {**COLL, "items": [{"vector": [1], "id": 4}, {"vector": [2], "id": 5, "field": {"a": 1}}]})
    assert data["params"]["ids"] == [4, 5]
    items = coll(client).last[1]["items"]
    assert "field" not in items[0] and items[1]["field"] == {"a": 1}
    status, data = post(server, "/upsert_items", {**COLL, "ids": [1, "x"], "vectors": [[1, 2], [3, 4]]})
    assert status == 200 and data["params"]["ids"] == [1, "x"]
    name, kw = coll(client).last
    assert name == "upsert" and set(kw) == {"ids", "vectors"} and kw["vectors"].shape == (2, 2)


def test_commit_reply_shape(srv):
    server, client = srv
    status, data = post(server, "/commit", {**COLL, "items": [{"vector": [1], "id": 1, "field": {}}]})
    assert data == {"status": "success", "params": {"status": "Success", "result": COLL}}
    assert coll(client).last[0] == "commit" and len(coll(client).last[1]["items"]) == 1


def test_database_routes_map_names(srv):
    server, client = srv
    status, data = post(server, "/create_database", {"database_name": "new", "drop_if_exists": True})
    assert data == {"status": "success", "params": {"database_name": "new"}}
    assert client.calls[-1] == ("create_database", {"name": "new", "drop_if_exists": True})
    status, data = post(server, "/required_collection", {**COLL, "dim": None, "n_threads": 10, "warm_up": False})
    assert client.databases["db"].calls[-1] == ("require_collection", {"name": "c"})
    status, data = post(server, "/is_collection_exists", {"database_name": "db", "collection_name": "zz"})
    assert data["params"] == {"database_name": "db", "collection_name": "zz", "exists": False}
    status, data = post(server, "/show_collections", {})
    assert (status, data["error"]) == (400, "database_name: missing required parameter")


def test_binary_search_round_trip(srv):
    server, client = srv
    q = "/search_binary?database_name=db&collection_name=c&dim=3&k=2&return_fields=true&where=a+%3D+%27x%27"
    status, headers, data = request(server, "POST", q, raw=np.ones(3, np.float32).tobytes(),
                                    headers={"Content-Type": "application/octet-stream"})
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    ids, scores, fields, end = wire.decode_search_block(data)
    assert ids == [3, 1] and fields == [{"a": 1}, {"b": "x"}] and end == len(data)
    kw = coll(client).last[1]
    assert kw["k"] == 2 and kw["return_fields"] is True and kw["where"] == "a = 'x'"
    assert "dim" not in kw and kw["vector"].tolist() == [1, 1, 1]


def test_binary_payload_errors_are_400(srv):
    server, _ = srv
    base = "/search_binary?database_name=db&collection_name=c"
    cases = [(f"{base}&dim=4", b"\0" * 12, "Expected 16 bytes, got 12"),
             (f"{base}", b"\0" * 12, "dim: missing required parameter"),
             (f"{base}&dim=x", b"\0" * 12, "dim: expected an integer, got 'x'"),
             (f"{base}&dim=3&k=abc", b"\0" * 12, "k: expected an integer"),
             (f"{base}&dim=3&return_fields=maybe", b"\0" * 12, "return_fields: expected a boolean"),
             ("/bulk_add_binary?database_name=db&collection_name=c&dim=2&n_vectors=3", b"\0" * 8,
              "Expected 24 bytes (3 vectors × 2 dim × 4), got 8"),
             ("/add_records_binary?database_name=db&collection_name=c&dim=1&n_vectors=1", b"\0" * 4 + b"\1" * 8 + b"LDBF9",
              "LDBF1")]
    for path, raw, message in cases:
        status, data = post(server, path, None, raw=raw, headers={"Content-Type": "application/octet-stream"})
        assert status == 400 and message in data["error"], (path, data)


def test_records_binary_reaches_add(srv):
    server, client = srv
    raw = wire.encode_records(np.ones((2, 2), np.float32), [10, 11], [None, {"a": [1, "x"]}])
    status, data = post(server, "/add_records_binary?database_name=db&collection_name=c&dim=2&n_vectors=2"
                                "&ids_encoding=raw", None, raw=raw, headers={"Content-Type": "application/octet-stream"})
    assert (status, data["params"]["ids"]) == (200, [10, 11])
    name, kw = coll(client).last
    assert name == "add"
    assert kw["ids"] == [10, 11] and kw["fields"] == [None, {"a": [1, "x"]}]


def test_bulk_add_binary(srv):
    server, client = srv
    raw = np.arange(6, dtype="<f4").tobytes()
    status, data = post(server, "/bulk_add_binary?database_name=db&collection_name=c&dim=3&n_vectors=2&return_ids=true",
                        None, raw=raw, headers={"Content-Type": "application/octet-stream"})
    assert data == {"status": "success", "params": {**COLL, "n_vectors": 2, "ids": [0, 1]}}
    name, kw = coll(client).last
    assert name == "add" and kw["ids"] is None and kw["vectors"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_head_binary_get(srv):
    server, client = srv
    status, _, data = request(server, "GET", "/head_binary?database_name=db&collection_name=c&n=2")
    assert status == 200
    vecs, ids, fields = wire.decode_rows_block(data)
    assert vecs.shape == (2, 3) and ids == [5, 6] and fields == [{}, {"a": 1}]
    assert coll(client).last == ("head", {"n": 2})


# --------------------------------------------------------------------------------------------
# server-side path confinement


def test_confine_path_unit(tmp_path):
    root = tmp_path / "data"
    (root / "inside").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link_out").symlink_to(outside)
    assert app_module.confine_path("snap", [root], root) == (root / "snap").resolve()
    assert app_module.confine_path(str(root / "inside" / "x"), [root], root) == (root / "inside" / "x").resolve()
    for bad in ("../snap", "a/../../snap", str(outside / "x"), "/etc/passwd", "link_out/x", "link_out",
                "a\x00b", str(root), "."):
        with pytest.raises(ForbiddenPathError):
            app_module.confine_path(bad, [root], root)
    with pytest.raises(InvalidArgumentError):
        app_module.confine_path("  ", [root], root)


def test_confine_path_keeps_out_of_the_stores_in_its_roots(tmp_path):
    """Below the deepest root holding it, a path may not be in (or be) a database or collection
    folder, nor take a name vecstore gives its own files; plain folders and --backup-dir
    folders (one inside the data folder too) stay usable."""
    data, backups = tmp_path / "data", tmp_path / "backups"
    (data / "app" / "items").mkdir(parents=True)
    (data / "app" / ".vecstore-database").touch()
    (data / "app" / "items" / "data.mdb").touch()
    (data / "bk").mkdir()
    (data / "app" / "bk").mkdir()       # the operator's choice: a drop of "app" would take it along
    backups.mkdir()
    roots = [data, backups, data / "bk", data / "app" / "bk"]
    for ok in ("s.snap", "plain/s.snap", "new/deeper/x", str(backups / "x"), "bk/x", "app/bk/x", "app2"):
        assert str(app_module.confine_path(ok, roots, data)) == os.path.realpath(data / ok)
    for bad in ("app", "app/x", "app/items", "app/items/indexes", "app/items/text/x", "app/ghost/data.mdb",
                "plain/.vecstore-database", "plain/data.mdb", "x/lock.mdb", "LOCK", ".vecstore-tmp-1/x",
                str(backups / "data.mdb")):
        with pytest.raises(ForbiddenPathError, match=r"^snapshot_path: "):
            app_module.confine_path(bad, roots, data, "snapshot_path")


@pytest.mark.parametrize("value", ["../escape", "/etc/passwd", "link_out/snap", "a\x00b", "sub/../../x"])
def test_server_paths_outside_are_403(make, tmp_path, value):
    server, client = make()
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    link = server.config.data_dir / "link_out"
    if not link.exists():
        link.symlink_to(outside)
    status, data = post(server, "/snapshot_collection", {**COLL, "snapshot_path": value})
    assert (status, data["code"]) == (403, "forbidden_path"), data
    assert coll(client).calls == []
    assert os.listdir(outside) == []


def test_server_paths_inside_data_or_backup_dir(make, tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    server, client = make(backup_dirs=(backups,))
    status, data = post(server, "/snapshot_collection", {**COLL, "snapshot_path": "snap1"})
    assert status == 200 and data["params"]["snapshot_path"] == "snap1"  # echoed as sent
    assert coll(client).last == ("snapshot_to", {"args": (), "path": (backups / "snap1").resolve()})
    inside_data = str(server.config.data_dir / "snaps" / "s2")
    status, data = post(server, "/export_collection", {**COLL, "export_path": inside_data})
    assert status == 200
    status, _ = post(server, "/snapshot_database", {"database_name": "db", "snapshot_path": str(tmp_path / "x")})
    assert status == 403


# --------------------------------------------------------------------------------------------
# error mapping


def test_vecstore_errors_map_to_their_status_and_code(srv):
    server, client = srv
    status, data = post(server, "/required_collection", {"database_name": "db", "collection_name": "dup", "dim": 4})
    assert (status, data) == (409, {"error": "Collection already exists: dup", "code": "already_exists"})
    status, data = post(server, "/stats", {"database_name": "nope", "collection_name": "c"})
    assert (status, data) == (404, {"error": "Database not found: nope", "code": "not_found"})
    status, data = post(server, "/stats", {"database_name": "db", "collection_name": "zz"})
    assert (status, data["code"]) == (404, "not_found")
    coll(client).raise_on["compact"] = ForbiddenPathError("nope")
    assert post(server, "/compact", COLL)[0] == 403


def test_a_bug_is_500_without_internals(srv, caplog):
    server, client = srv
    coll(client).raise_on["compact"] = KeyError("/secret/internal/path")
    with caplog.at_level(logging.ERROR, logger="vecstore.server"):
        status, headers, data = request(server, "POST", "/compact", COLL)
    body = json.loads(data)
    assert status == 500 and body["code"] == "internal_error"
    assert "secret" not in body["error"] and "KeyError" not in body["error"]
    assert body["error"] == f"internal error (request id {headers['x-request-id']})"
    assert any("secret" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert request(server, "GET", "/healthz")[0] == 200


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("error", [
    OSError(errno.EMFILE, "Too many open files", "/data/db/c/snap.tmp"),  # opening a file
    OSError(errno.ENFILE, "Too many open files in system"),
    _raised_from(VecstoreError("db: cannot lock the database (Too many open files)"),  # the library's wrapping
                 OSError(errno.EMFILE, "Too many open files")),
    _raised_from(CorruptionError("text index: tantivy cannot open it"),  # tantivy's: only its text says it
                 ValueError("IoError { io_error: Os { code: 24, kind: TooManyOpenFiles } }")),
])
def test_out_of_file_descriptors_is_503_logged_once_without_a_traceback(srv, caplog, error):
    server, client = srv
    coll(client).raise_on["compact"] = error
    with caplog.at_level(logging.DEBUG, logger="vecstore.server"):
        for _ in range(3):
            status, headers, data = request(server, "POST", "/compact", COLL)
            assert (status, json.loads(data)["code"], headers["Retry-After"]) == (503, "unavailable", "1")
    logged = [r for r in caplog.records if r.name == "vecstore.server"]
    assert [(r.levelno, r.exc_info) for r in logged] == [(logging.WARNING, None)]
    assert "out of file descriptors" in logged[0].getMessage()
    del coll(client).raise_on["compact"]
    assert post(server, "/compact", COLL)[0] == 200  # served on


def test_a_vecstore_error_mentioning_open_files_is_not_503(srv):
    server, client = srv
    coll(client).raise_on["compact"] = InvalidArgumentError("where: unknown field 'Too many open files'")
    assert post(server, "/compact", COLL)[0] == 400


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_503_keeps_its_status_and_says_when_to_retry_in_every_envelope(envelope):
    reply = error_reply(UnavailableError("retry later"), envelope)
    assert reply.status == 503 and reply.headers == b"Retry-After: 1\r\n"
    assert error_class_for("unavailable", 503) is UnavailableError  # what the remote client raises


def test_a_bug_in_a_reply_shape_is_500_too(srv):
    server, client = srv
    # stats() of the fake returns None; the route's reply calls .to_dict() on it.
    status, data = post(server, "/stats", COLL)
    assert status == 500 and data["code"] == "internal_error"


# --------------------------------------------------------------------------------------------
# system routes, openapi, metrics, shutdown


def test_openapi_lists_every_route(srv):
    server, _ = srv
    status, _, data = request(server, "GET", "/openapi.json")
    doc = json.loads(data)
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {r.path for r in ROUTES}
    search = doc["paths"]["/search"]["post"]
    schema = doc["components"]["schemas"][search["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]
    assert {"vector", "k", "vector_field", "field_name"} <= set(schema["properties"])
    assert schema["required"] == ["database_name", "collection_name", "vector"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert {p["name"] for p in doc["paths"]["/head_binary"]["get"]["parameters"]} == {"database_name", "collection_name", "n"}


def test_metrics(srv):
    server, _ = srv
    request(server, "POST", "/stats", COLL)
    status, headers, data = request(server, "GET", "/metrics")
    text = data.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "vecstore_up 1" in text and "vecstore_databases_total 1" in text
    assert 'vecstore_http_requests_total{path="/stats",status="500"} 1' in text


def test_stop_finishes_requests_in_flight(make):
    server, client = make()
    coll(client).sleep_on["flush"] = 1.0
    result = {}

    def slow():
        result["status"] = post(server, "/flush", COLL)[0]

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    idle = http.client.HTTPConnection(*server.server_address[:2], timeout=10)  # an idle keep-alive
    assert request(server, "GET", "/healthz", conn=idle)[0] == 200
    started = time.monotonic()
    server.stop()
    t.join(5)
    assert result["status"] == 200
    assert time.monotonic() - started < 5
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(server.server_address[:2], timeout=1).close()


def test_readyz_not_ready_while_stopping(srv):
    server, _ = srv
    assert server.readyz().status == 200
    server.stopping = True  # (connections are refused then, so ask the method directly)
    assert (server.readyz().status, server.readyz().body) == (503, {"status": "not_ready"})
    server.stopping = False


# --------------------------------------------------------------------------------------------
# the table itself

# The library surface the routes may call (the lead's public API).
LIBRARY = {
    "client": {"create_database", "get_database", "list_databases", "drop_database", "database_exists",
               "snapshot_database", "restore_database"},
    "database": {"require_collection", "get_collection", "show_collections", "show_collections_details",
                 "drop_collection", "collection_exists", "snapshot_collection", "restore_collection",
                 "import_collection"},
    "collection": {"add_item", "bulk_add_items", "add", "upsert", "upsert_items", "delete_items", "restore_items",
                   "list_deleted_ids", "compact", "search", "batch_search", "search_range", "search_profile",
                   "text_search", "sparse_search", "hybrid_search", "query", "query_vectors", "head", "tail",
                   "read_by_only_id", "list_fields", "index_mode", "is_id_exists", "max_id", "stats",
                   "get_collection_config", "update_description", "commit", "flush", "checkpoint", "close",
                   "build_index", "remove_index", "create_vector_field", "list_vector_fields",
                   "add_named_vectors", "build_vector_field_index", "remove_vector_field_index",
                   "add_sparse_vectors", "snapshot_to", "export_to", "read_blob", "delete_blob", "list_blobs"},
    "server": {"root", "healthz", "readyz", "metrics", "openapi"},
}


def test_route_table_is_consistent():
    paths = route_map(ROUTES)
    assert len(paths) == len(ROUTES)
    for r in ROUTES:
        if isinstance(r.call, str):
            assert r.call in LIBRARY[r.target], r.path
        names = [p.name for p in r.all_params]
        assert len(names) == len(set(names)), r.path
        keys = [(r.location(p), k) for p in r.all_params for k in (p.wire, *p.aliases)]
        assert len(keys) == len(set(keys)), r.path
        assert all(p.type in TYPES for p in r.all_params)
    required = {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/list_databases", "/create_database",
                "/drop_database", "/delete_database", "/database_exists", "/snapshot_database", "/restore_database",
                "/required_collection", "/drop_collection", "/show_collections", "/show_collections_details",
                "/is_collection_exists", "/collection_shape", "/stats", "/get_collection_config",
                "/update_description", "/update_collection_description", "/get_collection_path",
                "/close_collection", "/add_item", "/bulk_add_items", "/bulk_add_binary", "/upsert_items", "/commit",
                "/flush", "/checkpoint", "/build_index", "/remove_index", "/build_vector_field_index",
                "/remove_vector_field_index", "/create_vector_field", "/list_vector_fields", "/add_named_vectors",
                "/add_sparse_vectors", "/search", "/search_binary", "/batch_search", "/batch_search_binary",
                "/search_range", "/search_profile", "/text_search", "/sparse_search", "/hybrid_search", "/query",
                "/query_vectors", "/head", "/head_binary", "/tail", "/tail_binary", "/read_by_only_id",
                "/list_fields", "/index_mode", "/is_id_exists", "/max_id", "/delete_items", "/restore_items",
                "/list_deleted_ids", "/compact", "/snapshot_collection", "/restore_collection",
                "/export_collection", "/import_collection", "/add", "/upsert", "/delete", "/restore",
                "/bm25_search", "/add_records_binary", "/upsert_records_binary",
                "/write_blob", "/read_blob", "/delete_blob"}
    assert required <= set(paths), required - set(paths)
    gets = {r.path for r in ROUTES if r.method == "GET"}
    assert gets == {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/list_databases",
                    "/head_binary", "/tail_binary", "/read_blob", "/list_blobs",
                    "/v1/materialized_view/{id}/jobs/{job_id}"}


def test_openapi_builds_without_a_server():
    doc = build_openapi(ROUTES)
    json.dumps(doc)  # serialisable
    assert len(doc["paths"]) == len(ROUTES)
