"""Server benchmark (issue 7): vecstore's HTTP server vs LynseDB 0.2.0's own, same data, same box.

    .venv/bin/python benchmarks/server.py [--n 100000] [--dim 128] [--duration 8]
        [--concurrency 1,4,16] [--systems vecstore,lynse] [--target-recall 0.95]
        [--vecstore-processes 1] [--wait-load 2.0] [--out benchmarks/data/results/server.json]

``--vecstore-processes N`` starts vecstore's server with ``--processes N`` (the system is then
named ``vecstore-pN`` in the tables); its RSS and CPU time are those of all its processes.

For each system, in turn (never both at once): start its server in a subprocess on a fresh
data folder, load 100k x 128 clustered float32 through ``/bulk_add_binary``, build
``/build_index {"index_mode": "HNSW-L2"}``, then

* pick the search breadth (``nprobe`` = HNSW ef) per system: the smallest of a sweep whose
  single-client recall@10 (against brute-force L2) reaches ``--target-recall``, so the two
  are compared at equal recall;
* search throughput: 1, 4 and 16 clients, each on its own keep-alive connection sending its
  next request when the previous reply is in (closed loop), for ``--duration`` seconds, over
  JSON ``/search`` and binary ``/search_binary`` (k=10); QPS, p50/p99 latency, the server
  process's CPU time per request (from /proc), and recall@10 of the answers received;
* insert throughput: 1, 4 and 16 clients adding batches of 100 rows to an empty collection
  through JSON ``/bulk_add_items`` (explicit ids) and binary ``/bulk_add_binary``; rows/s and
  per-request p50/p99.

The load generator is this process: one thread driving every client connection through a
selector (see :func:`run_clients`; no GIL contention of its own in the latencies), request
bodies encoded beforehand, replies parsed after the clock stops; the servers run in their own
processes. The machine has 2 cores shared by
the server and the load generator, so the numbers are for that setting. Before measuring, the
script waits (up to ``--wait-max`` seconds) for the 1-minute load average to drop under
``--wait-load`` and records the load. Prints a markdown table and writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parents[1]
K = 10
DB, COLL = "bench", "vectors"


# --------------------------------------------------------------------------------------------
# data


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 100, spread: float = 0.2) -> np.ndarray:
    """Gaussian clusters (centres N(0,1) from seed 0, spread 0.2): the recipe of benchmarks/ann.py.
    ``seed`` draws the rows; every seed shares the same centres, so queries (seed 1) come
    from the data's own clusters."""
    centres = np.random.default_rng(0).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1000)
    return (centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def brute_force_l2(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    norms = (base.astype(np.float64) ** 2).sum(1)
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), 100):
        q = queries[s:s + 100].astype(np.float64)
        d = norms[None, :] - 2 * q @ base.T.astype(np.float64)
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1)
        out[s:s + 100] = np.take_along_axis(part, order, 1)
    return out


def recall_at_k(found: dict[int, list[int]], gt: np.ndarray) -> float:
    if not found:
        return float("nan")
    return float(np.mean([len(set(ids[:K]) & set(gt[qi, :K].tolist())) / K for qi, ids in found.items()]))


# --------------------------------------------------------------------------------------------
# servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, workdir: Path) -> None:
        self.name, self.port, self.workdir = name, port, workdir
        self.log = open(workdir / f"{name}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: see {workdir / (name + '.log')}")
            try:
                if request("GET", self.port, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not start")

    def pids(self) -> list[int]:
        """The server process and its children (vecstore's replicas with --processes)."""
        pids = [self.proc.pid]
        try:
            for task in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                    pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return pids

    def rss_mb(self) -> float:
        """Resident memory of the server's processes, summed (shared pages counted in each)."""
        total = 0
        try:
            for pid in self.pids():
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return float("nan")
        return total / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes (all their threads) have used so far.
        A replica that ended meanwhile is not counted (none does in a normal run)."""
        total = 0
        try:
            for pid in self.pids():
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            return float("nan")
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


VECSTORE_MODULE = os.environ.get("VECSTORE_BENCH_SERVER_MODULE", "vecstore.server")  # another build, to compare


def start_vecstore(workdir: Path, processes: int = 1) -> Server:
    port = free_port()
    data = workdir / "vecstore-data"
    extra = ["--processes", str(processes)] if processes != 1 else []  # (another build may lack it)
    return Server("vecstore", [sys.executable, "-m", VECSTORE_MODULE, "--data", str(data), "--host", "127.0.0.1",
                               "--port", str(port), "--log-level", "WARNING", *extra], port, workdir)


def lynse_python() -> Path:
    override = os.environ.get("VECSTORE_LYNSE020_PYTHON")
    python = Path(override) if override else REPO / ".peers" / "lynse020" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no LynseDB 0.2.0 environment at {python}: run tests/server/test_lynse_client.py once "
                         "(it builds .peers/lynse020), or set VECSTORE_LYNSE020_PYTHON")
    return python


def start_lynse(workdir: Path) -> Server:
    port = free_port()
    data = workdir / "lynse-data"
    data.mkdir()
    return Server("lynse", [str(lynse_python()), "-m", "lynse.server", "serve", "--host", "127.0.0.1",
                            "--port", str(port), "--data-dir", str(data)], port, workdir)


# --------------------------------------------------------------------------------------------
# HTTP


def request(method: str, port: int, path: str, body: bytes | None = None, ctype: str = "application/json",
            conn: http.client.HTTPConnection | None = None, timeout: float = 600) -> tuple[int, bytes]:
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def post_json(port: int, path: str, body: dict) -> dict:
    status, data = request("POST", port, path, json.dumps(body).encode())
    if status != 200:
        raise RuntimeError(f"{path}: {status} {data[:300]!r}")
    return json.loads(data)




def load(port: int, base: np.ndarray, collection: str = COLL, batch: int = 10_000) -> float:
    """Bulk-load ``base`` through /bulk_add_binary; returns seconds."""
    n, dim = base.shape
    post_json(port, "/required_collection", {"database_name": DB, "collection_name": collection, "dim": dim})
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for s in range(0, n, batch):
        chunk = np.ascontiguousarray(base[s:s + batch], "<f4")
        q = urlencode({"database_name": DB, "collection_name": collection, "dim": dim, "n_vectors": len(chunk)})
        status, data = request("POST", port, f"/bulk_add_binary?{q}", chunk.tobytes(), "application/octet-stream", conn)
        if status != 200:
            raise RuntimeError(f"bulk_add_binary: {status} {data[:300]!r}")
    conn.close()
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# load generation


class _Conn:
    """One load-generator connection: its socket, the request in progress and its reply so far."""

    __slots__ = ("buf", "c", "i", "need", "out", "sock", "status", "t")

    def __init__(self, c: int, sock: socket.socket) -> None:
        self.c, self.sock, self.i, self.t = c, sock, 0, 0.0
        self.buf, self.need, self.status, self.out = bytearray(), -1, 0, b""


def run_clients(port: int, n_clients: int, duration: float, make_request: Callable[[int, int], tuple[str, bytes, str]],
                warmup: float = 1.0) -> dict:
    """``n_clients`` keep-alive connections, each sending its next request as soon as the
    previous reply has arrived (closed loop), for ``duration`` seconds after ``warmup`` seconds
    not counted. ``make_request(client, i)`` gives (path, body, content type); bodies are
    encoded beforehand and replies parsed after the run. Returns latencies and the replies of
    the counted window.

    One thread drives every connection through a selector: non-blocking sockets, a request is
    one ``sendmsg`` of head and body, a reply is complete when ``Content-Length`` bytes of body
    have arrived; latency is from just before the send to just after the ``recv`` that
    completed the reply. A thread per connection (``http.client``, as before) made the load
    generator's own GIL contention part of the latency it measured: with 16 threads on 2 cores
    a client thread often waited milliseconds for the GIL after its reply had arrived, and that
    showed in the p99 of whichever server was measured.
    """
    heads: dict[tuple[str, str, int], bytes] = {}
    sel = selectors.DefaultSelector()
    conns = []
    try:
        for c in range(n_clients):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            conns.append(_Conn(c, s))
            sel.register(s, selectors.EVENT_READ, conns[-1])
        results: list[tuple[int, int, float, int, bytes]] = []
        sent = 0  # every request answered, warm-up included
        cpu = time.process_time()
        begin = time.perf_counter()
        count_from, stop = begin + warmup, begin + warmup + duration

        def send(st: _Conn) -> None:
            path, body, ctype = make_request(st.c, st.i)
            key = (path, ctype, len(body))
            head = heads.get(key)
            if head is None:
                head = heads[key] = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
                                     f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
            st.t = time.perf_counter()
            try:
                n = st.sock.sendmsg([head, body])
            except BlockingIOError:
                n = 0
            if n < len(head) + len(body):  # the socket buffer is full (large bodies): finish when writable
                st.out = (head + body)[n:]
                sel.modify(st.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, st)

        for st in conns:
            send(st)
        active = len(conns)
        deadline = stop + 300
        while active:
            events = sel.select(1.0)
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{active} connections did not finish")
            for key, mask in events:
                st = key.data
                sock = st.sock
                if mask & selectors.EVENT_WRITE and st.out:
                    try:
                        st.out = st.out[sock.send(st.out):]
                    except BlockingIOError:
                        pass
                    if not st.out:
                        sel.modify(sock, selectors.EVENT_READ, st)
                if not mask & selectors.EVENT_READ:
                    continue
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    raise RuntimeError(f"client {st.c}: the server closed the connection")
                buf = st.buf
                buf += data
                if st.need < 0:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    head = bytes(buf[:end + 2]).lower()
                    at = head.find(b"\r\ncontent-length:")
                    if at < 0:
                        raise RuntimeError(f"client {st.c}: reply without Content-Length: {head[:300]!r}")
                    st.status = int(head[9:12])
                    st.need = end + 4 + int(head[at + 17:head.index(b"\r\n", at + 2)])
                if len(buf) < st.need:
                    continue
                done = time.perf_counter()
                body = bytes(buf[buf.find(b"\r\n\r\n") + 4:st.need])
                del buf[:st.need]
                st.need = -1
                sent += 1
                if st.status != 200:
                    raise RuntimeError(f"client {st.c}: {st.status} {body[:200]!r}")
                if st.t >= count_from and done <= stop:
                    results.append((st.c, st.i, done - st.t, st.status, body))
                st.i += 1
                if done >= stop:
                    active -= 1
                    sel.unregister(sock)
                else:
                    send(st)
        client_cpu = time.process_time() - cpu
    finally:
        sel.close()
        for st in conns:
            st.sock.close()
    lat = np.array([r[2] for r in results]) if results else np.array([np.nan])
    return {"n": len(results), "sent": sent, "qps": len(results) / duration,
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "client_cpu_us": client_cpu / max(1, sent) * 1e6, "replies": results}


def search_requests(queries: np.ndarray, ef: int, kind: str, n_clients: int, collection: str = COLL):
    """Pre-encoded request bodies; client c takes queries c, c+n, c+2n, ... (cycling)."""
    dim = queries.shape[1]
    names = {"database_name": DB, "collection_name": collection}
    if kind == "json":
        bodies = [json.dumps({**names, "vector": q.tolist(), "k": K, "nprobe": ef}).encode() for q in queries]
        path, ctype = "/search", "application/json"
    else:
        bodies = [np.ascontiguousarray(q, "<f4").tobytes() for q in queries]
        path = "/search_binary?" + urlencode({**names, "dim": dim, "k": K, "nprobe": ef, "return_fields": "false",
                                              "approx": "false", "eps": 0.0001})
        ctype = "application/octet-stream"
    nq = len(queries)

    def make(c: int, i: int) -> tuple[str, bytes, str]:
        return path, bodies[(c + i * n_clients) % nq], ctype

    def query_index(c: int, i: int) -> int:
        return (c + i * n_clients) % nq
    return make, query_index


def parse_ids(kind: str, data: bytes) -> list[int]:
    if kind == "json":
        return [int(x) for x in json.loads(data)["params"]["items"]["ids"]]
    n = int.from_bytes(data[:4], "little")
    return np.frombuffer(data, "<u8", count=n, offset=4).astype(np.int64).tolist()


def search_run(server: "Server", queries: np.ndarray, gt: np.ndarray, ef: int, kind: str, n_clients: int,
               duration: float, collection: str = COLL) -> dict:
    make, qidx = search_requests(queries, ef, kind, n_clients, collection)
    cpu = server.cpu_seconds()
    r = run_clients(server.port, n_clients, duration, make)
    # the server's CPU time per request: its whole per-request cost (parsing, search, reply),
    # independent of how the 2 cores are shared with the load generator
    r["server_cpu_us"] = (server.cpu_seconds() - cpu) / max(1, r["sent"]) * 1e6
    found = {}
    for c, i, _, _, data in r.pop("replies"):
        found.setdefault(qidx(c, i), parse_ids(kind, data))
    r["recall"] = recall_at_k(found, gt)
    return r


def sweep_recall(port: int, queries: np.ndarray, gt: np.ndarray, efs: list[int], n: int = 200,
                 collection: str = COLL) -> list[dict]:
    """Single client, binary search, the first ``n`` queries: recall and mean latency per ef."""
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for ef in efs:
        q = urlencode({"database_name": DB, "collection_name": collection, "dim": queries.shape[1], "k": K, "nprobe": ef, "return_fields": "false",
                       "approx": "false", "eps": 0.0001})
        found, lat = {}, []
        for qi in range(min(n, len(queries))):
            t = time.perf_counter()
            status, data = request("POST", port, f"/search_binary?{q}", np.ascontiguousarray(queries[qi], "<f4").tobytes(),
                                   "application/octet-stream", conn)
            lat.append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"search_binary: {status} {data[:200]!r}")
            found[qi] = parse_ids("binary", data)
        out.append({"ef": ef, "recall": recall_at_k(found, gt), "mean_ms": float(np.mean(lat) * 1e3)})
    conn.close()
    return out


def insert_run(port: int, rows: np.ndarray, kind: str, n_clients: int, duration: float, batch: int = 100) -> dict:
    """Batches of ``batch`` rows into a fresh empty collection; each client its own id range."""
    dim = rows.shape[1]
    collection = f"ins_{kind}_{n_clients}"
    post_json(port, "/required_collection", {"database_name": DB, "collection_name": collection, "dim": dim})
    n_batches = len(rows) // batch
    names = {"database_name": DB, "collection_name": collection}
    if kind == "json":
        # ids: client c, request i -> a disjoint block (ids never repeat within the window). The
        # vectors are JSON-encoded beforehand; a body is joined from them and the ids (~40 µs),
        # in the load generator's one thread
        rows_json = [json.dumps([float(x) for x in r]).encode() for r in rows[:n_batches * batch].tolist()]
        prefix = json.dumps(names)[:-1].encode() + b', "items": ['

        def make(c: int, i: int) -> tuple[str, bytes, str]:
            b = (c + i * n_clients) % n_batches
            first = (i * n_clients + c) * batch
            items = b", ".join(b'{"vector": %s, "id": %d}' % (rows_json[b * batch + j], first + j) for j in range(batch))
            return "/bulk_add_items", prefix + items + b"]}", "application/json"
    else:
        path = "/bulk_add_binary?" + urlencode({**names, "dim": dim, "n_vectors": batch})
        blobs = [np.ascontiguousarray(rows[b * batch:(b + 1) * batch], "<f4").tobytes() for b in range(n_batches)]

        def make(c: int, i: int) -> tuple[str, bytes, str]:
            return path, blobs[(c + i * n_clients) % n_batches], "application/octet-stream"
    r = run_clients(port, n_clients, duration, make, warmup=0.5)
    r.pop("replies")
    r["rows_per_s"] = r["qps"] * batch
    return r


# --------------------------------------------------------------------------------------------
# the run


def wait_for_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Wait until the 1-minute load average is under ``threshold`` (or give up after
    ``max_wait`` s). Returns (load when we started waiting, load when we went on)."""
    first = os.getloadavg()[0]
    deadline = time.time() + max_wait
    while os.getloadavg()[0] >= threshold and time.time() < deadline:
        print(f"  load {os.getloadavg()[0]:.2f} >= {threshold}: waiting", file=sys.stderr, flush=True)
        time.sleep(30)
    return first, os.getloadavg()[0]


def prepare(name: str, starter: Callable[[Path], Server], base: np.ndarray, queries: np.ndarray, gt: np.ndarray,
            args: argparse.Namespace) -> tuple[Server, dict]:
    """Start, load, build the index(es), sweep the search breadth. The server is left running
    (idle) for the measurements. Each index lives in its own collection."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    res: dict[str, Any] = {"system": name, "workdir": str(workdir), "indexes": {}}
    server = starter(workdir)
    indexes = [("HNSW-L2", COLL, args.efs)]
    if name == "lynse" and args.lynse_extra:
        indexes.append((args.lynse_extra, COLL + "_extra", args.nprobes))
    try:
        post_json(server.port, "/create_database", {"database_name": DB})
        for mode, collection, breadths in indexes:
            info: dict[str, Any] = {"collection": collection}
            info["load_s"] = load(server.port, base, collection)
            t = time.perf_counter()
            post_json(server.port, "/build_index", {"database_name": DB, "collection_name": collection,
                                                    "index_mode": mode})
            info["build_s"] = time.perf_counter() - t
            info["sweep"] = sweep_recall(server.port, queries, gt, breadths, collection=collection)
            res["indexes"][mode] = info
            print(f"{name} {mode}: load {info['load_s']:.1f}s, build {info['build_s']:.1f}s, sweep "
                  f"{[(x['ef'], round(x['recall'], 3)) for x in info['sweep']]}", file=sys.stderr, flush=True)
        res["rss_mb"] = server.rss_mb()
    except BaseException:
        server.stop()
        raise
    return server, res


def pick_ef(sweep: list[dict], recall: float) -> int:
    """The smallest breadth whose sweep recall reaches ``recall`` (else the best one)."""
    ok = [s for s in sweep if s["recall"] >= recall - 0.005]
    return (ok[0] if ok else max(sweep, key=lambda s: s["recall"]))["ef"]


def measure(server: Server, res: dict, queries: np.ndarray, gt: np.ndarray, insert_rows: np.ndarray,
            args: argparse.Namespace) -> None:
    name = res["system"]
    res["load_before"], res["load_at_start"] = wait_for_quiet(args.wait_load, args.wait_max)
    res["search"] = []
    for point in res["points"]:
        for kind in ("json", "binary"):
            for c in args.concurrency:
                r = search_run(server, queries, gt, point["ef"], kind, c, args.duration, point["collection"])
                res["search"].append({**point, "kind": kind, "clients": c, **r})
                print(f"{name} {point['index']} ef {point['ef']} {kind} c={c}: {r['qps']:.0f} QPS p50 "
                      f"{r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} recall {r['recall']:.3f} server CPU "
                      f"{r['server_cpu_us']:.0f} us/request", file=sys.stderr, flush=True)
    res["insert"] = {}
    for kind in ("json", "binary"):
        for c in args.concurrency:
            r = insert_run(server.port, insert_rows, kind, c, args.insert_duration)
            res["insert"][f"{kind}/{c}"] = r
            print(f"{name}: insert {kind} c={c}: {r['rows_per_s']:.0f} rows/s p50 {r['p50_ms']:.2f} "
                  f"p99 {r['p99_ms']:.2f}", file=sys.stderr, flush=True)
    res["load_at_end"] = os.getloadavg()[0]
    res["rss_mb_end"] = server.rss_mb()


def table(results: list[dict], args: argparse.Namespace) -> str:
    lines = []
    lines.append(f"Search, k=10, {args.n:,} x {args.dim} clustered (100 Gaussian clusters, spread 0.2; queries from "
                 f"the same clusters), {args.queries} queries cycled; `ef` = the `nprobe` sent (HNSW ef_search, IVF "
                 f"lists); each system's default build parameters; recall@10 of the answers received vs exact L2.")
    lines.append("")
    lines.append("| system | index | ef | operating point | protocol | clients | QPS | p50 ms | p99 ms | p99/p50 | "
                 "server CPU µs/request | recall@10 |")
    lines.append("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [(x, r["system"]) for r in results for x in r["search"]]
    rows.sort(key=lambda t: (t[0]["kind"] != "json", t[0]["clients"], t[0]["role"], not t[1].startswith("vecstore")))
    for x, system in rows:
        path = "/search" if x["kind"] == "json" else "/search_binary"
        lines.append(f"| {system} | {x['index']} | {x['ef']} | {x['role']} | {path} | {x['clients']} | {x['qps']:.0f} | "
                     f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['p99_ms'] / x['p50_ms']:.1f} | "
                     f"{x.get('server_cpu_us', float('nan')):.0f} | {x['recall']:.3f} |")
    lines.append("")
    lines.append("Insert, batches of 100 rows (128-d) into an empty collection (no index).")
    lines.append("")
    lines.append("| system | protocol | clients | rows/s | p50 ms | p99 ms |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for kind in ("json", "binary"):
        for c in args.concurrency:
            for r in results:
                s = r["insert"][f"{kind}/{c}"]
                path = "/bulk_add_items" if kind == "json" else "/bulk_add_binary"
                lines.append(f"| {r['system']} | {path} | {c} | {s['rows_per_s']:.0f} | {s['p50_ms']:.2f} | "
                             f"{s['p99_ms']:.2f} |")
    lines.append("")
    lines.append(f"| system | index | bulk load {args.n // 1000}k (binary, 10k rows/request) | build | "
                 f"breadth sweep, single client (ef: recall@10) |")
    lines.append("|---|---|---:|---:|---|")
    for r in results:
        for mode, info in r["indexes"].items():
            sweep = ", ".join(f"{s['ef']}: {s['recall']:.3f}" for s in info["sweep"])
            lines.append(f"| {r['system']} | {mode} | {info['load_s']:.1f} s | {info['build_s']:.1f} s | {sweep} |")
    lines.append("")
    lines.append("| system | RSS after build | 1-min load avg: before waiting / at start / at end |")
    lines.append("|---|---:|---|")
    for r in results:
        lines.append(f"| {r['system']} | {r['rss_mb']:.0f} MB | {r['load_before']:.2f} / {r['load_at_start']:.2f} / "
                     f"{r['load_at_end']:.2f} |")
    return "\n".join(lines)


def operating_points(prepared: list[tuple[Server, dict]], target: float) -> float:
    """Per system: HNSW at the equal-recall point (the target, or the best HNSW recall of the
    weakest system if lower), HNSW at the target if it differs, and the extra index at the target."""
    best = min(max(s["recall"] for s in res["indexes"]["HNSW-L2"]["sweep"]) for _, res in prepared)
    common = min(target, best)
    for _, res in prepared:
        points = []
        hnsw = res["indexes"]["HNSW-L2"]
        ef_common = pick_ef(hnsw["sweep"], common)
        points.append({"index": "HNSW-L2", "collection": hnsw["collection"], "ef": ef_common,
                       "role": f"equal recall (>= {common:.2f})"})
        ef_target = pick_ef(hnsw["sweep"], target)
        if ef_target != ef_common and max(s["recall"] for s in hnsw["sweep"]) >= target - 0.005:
            points.append({"index": "HNSW-L2", "collection": hnsw["collection"], "ef": ef_target,
                           "role": f"recall >= {target:.2f}"})
        for mode, info in res["indexes"].items():
            if mode != "HNSW-L2":
                points.append({"index": mode, "collection": info["collection"], "ef": pick_ef(info["sweep"], target),
                               "role": f"recall >= {target:.2f}"})
        res["points"] = points
    return common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per search measurement")
    ap.add_argument("--insert-duration", type=float, default=4.0, help="seconds per insert measurement")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--systems", default="vecstore,lynse")
    ap.add_argument("--efs", default="10,16,24,32,48,64,96,128,192,256")
    ap.add_argument("--nprobes", default="1,2,4,8,16,32,64", help="IVF sweep for --lynse-extra")
    ap.add_argument("--lynse-extra", default="IVF-L2",
                    help="another LynseDB index measured at the target recall ('' for none): its HNSW "
                         "cannot reach it (its ef_search is fixed)")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--vecstore-processes", type=int, default=1,
                    help="start vecstore's server with --processes N (0: one per core)")
    ap.add_argument("--wait-load", type=float, default=2.0)
    ap.add_argument("--wait-max", type=float, default=900.0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "data" / "results" / "server.json"))
    args = ap.parse_args()
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.efs = [int(x) for x in args.efs.split(",")]
    args.nprobes = [int(x) for x in args.nprobes.split(",")]

    base = clustered(args.n, args.dim, seed=0)
    queries = clustered(args.queries, args.dim, seed=1)
    insert_rows = clustered(20_000, args.dim, seed=2)
    gt = brute_force_l2(base, queries)
    starters = {"vecstore": lambda workdir: start_vecstore(workdir, args.vecstore_processes), "lynse": start_lynse}
    prepared: list[tuple[Server, dict]] = []
    try:
        for name in args.systems.split(","):
            server, res = prepare(name, starters[name], base, queries, gt, args)
            if name == "vecstore" and args.vecstore_processes != 1:
                res["system"] = f"vecstore-p{args.vecstore_processes}"
            prepared.append((server, res))
        common = operating_points(prepared, args.target_recall)
        print(f"equal-recall point: recall@10 >= {common:.3f}; points: "
              f"{ {res['system']: [(p['index'], p['ef']) for p in res['points']] for _, res in prepared} }",
              file=sys.stderr, flush=True)
        for server, res in prepared:  # one at a time; the other server sits idle
            measure(server, res, queries, gt, insert_rows, args)
    finally:
        for server, res in prepared:
            server.stop()
            shutil.rmtree(res["workdir"], ignore_errors=True)
    results = [res for _, res in prepared]
    md = table(results, args)
    print(md)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "results": results,
                                          "cpus": os.cpu_count(), "markdown": md}, indent=1, default=str))


if __name__ == "__main__":
    main()
