"""The HTTP server: one generic handler for every route of :mod:`.routes`.

For each request it does, in order: find the route (unknown path or wrong method: 404 with an
empty body, as LynseDB), check the API key (all but ``/``, ``/healthz``, ``/readyz``), check
the declared body size (413 *before* reading), read and decode the body (JSON object, or raw
bytes plus query-string parameters), validate every parameter against the route's schema,
confine server-side paths, resolve the target, call it, shape the reply in the route's
envelope, and turn errors into that envelope's error body (LynseDB: ``{"error", "code"}`` with
the status of the exception class; Zilliz and Lance: see :mod:`.routes`). Only a bug answers
500; it is logged with its traceback and the client sees no internals.

Standard library only. The HTTP/1.1 layer is a lean reader of its own (request line and
headers split as bytes, ``Content-Length`` bodies, keep-alive, pipelining, ``Expect:
100-continue``; no chunked uploads): the ``http.server`` one parsed every header block with the
``email`` package, which cost more than the search itself.

Threads: a small pool (``ServerConfig.workers``, by default one per two cores) in the
leader/followers pattern. One thread at a time reads every connection through a selector
(non-blocking sockets); complete requests go to one FIFO queue and the pool answers them in
arrival order, the reading thread taking the first itself (at low load a request is read and
answered by one thread, no hand-over). A client sending its body slowly holds no thread, nor
does one slow to read its reply: what the socket does not take at once, the reader loop writes
as the client takes it.
Bounding the threads bounds the contention for the GIL: with a thread per connection, 16
clients on 2 cores meant 16 threads fighting for it and requests served in no particular
order (p99 about 5x p50). A watchdog adds threads while all of them are stuck on slow requests
(builds, flushes) with others waiting, and they leave after a few idle seconds.
:meth:`VecstoreHTTPServer.stop` stops accepting, closes idle keep-alive connections, answers
the requests in flight, queued, or whose body is still arriving, then returns; connections
silent for ``request_timeout`` (reading or writing), or whose request head, body or reply is
still under way that long after it began (plus a second per ``_MIN_RATE`` bytes of it moved),
are closed.

Per-request work is kept small: each route's parameter binder is precomputed, the bound
parameters of a binary route are memoised by query string, resolved database / collection
handles are cached (dropped by the routes that drop, restore or import), JSON bodies skip the
nesting scan when they cannot be deep, and the access log (logger ``vecstore.server.access``)
is formatted only when enabled at DEBUG.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import selectors
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from vecstore import validation as v
from vecstore import wire
from vecstore.errors import (
    ForbiddenPathError,
    InvalidArgumentError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnavailableError,
    VecstoreError,
    out_of_descriptors,
)
from vecstore.portability import store_folder

from .http11 import (
    _EMPTY_404,
    _STATUS_LINES,
    _Connection,
    _date,
    _FramingError,
    _Request,
    default_max_connections,
    default_workers,
    is_loopback,
    parse_head,
)
from .routes import (
    PUBLIC_PATHS,
    ROUTES,
    TYPES,
    Reply,
    Route,
    RouteTable,
    error_reply,
    route_map,
)

log = logging.getLogger("vecstore.server")
access_log = logging.getLogger("vecstore.server.access")

MiB = 1024 * 1024
API_TITLE = "vecstore HTTP API"
_HANDLE_CACHE_MAX = 4096
_QUERY_CACHE_MAX = 256
_STALL_SECONDS = 0.1
_FOLLOWER_WAIT = 0.1
_EXTRA_IDLE_SECONDS = 5.0
_MAX_EXTRA_WORKERS = 64
_MAX_REFUSING = 64  # connections refused at max_connections, drained at once
_MIN_RATE = 65536  # bytes/s: a body or reply moving slower is cut after request_timeout (_overdue)


@dataclass
class ServerConfig:
    """Everything the server is started with. Limits follow LynseDB's defaults (§1.4)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 7637
    api_key: str | None = None
    backup_dirs: tuple[Path, ...] = ()
    max_json_bytes: int = 256 * MiB
    max_binary_bytes: int = 512 * MiB
    max_top_k: int = 10_000
    max_batch: int = 100_000
    max_json_depth: int = wire.MAX_JSON_DEPTH
    request_timeout: float = 30.0
    workers: int = 0  # requests answered at once (more while those are slow); 0: one per 2 cores
    max_connections: int = 0  # client connections held at once (per process); 0: from RLIMIT_NOFILE

    @property
    def allowed_roots(self) -> tuple[Path, ...]:
        return (Path(self.data_dir), *map(Path, self.backup_dirs))

    @property
    def path_base(self) -> Path:
        """Where a relative ``snapshot_path``/``export_path`` is resolved: the first backup
        folder if there is one, else the data folder."""
        return Path(self.backup_dirs[0]) if self.backup_dirs else Path(self.data_dir)


class LengthRequiredError(InvalidArgumentError):
    """A request body without Content-Length (chunked uploads are not supported)."""

    http_status = 411
    code = "length_required"


class BadRequestError(InvalidArgumentError):
    """The HTTP framing itself is broken (request line, header syntax); the connection closes."""

    code = "bad_request"


# --------------------------------------------------------------------------------------------
# Pieces the handler is made of (plain functions, so they are easy to test)


def check_api_key(authorization: str | None, api_key: str) -> bool:
    """``Authorization: Bearer KEY``, ``Bearer USER:KEY`` (Zilliz's ``user:password`` token)
    or ``Basic base64(anything:KEY)``: only the key (the password part) is compared.

    Compares SHA-256 digests with :func:`hmac.compare_digest`, so neither the content nor the
    length of the key leaks through timing; the compares run even when the header is missing.
    """
    token, password = "", ""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        token = credentials.strip()
        password = token.partition(":")[2]
    elif scheme.lower() == "basic":
        try:
            password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            password = ""
    wanted = hashlib.sha256(api_key.encode("utf-8")).digest()
    whole = hmac.compare_digest(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest(), wanted)
    part = hmac.compare_digest(hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest(), wanted)
    return (whole and scheme.lower() == "bearer") or (part and bool(password))


def parse_query(query: str) -> dict[str, str]:
    """The query string's parameters (the last of a repeated name wins). Percent-escapes must
    decode to UTF-8: urllib's default replaces invalid bytes with U+FFFD, so different values
    (blob keys ``%FF`` and ``%FE``) would silently become one. The parameter is named in the
    400; finding it costs only a refused request."""
    try:
        return dict(parse_qsl(query, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:
        pass
    for part in query.split("&"):
        name, _, value = part.partition("=")
        name = unquote(name.replace("+", " "), errors="replace")
        try:
            unquote(value.replace("+", " "), errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{name}: not valid UTF-8 once percent-decoded: {value[:60]!r}") from None
    raise InvalidArgumentError(f"query string: a parameter name is not valid UTF-8 once percent-decoded: "
                               f"{query[:100]!r}")


def _unquote_path_params(params: dict[str, str]) -> dict[str, str]:
    """Percent-decoded path parameters, refusing escapes that are not UTF-8 (see :func:`parse_query`)."""
    out = {}
    for name, value in params.items():
        try:
            out[name] = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{name}: not valid UTF-8 once percent-decoded: {value[:60]!r}") from None
    return out


# Names vecstore gives its own files in a data folder: a backup under one would be taken for
# one of them (a data.mdb for a store, a LOCK for a leftover of a creation, a .vecstore-
# folder for a staging folder, swept at the next open).
_STORE_NAMES = ("data.mdb", "lock.mdb", "LOCK")


def confine_path(value: str, roots: Iterable[Path], base: Path, name: str = "path") -> Path:
    """Resolve a client-supplied server path and refuse it unless it lies strictly inside one
    of ``roots`` after following symlinks, and outside the stores in them.

    Refused (:class:`ForbiddenPathError`, 403): NUL bytes, any ``..`` component, absolute
    paths elsewhere, symlinks leading out, the roots themselves, and below its root (the
    deepest that holds it) a database or collection folder or anything in one, or a name
    vecstore gives its own files.
    """
    if "\x00" in value:
        raise ForbiddenPathError(f"{name}: NUL byte in path")
    if not value.strip():
        raise InvalidArgumentError(f"{name}: empty path")
    p = Path(value)
    if ".." in p.parts:
        raise ForbiddenPathError(f"{name}: '..' is not allowed in server paths: {value!r}")
    if not p.is_absolute():
        p = Path(base) / p
    resolved = Path(os.path.realpath(p))
    inside = [r for r in (Path(os.path.realpath(root)) for root in roots)
              if resolved != r and resolved.is_relative_to(r)]
    if not inside:
        raise ForbiddenPathError(f"{name}: {value!r} is outside the folders this server may use")
    root = max(inside, key=lambda r: len(r.parts))  # a --backup-dir may lie inside the data folder
    if any(part in _STORE_NAMES or part.startswith(".vecstore-") for part in resolved.relative_to(root).parts):
        raise ForbiddenPathError(f"{name}: {value!r} takes a name vecstore gives its own files")
    if store_folder(resolved, below=root) is not None:
        raise ForbiddenPathError(f"{name}: {value!r} is inside a database or collection folder, "
                                 f"which holds vecstore's own files")
    return resolved


@dataclass
class Call:
    """One request as the route's ``call`` and ``respond`` see it."""

    route: Route
    args: dict[str, Any]  # validated values by parameter name (paths as sent)
    kwargs: dict[str, Any] = field(default_factory=dict)  # what the call receives
    target: Any = None


def _check_limit(name: str, limit: str | None, value: Any, config: ServerConfig) -> None:
    if limit == "top_k":  # the library's check, with the limit this server enforces in its message
        v.check_k(value, param=name, limit=config.max_top_k)
    if limit == "batch":
        size = value if isinstance(value, int) else len(value)
        if size > config.max_batch:
            raise InvalidArgumentError(f"{name}: {size} entries exceed server max_batch_vectors {config.max_batch}")


class Binder:
    """A route's parameters compiled once: for each, where it comes from (JSON body, query
    string or path), the keys it may have there, its converter, limit and keyword."""

    __slots__ = ("route", "specs", "nested")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.nested = route.nested
        specs = []
        for p in route.all_params:
            where = route.location(p)
            specs.append((p.name, (p.wire, *p.aliases), TYPES[p.type].convert, p.required, p.limit,
                          None if p.kwarg == "" else (p.kwarg or p.name), p.type == "path",
                          where, where != "body"))
        self.specs = tuple(specs)

    def bind(self, body: dict, query: dict, path: dict, config: ServerConfig) -> Call:
        """Validate the request values against the route's params (aliases, types, limits).

        Only parameters present and not null are bound: defaults stay in the library.
        """
        if self.nested is not None and body.get(self.nested) is not None:
            inner = body[self.nested]
            if not isinstance(inner, dict):
                raise InvalidArgumentError(f"{self.nested}: expected an object")
            body = {**body, **inner}
        args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        sources = {"body": body, "query": query, "path": path}
        for name, keys, convert, required, limit, kwarg, is_path, where, from_query in self.specs:
            source = sources[where]
            for key in keys:
                raw = source.get(key)
                if raw is not None:
                    break
            else:
                if required:
                    raise InvalidArgumentError(f"{name}: missing required parameter")
                continue
            value = convert(raw, name, from_query)
            if limit is not None:
                _check_limit(name, limit, value, config)
            args[name] = value
            if kwarg is not None:
                if is_path:
                    value = confine_path(value, config.allowed_roots, config.path_base, name)
                kwargs[kwarg] = value
        return Call(self.route, args, kwargs)


def bind(route: Route, source: dict, *, from_query: bool, config: ServerConfig) -> Call:
    """Validate ``source`` (a JSON object, or the query string of a binary route) for ``route``."""
    values = source if from_query else {}
    return Binder(route).bind({} if from_query else source, values, values, config)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


# "\uD800" to "\uDFFF" in any case: a surrogate escape. A pair decodes into one code point; a
# lone one into a str that has no UTF-8 form, which LMDB, msgpack and tantivy cannot take.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"{where}: expected valid Unicode text, got {value[:40]!r} "
                                       "(a lone surrogate escape)") from None
    elif isinstance(value, dict):
        for k, x in value.items():
            _refuse_lone_surrogates(k, f"{where}: a key")
            _refuse_lone_surrogates(x, k if where == "request body" else f"{where}.{k}")
    elif isinstance(value, list):
        for i, x in enumerate(value):
            _refuse_lone_surrogates(x, f"{where}[{i}]")


def decode_json_body(body: bytes, max_depth: int) -> Any:
    """``wire.decode_json`` with a fast path: a body with no more ``[``/``{`` than the depth
    limit cannot be too deep, so the nesting scan is skipped; anything unusual (invalid UTF-8,
    a BOM, a parse error) goes through ``wire.decode_json`` for its exact error.

    A string holding a lone surrogate (``"\\ud800"``, legal JSON) is refused with a 400 that
    names where it is, rather than failing deep in a write as a 500. Only a body with such an
    escape is walked (invalid UTF-8 bytes cannot produce one: they are refused as such)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        try:
            doc = _DECODER.decode(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = wire.decode_json(body, max_depth=max_depth)
    else:
        doc = wire.decode_json(body, max_depth=max_depth)
    if _SURROGATE_ESCAPE.search(body):
        _refuse_lone_surrogates(doc, "request body")
    return doc


# --------------------------------------------------------------------------------------------
# Server


class VecstoreHTTPServer:
    """The HTTP server: it knows the route table, the client and its config.

    ``client`` is a :class:`vecstore.Client` (anything with the same methods works, which is
    how the unit tests drive it). The constructor binds and listens (or takes ``sock``, a
    socket already listening: a replica's inherited one); :meth:`listen_unix` adds another
    listening socket; :meth:`serve_forever` runs the reader loop (and starts the workers) until
    :meth:`stop`.

    With ``--processes`` (:mod:`.processes`) every process passes ``shared``, the state the
    processes share (the catalog epoch, bumped by the primary after every route that
    ``invalidates``; each one's client connections, at index ``slot``); a replica also passes
    ``replica``, which answers the ``read`` routes from its read-only handles and forwards the
    others to the primary.
    """

    allow_reuse_address = True
    request_queue_size = 128
    address_family = socket.AF_INET

    def __init__(self, config: ServerConfig, client: Any, routes: tuple[Route, ...] = ROUTES,
                 *, bind_and_activate: bool = True, sock: socket.socket | None = None,
                 shared: Any = None, slot: int = 0, replica: Any = None) -> None:
        self.config = config
        self.client = client
        self.shared = shared
        self.slot = slot
        self.replica = replica
        self._counted: set[_Connection] = set()  # client connections from a shared listener
        self._defer_since = self._defer_last = 0.0
        self.routes = route_map(routes)
        self.table = RouteTable(routes)
        self.binders = {r.path: Binder(r) for r in routes}
        self.stopping = False
        self.workers = config.workers or default_workers()
        self.max_connections = config.max_connections or default_max_connections()
        self._lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._in_flight = 0
        self._fd_failures = 0  # requests answered 503 for want of file descriptors since the last warning
        self._fd_warn_after = 0.0
        self._requests: Counter[tuple[str, int]] = Counter()
        self._seconds: Counter[str] = Counter()
        self._openapi: bytes | None = None
        self._handles: dict[tuple, Any] = {}
        self._query_cache: dict[tuple, tuple[dict, dict]] = {}
        # the reader loop and the workers
        self._cv = threading.Condition(threading.Lock())  # guards the six below
        self._work: deque[tuple[_Connection, _Request]] = deque()  # complete requests, FIFO
        self._leading = False  # a thread is reading the connections
        self._threads: list[threading.Thread] = []
        self._n_extra = 0
        self._busy = 0  # threads handling a request
        self._done = False
        self._batch: list[tuple[_Connection, _Request]] = []  # read in the current round (leader only)
        self._posted: deque[tuple[_Connection, Any]] = deque()  # connections handed back to the reader (_post)
        self._connections: set[_Connection] = set()
        self._last_take = time.monotonic()  # when a thread last took a request
        self._next_sweep = 0.0
        self._serving = False
        self._stopped = threading.Event()
        self._selector: selectors.BaseSelector | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing: list[socket.socket] = []  # listeners to close from the reader loop
        self._paused: list[socket.socket] = []  # listeners not watched until the next sweep (_pause_accepting)
        self._accept_failing = False
        self._at_limit = False  # refusing connections (logged once until one is taken again)
        self._refused = 0  # connections refused at the limit (/metrics)
        self._refusing: set[_Connection] = set()  # refused, being drained
        if sock is not None:  # listening already (a replica's, inherited from the primary)
            self.socket = sock
            self.address_family = sock.family
            self.server_address = sock.getsockname()
            self._listeners = [sock]
            return
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        self.socket = socket.socket(self.address_family, socket.SOCK_STREAM)
        self._listeners = [self.socket]  # every socket accepted on; self.socket is the public one
        self.server_address: tuple = (config.host, config.port)
        if bind_and_activate:
            try:
                if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
                    self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.socket.bind(self.server_address)
                self.server_address = self.socket.getsockname()
                self.socket.listen(self.request_queue_size)
            except BaseException:
                self.server_close()
                raise

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def fileno(self) -> int:
        return self.socket.fileno()

    def listen_unix(self, path: str) -> socket.socket:
        """Also accept on a new AF_UNIX socket at ``path`` (the primary's, for its replicas).
        Call it before :meth:`serve_forever`."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(self.request_queue_size)
        except BaseException:
            sock.close()
            raise
        self._listeners.append(sock)
        return sock

    def close_listener(self, sock: socket.socket) -> None:
        """Stop accepting on ``sock`` (one of the listeners) while serving on: the primary's
        public socket at shutdown, while its replicas still forward their last requests. Any
        thread; the reader loop closes it."""
        if not self._serving:
            self._close_listener(sock)
            return
        self._closing.append(sock)
        self._wake()

    def _close_listener(self, sock: socket.socket) -> None:
        if sock is self.socket and self.shared is not None:
            self.shared.leave(self.slot)  # the others do not wait for this one any more
        try:
            if self._selector is not None and sock.fileno() >= 0:
                self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`stop`. This thread is one of the pool (see :meth:`_run`);
        ``poll_interval`` bounds how long a reading thread sleeps between housekeeping rounds."""
        if self.stopping or self._serving:
            return
        self._serving = True
        self._tick = max(0.01, min(poll_interval, 0.5))
        sel = self._selector = selectors.DefaultSelector()
        for sock in self._listeners:
            if sock.fileno() >= 0:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, None)
        if self.shared is not None:
            self.shared.set_connections(self.slot, 0)  # this process takes connections now
        sel.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        self._next_sweep = time.monotonic() + 1.0
        with self._cv:
            self._threads.append(threading.current_thread())
        for _ in range(self.workers - 1):
            self._start_thread(extra=False)
        watchdog = threading.Thread(target=self._watch, name="vecstore-http-watchdog", daemon=True)
        watchdog.start()
        try:
            self._run(extra=False)
        finally:
            with self._cv:
                self._done = True
                self._cv.notify_all()
                others = [t for t in self._threads if t is not threading.current_thread()]
            for t in others:
                t.join()
            watchdog.join()
            for conn in list(self._connections):
                self._close(conn)
            sel.close()
            self.server_close()
            self._wake_r.close()
            self._wake_w.close()
            self._stopped.set()

    def stop(self) -> None:
        """Stop accepting, close idle keep-alive connections, answer the requests in flight
        (and those whose body is still arriving), then return.

        Call it from another thread than the one running :meth:`serve_forever`.
        """
        self.stopping = True
        if not self._serving:
            self.server_close()
            self._wake_r.close()
            self._wake_w.close()
            return
        self._wake()
        with self._cv:
            self._cv.notify_all()
        self._stopped.wait()

    shutdown = stop

    def server_close(self) -> None:
        """Close the listening sockets (idempotent)."""
        for sock in self._listeners:
            self._close_listener(sock)

    def next_request_id(self) -> int:
        with self._lock:
            self._in_flight += 1
            return next(self._request_ids)

    def record(self, label: str, status: int, seconds: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests[(label, status)] += 1
            self._seconds[label] += seconds

    # -- system routes (targets of the "server" routes) ------------------------------------------

    def root(self) -> dict:
        """``GET /``: the service banner; LynseDB 0.2.0 clients require ``status == "success"``."""
        return {"status": "success", "message": API_TITLE}

    def healthz(self) -> dict:
        """``GET /healthz``: liveness, ``{"status": "ok"}`` while the process serves."""
        return {"status": "ok"}

    def readyz(self) -> Reply:
        """``GET /readyz``: 200 ``ready`` while serving over an existing data folder, else 503."""
        ready = not self.stopping and Path(self.config.data_dir).is_dir()
        return Reply(200, {"status": "ready"}) if ready else Reply(503, {"status": "not_ready"})

    def metrics(self) -> Reply:
        """``GET /metrics``: Prometheus text (databases, requests by path and status, time spent)."""
        try:
            n_databases = len(self.client.list_databases())
        except Exception:  # metrics must not fail because the store does
            n_databases = -1
        with self._lock:
            requests = sorted(self._requests.items())
            seconds = sorted(self._seconds.items())
            in_flight = self._in_flight
        role = "replica" if self.replica is not None else "primary" if self.shared is not None else "single"
        lines = [
            "# HELP vecstore_up 1 while the server runs.", "# TYPE vecstore_up gauge", "vecstore_up 1",
            "# HELP vecstore_process_info The process that answered (metrics are per process with --processes).",
            "# TYPE vecstore_process_info gauge", f'vecstore_process_info{{role="{role}",pid="{os.getpid()}"}} 1',
            "# HELP vecstore_databases_total Databases in the data folder.",
            "# TYPE vecstore_databases_total gauge", f"vecstore_databases_total {n_databases}",
            "# HELP vecstore_http_connections Client connections held.",
            "# TYPE vecstore_http_connections gauge", f"vecstore_http_connections {len(self._connections) - len(self._refusing)}",
            "# HELP vecstore_http_connections_refused_total Connections answered 503 at max_connections.",
            "# TYPE vecstore_http_connections_refused_total counter",
            f"vecstore_http_connections_refused_total {self._refused}",
            "# HELP vecstore_http_requests_in_flight Requests being handled.",
            "# TYPE vecstore_http_requests_in_flight gauge", f"vecstore_http_requests_in_flight {in_flight}",
            "# HELP vecstore_http_requests_total Requests answered, by path and status.",
            "# TYPE vecstore_http_requests_total counter",
            *(f'vecstore_http_requests_total{{path="{p}",status="{s}"}} {n}' for (p, s), n in requests),
            "# HELP vecstore_http_request_seconds_total Time spent answering, by path.",
            "# TYPE vecstore_http_request_seconds_total counter",
            *(f'vecstore_http_request_seconds_total{{path="{p}"}} {t:.6f}' for p, t in seconds),
        ]
        return Reply(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8")

    def openapi(self) -> Reply:
        """``GET /openapi.json``: the OpenAPI 3.1 document generated from the route table."""
        if self._openapi is None:
            from .openapi import build_openapi
            self._openapi = wire.encode_json(build_openapi(tuple(self.routes.values()), self.url))
        return Reply(200, self._openapi)

    # -- dispatch ---------------------------------------------------------------------------------

    def resolve(self, route: Route, args: dict) -> Any:
        """The object ``route.call`` runs on. Database and collection handles are cached by
        name: the library's lookup stats the folder and resolves its real path on every call.
        A cached handle that was closed since (dropped, restored over) is looked up again."""
        target = route.target
        if target == "server":
            return self
        if target == "client":
            return self.client
        key = (args["database_name"],) if target == "database" else (args["database_name"], args["collection_name"])
        handle = self._handles.get(key)
        if handle is not None and not getattr(handle, "_closed", False):
            return handle
        database = self.client.get_database(args["database_name"])
        handle = database if target == "database" else database.get_collection(args["collection_name"])
        if len(self._handles) >= _HANDLE_CACHE_MAX:
            self._handles.clear()
        self._handles[key] = handle
        return handle

    def forget_handles(self) -> None:
        """Drop every cached handle (after a route that drops, restores or imports); with
        replicas, bump the catalog epoch before the reply goes out, so that a replica sees the
        change before any request sent after it (see :mod:`.processes`)."""
        self._handles.clear()
        if self.shared is not None:
            self.shared.bump_epoch()

    def _bind(self, route: Route, body: dict, query: str, path: dict) -> Call:
        binder = self.binders[route.path]
        if route.body == "json":
            q = parse_query(query) if query and route.has_query_params else {}
            return binder.bind(body, q, path, self.config)
        if not route.memo_query:
            return binder.bind({}, parse_query(query), path, self.config)
        # Binary and GET routes: the parameters are all scalars from the query string, which a
        # client usually repeats for every request of a session; bind each distinct one once.
        key = (route.path, query)
        hit = self._query_cache.get(key)
        if hit is not None:
            return Call(route, hit[0], dict(hit[1]))
        call = binder.bind({}, parse_query(query), path, self.config)
        if len(self._query_cache) >= _QUERY_CACHE_MAX:
            self._query_cache.clear()
        self._query_cache[key] = (call.args, dict(call.kwargs))
        return call

    def dispatch(self, route: Route, body: dict, raw: bytes | None, query: str, path: dict) -> Reply:
        """Validate, call and shape one request. Errors propagate to the handler."""
        call = self._bind(route, body, query, path)
        if route.body == "binary":
            call.kwargs["body"] = raw
        if self.replica is not None and route.target == "collection":
            # a replica's read route: its own read-only handle, held until the reply is shaped
            with self.replica.handle(call.args["database_name"], call.args["collection_name"]) as target:
                return self._shape(route, call, self._call(route, call, target))
        try:
            result = self._call(route, call, self.resolve(route, call.args))
        finally:
            if route.invalidates:
                self.forget_handles()
        return self._shape(route, call, result)

    @staticmethod
    def _call(route: Route, call: Call, target: Any) -> Any:
        call.target = target
        if isinstance(route.call, str):
            return getattr(target, route.call)(**call.kwargs)
        return route.call(target, **call.kwargs)

    def _shape(self, route: Route, call: Call, result: Any) -> Reply:
        shaped = route.respond(result, call)
        if route.reply == "binary":  # bytes; or a Reply for another status (/read_blob's 204)
            return shaped if isinstance(shaped, Reply) else Reply(200, shaped, "application/octet-stream")
        if route.reply == "raw":
            return shaped if isinstance(shaped, Reply) else Reply(200, shaped)
        if route.envelope == "zilliz":
            return Reply(200, {"code": 0, "data": shaped})
        if route.envelope == "lance":
            return Reply(200, shaped)
        args = call.args
        params = {}
        if route.echo:
            if "database_name" in args:
                params["database_name"] = args["database_name"]
            if "collection_name" in args:
                params["collection_name"] = args["collection_name"]
        params.update(shaped)
        return Reply(200, wire.envelope(params))

    # -- the reader loop: one thread reads every connection ------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        tcp = listener.family != socket.AF_UNIX
        shared = tcp and self.shared is not None  # the public socket, with --processes
        while True:
            if shared and self._leave_to_others():
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):  # none left (or another process took it)
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(listener, e)
                else:  # the listener closed under us
                    log.warning("accept failed: %s", e)
                return
            if self._accept_failing:
                self._accept_failing = False
                log.warning("accepting connections again")
            if tcp and len(self._connections) - len(self._refusing) >= self.max_connections:
                self._refuse(sock, address)
                if shared:
                    return
                continue
            if self._at_limit and tcp:
                self._at_limit = False
                log.info("taking connections again")
            sock.setblocking(False)
            if tcp:
                try:
                    # a reply never waits for the client's delayed ACK (+40 ms per keep-alive request)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            conn = _Connection(sock, address)
            self._connections.add(conn)
            self._register(conn)
            if shared:  # one at a time: the next one may be another process's turn
                self._counted.add(conn)
                self.shared.set_connections(self.slot, len(self._counted))
                return

    def _refuse(self, sock: socket.socket, address: Any) -> None:
        """At ``max_connections``: answer a new connection 503 at once, then drain and close it
        as a refused request is (:meth:`_start_drain`): closed with the client's request unread,
        the socket would reset the connection, and the client would see a broken pipe rather
        than the 503. Accepting it rather than leaving it in the backlog keeps the listener
        drained and tells the client at once to come back. The replicas' links to the primary
        (AF_UNIX) are never refused."""
        self._refused += 1
        if not self._at_limit:
            self._at_limit = True
            log.warning("%d connections held, the limit (--max-connections): new ones are answered 503 "
                        "until some close (logged again only once one is taken)", self.max_connections)
        body = wire.encode_json(wire.error_body(
            f"the server holds its maximum of {self.max_connections} connections; retry later", "unavailable"))
        reply = b"".join((_STATUS_LINES[503], _date(), b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                          b"Retry-After: 1\r\nConnection: close\r\n\r\n" % len(body), body))
        try:
            sock.setblocking(False)
            sock.send(reply)  # (a few hundred bytes: a new socket's buffer takes them)
        except OSError:
            sock.close()
            return
        if len(self._refusing) >= _MAX_REFUSING:  # a flood: no more descriptors for it
            sock.close()
            return
        conn = _Connection(sock, address)
        self._connections.add(conn)
        self._refusing.add(conn)
        self._start_drain(conn)

    def _pause_accepting(self, listener: socket.socket, error: OSError) -> None:
        """Out of file descriptors (or memory): the connection stays in the backlog, so the
        listener stays readable and the loop would spin on it, logging each time. Stop
        watching it until the next sweep (within a second; connections closing meanwhile free
        descriptors), and log once until an accept succeeds again."""
        try:
            self._selector.unregister(listener)
        except (KeyError, ValueError):
            pass
        self._paused.append(listener)
        if not self._accept_failing:
            self._accept_failing = True
            log.warning("accept failed: %s; retrying about once a second (logged again only once it works)", error)

    def _leave_to_others(self) -> bool:
        """With ``--processes``: True (after a 1 ms sleep, which also leaves the CPU to them)
        while another process holds fewer client connections, which should take the pending
        one (every process is woken); but not for more than 20 ms in a row, as they may be
        busy. See :mod:`.processes`."""
        if self.shared.least_loaded(self.slot):
            return False
        now = time.monotonic()
        if now - self._defer_last > 0.005:  # not the same burst as the last time
            self._defer_since = now
        self._defer_last = now
        if now - self._defer_since > 0.02:
            return False
        time.sleep(0.001)
        return True

    def _watch_for(self, conn: _Connection, read: bool, write: bool) -> None:
        """What the selector waits for on ``conn``: reading (``registered``), writing the rest
        of a reply (``writing``), both, or nothing."""
        if (read, write) == (conn.registered, conn.writing):
            return
        before = conn.registered or conn.writing
        conn.registered, conn.writing = read, write
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        try:
            if not events:
                self._selector.unregister(conn.sock)
            elif before:
                self._selector.modify(conn.sock, events, conn)
            else:
                self._selector.register(conn.sock, events, conn)
        except (KeyError, ValueError):
            pass

    def _register(self, conn: _Connection) -> None:
        self._watch_for(conn, True, conn.writing)

    def _unregister(self, conn: _Connection) -> None:
        self._watch_for(conn, False, conn.writing)

    def _close(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        self._refusing.discard(conn)
        if conn in self._counted:
            self._counted.discard(conn)
            if self.socket.fileno() >= 0:  # (else it left)
                self.shared.set_connections(self.slot, len(self._counted))
        self._watch_for(conn, False, False)
        conn.out = None
        try:
            conn.sock.close()
        except OSError:
            pass

    def _on_readable(self, conn: _Connection) -> None:
        if conn.drain_until:
            self._drain(conn)
            return
        size = 262144
        if conn.pending is not None:  # a body: read big pieces of it
            size = max(size, min(conn.pending.length - len(conn.buf), 4 * MiB))
        try:
            data = conn.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.last = time.monotonic()
        with conn.lock:
            if data:
                conn.buf += data
            else:
                conn.eof = True
            if conn.busy:  # a worker has its request: keep what comes (pipelining) for later
                if not data or len(conn.buf) > MiB:
                    self._unregister(conn)  # (level-triggered: EOF would wake us forever)
                return
        self._advance(conn)

    def _advance(self, conn: _Connection) -> None:
        """Read what ``conn`` has buffered: the next request's head, then its body; queue the
        request once complete (or at once when it is refused before its body)."""
        if conn.busy:  # one request at a time per connection: replies go out in order
            return
        buf = conn.buf
        req = conn.pending
        if req is None:
            if buf[:1] in (b"\r", b"\n"):  # empty lines between requests are tolerated (RFC 9112 §2.2)
                del buf[:len(buf) - len(buf.lstrip(b"\r\n"))]
                conn.scan = 0
            if not buf:
                if conn.eof:
                    self._close(conn)
                return
            try:
                head = parse_head(buf, conn.scan)
                if head is None:
                    if not conn.scan:  # its first bytes: the head's deadline runs from here (_overdue)
                        conn.since = conn.last
                    conn.scan = len(buf)
                    if conn.eof:
                        self._close(conn)
                    return
                consumed, method, target, headers, close, http10 = head
                del buf[:consumed]
                conn.scan = 0
                req = self._prepare(conn, method, target, headers, close, http10)
            except Exception as e:  # noqa: BLE001 - a bug is answered 500 (and logged) by the worker
                # Answered, never dropped: with no reply to it, the next reply would be taken
                # for this request's. Where its body ends is unknown: drain, then close.
                req = _Request("GET", "-", {}, True)
                if isinstance(e, _FramingError):
                    req.reply = Reply(e.status, wire.error_body(e.message, "bad_request"))
                else:
                    req.error = e
                req.unread = 1
                buf.clear()
                conn.scan = 0
                self._queue_request(conn, req)
                return
            if not req.length:
                self._queue_request(conn, req)
                return
            conn.pending, conn.since = req, time.monotonic()
        if len(buf) >= req.length:
            if len(buf) == req.length:
                req.body = bytes(buf)
                buf.clear()
            else:
                req.body = bytes(buf[:req.length])
                del buf[:req.length]
            req.unread = 0
            conn.pending = None
            self._queue_request(conn, req)
        elif conn.eof:  # the client went away in the middle of a body
            self._close(conn)

    def _queue_request(self, conn: _Connection, req: _Request) -> None:
        conn.busy, conn.since = True, 0.0
        self._batch.append((conn, req))

    def _prepare(self, conn: _Connection, method: str, target: str, headers: dict[bytes, bytes],
                 close: bool, http10: bool) -> _Request:
        """The generic handler's first half, which comes before the body is read: find the path,
        check the API key, then the route and the declared body size. A refusal is kept in the
        request, for the worker to answer in the route's envelope."""
        req = _Request(method, target, headers, close, http10)
        if method == "HEAD":  # every GET route's (RFC 9110 §9.3.2); a replica forwards it as the GET
            req.method, req.head = "GET", True
        path, _, req.query = target.partition("?")
        req.unread = int(headers.get(b"content-length", 0))  # (digits: parse_head)
        if b"transfer-encoding" in headers:
            # Where a chunked body ends is unknown: whatever the answer (401, 404, or 411 from
            # _body_length), close after it and drain what comes, so that no chunk of it is
            # ever read as the next request.
            req.close, req.unread = True, req.unread or 1
        try:
            if not path.startswith("/"):  # absolute form (http://host/path), as proxies send it
                try:
                    path = urlsplit(target).path
                except ValueError as e:  # http://[zz]/x
                    raise InvalidArgumentError(f"request target {target[:100]!r}: {e}") from None
            req.path = path = path or "/"
            if path not in PUBLIC_PATHS and self.config.api_key:
                auth = headers.get(b"authorization")
                if auth is not None:
                    try:  # UTF-8, as curl sends a non-ASCII key and as Basic credentials are read
                        auth = auth.decode("utf-8")
                    except UnicodeDecodeError:  # what sends str headers as Latin-1 (Python's http.client)
                        auth = auth.decode("latin-1")
                if not check_api_key(auth, self.config.api_key):
                    raise UnauthorizedError("Unauthorized")
            found = self.table.find(req.method, path)
            if found is None:
                req.reply = _EMPTY_404
                return req
            req.route, req.path_params = found
            req.length = self._body_length(conn, req)
        except Exception as e:  # noqa: BLE001 - answered (and a bug logged) by the worker
            req.error = e
        return req

    def _body_length(self, conn: _Connection, req: _Request) -> int:
        """Check the declared length against the route's limit (413 before reading any of it)."""
        headers = req.headers
        if b"transfer-encoding" in headers:  # (closed after the reply: see _prepare)
            raise LengthRequiredError("Transfer-Encoding is not supported; send Content-Length")
        length = req.unread  # (the declared length)
        config = self.config
        limit = config.max_binary_bytes if req.route.body == "binary" else config.max_json_bytes
        if length > limit:
            raise PayloadTooLargeError(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        if length and not req.http10 and headers.get(b"expect", b"").lower() == b"100-continue":  # (RFC 9110 §10.1.1)
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
        return length

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # a wake-up is already pending (buffer full), or we are closing
            pass

    def _post(self, conn: _Connection, rest: Any = None) -> None:
        """Hand a connection back to the reader loop (from a worker). ``rest`` None: read on (a
        pipelined request, the client's EOF, reading paused). Otherwise the worker is done and
        left ``busy`` set: the reader writes ``rest`` (what the socket did not take of the reply;
        may be empty), then closes, drains or reads on (:meth:`_finish`)."""
        self._posted.append((conn, rest))
        self._wake()

    def _take_posted(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._closing:
            self._close_listener(self._closing.pop())
        while self._posted:
            conn, rest = self._posted.popleft()
            if conn not in self._connections:
                continue
            if rest is None:
                if not conn.eof:
                    self._register(conn)
                self._advance(conn)  # (nothing if a later request of it is in a worker's hands)
            elif rest:
                conn.out, conn.out_size = rest, len(rest)
                conn.last = conn.since = time.monotonic()  # (the clocks of _sweep)
                self._watch_for(conn, conn.registered, True)
            else:
                self._finish(conn)

    def _on_writable(self, conn: _Connection) -> None:
        """More of a reply the client is slow to take. Written here rather than by a worker
        blocked on the socket, so clients that do not read their replies hold no thread."""
        try:
            n = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.last = time.monotonic()
        if n < len(conn.out):
            conn.out = conn.out[n:]
            return
        conn.out = None
        self._watch_for(conn, conn.registered, False)
        self._finish(conn)

    def _finish(self, conn: _Connection) -> None:
        """The whole reply is out, and the worker left the connection to the reader: close it,
        drain it, or read its next request."""
        conn.busy, conn.since = False, 0.0  # (no worker has it: no lock needed)
        if conn.close_after:
            if conn.drain and not conn.eof:
                self._start_drain(conn)
            else:
                self._close(conn)
            return
        if not conn.eof:
            self._register(conn)
        self._advance(conn)

    def _start_drain(self, conn: _Connection) -> None:
        """Read (and drop) some of a body we refused, so closing the socket does not reset the
        connection before the client has read our answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.drain_until = time.monotonic() + 1.0
        conn.drained = len(conn.buf)
        conn.buf.clear()
        self._register(conn)

    def _drain(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained >= MiB or time.monotonic() > conn.drain_until:
            self._close(conn)

    def _overdue(self, conn: _Connection, now: float) -> bool:
        """A head, body or reply under way past its deadline: ``request_timeout`` after it
        began, plus a second for every ``_MIN_RATE`` bytes of it moved so far. One moving
        steadily at that rate or faster is never cut, however big; one trickled a byte now and
        then (never silent long enough for the idle timeout) is, so it cannot hold a
        connection slot, or a stopping server, for ever."""
        if not conn.since:
            return False
        moved = conn.out_size - len(conn.out) if conn.writing and conn.out is not None else len(conn.buf)
        return now > conn.since + self.config.request_timeout + moved / _MIN_RATE

    def _sweep(self, now: float) -> None:
        """Close connections silent for ``request_timeout`` (idle keep-alive, stalled in the
        middle of a request, or not taking their reply), those past their deadline
        (:meth:`_overdue`: a head, body or reply sent or read a little at a time), and finished
        drains; watch the listeners paused for want of file descriptors again."""
        while self._paused:
            sock = self._paused.pop()
            if sock.fileno() >= 0:
                self._selector.register(sock, selectors.EVENT_READ, None)
        timeout = self.config.request_timeout
        for conn in list(self._connections):
            if conn.busy and not conn.writing:
                continue  # a worker has it
            if conn.drain_until:
                if now > conn.drain_until:
                    self._close(conn)
            elif now - conn.last > timeout or self._overdue(conn, now):
                self._close(conn)

    def _wind_down(self) -> bool:
        """While stopping: no more connections; close those with no request under way. True
        while some request is still being handled or its body is still arriving."""
        if any(sock.fileno() >= 0 for sock in self._listeners):
            self.server_close()
        now = time.monotonic()
        for conn in list(self._connections):
            if conn.busy and not conn.writing:
                continue
            if ((conn.pending is not None or conn.writing) and now - conn.last <= self.config.request_timeout
                    and not self._overdue(conn, now)):
                continue  # a body still coming (answer it, with Connection: close), or a reply going out
            if conn.drain_until and now <= conn.drain_until:
                continue
            self._close(conn)
        return bool(self._connections)

    # -- the pool: leader and followers -----------------------------------------------------------

    def _run(self, extra: bool) -> None:
        """One thread of the pool. It takes the oldest complete request and answers it; with
        none waiting and nobody reading the connections, it reads them (one selector round) and
        then answers the first request it read itself, so at low load a request is read and
        answered by the same thread with no hand-over; it wakes a follower only when other
        clients need reading or requests wait. Requests are answered in arrival order by at
        most ``workers`` threads (more only while those are stuck, see :meth:`_watch`), which
        bounds the contention for the GIL."""
        cv = self._cv
        while True:
            with cv:
                while True:
                    if self._done:
                        return
                    if self._work:
                        conn, req = self._work.popleft()
                        self._busy += 1
                        break
                    if not self._leading:
                        self._leading = True
                        conn = None
                        break
                    if not cv.wait(_EXTRA_IDLE_SECONDS if extra else _FOLLOWER_WAIT) and extra and not self._work:
                        self._threads.remove(threading.current_thread())  # an extra thread idle for a while
                        self._n_extra -= 1
                        return
            if conn is None:
                self._lead()
                continue
            self._last_take = time.monotonic()
            rest = None
            try:
                rest = self._handle(conn, req)
            except BaseException:  # a pool thread must survive anything
                log.exception("request handling failed")
                conn.close_after = True
            finally:
                with cv:
                    self._busy -= 1
            self._release(conn, rest)

    def _lead(self) -> None:
        """One round of reading: wait for the connections, accept, read, queue complete
        requests, housekeeping; then step down."""
        batch = self._batch
        try:
            for key, events in self._selector.select(self._tick):
                conn = key.data
                if conn is None:
                    self._accept(key.fileobj)
                elif conn is self._wake_r:
                    self._take_posted()
                else:  # (each only if still wanted: the connection may have closed meanwhile)
                    if events & selectors.EVENT_WRITE and conn.writing:
                        self._on_writable(conn)
                    if events & selectors.EVENT_READ and conn.registered:
                        self._on_readable(conn)
            now = time.monotonic()
            done = False
            if self.stopping:
                done = not self._wind_down()
            elif now >= self._next_sweep:
                self._next_sweep = now + 1.0
                self._sweep(now)
        except BaseException:
            log.exception("reading the connections failed")
            done = False
        with self._cv:
            self._leading = False
            if batch:
                self._work.extend(batch)
                batch.clear()
            if done and not self._busy and not self._work:
                self._done = True
                self._cv.notify_all()
                return
            # Followers to wake: one per request beyond the one this thread takes, and a reader
            # if other clients are connected (a lone client's next request is read by this thread
            # once it has answered; a newcomer waits at most _FOLLOWER_WAIT).
            wanted = len(self._work) - 1 + (len(self._connections) > 1 or self.stopping)
            if wanted > 0:
                self._cv.notify(wanted)

    def _start_thread(self, *, extra: bool) -> None:
        t = threading.Thread(target=self._run, args=(extra,), daemon=True,
                             name=f"vecstore-http-{'extra' if extra else 'worker'}-{len(self._threads)}")
        with self._cv:
            self._threads.append(t)
            if extra:
                self._n_extra += 1
        t.start()

    def _watch(self) -> None:
        """Every pool thread busy for a while (a slow build, a long flush) with requests waiting
        or nobody reading: add a thread, so the rest are not held up behind them. The extra
        ones leave again after a few idle seconds."""
        while True:
            time.sleep(_STALL_SECONDS / 2)
            with self._cv:
                if self._done:
                    return
                stuck = (self._busy >= len(self._threads) and (self._work or not self._leading)
                         and time.monotonic() - self._last_take > _STALL_SECONDS)
                if not stuck or self._n_extra >= _MAX_EXTRA_WORKERS:
                    continue
                self._last_take = time.monotonic()
            self._start_thread(extra=True)

    def _release(self, conn: _Connection, rest: Any) -> None:
        """After the reply: wait for the next request on the connection; or leave it to the
        reader, to write the ``rest`` of the reply the socket did not take, or to close or
        drain it."""
        if rest or conn.close_after:
            self._post(conn, rest or b"")
            return
        with conn.lock:
            conn.busy = False
            conn.last = time.monotonic()
            more = bool(conn.buf) or conn.eof or not conn.registered
        if more:  # a pipelined request, the client's EOF, or reading was paused: the reader decides
            self._post(conn)

    # -- the generic handler's second half (in a worker) ---------------------------------------

    def _handle(self, conn: _Connection, req: _Request) -> memoryview | None:
        """Answer ``req``; returns what the socket did not take of the reply at once."""
        rid = self.next_request_id()
        started = time.perf_counter()
        route = req.route
        envelope, label = (route.envelope, route.path) if route is not None else ("lynse", "other")
        try:
            if req.error is not None:
                raise req.error
            reply = req.reply if req.reply is not None else self._respond(req)
        except UnauthorizedError as e:
            reply = Reply(401, wire.error_body("Unauthorized", e.code))
        except Exception as e:  # noqa: BLE001 - every failure is answered; a bug is logged
            reply = self._error_reply(e, envelope, rid, req)
        finally:
            req.error = None  # (no reference cycle through the traceback)
        status = reply.status
        elapsed = time.perf_counter() - started
        self.record(label, status, elapsed)  # before sending, so a client's next request sees it
        # a body we did not read would be taken for the next request: close after the reply
        close = req.close or req.unread > 0 or self.stopping
        sent, rest = 0, None
        try:
            # (an HTTP/1.0 client keeps the connection only when told)
            connection = b"close" if close else b"keep-alive" if req.http10 else b""
            sent, rest = self._send(conn.sock, reply, req.head, rid, connection)
        except OSError:
            close, req.unread = True, 0
        conn.close_after, conn.drain = close, req.unread > 0
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug('%s "%s %s" %s %d %.1fms rid=%d', conn.address[0] if conn.address else "-",
                             req.method, req.path, status, sent, elapsed * 1000, rid)
        return rest

    def _error_reply(self, e: Exception, envelope: str, rid: int, req: _Request) -> Reply:
        """The reply for a request that raised ``e`` (called in the ``except``): a library
        error's own status; out of file descriptors, wherever it surfaced (a collection, a
        snapshot, an index file), 503 to retry later, as it is load and not a bug; anything
        else is a bug: 500, logged with its traceback."""
        if out_of_descriptors(e):
            self._warn_out_of_descriptors(e, rid, req)
            e = UnavailableError("the server is out of file descriptors; retry later")
        if isinstance(e, VecstoreError):
            return error_reply(e, envelope)
        log.exception("request %d %s %s failed", rid, req.method, req.path)
        return error_reply(None, envelope, f"internal error (request id {rid})")

    def _warn_out_of_descriptors(self, e: Exception, rid: int, req: _Request) -> None:
        """One warning, without a traceback, per minute at most: out of descriptors, most
        requests fail the same way, and a traceback each would flood the log."""
        now = time.monotonic()
        with self._lock:
            self._fd_failures += 1
            if now < self._fd_warn_after:
                return
            self._fd_warn_after, n, self._fd_failures = now + 60.0, self._fd_failures, 0
        log.warning("request %d %s %s: out of file descriptors (%s: %s); answered 503%s. Raise the open-file "
                    "limit (ulimit -n) or lower --max-connections", rid, req.method, req.path, type(e).__name__, e,
                    f" (and {n - 1} more since the last warning)" if n > 1 else "")

    def _respond(self, req: _Request) -> Reply:
        route, path_params = req.route, req.path_params
        if self.replica is not None and not route.read and route.target != "server":
            return self.replica.forward(req)  # a write, a text search, a catalog route: the primary's
        if path_params:
            path_params = _unquote_path_params(path_params)
        body = req.body if req.body is not None else b""
        if route.body == "json":
            values = decode_json_body(body, self.config.max_json_depth) if body.strip() else {}
            if not isinstance(values, dict):
                raise InvalidArgumentError("request body: expected a JSON object")
            return self.dispatch(route, values, None, req.query, path_params)
        return self.dispatch(route, {}, body, req.query, path_params)

    def _send(self, sock: socket.socket, reply: Reply, head: bool, rid: int,
              connection: bytes) -> tuple[int, memoryview | None]:
        """The whole reply (status line, headers, body) in one write: ``(body length, what the
        socket did not take)``. That rest is written by the reader loop as the client takes it
        (:meth:`_on_writable`), not by this worker waiting on the socket."""
        body = reply.body
        if not isinstance(body, (bytes, bytearray)):
            body = wire.encode_json(body)
        out = [_STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} \r\n".encode(), _date()]
        if reply.content_type and body:
            out.append(b"Content-Type: %s\r\n" % reply.content_type.encode("latin-1"))
        out.append(b"Content-Length: %d\r\nx-request-id: %d\r\n" % (len(body), rid))
        if reply.headers:
            out.append(reply.headers)
        if reply.status == 401:
            out.append(b'WWW-Authenticate: Bearer realm="vecstore"\r\nWWW-Authenticate: Basic realm="vecstore"\r\n')
        if connection:
            out.append(b"Connection: %s\r\n" % connection)
        out.append(b"\r\n")
        if body and not head:
            out.append(body)
        data = b"".join(out)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        return len(body), (memoryview(data)[n:] if n < len(data) else None)


def make_server(config: ServerConfig, client: Any, routes: tuple[Route, ...] = ROUTES) -> VecstoreHTTPServer:
    """Build (and bind) the server; warns when it listens beyond loopback without a key."""
    server = VecstoreHTTPServer(config, client, routes)
    if not config.api_key and not is_loopback(config.host):
        log.warning("listening on %s without an API key: anyone who can reach this address can read "
                    "and change the data; set --api-key or VECSTORE_API_KEY", config.host)
    return server
