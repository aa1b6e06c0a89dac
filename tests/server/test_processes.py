"""``--processes N``: real servers in subprocesses (a primary and its replicas on one socket).

Each keep-alive connection stays with the process that accepted it; ``/metrics`` says which
one (``vecstore_process_info``), so the tests open connections until they hold some served by
the primary and some by a replica, then check that every connection sees every write
acknowledged before it, that forwarded requests answer exactly as the primary does, and the
processes' lifecycle.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vecstore
from vecstore.server.__main__ import parse_args
from vecstore.server.processes import PrimaryLink

DB = "app"
KEY = "process-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
INFO = re.compile(rb'vecstore_process_info\{role="(\w+)",pid="(\d+)"\}')


class Server:
    """``python -m vecstore.server --processes N --port 0`` on ``data``, with an API key (so
    every forwarded request also shows the key reaches the primary); the port is read from the
    startup line on stderr, which a thread keeps draining (so the pipe never fills)."""

    def __init__(self, data: Path, processes: int = 2) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vecstore.server", "--data", str(data), "--port", "0",
             "--processes", str(processes), "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "VECSTORE_API_KEY": KEY})
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._eof = False
        threading.Thread(target=self._drain, daemon=True).start()
        port = self.wait_for(r"listening on http://127\.0\.0\.1:(\d+)")
        self.port = int(port.group(1))
        self.wait_for(r"replica serving reads", count=processes - 1)  # they log once serving

    def _drain(self) -> None:
        for raw in self.proc.stderr:
            with self._seen:
                self.lines.append(raw.decode("utf-8", "replace"))
                self._seen.notify_all()
        with self._seen:
            self._eof = True
            self._seen.notify_all()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                found = [m for m in map(re.compile(pattern).search, self.lines) if m]
                if len(found) >= count:
                    return found[count - 1]
                if self._eof or time.monotonic() > deadline:
                    raise AssertionError(f"no {pattern!r} from the server:\n{''.join(self.lines)}")
                self._seen.wait(0.2)

    def connect(self) -> Conn:
        return Conn(self.port)

    def connections(self, each: int = 3, at_most: int = 60) -> list[Conn]:
        """Keep-alive connections until at least ``each`` are served by the primary and by a
        replica (a new connection goes to a process holding the fewest)."""
        conns: list[Conn] = []
        while len(conns) < at_most:
            conns.append(self.connect())
            roles = [c.role for c in conns]
            if roles.count("primary") >= each and roles.count("replica") >= each:
                return conns
        raise AssertionError(f"{at_most} connections, served by {sorted({(c.role, c.pid) for c in conns})}")

    def children(self) -> set[int]:
        pid = self.proc.pid
        out: set[int] = set()
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.update(int(x) for x in f.read().split())
        return out

    def run_dir(self) -> Path:
        """The primary's run folder (its AF_UNIX socket and shared state), from a replica's
        command line."""
        with open(f"/proc/{min(self.children())}/cmdline") as f:
            args = f.read().split("\0")
        path = Path(args[args.index("--replica-of") + 1]).parent
        assert path.is_dir()
        return path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Conn:
    """One keep-alive connection; ``role``/``pid``: the process that serves it."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, body, _ = self.raw("GET", "/metrics")
        assert status == 200
        role, pid = INFO.search(body).groups()
        self.role, self.pid = role.decode(), int(pid)

    def raw(self, method: str, path: str, body: bytes | None = None, auth: bool = True) -> tuple[int, bytes, str]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.http.request(method, path, body, {**headers, **AUTH} if auth else headers)
        r = self.http.getresponse()
        return r.status, r.read(), r.getheader("Content-Type", "")

    def post(self, path: str, **body) -> tuple[int, dict]:
        status, data, _ = self.raw("POST", path, json.dumps(body).encode())
        return status, json.loads(data)

    def ok(self, path: str, **body) -> dict:
        status, reply = self.post(path, **body)
        assert status == 200, (path, self.role, status, reply)
        return reply["params"]

    def col(self, path: str, name: str, **body) -> tuple[int, dict]:
        return self.post(path, database_name=DB, collection_name=name, **body)

    def close(self) -> None:
        self.http.close()


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def requests_total(conn: Conn, path: str, status: int) -> int:
    _, body, _ = conn.raw("GET", "/metrics")
    m = re.search(rb'vecstore_http_requests_total\{path="%s",status="%d"\} (\d+)' % (path.encode(), status), body)
    return int(m.group(1)) if m else 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("processes") / "data")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def conns(server):
    cs = server.connections()
    cs[0].ok("/create_database", database_name=DB)
    yield cs
    for c in cs:
        c.close()


def _primary_and_replica(conns: list[Conn]) -> tuple[Conn, Conn]:
    return next(c for c in conns if c.role == "primary"), next(c for c in conns if c.role == "replica")


# ----------------------------------------------------------------------------------------------


def test_both_processes_serve_connections(server, conns):
    assert len(conns) >= 6
    assert {c.role for c in conns} == {"primary", "replica"}
    replica_pids = {c.pid for c in conns if c.role == "replica"}
    assert server.proc.pid in {c.pid for c in conns} and replica_pids <= server.children()
    assert any(re.search(r"listening on .*; 2 processes\)", line) for line in server.lines)


def test_a_burst_of_connections_is_spread_over_the_processes(server, conns):
    """A client pool opening connections all at once (before any request): each process takes
    its share, not whichever process happened to be running."""
    burst = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=60) for _ in range(8)]
    for h in burst:
        h.connect()
    roles = []
    for h in burst:
        h.request("GET", "/metrics", headers=AUTH)
        roles.append(INFO.search(h.getresponse().read()).group(1).decode())
        h.close()  # (closed connections are no more counted)
    held = [c.role for c in conns] + roles
    assert abs(held.count("primary") - held.count("replica")) <= 2, (roles, [c.role for c in conns])
    assert roles.count("primary") >= 2 and roles.count("replica") >= 2, roles


def test_every_connection_reads_the_writes_acknowledged_before(conns):
    writer_roles = []
    for n, writer in enumerate(_primary_and_replica(conns)):
        name = f"ryw{n}"
        writer.ok("/required_collection", database_name=DB, collection_name=name, dim=3, metric="l2")
        for i in range(3):
            vec = [float(i), 1.0, 2.0]
            writer.col("/add", name, ids=[i], vectors=[vec], fields=[{"i": i}])
            for c in conns:  # at once, on every connection: the row is there
                status, reply = c.col("/search", name, vector=vec, k=1, return_fields=True)
                assert status == 200 and reply["params"]["items"]["ids"] == [i], (c.role, reply)
                assert c.col("/is_id_exists", name, id=i)[1]["params"]["is_id_exists"] is True
                assert c.col("/collection_shape", name)[1]["params"]["shape"] == [i + 1, 3]
        assert writer.col("/delete", name, ids=[1])[1]["params"]["n_deleted"] == 1
        for c in conns:
            assert c.col("/is_id_exists", name, id=1)[1]["params"]["is_id_exists"] is False, c.role
            assert 1 not in c.col("/search", name, vector=[1.0, 1.0, 2.0], k=3)[1]["params"]["items"]["ids"]
            assert c.col("/list_deleted_ids", name)[1]["params"]["ids"] == [1]
            assert c.col("/query", name, where="i >= 0", return_ids_only=True)[1]["params"]["result"] == [0, 2]
        writer_roles.append(writer.role)
    assert writer_roles == ["primary", "replica"]


def test_an_index_built_on_one_connection_answers_on_every_other(conns):
    primary, replica = _primary_and_replica(conns)
    name = "indexed"
    primary.ok("/required_collection", database_name=DB, collection_name=name, dim=4, metric="l2")
    vectors = [[float(i), float(i % 7), float(i % 3), 1.0] for i in range(200)]
    primary.col("/add", name, ids=list(range(200)), vectors=vectors)
    for c in conns:  # every process holds the collection before the build
        assert c.col("/search", name, vector=vectors[5], k=1)[1]["params"]["items"]["index"] == "FLAT-L2"
    status, reply = replica.col("/build_index", name, index_mode="HNSW")  # forwarded to the primary
    assert status == 200 and reply["params"]["index_mode"] == "HNSW", reply
    for c in conns:
        assert c.col("/index_mode", name)[1]["params"]["index_mode"] == "HNSW", c.role
        items = c.col("/search", name, vector=vectors[42], k=1)[1]["params"]["items"]
        assert items["index"] == "HNSW" and items["ids"] == [42], (c.role, items)
    replica.col("/add", name, ids=[1000], vectors=[[500.0, 0.0, 0.0, 1.0]])  # after the build
    for c in conns:
        items = c.col("/search", name, vector=[500.0, 0.0, 0.0, 1.0], k=1)[1]["params"]["items"]
        assert items["index"] == "HNSW" and items["ids"] == [1000], (c.role, items)


def test_a_dropped_then_recreated_collection_is_the_new_one_everywhere(conns):
    primary, replica = _primary_and_replica(conns)
    name = "again"
    primary.ok("/required_collection", database_name=DB, collection_name=name, dim=2)
    primary.col("/add", name, ids=[1, 2], vectors=[[1.0, 0.0], [0.0, 1.0]])
    for c in conns:  # every process opens (and caches) the first one
        assert c.col("/collection_shape", name)[1]["params"]["shape"] == [2, 2]
    assert replica.col("/drop_collection", name)[0] == 200
    for c in conns:
        status, reply = c.col("/collection_shape", name)
        assert (status, reply["code"]) == (404, "not_found"), (c.role, status, reply)
        assert c.col("/search", name, vector=[1.0, 0.0])[0] == 404
    # the same name, another dimension and other rows
    replica.ok("/required_collection", database_name=DB, collection_name=name, dim=3)
    primary.col("/add", name, ids=[7, 8, 9], vectors=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for c in conns:
        assert c.col("/collection_shape", name)[1]["params"]["shape"] == [3, 3], c.role
        assert c.col("/search", name, vector=[0.0, 1.0, 0.0], k=1)[1]["params"]["items"]["ids"] == [8]
        assert c.col("/is_id_exists", name, id=1)[1]["params"]["is_id_exists"] is False
    # and a whole database dropped and re-created
    replica.ok("/drop_database", database_name=DB)
    for c in conns:
        assert c.col("/collection_shape", name)[0] == 404, c.role
    primary.ok("/create_database", database_name=DB)
    replica.ok("/required_collection", database_name=DB, collection_name=name, dim=1)
    replica.col("/add", name, ids=[5], vectors=[[2.0]])
    for c in conns:
        assert c.col("/collection_shape", name)[1]["params"]["shape"] == [1, 1], c.role
        assert c.col("/max_id", name)[1]["params"]["max_id"] == 5


def test_a_request_a_replica_forwards_answers_exactly_as_the_primary(conns):
    primary, replica = _primary_and_replica(conns)
    name = "fwd"
    primary.ok("/create_database", database_name=DB)
    primary.ok("/required_collection", database_name=DB, collection_name=name, dim=2)
    primary.col("/add", name, ids=[1], vectors=[[1.0, 2.0]], fields=[{"text": "hello world"}])
    cases = [
        ("POST", "/add", {"ids": [2], "vectors": [[1.0, 2.0, 3.0]]}, 400),   # dimension mismatch
        ("POST", "/add", {"ids": [1], "vectors": [[1.0, 2.0]]}, 409),        # duplicate id
        ("POST", "/add", {"ids": [3]}, 400),                                 # missing parameter
        ("POST", "/text_search", {"text": "hello", "k": 1}, 200),            # text: the primary's index
        ("POST", "/show_collections", {}, 200),
    ]
    for method, path, body, status in cases:
        data = json.dumps({"database_name": DB, "collection_name": name, **body}).encode()
        before = requests_total(primary, path, status)
        answers = [c.raw(method, path, data) for c in (primary, replica)]
        assert answers[0] == answers[1], (path, answers)
        assert answers[0][0] == status, (path, answers[0])
        assert requests_total(primary, path, status) == before + 2  # both answered by the primary
    # a write through the replica, then an error about it, both from the primary
    assert replica.raw("POST", "/add", json.dumps({"database_name": DB, "collection_name": name, "ids": [4],
                                                  "vectors": [[0.0, 1.0]]}).encode())[0] == 200
    dup = json.dumps({"database_name": DB, "collection_name": name, "ids": [4], "vectors": [[0.0, 1.0]]}).encode()
    assert replica.raw("POST", "/add", dup) == primary.raw("POST", "/add", dup)
    # unknown paths and a missing key are answered where they arrive, the same way
    assert replica.raw("POST", "/nope", b"{}")[:2] == primary.raw("POST", "/nope", b"{}")[:2] == (404, b"")
    unauthorized = [c.raw("POST", "/add", dup, auth=False) for c in (primary, replica)]
    assert unauthorized[0] == unauthorized[1] and unauthorized[0][0] == 401


def test_the_remote_client_works_against_several_processes(server):
    client = vecstore.connect(f"http://127.0.0.1:{server.port}", api_key=KEY)
    try:
        db = client.create_database("remote")
        col = db.require_collection("items", dim=3, metric="l2")
        ids = col.add([[1, 0, 0], [0, 1, 0], [0, 0, 1]], ids=[10, 11, 12], fields=[{"k": "a"}, {"k": "b"}, {"k": "c"}])
        assert list(ids) == [10, 11, 12]
        assert col.search([0, 1, 0], k=1).ids == (11,)
        col.build_index("HNSW-L2")
        assert col.index_mode() == "HNSW-L2"
        assert col.search([0, 0, 1], k=1).ids == (12,)
        assert col.delete_items([11]) == 1
        assert col.search([0, 1, 0], k=3).ids[0] != 11 and not col.is_id_exists(11)
        assert col.query(where="k = 'c'", return_ids_only=True) == [12]
        assert col.shape == (2, 3)
        db.drop_collection("items")
        assert db.show_collections() == []
    finally:
        client.close()


def test_sigterm_stops_every_process_and_a_killed_replica_is_restarted(tmp_path):
    s = Server(tmp_path / "data", processes=3)
    try:
        replicas = s.children()
        assert len(replicas) == 2
        victim = min(replicas)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (len(s.children()) < 2 or victim in s.children()):
            time.sleep(0.1)
        restarted = s.children()
        assert len(restarted) == 2 and victim not in restarted, restarted
        s.wait_for(r"replica serving reads", count=3)  # the new one serves
        s.wait_for(rf"\(pid {victim}\) ended unexpectedly \(signal 9\)")
        conns = s.connections(each=1)
        assert {c.pid for c in conns if c.role == "replica"} <= restarted
        run_dir = s.run_dir()
        for c in conns:
            c.close()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(30) == 0
        assert not any(alive(pid) for pid in restarted)  # no orphan: each replica stopped
        assert not run_dir.exists()  # the primary removed its run folder (socket, shared state)
        s.wait_for(r"stopped", count=3)  # the primary and both replicas said so
    finally:
        s.stop()


def test_a_replica_ends_when_its_primary_is_killed(tmp_path):
    s = Server(tmp_path / "data")
    try:
        (replica,) = s.children()
        run_dir = s.run_dir()
        s.proc.kill()
        s.proc.wait()
        deadline = time.monotonic() + 10
        while alive(replica) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(replica), f"replica {replica} outlived its primary"
        assert not run_dir.exists()  # removed by the replica, as the primary could not
    finally:
        s.stop()


def test_processes_argument():
    assert parse_args(["--processes", "3"]).processes == 3
    assert parse_args([]).processes == 1
    assert parse_args(["--processes", "0"]).processes == 0  # one per core
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit):
            parse_args(["--processes", bad])


def test_an_unreachable_primary_is_a_503(tmp_path):
    reply = PrimaryLink(str(tmp_path / "no.sock"), 30.0).forward("POST", "/add", {}, b"{}")
    assert reply.status == 503 and reply.body["code"] == "unavailable" and reply.headers == b"Retry-After: 1\r\n"


def test_replica_reads_stay_consistent_under_a_stream_of_writes(server):
    """Two writers (one connection on each process) add rows and delete some of their own,
    while two readers on replica connections search and fetch. Oracle: what the writers had
    been told before each read was sent. A row acknowledged as added is found by id; one
    acknowledged as deleted is never a search hit; nothing answers other than 200."""
    conns = server.connections(each=3)
    primary = [c for c in conns if c.role == "primary"]
    replica = [c for c in conns if c.role == "replica"]
    name = "stream"
    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, 8)).round(3).tolist()
    primary[0].post("/create_database", database_name=DB)  # (exists already when the module's tests ran)
    primary[0].ok("/required_collection", database_name=DB, collection_name=name, dim=8, metric="l2")
    primary[0].ok("/add", database_name=DB, collection_name=name, ids=list(range(300)), vectors=base)
    primary[0].ok("/build_index", database_name=DB, collection_name=name, index_mode="HNSW")
    lock = threading.Lock()
    added: dict[int, list[float]] = {}   # acknowledged adds that are never deleted: id -> vector
    deleted: set[int] = set()            # acknowledged deletes (of the other rows)
    problems: list[str] = []
    stop = time.monotonic() + 4.0

    def writer(conn, first: int) -> None:
        i, own = first, np.random.default_rng(first)
        while time.monotonic() < stop and not problems:
            vecs = own.standard_normal((5, 8)).round(3).tolist()
            status, reply = conn.col("/add", name, ids=list(range(i, i + 5)), vectors=vecs)
            if status != 200:
                problems.append(f"add on the {conn.role}: {status} {reply}")
                return
            with lock:  # the rows this writer never deletes
                added.update((j, vec) for j, vec in zip(range(i, i + 5), vecs) if j - i not in (0, 3))
            status, reply = conn.col("/delete", name, ids=[i, i + 3])
            if status != 200:
                problems.append(f"delete on the {conn.role}: {status} {reply}")
                return
            with lock:
                deleted.update((i, i + 3))
            i += 5

    def reader(conn) -> None:
        checks = 0
        while time.monotonic() < stop and not problems:
            with lock:
                gone = set(deleted)
                live = list(added.items())[-20:]
            if not live:
                continue
            i, vec = live[checks % len(live)]
            status, reply = conn.col("/read_by_only_id", name, id=i)
            if status != 200 or reply["params"]["item"][1] != [i] or not np.allclose(reply["params"]["item"][0], [vec], atol=1e-6):
                problems.append(f"read {i} on the {conn.role}: {status} {reply}")
            status, reply = conn.col("/search", name, vector=vec, k=10)
            if status != 200:
                problems.append(f"search on the {conn.role}: {status} {reply}")
            elif gone & set(reply["params"]["items"]["ids"]):
                problems.append(f"deleted ids {sorted(gone & set(reply['params']['items']['ids']))} found on the {conn.role}")
            checks += 1
        counts.append(checks)

    counts: list[int] = []
    threads = [threading.Thread(target=writer, args=(primary[0], 10_000)),
               threading.Thread(target=writer, args=(replica[0], 20_000)),
               threading.Thread(target=reader, args=(replica[1],)),
               threading.Thread(target=reader, args=(replica[2],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in conns:
        c.close()
    assert not problems, problems[:5]
    assert len(added) >= 20 and min(counts) >= 20, (len(added), counts)   # the stream really ran
