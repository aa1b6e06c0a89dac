"""The server under concurrent clients: a reader thread reads every connection, a bounded pool
of workers answers complete requests in arrival order (server/app.py).

Driven against a small fake client whose search answers with the query itself, so a reply
given to the wrong connection, or a request split or merged wrongly, shows as a wrong answer.
No timings are asserted beyond generous "did not wait for the slow one" bounds.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest
from vecstore.server import app as app_module
from vecstore.server import http11

from vecstore.types import SearchResult

DB = {"database_name": "db", "collection_name": "c"}


class EchoCollection:
    """``search`` answers with the first component of the query as its id; ``flush`` waits for
    ``gate`` (if set) or sleeps ``slow`` seconds; every call is recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.slow = 0.0
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def search(self, vector, k=10, **kw):
        self.calls.append("search")
        v = np.asarray(vector, np.float32)
        return SearchResult(ids=(int(v[0]), int(v[-1])), scores=np.array([0.0, 1.0], np.float32), fields=None, k=k)

    def flush(self):
        self.calls.append("flush")
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        elif self.slow:
            time.sleep(self.slow)


class EchoDatabase:
    def __init__(self) -> None:
        self.collection = EchoCollection()

    def get_collection(self, name):
        return self.collection


class EchoClient:
    def __init__(self) -> None:
        self.database = EchoDatabase()

    def get_database(self, name):
        return self.database

    def list_databases(self):
        return ["db"]


@pytest.fixture
def make(tmp_path):
    started = []

    def _make(**overrides):
        config = app_module.ServerConfig(data_dir=tmp_path, port=0, **overrides)
        client = EchoClient()
        server = app_module.make_server(config, client)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return server, client.database.collection

    yield _make
    for server, thread in started:
        if not server.stopping:
            server.stop()
        thread.join(5)
        assert not thread.is_alive()


def _post(conn, path, body: bytes, ctype="application/json"):
    conn.request("POST", path, body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    return resp.status, resp.headers, resp.read()


def _search_json(conn, first: int, last: int):
    body = json.dumps({**DB, "vector": [float(first), 0.5, float(last)], "k": 2}).encode()
    status, _, data = _post(conn, "/search", body)
    assert status == 200, data
    return json.loads(data)["params"]["items"]["ids"]


def _search_binary(conn, first: int, last: int):
    raw = np.array([first, 0.5, last], "<f4").tobytes()
    status, _, data = _post(conn, "/search_binary?database_name=db&collection_name=c&dim=3&k=2", raw,
                            "application/octet-stream")
    assert status == 200, data
    n = int.from_bytes(data[:4], "little")
    return np.frombuffer(data, "<u8", count=n, offset=4).tolist()


@pytest.mark.parametrize("workers", [1, 2])
def test_many_keep_alive_clients_each_get_their_own_answers(make, workers):
    server, _ = make(workers=workers)
    n_clients, n_requests = 24, 40
    wrong: list = []

    def client(c: int) -> None:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
        try:
            for i in range(n_requests):
                first, last = c * 1000 + i, i
                ids = (_search_json if i % 2 else _search_binary)(conn, first, last)
                if ids != [first, last]:
                    wrong.append((c, i, ids))
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            wrong.append((c, repr(e)))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == []
    text = server.metrics().body.decode()
    assert f'vecstore_http_requests_total{{path="/search",status="200"}} {n_clients * n_requests // 2}' in text
    assert "vecstore_http_requests_in_flight 0" in text


def test_a_client_sending_its_body_in_pieces_does_not_hold_up_others(make):
    server, _ = make(workers=1)
    body = json.dumps({**DB, "vector": [7.0, 0.0, 9.0], "k": 2}).encode()
    slow = socket.create_connection(server.server_address[:2], timeout=10)
    slow.sendall(f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    slow.sendall(body[:5])
    # the only worker must stay free while the body trickles in
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    started = time.monotonic()
    for i in range(20):
        assert _search_binary(conn, i, 1) == [i, 1]
    assert time.monotonic() - started < 5
    for piece in range(5, len(body), 7):  # the rest, a few bytes at a time
        slow.sendall(body[piece:piece + 7])
        time.sleep(0.01)
    reply = b""
    while b'"ids"' not in reply:
        chunk = slow.recv(65536)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and b'"ids":[7,9]' in reply
    slow.close()
    conn.close()


def test_head_split_anywhere_is_read_the_same(make):
    server, _ = make(workers=1)
    body = json.dumps({**DB, "vector": [3.0, 0.0, 4.0], "k": 2}).encode()
    raw = (f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for cut in range(0, len(raw), 9):
            s.sendall(raw[cut:cut + 9])
            time.sleep(0.002)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200") and b'"ids":[3,4]' in reply


def test_parse_head_is_incomplete_until_the_blank_line():
    raw = b"POST /search?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"k\": 1}"
    end = raw.index(b"\r\n\r\n") + 4
    for n in range(end):
        assert http11.parse_head(raw[:n]) is None, n
    used, method, target, headers, close, http10 = http11.parse_head(raw)
    assert (used, method, target, close, http10) == (end, "POST", "/search?x=1", True, False)
    assert headers == {b"host": b"a", b"content-length": b"12", b"connection": b"close"}
    # bare LF line ends, and the scan offset of an earlier call
    lf = raw.replace(b"\r\n", b"\n")
    assert http11.parse_head(lf, scanned=10)[:3] == (lf.index(b"\n\n") + 2, "POST", "/search?x=1")


def test_a_slow_request_does_not_starve_the_others(make):
    server, coll = make(workers=1)
    coll.gate = threading.Event()
    result = {}

    def slow() -> None:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
        result["flush"] = _post(conn, "/flush", json.dumps(DB).encode())[0]
        conn.close()

    t = threading.Thread(target=slow)
    t.start()
    assert coll.started.wait(5)
    # the one worker is stuck in flush: the server adds a worker for the requests waiting
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    assert [_search_binary(conn, i, 2) for i in range(3)] == [[0, 2], [1, 2], [2, 2]]
    conn.close()
    coll.gate.set()
    t.join(10)
    assert result["flush"] == 200


def test_stop_answers_requests_in_flight_and_queued(make):
    server, coll = make(workers=1)
    coll.slow = 0.4
    results: dict[int, tuple] = {}

    def flush(i: int) -> None:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
        try:
            status, headers, _ = _post(conn, "/flush", json.dumps(DB).encode())
            results[i] = (status, headers.get("Connection"))
        except Exception as e:  # noqa: BLE001 - checked below
            results[i] = (repr(e), None)
        conn.close()

    threads = [threading.Thread(target=flush, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    assert coll.started.wait(5)
    time.sleep(0.1)  # all three requests are in: one running, two queued
    idle = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    assert _search_binary(idle, 1, 1) == [1, 1]  # an idle keep-alive connection during the stop
    # a request whose body is still arriving when stop() is called is answered too
    body = json.dumps({**DB, "vector": [5.0, 0.0, 6.0], "k": 2}).encode()
    partial = socket.create_connection(server.server_address[:2], timeout=10)
    partial.sendall(f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:4])
    time.sleep(0.1)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.2)
    partial.sendall(body[4:])
    reply = partial.recv(65536)
    stopper.join(10)
    assert not stopper.is_alive()
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, 1, 2] and all(r[0] == 200 for r in results.values()), results
    assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply and b'"ids":[5,6]' in reply
    assert partial.recv(10) == b""  # then closed
    partial.close()
    with pytest.raises(OSError):  # the idle connection was closed
        _search_binary(idle, 2, 2)
    with pytest.raises(OSError):  # no new connections
        socket.create_connection(server.server_address[:2], timeout=1).close()


def test_idle_connections_are_closed_after_the_request_timeout(make):
    server, _ = make(request_timeout=0.3)
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert s.recv(10) == b""  # the server closed it
        assert time.monotonic() - started < 5
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost:")  # stalled in the middle of a head
        assert s.recv(10) == b""


def test_a_client_leaving_in_the_middle_of_a_body_is_not_answered(make):
    server, coll = make(workers=1)
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"vector\"")
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    assert _search_binary(conn, 4, 4) == [4, 4]
    conn.close()
    assert coll.calls == ["search"]
    text = server.metrics().body.decode()
    assert "vecstore_http_requests_in_flight 0" in text and 'status="500"' not in text


def test_pipelined_requests_are_answered_in_order(make):
    server, _ = make(workers=2)
    reqs = []
    for i in range(30):
        body = json.dumps({**DB, "vector": [float(i), 0.0, 1.0], "k": 2}).encode()
        reqs.append(f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    reqs.append(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(b"".join(reqs))
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    ids = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["params"]["items"]["ids"][0]
           for part in out.split(b"HTTP/1.1 200 OK\r\n")[1:-1]]
    assert ids == list(range(30))
    assert out.endswith(b'{"status":"ok"}')


def test_many_idle_connections_do_not_hold_up_requests(make):
    server, _ = make(workers=2)
    idle = [socket.create_connection(server.server_address[:2], timeout=10) for _ in range(200)]
    try:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
        assert [_search_binary(conn, i, 0) for i in range(5)] == [[i, 0] for i in range(5)]
        conn.close()
    finally:
        for s in idle:
            s.close()
