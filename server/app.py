"""The HTTP server: one generic handler for every route of :mod:`.routes`.

For each request it does, in order: find the route (unknown path or wrong method: 404 with an
empty body, as LynseDB), check the API key (all but ``/``, ``/healthz``, ``/readyz``), check
the declared body size (413 *before* reading), read and decode the body (JSON object, or raw
bytes plus query-string parameters), validate every parameter against the route's schema,
confine server-side paths, resolve the target, call it, shape the reply, and turn errors into
``{"error": message, "code": name}`` with the status of the exception class. Only a bug
answers 500; it is logged with its traceback and the client sees no internals.

Standard library only (``http.server``). Threads: one per connection
(``ThreadingHTTPServer``); :meth:`VecstoreHTTPServer.stop` stops accepting, closes idle
keep-alive connections and waits for requests in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from vecstore import wire
from vecstore.errors import (
    ForbiddenPathError,
    InvalidArgumentError,
    PayloadTooLargeError,
    UnauthorizedError,
    VecstoreError,
)

from .routes import PUBLIC_PATHS, ROUTES, TYPES, Reply, Route, route_map

log = logging.getLogger("vecstore.server")
access_log = logging.getLogger("vecstore.server.access")

MiB = 1024 * 1024
API_TITLE = "vecstore HTTP API"


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


# --------------------------------------------------------------------------------------------
# Pieces the handler is made of (plain functions, so they are easy to test)


def check_api_key(authorization: str | None, api_key: str) -> bool:
    """``Authorization: Bearer KEY`` or ``Basic base64(anything:KEY)``.

    Compares SHA-256 digests with :func:`hmac.compare_digest`, so neither the content nor the
    length of the key leaks through timing; the compare runs even when the header is missing.
    """
    token = ""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        token = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            token = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            token = ""
    given = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    wanted = hashlib.sha256(api_key.encode("utf-8")).digest()
    return hmac.compare_digest(given, wanted)


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


def bind(route: Route, source: dict, *, from_query: bool, config: ServerConfig) -> Call:
    """Validate the request values against the route's params (aliases, types, limits).

    Only parameters present and not null are bound: defaults stay in the library.
    """
    if route.nested is not None and source.get(route.nested) is not None:
        inner = source[route.nested]
        if not isinstance(inner, dict):
            raise InvalidArgumentError(f"{route.nested}: expected an object")
        source = {**source, **inner}
    args: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    for p in route.all_params:
        key = next((k for k in (p.name, *p.aliases) if source.get(k) is not None), None)
        if key is None:
            if p.required:
                raise InvalidArgumentError(f"{p.name}: missing required parameter")
            continue
        value = TYPES[p.type].convert(source[key], p.name, from_query)
        _check_limit(p.name, p.limit, value, config)
        args[p.name] = value
        if p.kwarg != "":
            if p.type == "path":
                value = confine_path(value, config.allowed_roots, config.path_base, p.name)
            kwargs[p.kwarg or p.name] = value
    return Call(route, args, kwargs)


def _check_limit(name: str, limit: str | None, value: Any, config: ServerConfig) -> None:
    if limit == "top_k" and value > config.max_top_k:
        raise InvalidArgumentError(f"{name} {value} exceeds server max_top_k {config.max_top_k}")
    if limit == "batch":
        size = value if isinstance(value, int) else len(value)
        if size > config.max_batch:
            raise InvalidArgumentError(f"{name}: {size} entries exceed server max_batch_vectors {config.max_batch}")


# --------------------------------------------------------------------------------------------
# Server


class VecstoreHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows the route table, the client and its config.

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
        self.stopping = False
        self._lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._idle: set[socket.socket] = set()
        self._in_flight = 0
        self._requests: Counter[tuple[str, int]] = Counter()
        self._seconds: Counter[str] = Counter()
        self._openapi: bytes | None = None
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

    def record(self, path: str, status: int, seconds: float) -> None:
        label = path if path in self.routes else "other"
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
        if route.target == "server":
            return self
        if route.target == "client":
            return self.client
        database = self.client.get_database(args["database_name"])
        if route.target == "database":
            return database
        return database.get_collection(args["collection_name"])

    def dispatch(self, route: Route, values: dict, body: bytes | None, *, from_query: bool) -> Reply:
        """Validate, call and shape one request. Errors propagate to the handler."""
        call = bind(route, values, from_query=from_query, config=self.config)
        if route.body == "binary":
            call.kwargs["body"] = body
        call.target = self.resolve(route, call.args)
        fn = getattr(call.target, route.call) if isinstance(route.call, str) else route.call
        result = fn(**call.kwargs) if isinstance(route.call, str) else fn(call.target, **call.kwargs)
        shaped = route.respond(result, call)
        if route.reply == "binary":
            return Reply(200, shaped, "application/octet-stream")
        if route.reply == "raw":
            return shaped if isinstance(shaped, Reply) else Reply(200, shaped)
        params = {k: call.args[k] for k in ("database_name", "collection_name") if route.echo and k in call.args}
        params.update(shaped)
        return Reply(200, wire.envelope(params))


class _Abort(Exception):
    """The client went away or sent something unreadable; nothing more to say."""


class RequestHandler(BaseHTTPRequestHandler):
    server: VecstoreHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "vecstore"
    sys_version = ""
    error_content_type = "application/json"
    error_message_format = '{"error": "%(message)s", "code": "bad_request"}'
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers: +40 ms on every keep-alive request.
    disable_nagle_algorithm = True

    # -- plumbing -----------------------------------------------------------------------------

    def setup(self) -> None:
        self.timeout = self.server.config.request_timeout
        super().setup()

    def handle_one_request(self) -> None:
        self.server._set_idle(self.connection, True)
        try:
            if self.server.stopping:
                self.close_connection = True
                return
            super().handle_one_request()
        except (ConnectionError, socket.timeout, TimeoutError):
            self.close_connection = True
        finally:
            self.server._set_idle(self.connection, False)

    def handle_expect_100(self) -> bool:
        # Answer "100 Continue" only once the body has passed the size check (_read_body).
        return True

    def finish(self) -> None:
        if getattr(self, "_body_pending", 0):
            self._drain()
        super().finish()

    def _drain(self, limit: int = MiB, seconds: float = 1.0) -> None:
        """Read (and drop) some of a body we refused, so closing the socket does not reset the
        connection before the client has read our answer."""
        try:
            self.wfile.flush()
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

    def log_request(self, code: Any = "-", size: Any = "-") -> None:  # we log in _handle
        pass

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, CONNECT, FOO, ...): the same handling, so it is 404 like every
        # method a path does not have (http.server would answer 501).
        if name.startswith("do_") and name[3:].isupper():
            return lambda: self._handle(name[3:])
        raise AttributeError(name)

    # -- the generic handler ------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        server = self.server
        server._set_idle(self.connection, False)
        rid = server.next_request_id()
        started = time.perf_counter()
        url = urlsplit(self.path)
        path = url.path or "/"
        self._rid = rid
        self._body_pending = self._declared_length_or_zero()
        status, sent = 500, 0
        try:
            reply = self._respond(method, path, url.query)
        except _Abort:
            self.close_connection = True
            reply = None
        except VecstoreError as e:
            reply = Reply(e.http_status, wire.error_body(str(e), e.code))
            if isinstance(e, UnauthorizedError):
                reply = Reply(401, wire.error_body("Unauthorized", e.code))
        except Exception:
            log.exception("request %d %s %s failed", rid, method, path)
            reply = Reply(500, wire.error_body(f"internal error (request id {rid})", "internal_error"))
        if reply is not None:
            status = reply.status
        elapsed = time.perf_counter() - started
        server.record(path, status, elapsed)  # before sending, so a client's next request sees it
        if server.stopping:
            self.close_connection = True
        try:
            if reply is not None:
                sent = self._send(reply, method)
        except (ConnectionError, socket.timeout, TimeoutError):
            self.close_connection = True
        access_log.info('%s "%s %s" %s %d %.1fms rid=%d', self.client_address[0], method, path,
                        status, sent, elapsed * 1000, rid)

    def _respond(self, method: str, path: str, query: str) -> Reply:
        server = self.server
        if path not in PUBLIC_PATHS and server.config.api_key:
            if not check_api_key(self.headers.get("Authorization"), server.config.api_key):
                raise UnauthorizedError("Unauthorized")
        route = server.routes.get(path)
        if route is None or route.method != method:
            return Reply(404, b"", "")
        body = self._read_body(route)
        if route.body == "json":
            values = wire.decode_json(body, max_depth=server.config.max_json_depth) if body.strip() else {}
            if not isinstance(values, dict):
                raise InvalidArgumentError("request body: expected a JSON object")
            return server.dispatch(route, values, None, from_query=False)
        values = dict(parse_qsl(query, keep_blank_values=True))
        return server.dispatch(route, values, body, from_query=True)

    def _declared_length_or_zero(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length", "0")))
        except ValueError:
            return 0

    def _read_body(self, route: Route) -> bytes:
        """Check the declared length against the route's limit, then read exactly that."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # we cannot tell where the body ends
            raise LengthRequiredError("Transfer-Encoding is not supported; send Content-Length")
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.strip().isdigit():
            self.close_connection = True
            raise InvalidArgumentError(f"Content-Length: expected a non-negative integer, got {declared!r}")
        length = int(declared)
        limit = self.server.config.max_binary_bytes if route.body == "binary" else self.server.config.max_json_bytes
        if length > limit:
            raise PayloadTooLargeError(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        if length and self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        body = self.rfile.read(length) if length else b""
        self._body_pending = 0
        if len(body) != length:
            raise _Abort()
        return body

    def _send(self, reply: Reply, method: str) -> int:
        body = reply.body
        if not isinstance(body, (bytes, bytearray)):
            body = wire.encode_json(body)
        if self._body_pending:  # a body we did not read would be taken for the next request
            self.close_connection = True
        self.send_response(reply.status)
        if reply.content_type and body:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", str(self._rid))
        if reply.status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="vecstore"')
            self.send_header("WWW-Authenticate", 'Basic realm="vecstore"')
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers(), with the body in the same write: one send per reply.
        self._headers_buffer.append(b"\r\n")
        if method != "HEAD" and body:
            self._headers_buffer.append(bytes(body))
        self.flush_headers()
        return len(body)


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
