"""The HTTP server: one generic handler for every route of :mod:`.routes`.

For each request it does, in order: find the route (unknown path or wrong method: 404 with an
empty body, as LynseDB), check the API key (all but ``/``, ``/healthz``, ``/readyz``), check
the declared body size (413 *before* reading), read and decode the body (JSON object, or raw
bytes plus query-string parameters), validate every parameter against the route's schema,
confine server-side paths, resolve the target, call it, shape the reply in the route's
envelope, and turn errors into that envelope's error body (LynseDB: ``{"error", "code"}`` with
the status of the exception class; Zilliz and Lance: see :mod:`.routes`). Only a bug answers
500; it is logged with its traceback and the client sees no internals.

Standard library only. The HTTP/1.1 layer is a lean reader on
:class:`socketserver.StreamRequestHandler` (request line and headers split as bytes,
``Content-Length`` bodies, keep-alive, ``Expect: 100-continue``; no chunked uploads): the
``http.server`` one parses every header block with the ``email`` package, which cost more
than the search itself. Threads: one per connection; :meth:`VecstoreHTTPServer.stop` stops
accepting, closes idle keep-alive connections and waits for requests in flight.

Per-request work is kept small: each route's parameter binder is precomputed, the bound
parameters of a binary route are memoised by query string, resolved database / collection
handles are cached (dropped by the routes that drop, restore or import), JSON bodies skip the
nesting scan when they cannot be deep, and the access log (logger ``vecstore.server.access``)
is formatted only when enabled at DEBUG.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from vecstore import wire
from vecstore.errors import (
    ForbiddenPathError,
    InvalidArgumentError,
    PayloadTooLargeError,
    UnauthorizedError,
    VecstoreError,
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
MAX_LINE = 65536  # request line and each header line
MAX_HEADERS = 100
_HANDLE_CACHE_MAX = 4096
_QUERY_CACHE_MAX = 256


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


def confine_path(value: str, roots: Iterable[Path], base: Path, name: str = "path") -> Path:
    """Resolve a client-supplied server path and refuse it unless it lies strictly inside one
    of ``roots`` after following symlinks.

    Refused (:class:`ForbiddenPathError`, 403): NUL bytes, any ``..`` component, absolute
    paths elsewhere, symlinks leading out, the roots themselves.
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
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if resolved != real_root and resolved.is_relative_to(real_root):
            return resolved
    raise ForbiddenPathError(f"{name}: {value!r} is outside the folders this server may use")


@dataclass
class Call:
    """One request as the route's ``call`` and ``respond`` see it."""

    route: Route
    args: dict[str, Any]  # validated values by parameter name (paths as sent)
    kwargs: dict[str, Any] = field(default_factory=dict)  # what the call receives
    target: Any = None


def _check_limit(name: str, limit: str | None, value: Any, config: ServerConfig) -> None:
    if limit == "top_k" and value > config.max_top_k:
        raise InvalidArgumentError(f"{name} {value} exceeds server max_top_k {config.max_top_k}")
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


def decode_json_body(body: bytes, max_depth: int) -> Any:
    """``wire.decode_json`` with a fast path: a body with no more ``[``/``{`` than the depth
    limit cannot be too deep, so the nesting scan is skipped; anything unusual (invalid UTF-8,
    a BOM, a parse error) goes through ``wire.decode_json`` for its exact error."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        try:
            return _DECODER.decode(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
    return wire.decode_json(body, max_depth=max_depth)


# --------------------------------------------------------------------------------------------
# Server


class VecstoreHTTPServer(socketserver.ThreadingTCPServer):
    """A threading TCP server that knows the route table, the client and its config.

    ``client`` is a :class:`vecstore.Client` (anything with the same methods works, which is
    how the unit tests drive it).
    """

    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, config: ServerConfig, client: Any, routes: tuple[Route, ...] = ROUTES,
                 *, bind_and_activate: bool = True) -> None:
        self.config = config
        self.client = client
        self.routes = route_map(routes)
        self.table = RouteTable(routes)
        self.binders = {r.path: Binder(r) for r in routes}
        self.stopping = False
        self._lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._idle: set[socket.socket] = set()
        self._in_flight = 0
        self._requests: Counter[tuple[str, int]] = Counter()
        self._seconds: Counter[str] = Counter()
        self._openapi: bytes | None = None
        self._handles: dict[tuple, Any] = {}
        self._query_cache: dict[tuple, tuple[dict, dict]] = {}
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), RequestHandler, bind_and_activate)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop accepting, close idle keep-alive connections, wait for requests in flight.

        Call it from another thread than the one running :meth:`serve_forever`.
        """
        self.stopping = True
        self.shutdown()
        with self._lock:
            idle = list(self._idle)
        for sock in idle:  # a reader blocked on the next request line sees EOF and ends
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        self.server_close()  # joins the handler threads

    def _set_idle(self, sock: socket.socket, idle: bool) -> None:
        with self._lock:
            (self._idle.add if idle else self._idle.discard)(sock)

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
        lines = [
            "# HELP vecstore_up 1 while the server runs.", "# TYPE vecstore_up gauge", "vecstore_up 1",
            "# HELP vecstore_databases_total Databases in the data folder.",
            "# TYPE vecstore_databases_total gauge", f"vecstore_databases_total {n_databases}",
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
        """Drop every cached handle (after a route that drops, restores or imports)."""
        self._handles.clear()

    def _bind(self, route: Route, body: dict, query: str, path: dict) -> Call:
        binder = self.binders[route.path]
        if route.body == "json":
            q = dict(parse_qsl(query, keep_blank_values=True)) if query and route.has_query_params else {}
            return binder.bind(body, q, path, self.config)
        if not route.memo_query:
            q = dict(parse_qsl(query, keep_blank_values=True))
            return binder.bind({}, q, path, self.config)
        # Binary and GET routes: the parameters are all scalars from the query string, which a
        # client usually repeats for every request of a session; bind each distinct one once.
        key = (route.path, query)
        hit = self._query_cache.get(key)
        if hit is not None:
            return Call(route, hit[0], dict(hit[1]))
        call = binder.bind({}, dict(parse_qsl(query, keep_blank_values=True)), path, self.config)
        if len(self._query_cache) >= _QUERY_CACHE_MAX:
            self._query_cache.clear()
        self._query_cache[key] = (call.args, dict(call.kwargs))
        return call

    def dispatch(self, route: Route, body: dict, raw: bytes | None, query: str, path: dict) -> Reply:
        """Validate, call and shape one request. Errors propagate to the handler."""
        call = self._bind(route, body, query, path)
        if route.body == "binary":
            call.kwargs["body"] = raw
        try:
            call.target = target = self.resolve(route, call.args)
            if isinstance(route.call, str):
                result = getattr(target, route.call)(**call.kwargs)
            else:
                result = route.call(target, **call.kwargs)
        finally:
            if route.invalidates:
                self.forget_handles()
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


class _Abort(Exception):
    """The client went away or sent something unreadable; nothing more to say."""


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1") for code, phrase in _REASONS.items()}
_EMPTY_404 = Reply(404, b"", "")


class _Date:
    """The ``Date`` header line, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\nServer: vecstore\r\n"
            self.second = now
        return self.line


_date = _Date()


class RequestHandler(socketserver.StreamRequestHandler):
    """Reads HTTP/1.1 requests off one connection, one after another (keep-alive), and hands
    each to the generic handler."""

    server: VecstoreHTTPServer
    rbufsize = 65536
    wbufsize = 0
    # Headers and body go out in one write; TCP_NODELAY as well, so a reply never waits for
    # the client's delayed ACK (+40 ms per keep-alive request with Nagle on).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.config.request_timeout
        super().setup()
        self.close_connection = False
        self._body_pending = 0

    def handle(self) -> None:
        server, conn = self.server, self.connection
        try:
            while not self.close_connection:
                server._set_idle(conn, True)
                if server.stopping:
                    break
                self.handle_one_request()
        except (ConnectionError, socket.timeout, TimeoutError, _Abort):
            pass
        finally:
            server._set_idle(conn, False)

    def finish(self) -> None:
        if self._body_pending:
            self._drain()
        try:
            super().finish()
        except OSError:
            pass

    def _drain(self, limit: int = MiB, seconds: float = 1.0) -> None:
        """Read (and drop) some of a body we refused, so closing the socket does not reset the
        connection before the client has read our answer."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(seconds)
            deadline, got = time.monotonic() + seconds, 0
            while got < limit and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass

    # -- reading one request ------------------------------------------------------------------

    def _read_head(self) -> tuple[str, str, dict[bytes, bytes]] | None:
        """Request line and headers; None at a clean end of the connection."""
        rfile = self.rfile
        line = rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerated: empty lines between requests (RFC 9112 §2.2)
            line = rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        self.server._set_idle(self.connection, False)
        if len(line) > MAX_LINE:
            raise _FramingError(414, "request line too long")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise _FramingError(400, f"bad request line {line[:100]!r}")
        method, target, version = parts
        headers: dict[bytes, bytes] = {}
        for _ in range(MAX_HEADERS + 1):
            h = rfile.readline(MAX_LINE + 1)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise _Abort()
            if len(h) > MAX_LINE:
                raise _FramingError(431, "header line too long")
            name, sep, value = h.partition(b":")
            key = name.lower()
            if not sep or not key or key != key.strip() or h[0] in b" \t":
                raise _FramingError(400, f"bad header line {h[:100]!r}")
            value = value.strip()
            if key == b"content-length" and headers.get(key, value) != value:
                raise _FramingError(400, "conflicting Content-Length headers")
            headers[key] = value
        else:
            raise _FramingError(431, f"more than {MAX_HEADERS} headers")
        connection = headers.get(b"connection", b"").lower()
        if version == b"HTTP/1.0":
            self.close_connection = b"keep-alive" not in connection
        elif b"close" in connection:
            self.close_connection = True
        return method.decode("latin-1"), target.decode("latin-1"), headers

    def handle_one_request(self) -> None:
        try:
            head = self._read_head()
        except _FramingError as e:
            self.close_connection = True
            self._rid = self.server.next_request_id()
            self.server.record("other", e.status, 0.0)
            self._send(Reply(e.status, wire.error_body(e.message, "bad_request")), "GET", {})
            return
        if head is None:
            self.close_connection = True
            return
        method, target, headers = head
        self._handle(method, target, headers)

    # -- the generic handler ------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[bytes, bytes]) -> None:
        server = self.server
        rid = self._rid = server.next_request_id()
        started = time.perf_counter()
        path, _, query = target.partition("?")
        if not path.startswith("/"):  # absolute form (http://host/path), as proxies send it
            path = urlsplit(target).path
        path = path or "/"
        self._body_pending = _declared_length_or_zero(headers)
        envelope = "lynse"
        label = "other"
        status, sent = 500, 0
        reply: Reply | None
        try:
            if path not in PUBLIC_PATHS and server.config.api_key:
                auth = headers.get(b"authorization")
                if not check_api_key(None if auth is None else auth.decode("latin-1"), server.config.api_key):
                    raise UnauthorizedError("Unauthorized")
            found = server.table.find(method, path)
            if found is None:
                reply = _EMPTY_404
            else:
                route, path_params = found
                envelope, label = route.envelope, route.path
                reply = self._respond(route, path_params, query, headers)
        except _Abort:
            self.close_connection = True
            reply = None
        except UnauthorizedError as e:
            reply = Reply(401, wire.error_body("Unauthorized", e.code))
        except VecstoreError as e:
            reply = error_reply(e, envelope)
        except Exception:
            log.exception("request %d %s %s failed", rid, method, path)
            reply = error_reply(None, envelope, f"internal error (request id {rid})")
        if reply is not None:
            status = reply.status
        elapsed = time.perf_counter() - started
        server.record(label, status, elapsed)  # before sending, so a client's next request sees it
        if server.stopping:
            self.close_connection = True
        try:
            if reply is not None:
                sent = self._send(reply, method, headers)
        except (ConnectionError, socket.timeout, TimeoutError):
            self.close_connection = True
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug('%s "%s %s" %s %d %.1fms rid=%d', self.client_address[0], method, path,
                             status, sent, elapsed * 1000, rid)

    def _respond(self, route: Route, path_params: dict, query: str, headers: dict[bytes, bytes]) -> Reply:
        server = self.server
        if path_params:
            path_params = {k: unquote(v) for k, v in path_params.items()}
        body = self._read_body(route, headers)
        if route.body == "json":
            values = decode_json_body(body, server.config.max_json_depth) if body.strip() else {}
            if not isinstance(values, dict):
                raise InvalidArgumentError("request body: expected a JSON object")
            return server.dispatch(route, values, None, query, path_params)
        return server.dispatch(route, {}, body, query, path_params)

    def _read_body(self, route: Route, headers: dict[bytes, bytes]) -> bytes:
        """Check the declared length against the route's limit, then read exactly that."""
        if b"transfer-encoding" in headers:
            self.close_connection = True  # we cannot tell where the body ends
            raise LengthRequiredError("Transfer-Encoding is not supported; send Content-Length")
        declared = headers.get(b"content-length")
        if declared is None:
            return b""
        if not declared.isdigit():
            self.close_connection = True
            raise InvalidArgumentError(
                f"Content-Length: expected a non-negative integer, got {declared.decode('latin-1')!r}")
        length = int(declared)
        config = self.server.config
        limit = config.max_binary_bytes if route.body == "binary" else config.max_json_bytes
        if length > limit:
            raise PayloadTooLargeError(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        if not length:
            self._body_pending = 0
            return b""
        if headers.get(b"expect", b"").lower() == b"100-continue":
            self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(length)
        self._body_pending = 0
        if len(body) != length:
            raise _Abort()
        return body

    def _send(self, reply: Reply, method: str, headers: dict[bytes, bytes]) -> int:
        body = reply.body
        if not isinstance(body, (bytes, bytearray)):
            body = wire.encode_json(body)
        if self._body_pending:  # a body we did not read would be taken for the next request
            self.close_connection = True
        out = [_STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} \r\n".encode(), _date()]
        if reply.content_type and body:
            out.append(b"Content-Type: %s\r\n" % reply.content_type.encode("latin-1"))
        out.append(b"Content-Length: %d\r\nx-request-id: %d\r\n" % (len(body), self._rid))
        if reply.status == 401:
            out.append(b'WWW-Authenticate: Bearer realm="vecstore"\r\nWWW-Authenticate: Basic realm="vecstore"\r\n')
        if self.close_connection:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        if method != "HEAD" and body:
            out.append(body)
        self.connection.sendall(b"".join(out))
        return len(body)


class _FramingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _declared_length_or_zero(headers: dict[bytes, bytes]) -> int:
    declared = headers.get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else 0


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``; not ``0.0.0.0`` or ``""`` (every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(config: ServerConfig, client: Any, routes: tuple[Route, ...] = ROUTES) -> VecstoreHTTPServer:
    """Build (and bind) the server; warns when it listens beyond loopback without a key."""
    server = VecstoreHTTPServer(config, client, routes)
    if not config.api_key and not is_loopback(config.host):
        log.warning("listening on %s without an API key: anyone who can reach this address can read "
                    "and change the data; set --api-key or VECSTORE_API_KEY", config.host)
    return server
