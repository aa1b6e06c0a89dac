"""``python -m vecstore.server --data ./data [--host 127.0.0.1] [--port 7637] [--api-key KEY] [--processes N] [--max-connections N] [--functions MODULE]``

The key may also come from ``VECSTORE_API_KEY`` (better: it does not show in ``ps``). Ctrl-C
or SIGTERM stops the server after the requests in flight have been answered.

``--processes N`` serves from N processes sharing the socket and the data folder (see
:mod:`.processes`): this one, the primary, starts the N-1 replicas itself, with its own
arguments plus the hidden ``--replica-of``, ``--primary-pid``, ``--listen-fd``,
``--state-file`` and ``--slot``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from vecstore.portability import store_folder

from .app import MiB, ServerConfig, VecstoreHTTPServer, make_server
from .http11 import default_max_connections
from .processes import Replica, SharedState, Supervisor, default_processes

log = logging.getLogger("vecstore.server")


def _processes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of processes >= 1 (or 0: one per core), got {text!r}")
    return n


def _int_in(lo: int, hi: int, what: str):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = lo - 1
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} in {lo}..{hi}, got {text!r}")
        return n
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m vecstore.server",
                                 description="Serve a vecstore data folder over HTTP (LynseDB's REST paths). "
                                             "Ctrl-C or SIGTERM stops it after the requests in flight.")
    ap.add_argument("--data", default="./data", help="root folder of the store (created if missing)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=_int_in(0, 65535, "a port (0: any free port)"), default=7637,
                    help="port (default 7637; 0 = any free port)")
    ap.add_argument("--api-key", default=os.environ.get("VECSTORE_API_KEY"),
                    help="require this key (Bearer, or the password of Basic auth); default $VECSTORE_API_KEY")
    ap.add_argument("--backup-dir", action="append", default=[], metavar="DIR",
                    help="another folder snapshot/export paths may point into (repeatable); "
                         "relative paths resolve against the first one")
    ap.add_argument("--max-json-mb", type=_int_in(1, 1 << 20, "MiB"), default=256,
                    help="largest JSON body accepted (MiB)")
    ap.add_argument("--max-binary-mb", type=_int_in(1, 1 << 20, "MiB"), default=512,
                    help="largest binary body accepted (MiB)")
    ap.add_argument("--workers", type=_int_in(0, 1024, "a number of threads (0: one per 2 cores)"), default=0,
                    help="requests answered at once (more only while those are slow); default: one per 2 cores")
    ap.add_argument("--max-connections", type=_int_in(0, 1 << 20, "a number of connections (0: from the open-file "
                                                      "limit)"), default=0, metavar="N",
                    help="client connections held at once, per process; a new one beyond it is answered 503 "
                         "(Retry-After) and closed (default 0: the open-file limit less a quarter, at least 256, "
                         f"for the store's files; here {default_max_connections()})")
    ap.add_argument("--processes", type=_processes, default=1, metavar="N",
                    help="processes serving the same socket and data folder (default 1; 0 = one per core): "
                         "searches use N cores; writes and text searches go to the first process; "
                         "each process holds its own copy of the collections it serves")
    ap.add_argument("--functions", action="append", default=[], metavar="MODULE",
                    help="import this module (a dotted name, or a .py file) before serving: it registers "
                         "the chunkers and UDFs that materialized views use (repeatable)")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    help="DEBUG also writes one access-log line per request (logger vecstore.server.access)")
    # set by the primary for its replicas only
    ap.add_argument("--replica-of", metavar="SOCKET", help=argparse.SUPPRESS)
    ap.add_argument("--primary-pid", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--state-file", help=argparse.SUPPRESS)
    ap.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.api_key is not None and not args.api_key.strip():
        # an unset $KEY in `--api-key "$KEY"` or `VECSTORE_API_KEY="$KEY"` would otherwise turn
        # authentication off silently
        ap.error("--api-key: the key is empty (from --api-key or $VECSTORE_API_KEY); give a key, or unset "
                 "VECSTORE_API_KEY and omit --api-key to serve without one")
    return args


def run(server: VecstoreHTTPServer, client: Any = None, replicas: Supervisor | None = None,
        primary_pid: int | None = None) -> int:
    """Serve until SIGINT/SIGTERM, then stop cleanly and close ``client``.

    With ``replicas`` (the primary of ``--processes``): start them once serving, restart those
    that die; at the end stop accepting, stop the replicas (they still forward their last
    requests here), then stop. A replica (``server.replica``) ignores SIGINT (a Ctrl-C reaches
    the whole process group; the primary orchestrates) and ends when its parent is no longer
    ``primary_pid``."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    replica = server.replica is not None
    if replica:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="vecstore-http")
    thread.start()
    if replica:
        log.info("replica serving reads on %s (data: %s)", server.url, server.config.data_dir)
    else:
        n = 1 + (replicas.n if replicas is not None else 0)
        log.info("vecstore server listening on %s (data: %s; %d process%s)", server.url, server.config.data_dir,
                 n, "" if n == 1 else "es")
    try:
        if replicas is not None:
            replicas.start()
        while not stop.wait(0.5):
            if replicas is not None:
                replicas.poll()
            elif replica and os.getppid() != primary_pid:
                log.warning("the primary process is gone: stopping")
                server.replica.orphaned()
                break
    finally:
        log.info("stopping: finishing requests in flight")
        if replicas is not None:
            server.close_listener(server.socket)
            replicas.stop(timeout=server.config.request_timeout + 5)
        server.stop()
        thread.join()
        if replica:
            server.replica.close()
        if client is not None and hasattr(client, "close"):
            client.close()
        if replicas is not None:
            replicas.close()
        log.info("stopped")
    return 0


def load_functions(spec: str) -> None:
    """Import ``spec``, a dotted module name or a ``.py`` file, for what it registers with
    :mod:`vecstore.functions` (a view refreshed over HTTP runs in this process and finds its
    chunker and UDFs only here)."""
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        module_spec = importlib.util.spec_from_file_location(f"_vecstore_functions_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def _unwritable(folder: Path) -> str | None:
    """Why the server could not write in ``folder`` (created if missing), or None. Checked at
    start: a folder the server cannot write used to start "ready" and answer 500 to everything."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".vecstore-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"not a writable folder ({e.strerror or e})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    processes = args.processes or default_processes()
    pid = "[%(process)d]" if processes > 1 else ""  # which process a line comes from
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")
    data = Path(args.data).resolve()
    backups = tuple(Path(d).resolve() for d in args.backup_dir)
    for flag, folder in [("--data", data), *(("--backup-dir", d) for d in backups)]:
        inside = store_folder(folder) if flag == "--backup-dir" else None
        if inside is not None:  # every snapshot there would be refused (no backup belongs in a
            # store's folders), and a drop of that database would delete the backups
            problem: str | None = f"inside the database or collection folder {inside}; use a folder of its own"
        else:
            problem = _unwritable(folder) if not args.replica_of else None
        if problem:
            log.error("%s %s: %s", flag, folder, problem)
            return 1
    for spec in args.functions:
        try:
            load_functions(spec)
        except Exception as e:  # noqa: BLE001 - any failure of the user's module stops the start
            log.error("--functions %s: %s: %s", spec, type(e).__name__, e)
            return 1
    config = ServerConfig(data_dir=data, host=args.host, port=args.port, api_key=args.api_key,
                          backup_dirs=backups, max_json_bytes=args.max_json_mb * MiB,
                          max_binary_bytes=args.max_binary_mb * MiB, workers=max(0, args.workers),
                          max_connections=args.max_connections)
    import vecstore  # here, so --help works without the library's dependencies

    if args.replica_of:
        client = vecstore.connect(data, read_only=True)
        state = SharedState(args.state_file)
        replica = Replica(client, args.replica_of, state, config.request_timeout)
        listener = socket.socket(fileno=args.listen_fd)  # the primary's, inherited
        return run(VecstoreHTTPServer(config, client, sock=listener, shared=state, slot=args.slot,
                                      replica=replica), client, primary_pid=args.primary_pid)
    client = vecstore.connect(data)
    try:
        server = make_server(config, client)
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, e)
        client.close()
        return 1
    replicas = None
    if processes > 1:
        replicas = Supervisor(processes - 1, argv, server.fileno(), __package__ or "vecstore.server")
        try:
            server.listen_unix(replicas.socket_path)
        except OSError as e:
            log.error("cannot listen on %s: %s", replicas.socket_path, e)
            server.server_close()
            replicas.close()
            client.close()
            return 1
        server.shared = replicas.state
    return run(server, client, replicas)


if __name__ == "__main__":
    sys.exit(main())
