"""The HTTP/1.1 layer against hostile or broken clients: connections refused with a body,
heads sent slowly or without end, bytes that are not UTF-8, chunked bodies after an early
refusal, non-ASCII API keys, running out of file descriptors, clients that never read their
replies. Driven against test_app_unit's fake client, with small limits so that every test
takes seconds.
"""

from __future__ import annotations

import base64
import errno
import http.client
import json
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from live_server import read_until_closed
from test_app_unit import COLL, KEY, FakeClient, coll, make, request  # noqa: F401 - make is a fixture
from vecstore.server import app as app_module
from vecstore.server import http11
from vecstore.server.processes import PrimaryLink

import vecstore


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _auth(key: str = KEY) -> bytes:
    return b"Authorization: Bearer " + key.encode() + b"\r\n"


# --------------------------------------------------------------------------------------------
# a refused request whose client stays connected


@pytest.mark.parametrize("head", [
    b"POST /no_such_route HTTP/1.1\r\nHost: x\r\n" + _auth() + b"Content-Length: 5\r\n\r\nhello",  # 404
    b"POST /stats HTTP/1.1\r\nHost: x\r\n" + _auth() + b"Content-Length: 999999999999\r\n\r\n",  # 413
    b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",  # 401
    b"GET /healthz HTTP/2.0\r\n\r\n",  # 400
])
def test_a_refused_client_that_stays_connected_is_closed_after_the_drain(make, head):
    server, _ = make()
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(head)
        reply = read_until_closed(s)  # the server half-closes after its answer ...
        assert reply.startswith(b"HTTP/1.1 4") and b"Connection: close" in reply, reply[:100]
        # ... and closes its end once the drain is over (1 s), though this client says nothing more
        assert _wait_for(lambda: not server._connections, 4), "the connection was never closed"
        s.settimeout(10)
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        stopping.join(5)
        assert not stopping.is_alive(), "stop() waits for a refused client"


# --------------------------------------------------------------------------------------------
# request heads: size, scanning, deadline


def test_an_incomplete_head_over_the_limit_is_refused_at_once(make):
    server, _ = make()
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(90))  # < MAX_HEADERS, > MAX_HEAD
    assert len(lines) > http11.MAX_HEAD
    with socket.create_connection(server.server_address[:2], timeout=3) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n" + lines)  # no blank line: the head never ends
        out = read_until_closed(s)
    assert out.startswith(b"HTTP/1.1 431 ") and b"request head over" in out, out[:200]


def test_a_long_request_line_with_its_headers_still_fits(make):
    server, _ = make()
    status, _, _ = request(server, "GET", "/healthz?pad=" + "a" * 60_000, headers={"X-Pad": "b" * 8000})
    assert status == 200


class _ScanSpy(bytearray):
    """A buffer that records where each search of it starts."""

    starts: list[int]

    def find(self, sub, start=0, *rest):
        self.starts.append(start)
        return super().find(sub, start, *rest)

    def count(self, sub, start=0, *rest):
        self.starts.append(start)
        return super().count(sub, start, *rest)

    def rfind(self, sub, start=0, *rest):
        self.starts.append(start)
        return super().rfind(sub, start, *rest)


def test_an_incomplete_head_is_searched_only_where_the_last_read_ended():
    # A head trickled a byte per read must not cost a pass over all of it per read.
    buf = _ScanSpy(b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 90)
    scanned = len(buf) - 1
    buf.starts = []
    assert http11.parse_head(buf, scanned) is None
    assert buf.starts and min(buf.starts) >= scanned - 2, buf.starts


def test_a_head_trickled_line_by_line_is_closed_at_its_deadline(make):
    server, _ = make(request_timeout=1.0)
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        for i in range(20):  # a header line every 0.25 s: never silent for request_timeout
            time.sleep(0.25)
            try:
                s.sendall(b"X-%d: y\r\n" % i)
            except OSError:
                closed = True
                break
            if not server._connections:
                closed = True
                break
        assert closed, "a head trickled line by line was never closed"
        assert time.monotonic() - started < 4


def _trickle(sock: socket.socket, server, stop: threading.Event, interval: float = 0.2) -> None:
    """A byte every ``interval``: never silent for request_timeout, until the server closes."""
    while not stop.is_set() and server._connections:
        try:
            sock.sendall(b"x")
        except OSError:
            return
        time.sleep(interval)


def _slow_body(server) -> socket.socket:
    """A connection whose body has begun, and trickles."""
    s = socket.create_connection(server.server_address[:2], timeout=5)
    s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\n" + _auth() + b"Content-Length: 100000\r\n\r\n")
    assert _wait_for(lambda: any(c.pending for c in list(server._connections)), 2)
    return s


def test_a_body_trickled_byte_by_byte_is_closed_at_its_deadline(make):
    server, _ = make(request_timeout=1.0)
    with _slow_body(server) as s:
        started, stop = time.monotonic(), threading.Event()
        threading.Thread(target=_trickle, args=(s, server, stop), daemon=True).start()
        try:
            assert _wait_for(lambda: not server._connections, 6), "a body trickled byte by byte was never closed"
        finally:
            stop.set()
        assert time.monotonic() - started < 4


def test_a_big_body_sent_steadily_outlasts_request_timeout(make):
    # ~100 kB/s for 2 s with request_timeout 1: faster than _MIN_RATE, so never cut
    server, client = make(request_timeout=1.0)
    body = json.dumps({**COLL, "pad": "x" * 200_000}).encode()
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"POST /flush HTTP/1.1\r\nHost: x\r\n" + _auth() + b"Content-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 10_000):
            s.sendall(body[i:i + 10_000])
            time.sleep(0.1)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert coll(client).last[0] == "flush"


def test_stop_does_not_wait_for_a_body_trickled_for_ever(make):
    server, _ = make(request_timeout=1.0)
    with _slow_body(server) as s:
        stop = threading.Event()
        threading.Thread(target=_trickle, args=(s, server, stop), daemon=True).start()
        try:
            stopping = threading.Thread(target=server.stop, daemon=True)
            stopping.start()
            stopping.join(5)
            assert not stopping.is_alive(), "stop() waits for a body trickled for ever"
        finally:
            stop.set()


def test_a_reply_read_a_little_at_a_time_is_closed_at_its_deadline(make):
    server, _ = make(request_timeout=1.0, api_key=None)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(server.server_address[:2])
        assert _wait_for(lambda: server._connections, 2)
        # small buffers on both ends, so that the server sees each bit of progress (never silent)
        next(iter(server._connections)).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # 160 kB each
        assert _wait_for(lambda: any(c.writing for c in list(server._connections)), 3)
        started = time.monotonic()
        while server._connections and time.monotonic() - started < 8:
            s.recv(2048)  # about 20 kB/s: far slower than _MIN_RATE
            time.sleep(0.1)
        assert not server._connections, "a reply read a little at a time was never cut"
        assert time.monotonic() - started < 4


# --------------------------------------------------------------------------------------------
# query strings, paths and targets are UTF-8


def _binary_search(server, query: str):
    return request(server, "POST", "/search_binary?database_name=db&collection_name=c&dim=3&" + query,
                   raw=np.ones(3, np.float32).tobytes(), headers={"Content-Type": "application/octet-stream"})


def test_query_values_must_be_utf8(make):
    server, client = make()
    status, _, data = _binary_search(server, "where=name%3D%27caf%C3%A9%27")
    assert status == 200 and coll(client).last[1]["where"] == "name='café'"
    n = len(coll(client).calls)
    for query in ("where=name%3D%27caf%E9%27", "where=%FF", "k=1&where=%FE"):
        status, _, data = _binary_search(server, query)
        assert status == 400, (query, data)
        assert json.loads(data)["error"].startswith("where: not valid UTF-8"), data
    assert len(coll(client).calls) == n  # nothing reached the library
    # a JSON route's query parameters too
    status, _, data = request(server, "POST", "/v1/materialized_view/db$v/refresh?delimiter=%FF", {})
    assert status == 400 and json.loads(data)["error"].startswith("delimiter: not valid UTF-8"), data


def test_path_parameters_must_be_utf8(make):
    server, _ = make()
    status, _, data = request(server, "POST", "/v1/materialized_view/%FF/refresh", {})
    assert status == 400 and json.loads(data)["error"].startswith("id: not valid UTF-8"), data


def test_raw_non_ascii_in_the_target_is_read_as_utf8(make):
    server, client = make()
    raw = np.ones(3, np.float32).tobytes()

    def send(where: bytes) -> bytes:
        head = (b"POST /search_binary?database_name=db&collection_name=c&dim=3&where=" + where + b" HTTP/1.1\r\n"
                b"Host: x\r\n" + _auth() + b"Content-Length: 12\r\nConnection: close\r\n\r\n")
        with socket.create_connection(server.server_address[:2], timeout=5) as s:
            s.sendall(head + raw)
            return read_until_closed(s)

    assert send("café".encode()).startswith(b"HTTP/1.1 200")
    assert coll(client).last[1]["where"] == "café"  # not its Latin-1 reading, 'cafÃ©'
    out = send(b"caf\xe9")
    assert out.startswith(b"HTTP/1.1 400") and b"not valid UTF-8" in out, out[:200]


def test_a_replica_forwards_a_non_latin1_target(tmp_path):
    # the primary reads the target as UTF-8, so the replica must send it so
    path = str(tmp_path / "primary.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    got = []

    def primary() -> None:
        sock, _ = listener.accept()
        with sock:
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            got.append(data)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    t = threading.Thread(target=primary, daemon=True)
    t.start()
    reply = PrimaryLink(path, 30.0).forward("GET", "/read_blob?key=ключ", {}, None)
    t.join(5)
    listener.close()
    assert reply.status == 200 and got[0].startswith("GET /read_blob?key=ключ HTTP/1.1\r\n".encode())


@pytest.mark.parametrize("target", [b"http://[zz]/x", b"http://[::1/x", b"http://x]/x"])
def test_a_target_urlsplit_rejects_is_answered_and_the_next_request_gets_its_own_reply(make, target):
    server, _ = make()
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + _auth() + b"\r\n"
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = read_until_closed(s)
    first, _, second = out.partition(b"HTTP/1.1 200 ")
    assert first.startswith(b"HTTP/1.1 400 ") and b"request target" in first, out[:300]
    assert second.endswith(b'{"status":"ok"}'), out


def test_a_failure_while_reading_a_request_is_answered_500_and_closes(make, monkeypatch, caplog):
    server, _ = make()

    def broken(*args):
        raise RuntimeError("a bug in reading a request")

    monkeypatch.setattr(server, "_prepare", broken)
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        out = read_until_closed(s)
    assert out.startswith(b"HTTP/1.1 500 ") and b"Connection: close" in out, out[:300]
    assert out.count(b"HTTP/1.1 ") == 1, out  # the rest of the stream is not trusted
    assert any("a bug in reading a request" in r.getMessage() or (r.exc_info and "a bug" in str(r.exc_info[1]))
               for r in caplog.records)


# --------------------------------------------------------------------------------------------
# Transfer-Encoding after an early refusal


@pytest.mark.parametrize("path, auth, status", [
    (b"/no_such_route", _auth(), 404),
    (b"/search", b"", 401),
    (b"/search", _auth(), 411),
])
def test_a_chunked_body_is_never_read_as_the_next_request(make, path, auth, status):
    server, _ = make()
    inner = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n" + body)
        out = read_until_closed(s)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert out.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in out, out


@pytest.mark.parametrize("path, auth", [(b"/no_such_route", _auth()), (b"/search", b""), (b"/search", _auth())])
@pytest.mark.parametrize("length", [b"abc", b"-1", b"+5", b"1e3", b"5, 5", b"", b"9" * 19, b"9" * 5000])
def test_a_malformed_content_length_is_never_read_as_zero(make, path, auth, length):
    # Read as 0 on a 404 or a 401, the body would be taken for the next request (here a GET).
    server, _ = make()
    inner = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: " + length + b"\r\n\r\n" + inner)
        out = read_until_closed(s)
    assert out.startswith(b"HTTP/1.1 400 ") and b"Content-Length" in out, out[:200]
    assert out.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in out, out


# --------------------------------------------------------------------------------------------
# non-ASCII API keys


@pytest.mark.parametrize("key", ["s3crét", "ключ-1234"])
def test_a_non_ascii_key_works_as_bearer_basic_and_from_the_remote_client(make, key):
    server, _ = make(api_key=key)

    def status_with(authorization: bytes) -> int:
        with socket.create_connection(server.server_address[:2], timeout=5) as s:
            s.sendall(b"GET /list_databases HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization +
                      b"\r\nConnection: close\r\n\r\n")
            return int(read_until_closed(s).split()[1])

    assert status_with(b"Bearer " + key.encode()) == 200  # UTF-8, as curl sends it
    assert status_with(b"Basic " + base64.b64encode(b"u:" + key.encode())) == 200
    assert status_with(b"Bearer " + key[:-1].encode()) == 401
    if all(ord(c) < 256 for c in key):  # its Latin-1 bytes (Python's http.client with a str)
        assert status_with(b"Bearer " + key.encode("latin-1")) == 200
    assert vecstore.connect(server.url, api_key=key).list_databases() == ["db"]
    with pytest.raises(vecstore.UnauthorizedError):
        vecstore.connect(server.url, api_key=key + "x").list_databases()


# --------------------------------------------------------------------------------------------
# out of file descriptors


class _FailingListener:
    """The server's listening socket, whose accept() fails with EMFILE while ``failing``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.failing, self.calls = sock, True, 0

    def accept(self):
        self.calls += 1
        if self.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_out_of_file_descriptors_pauses_accepting_and_logs_once(tmp_path, caplog):
    config = app_module.ServerConfig(data_dir=tmp_path, port=0)
    server = app_module.make_server(config, FakeClient())
    listener = server._listeners[0] = _FailingListener(server.socket)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    try:
        with caplog.at_level(logging.WARNING, logger="vecstore.server"):
            thread.start()
            with socket.create_connection(server.server_address[:2], timeout=5) as s:  # waits in the backlog
                time.sleep(0.5)
                assert listener.calls <= 2, f"{listener.calls} accept() calls in 0.5 s: the loop spins"
                failures = [r for r in caplog.records if "accept failed" in r.getMessage()]
                assert len(failures) == 1
                listener.failing = False  # descriptors freed: the waiting client is served
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert read_until_closed(s).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()
        thread.join(5)


# --------------------------------------------------------------------------------------------
# more connections than max_connections


def _keep_alive(server) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read()
    return conn


def test_a_connection_beyond_max_connections_gets_503_and_the_others_are_served(make):
    server, _ = make(max_connections=2, api_key=None)
    held = [_keep_alive(server), _keep_alive(server)]
    try:
        # refused at once, before it sends anything
        with socket.create_connection(server.server_address[:2], timeout=5) as s:
            reply = read_until_closed(s)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head and b"Connection: close" in head
        doc = json.loads(body)
        assert doc["code"] == "unavailable" and "2 connections" in doc["error"]
        # a client that sends its request in pieces still reads the answer (closing at once
        # would reset the connection on the first piece, and the next one would fail)
        with socket.create_connection(server.server_address[:2], timeout=5) as s:
            s.sendall(b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
            time.sleep(0.1)
            s.sendall(b"{}")
            assert read_until_closed(s).startswith(b"HTTP/1.1 503 ")
        # a client that sends its request reads the same answer
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
        conn.request("POST", "/stats", body=json.dumps(COLL))
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())["code"]) == (503, "unavailable")
        conn.close()
        for c in held:  # the connections held are served on
            c.request("GET", "/healthz")
            assert c.getresponse().read() == b'{"status":"ok"}'
        assert _wait_for(lambda: len(server._connections) == 2, 2)  # the refused ones are closed
        held.pop().close()  # a slot frees: a new connection is taken
        assert _wait_for(lambda: len(server._connections) == 1, 2)
        held.append(_keep_alive(server))
        _, _, metrics = request(server, "GET", "/metrics", key=None, conn=held[0])
    finally:
        for c in held:
            c.close()
    assert b"vecstore_http_connections_refused_total 3" in metrics


def test_max_connections_defaults_from_the_open_file_limit(make, monkeypatch):
    monkeypatch.setattr(http11.resource, "getrlimit", lambda what: (1024, 4096))
    assert http11.default_max_connections() == 768
    monkeypatch.setattr(http11.resource, "getrlimit", lambda what: (65536, 65536))
    assert http11.default_max_connections() == 49152
    server, _ = make()
    assert server.max_connections == 49152


def _real_server(data, *args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """``python -m vecstore.server`` on ``data``: the process, its URL, and its log lines (a
    thread keeps reading them, so the pipe never fills)."""
    proc = subprocess.Popen([sys.executable, "-m", "vecstore.server", "--data", str(data), "--port", "0", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
            return proc, found.group(1), lines
    raise AssertionError("the server did not start:\n" + "".join(lines))


def test_out_of_file_descriptors_a_real_server_answers_503_loses_nothing_and_recovers(tmp_path):
    """The server's open-file limit is lowered (prlimit) to what it holds: every request that
    needs a new descriptor fails with EMFILE, among them a compaction whose reload hits it
    after its commit. Oracle: the rows written (numpy for the nearest neighbours)."""
    x = np.random.default_rng(7).random((50, 4)).astype(np.float32)
    with vecstore.connect(tmp_path / "data") as local:
        col = local.create_database("app").require_collection("items", dim=4, metric="l2")
        col.add(x, ids=list(range(50)), fields=[{"t": f"hello {i}"} for i in range(50)])
    (tmp_path / "bak").mkdir()
    proc, url, log_lines = _real_server(tmp_path / "data", "--workers", "1", "--max-connections", "1",
                                        "--backup-dir", str(tmp_path / "bak"))
    try:
        remote = vecstore.connect(url)  # holds the one connection allowed from here on
        db = remote.get_database("app")
        col = db.get_collection("items")
        col.build_index("HNSW-L2")
        assert col.text_search("hello", text_fields=["t"], k=3).ids
        assert col.delete_items([5, 6, 7]) == 3
        with pytest.raises(vecstore.UnavailableError, match="maximum of 1 connections"):
            vecstore.connect(url).list_databases()  # a second connection: over --max-connections

        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{proc.pid}/fd")), hard))
        for fails in (lambda: db.require_collection("other", dim=4),  # new LMDB files
                      lambda: col.build_index("IVF-L2"),  # index files
                      lambda: col.snapshot_to(str(tmp_path / "bak" / "s.snap"))):
            with pytest.raises(vecstore.UnavailableError, match="out of file descriptors"):
                fails()
        try:  # committed, then its reload finds no descriptor for the index and text files
            assert col.compact() == 3
        except vecstore.UnavailableError:
            pass
        with pytest.raises(vecstore.UnavailableError):
            col.text_search("hello", text_fields=["t"], k=3)
        assert col.add(x[:2] + 1, ids=[100, 101]) == [100, 101]  # what needs no new file works
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))

        live = [i for i in range(50) if i not in (5, 6, 7)]
        rows = np.concatenate([x[live], x[:2] + 1])
        ids = np.array(live + [100, 101])
        assert sorted(col.head(100).ids) == sorted(ids.tolist()) and col.shape == (49, 4)
        for q in x[[3, 20, 41]]:
            want = ids[np.argsort(((rows - q) ** 2).sum(1), kind="stable")[:3]].tolist()
            assert list(col.search(q, k=3).ids) == want
        assert sorted(col.text_search("hello", text_fields=["t"], k=100).ids) == live
        assert db.require_collection("other", dim=4).shape == (0, 4)
        col.build_index("IVF-L2")
        assert col.snapshot_to(str(tmp_path / "bak" / "s.snap"))
        assert db.restore_collection("copy", str(tmp_path / "bak" / "s.snap")).shape == (49, 4)
        remote.close()
    finally:
        proc.terminate()
        proc.wait(30)
    log_text = "".join(log_lines)
    warnings = [line for line in log_lines if re.search(r"out of file descriptors \(.*\); answered 503", line)]
    assert len(warnings) == 1 and "Traceback" not in log_text, log_text


# --------------------------------------------------------------------------------------------
# clients that do not read their replies


def _non_reader(server, n: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(server.server_address[:2])
    s.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * n)  # 160 kB each, never read
    return s


def test_clients_that_never_read_hold_no_worker(make, monkeypatch):
    monkeypatch.setattr(app_module, "_MAX_EXTRA_WORKERS", 0)  # no watchdog threads to hide a stuck one
    server, _ = make(workers=1, request_timeout=1.5, api_key=None)
    stuck = [_non_reader(server, 40) for _ in range(3)]  # 6 MB each: more than the socket buffers
    try:
        assert _wait_for(lambda: sum(c.busy for c in list(server._connections)) == 3, 2)  # replies stuck
        for _ in range(3):
            started = time.monotonic()
            conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
            conn.request("POST", "/flush", body=json.dumps(COLL))
            assert conn.getresponse().status == 200
            conn.close()
            assert time.monotonic() - started < 1.0
        # making no progress, they are closed after request_timeout, and stop() need not wait
        assert _wait_for(lambda: not server._connections, 5)
        server.stop()
    finally:
        for s in stuck:
            s.close()


def test_a_slow_reader_gets_every_pipelined_reply_whole(make):
    server, _ = make(workers=1, api_key=None)
    _, _, one = request(server, "GET", "/openapi.json")
    assert len(one) > 100_000
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 9 +
                  b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            time.sleep(0.002)
    out = b"".join(chunks)
    parts = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(parts) == 10
    for part in parts:
        _, _, body = part.partition(b"\r\n\r\n")
        assert body == one


@pytest.mark.parametrize("status, body, ctype", [(200, b"<html>hi</html>", "text/html"),
                                                 (200, b"[1, 2]", "application/json"),
                                                 (200, b'{"status": "ok"}', "application/json"),
                                                 (200, b'{"params": []}', "application/json"),
                                                 (502, b"[1, 2]", "application/json"),
                                                 (502, b"<html>Bad Gateway</html>", "text/html")])
def test_a_reply_that_is_not_vecstore_json_is_a_vecstore_error(status, body, ctype):
    """Another service on the port, or a proxy's page: a 200 of HTML raised JSONDecodeError, a
    JSON array AttributeError, from the remote client."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(vecstore.VecstoreError) as e:
            vecstore.connect(f"http://127.0.0.1:{srv.server_port}").list_databases()
        assert status != 200 or "vecstore server's" in str(e.value)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:-1", "http://:80"])
def test_a_url_that_names_no_server_is_invalid_argument(url):
    with pytest.raises(vecstore.InvalidArgumentError, match="url: expected http://host:port"):
        vecstore.connect(url)
