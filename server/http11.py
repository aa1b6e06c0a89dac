"""HTTP/1.1 framing for :mod:`.app`: the request head parser, connection and request state,
the status lines and the blocking send. Standard library only; no knowledge of routes.
"""

from __future__ import annotations

import ipaddress
import os
import re
import resource
import socket
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from .routes import Reply, Route

MAX_LINE = 65536  # request line and each header line
MAX_HEADERS = 100
# The whole head: a request line at its limit (a long `where` in a binary route's query string)
# plus ordinary headers. Until a head is whole only this is checked (its lines then), so each
# read of a head sent slowly costs only the bytes it added, and what it can hold is bounded.
MAX_HEAD = MAX_LINE + 16384
# Header lines: a name that is a token (RFC 9110 §5.6.2: no space before the colon, no
# obs-fold), a colon, and a value with no CR, LF or NUL (a CR inside a line: other parsers may
# end the line there, and read the rest as another header). One pass over the whole block.
_HEADER_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\0]*\r?(?:\n|\Z))*")


def default_workers() -> int:
    """Pool threads when the config does not say: one per two cores this process may run on.

    Only one thread runs Python at a time, and a request is mostly Python (parsing, binding,
    shaping: ~50-150 µs against ~15 µs of HNSW search at ef 10, which releases the GIL). On 2
    cores, 16 keep-alive clients, 20k x 128 HNSW: 1 thread gave 62 µs of server CPU per
    binary search, p99/p50 1.8; 2 threads 76 µs, 2.9; 4 threads 100 µs, 3.4 (same run,
    interleaved). More cores let the native parts of requests overlap."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def default_max_connections() -> int:
    """Client connections one process holds at once when the config does not say: its
    open-file limit (``RLIMIT_NOFILE``, soft) less a quarter of it, and at least 256, for the
    store's own files (about five per open collection: LMDB's data and lock files, the
    collection's lock, tantivy's), the listeners and the snapshots being written. A connection
    beyond it is refused with a 503 rather than failing, or failing others, with EMFILE."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft > 1 << 20:
        soft = 1 << 20
    return max(16, soft - max(256, soft // 4))


class _Connection:
    """One client connection. The reader thread owns its buffer until a request is complete;
    ``busy`` says a worker has that request (the worker clears it under ``lock``, or leaves it
    set and hands the connection back to the reader: to close, or to write ``out``, the rest of
    a reply the socket could not take at once). ``registered`` and ``writing``: what the
    selector waits for (reading, writing)."""

    __slots__ = ("address", "buf", "busy", "close_after", "drain", "drain_until", "drained", "eof", "last", "lock",
                 "out", "out_size", "pending", "registered", "scan", "since", "sock", "writing")

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock, self.address = sock, address
        self.buf = bytearray()
        self.scan = 0  # how much of buf has been searched for the end of a head
        # when the head, body or reply under way began (0: none; its deadline: VecstoreHTTPServer._overdue)
        self.since = 0.0
        self.pending: _Request | None = None  # head read, body still arriving
        self.out: memoryview | None = None  # the unsent rest of a reply (the reader writes it)
        self.out_size = 0  # what out held at first
        self.busy = self.eof = self.registered = self.writing = self.close_after = self.drain = False
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.drain_until = 0.0
        self.drained = 0


class _Request:
    """One request, as the reader hands it to a worker."""

    __slots__ = ("body", "close", "error", "head", "headers", "http10", "length", "method", "path", "path_params",
                 "query", "reply", "route", "target", "unread")

    def __init__(self, method: str, target: str, headers: dict[bytes, bytes], close: bool,
                 http10: bool = False) -> None:
        self.method, self.target, self.headers, self.close, self.http10 = method, target, headers, close, http10
        self.head = False  # a HEAD, answered as its GET without the body
        self.path, self.query = target, ""
        self.route: Route | None = None
        self.path_params: dict = {}
        self.length = 0
        self.body: bytes | None = None
        self.unread = 0  # declared body bytes not read (a refused request): close after the reply
        self.error: BaseException | None = None
        self.reply: Reply | None = None


class _FramingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_head(buf: bytes | bytearray, scanned: int = 0) -> tuple[int, str, str, dict[bytes, bytes], bool, bool] | None:
    """The request line and headers at the start of ``buf``: ``(bytes used, method, target,
    headers by lower-cased name, close after the reply, HTTP/1.0)``, or None while incomplete
    (the first ``scanned`` bytes are known to hold no end of head). Lines end in CRLF or LF.

    Raises :class:`_FramingError` (400, 414, 431) on a broken or oversized head: when it is
    whole, or as soon as more than ``MAX_HEAD`` bytes came without its end. The target must be
    UTF-8 (RFC 3986 wants it ASCII; raw UTF-8 is what curl sends for a literal non-ASCII URL):
    read as Latin-1 it would silently become other text.
    """
    at = max(0, scanned - 2)
    crlf = buf.find(b"\n\r\n", at)
    lf = buf.find(b"\n\n", at, len(buf) if crlf < 0 else crlf + 1)  # (not through the body)
    if crlf < 0 and lf < 0:
        # Incomplete: only its size is checked here (line count and lengths once it is whole),
        # so a head sent a byte at a time costs each read only the bytes it added.
        if len(buf) > MAX_HEAD:
            if buf.find(b"\n", 0, MAX_LINE + 1) < 0:
                raise _FramingError(414, "request line too long")
            raise _FramingError(431, f"request head over {MAX_HEAD} bytes")
        return None
    if crlf < 0 or 0 <= lf < crlf:
        end, used = lf, lf + 2
    else:
        end, used = crlf, crlf + 3
    head = bytes(buf[:end])
    lines = head.split(b"\n")
    line = lines[0].rstrip(b"\r")
    if len(line) > MAX_LINE:
        raise _FramingError(414, "request line too long")
    parts = line.split()
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _FramingError(400, f"bad request line {line[:100]!r} (HTTP/1.1 or HTTP/1.0 expected)")
    if end > MAX_HEAD:  # (whether it came in one read or in many)
        raise _FramingError(431, f"request head over {MAX_HEAD} bytes")
    if len(lines) > MAX_HEADERS + 1:
        raise _FramingError(431, f"more than {MAX_HEADERS} headers")
    valid = _HEADER_LINES.match(head, len(lines[0]) + 1).end()
    if valid < len(head):
        bad = head[valid:].partition(b"\n")[0]
        raise _FramingError(400, f"bad header line {bad[:100]!r}")
    if b"\0" in line:
        raise _FramingError(400, "NUL in the request line")
    headers: dict[bytes, bytes] = {}
    for h in lines[1:]:
        if h[-1:] == b"\r":
            h = h[:-1]
        if len(h) > MAX_LINE:
            raise _FramingError(431, "header line too long")
        name, _, value = h.partition(b":")
        key = name.lower()
        value = value.strip()
        if key == b"content-length":
            # Checked here, whatever the route, as the body's end depends on it: read as 0, a
            # refused request's body would be taken for the next request.
            if not value.isdigit() or len(value) > 18:
                raise _FramingError(400, f"Content-Length: expected a non-negative integer of at most 18 digits, "
                                         f"got {value[:40]!r}")
            if headers.get(key, value) != value:
                raise _FramingError(400, "conflicting Content-Length headers")
        headers[key] = value
    method, target, version = parts
    tokens = {t.strip() for t in headers.get(b"connection", b"").lower().split(b",")}  # (not "closed")
    http10 = version == b"HTTP/1.0"
    close = b"keep-alive" not in tokens if http10 else b"close" in tokens
    try:
        text = target.decode("utf-8")
    except UnicodeDecodeError:
        raise _FramingError(400, f"request target is not valid UTF-8: {target[:100]!r}") from None
    return used, method.decode("latin-1"), text, headers, close, http10


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


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1``, ``localhost``; not ``0.0.0.0`` or ``""``
    (every interface)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
