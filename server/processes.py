"""``--processes N``: N processes serve one listening socket and one data folder.

Only one thread of a process runs Python at a time (the GIL), so a single server uses about
one core. With ``--processes N`` the process the user starts is the *primary*: it opens the
store as usual (the only writer: LMDB and the per-collection writer lock allow one writing
process) and binds the public socket; then it spawns N-1 *replicas* (``subprocess``, never
``fork``: an LMDB environment must not cross a fork) that inherit the listening socket and
accept on it too. Each connection stays with the process that took it (see Balance below).

A replica opens the store read-only. It answers the ``read`` routes of :mod:`.routes`
(searches, fetches, shapes) from its own handles, each caught up with ``Collection.refresh()``
first: reads see every write acknowledged before them, as in one process. Everything else
(writes, builds, text searches, catalog routes) is forwarded, as it came, to the primary over
an internal AF_UNIX socket (:class:`PrimaryLink`), and the primary's reply is relayed as it is.

A collection dropped or replaced by the primary (drop, restore, import, re-create) is another
file under the same name, which ``refresh()`` of the old handle cannot see. The primary bumps
a shared *catalog epoch* (:class:`SharedState`) after every route that ``invalidates``, before
replying; a replica whose handle predates the current epoch checks that the collection's
``data.mdb`` is still the file the handle opened, and replaces the handle when not
(:class:`ReplicaHandles`).

Balance: connections are long-lived (keep-alive), so what matters is who takes them. Left to
the kernel, a burst of connections (a client pool opening 16 at once) went almost all to one
process on 2 cores: the one running never blocked while connections were pending, the others
got no CPU. So each process publishes how many client connections it holds (in the same
shared file) and takes a new one only if no other process holds fewer, or once it has waited
20 ms (the others may be busy): least connections, as a load balancer would do.

Memory: each process holds its own mirror and indexes of the collections it serves.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from vecstore.errors import ConflictError, UnavailableError

from .routes import Reply, error_reply

log = logging.getLogger("vecstore.server")

GONE = 1 << 62  # the connection count of a process that does not accept (stopped, dead)


class SharedState:
    """A small file every process maps (``MAP_SHARED``): the catalog epoch (u64), then one
    connection count (i64) per process, slot 0 the primary's. Each value has one writer: the
    epoch the primary (:meth:`bump_epoch`, under a lock), a count its process's reading
    thread. A torn read could only make a replica check its handles once more, or a process
    take a connection it would have left to another."""

    def __init__(self, path: str | os.PathLike, processes: int | None = None) -> None:
        """``processes``: create the file for that many (the primary); else open it."""
        self.path = str(path)
        if processes is not None:
            with open(self.path, "wb") as f:
                f.write(struct.pack(f"<Q{processes}q", 0, *[GONE] * processes))
        fd = os.open(self.path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._counts = struct.Struct(f"<{(size - 8) // 8}q")
        self._lock = threading.Lock()

    def epoch(self) -> int:
        return struct.unpack_from("<Q", self._map)[0]

    def bump_epoch(self) -> None:
        with self._lock:
            struct.pack_into("<Q", self._map, 0, self.epoch() + 1)

    def set_connections(self, slot: int, n: int) -> None:
        struct.pack_into("<q", self._map, 8 + 8 * slot, n)

    def leave(self, slot: int) -> None:
        """``slot``'s process takes no more connections (stopping, or dead)."""
        self.set_connections(slot, GONE)

    def least_loaded(self, slot: int) -> bool:
        """No other process holds fewer client connections than ``slot``'s."""
        counts = self._counts.unpack_from(self._map, 8)
        return counts[slot] <= min(counts)

    def close(self) -> None:
        self._map.close()


# --------------------------------------------------------------------------------------------
# Replica side


def _file_id(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is (device, inode), or None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class _Entry:
    __slots__ = ("epoch", "file", "handle", "state", "users")

    def __init__(self, epoch: int) -> None:
        self.handle: Any = None
        self.file: tuple[int, int] | None = None  # the data.mdb the handle opened
        self.epoch = epoch  # the catalog epoch at which ``file`` was last checked
        self.users = 1
        self.state = "opening"  # -> "open" -> "retired" (stale: closed by its last user)


class ReplicaHandles:
    """A replica's read-only collection handles, one per collection.

    Why not just the client's cache: ``vecstore.Database`` hands out the process-wide handle of
    a folder (``vecstore.client._OPEN``, by path: LMDB must not be opened twice in one process),
    so a fresh read-only client would return the same stale handle after a drop and re-create;
    and closing a handle other threads are reading from would fail their requests. So a stale
    handle is *retired*: no new request gets it, the last request using it closes it, and only
    then is the collection opened again (the next open then builds a new handle).

    Stale means: the collection's ``data.mdb`` is no longer the file the handle opened (dropped,
    or replaced by a restore, an import or a re-create). That is checked only when the catalog
    epoch moved since the handle was last checked, with one ``stat``. Changes inside the file
    (rows, indexes, config) are ``refresh()``'s business.
    """

    def __init__(self, client: Any, state: SharedState) -> None:
        self.client = client
        self.state = state
        self._cv = threading.Condition()
        self._entries: dict[tuple[str, str], _Entry] = {}

    @contextmanager
    def handle(self, database: str, name: str) -> Iterator[Any]:
        """The collection's handle, caught up with the primary's commits, held while the
        block runs."""
        key = (database, name)
        entry = self._acquire(key)
        try:
            entry.handle.refresh()
            yield entry.handle
        finally:
            self._release(key, entry)

    def _acquire(self, key: tuple[str, str]) -> _Entry:
        while True:
            epoch = self.state.epoch()
            with self._cv:
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry(epoch)
                    break  # ours to open
                if entry.state == "open" and (entry.epoch != epoch or entry.handle.closed):
                    if entry.handle.closed or _file_id(entry.handle.path / "data.mdb") != entry.file:
                        entry.state = "retired"
                    else:
                        entry.epoch = epoch
                if entry.state == "open":
                    entry.users += 1
                    return entry
                if entry.state == "retired" and entry.users == 0:
                    entry.state = "closing"
                else:
                    self._cv.wait()  # being opened, or retired and still in use
                    continue
            self._close(key, entry)
        try:
            self._open(key, entry)
        except BaseException:
            with self._cv:
                del self._entries[key]
                self._cv.notify_all()
            raise
        return entry

    def _open(self, key: tuple[str, str], entry: _Entry) -> None:
        """Open the collection and note which file it opened: the same one before and after
        the open (else the primary replaced it meanwhile: close and open again)."""
        database = self.client.get_database(key[0])
        path = Path(database.path) / key[1] / "data.mdb"
        for _ in range(5):
            before = _file_id(path)
            handle = database.get_collection(key[1])  # NotFoundError etc. go to the client
            if _file_id(path) == before and before is not None:
                break
            handle.close()  # nobody else has it: other requests for it wait on the entry
        else:
            raise ConflictError(f"collection_name: {key[1]!r} is being replaced; retry")
        with self._cv:
            entry.handle, entry.file, entry.state = handle, before, "open"
            self._cv.notify_all()

    def _release(self, key: tuple[str, str], entry: _Entry) -> None:
        with self._cv:
            entry.users -= 1
            if entry.state != "retired" or entry.users:
                return
            entry.state = "closing"
        self._close(key, entry)

    def _close(self, key: tuple[str, str], entry: _Entry) -> None:
        """Close a retired handle nobody uses any more (outside the lock: closing takes the
        library's locks), then let waiting requests open the collection again."""
        try:
            entry.handle.close()
        except Exception:  # its file may be gone; the handle is dropped anyway
            log.debug("closing a stale handle of %s/%s failed", *key, exc_info=True)
        with self._cv:
            if self._entries.get(key) is entry:
                del self._entries[key]
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            if entry.handle is not None:
                entry.handle.close()


# headers of the primary's reply that the replica's own reply writes (or must not repeat)
_NOT_RELAYED = frozenset({b"date", b"server", b"content-length", b"content-type", b"connection", b"keep-alive",
                          b"x-request-id", b"www-authenticate", b"transfer-encoding"})


class _NoReply(ConnectionError):
    """The primary closed the connection before any byte of a reply."""


class PrimaryLink:
    """A replica's requests to the primary: one keep-alive AF_UNIX connection per worker
    thread, HTTP/1.1 as the client sent it (method, target, Content-Type, Authorization, body:
    the primary checks the key again and answers as if the client had asked it)."""

    def __init__(self, path: str, idle_timeout: float) -> None:
        self.path = path
        # the primary closes connections idle for its request_timeout; reconnect well before
        self.idle_timeout = idle_timeout / 2
        self._local = threading.local()

    def forward(self, method: str, target: str, headers: dict[bytes, bytes], body: bytes | None) -> Reply:
        head = [f"{method} {target} HTTP/1.1\r\nHost: vecstore-primary\r\n".encode(),  # UTF-8, as parse_head read it
                b"Content-Length: %d\r\n" % len(body or b"")]
        for name in (b"content-type", b"authorization"):
            if name in headers:
                head.append(name + b": " + headers[name] + b"\r\n")
        head.append(b"\r\n")
        data = b"".join(head) + (body or b"")
        for attempt in (0, 1):
            sock, reused = self._connection()
            if sock is None:
                break
            try:
                sock.sendall(data)
                reply, keep = self._read_reply(sock)
            except OSError as e:
                self._drop()
                # Retried once only on a kept-alive connection that gave no byte back: the
                # primary had closed it (idle) and never saw the request. Anything else may have
                # been done, and is not repeated.
                if attempt == 0 and reused and isinstance(e, (_NoReply, BrokenPipeError)):
                    continue
                log.warning("forwarding %s %s to the primary failed: %s", method, target.partition("?")[0], e)
                break
            if keep:
                self._local.last = time.monotonic()
            else:
                self._drop()
            return reply
        return error_reply(UnavailableError("the primary process is not reachable; retry later"), "lynse")

    def _connection(self) -> tuple[socket.socket | None, bool]:
        sock = getattr(self._local, "sock", None)
        if sock is not None and time.monotonic() - self._local.last < self.idle_timeout:
            return sock, True
        self._drop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            log.warning("cannot reach the primary at %s: %s", self.path, e)
            return None, False
        self._local.sock, self._local.last = sock, time.monotonic()
        return sock, False

    def _drop(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()

    @staticmethod
    def _read_reply(sock: socket.socket) -> tuple[Reply, bool]:
        """Status, Content-Type, other end-to-end headers and body (our server always sends
        Content-Length); and whether the connection stays open."""
        buf = bytearray()
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise _NoReply("the primary closed the connection") if not buf else ConnectionError(
                    "the primary closed the connection in the middle of a reply")
            buf += chunk
        lines = bytes(buf[:end]).split(b"\r\n")
        status = int(lines[0].split()[1])
        content_type, length, keep, extra = "", 0, True, []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"connection":
                keep = value.lower() != b"close"
            if name not in _NOT_RELAYED:
                extra.append(line + b"\r\n")
        body = buf[end + 4:]
        while len(body) < length:
            chunk = sock.recv(min(length - len(body), 4 << 20))
            if not chunk:
                raise ConnectionError("the primary closed the connection in the middle of a reply")
            body += chunk
        return Reply(status, bytes(body), content_type, b"".join(extra)), keep


class Replica:
    """What a replica's server needs (``VecstoreHTTPServer(replica=...)``): its handles and
    its link to the primary."""

    def __init__(self, client: Any, primary: str, state: SharedState, idle_timeout: float) -> None:
        self.handles = ReplicaHandles(client, state)
        self.link = PrimaryLink(primary, idle_timeout)
        self.run_dir = os.path.dirname(primary)

    def handle(self, database: str, name: str):
        return self.handles.handle(database, name)

    def forward(self, req: Any) -> Reply:
        return self.link.forward(req.method, req.target, req.headers, req.body)

    def orphaned(self) -> None:
        """The primary died without cleaning up (SIGKILL): remove its run folder for it."""
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def close(self) -> None:
        self.handles.close()


# --------------------------------------------------------------------------------------------
# Primary side


def default_processes() -> int:
    """``--processes 0``: one per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Supervisor:
    """The primary's replicas: started with the primary's own arguments plus where to find it,
    restarted when one dies (with a growing pause if they keep dying), stopped before the
    primary stops serving (they may still forward their last requests to it)."""

    _RESTART_MIN, _RESTART_MAX, _HEALTHY_AFTER = 1.0, 60.0, 60.0

    def __init__(self, n: int, argv: Sequence[str], listen_fd: int, module: str) -> None:
        self.n = n
        self.argv = list(argv)
        self.listen_fd = listen_fd
        self.module = module
        self.run_dir = tempfile.mkdtemp(prefix="vecstore-server-")  # 0700: only this user reaches the socket
        self.socket_path = os.path.join(self.run_dir, "primary.sock")
        self.state = SharedState(os.path.join(self.run_dir, "state"), processes=n + 1)
        self.procs: list[subprocess.Popen | None] = [None] * n
        self._started = [0.0] * n
        self._pause = [self._RESTART_MIN] * n
        self._next_start = [0.0] * n

    def command(self, i: int) -> list[str]:
        return [sys.executable, "-m", self.module, *self.argv, "--replica-of", self.socket_path,
                "--primary-pid", str(os.getpid()), "--listen-fd", str(self.listen_fd),
                "--state-file", self.state.path, "--slot", str(i + 1)]

    def start(self) -> None:
        for i in range(self.n):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self.command(i), pass_fds=(self.listen_fd,))
        self._started[i] = time.monotonic()
        log.debug("replica %d started (pid %d)", i + 1, self.procs[i].pid)

    def poll(self) -> None:
        """Restart the replicas that died (called every half second by the primary's main loop)."""
        now = time.monotonic()
        for i, proc in enumerate(self.procs):
            if proc is None:
                if now >= self._next_start[i]:
                    self._spawn(i)
                continue
            code = proc.poll()
            if code is None:
                continue
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            lived = now - self._started[i]
            if lived > self._HEALTHY_AFTER:
                self._pause[i] = self._RESTART_MIN
            pause, self._pause[i] = self._pause[i], min(self._pause[i] * 2, self._RESTART_MAX)
            log.warning("replica %d (pid %d) ended unexpectedly (%s) after %.1f s; restarting it in %.0f s",
                        i + 1, proc.pid, how, lived, pause)
            self.procs[i] = None
            self._next_start[i] = now + pause
            self.state.leave(i + 1)  # nobody waits for it to take connections

    def stop(self, timeout: float) -> None:
        """SIGTERM to every replica, then wait: they stop accepting and answer what they have
        (``timeout`` seconds at most, then SIGKILL)."""
        running = [p for p in self.procs if p is not None and p.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in running:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("replica pid %d did not stop in %.0f s: killing it", p.pid, timeout)
                p.kill()
                p.wait()

    def close(self) -> None:
        self.state.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
