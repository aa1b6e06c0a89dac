"""``python -m vecstore.server --data ./data [--host 127.0.0.1] [--port 7637] [--api-key KEY]``

The key may also come from ``VECSTORE_API_KEY`` (better: it does not show in ``ps``). Ctrl-C
or SIGTERM stops the server after the requests in flight have been answered.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from .app import MiB, ServerConfig, VecstoreHTTPServer, make_server

log = logging.getLogger("vecstore.server")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m vecstore.server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="./data", help="root folder of the store (created if missing)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=7637, help="port (default 7637; 0 = any free port)")
    ap.add_argument("--api-key", default=os.environ.get("VECSTORE_API_KEY") or None,
                    help="require this key (Bearer, or the password of Basic auth); default $VECSTORE_API_KEY")
    ap.add_argument("--backup-dir", action="append", default=[], metavar="DIR",
                    help="another folder snapshot/export paths may point into (repeatable); "
                         "relative paths resolve against the first one")
    ap.add_argument("--max-json-mb", type=int, default=256, help="largest JSON body accepted (MiB)")
    ap.add_argument("--max-binary-mb", type=int, default=512, help="largest binary body accepted (MiB)")
    ap.add_argument("--workers", type=int, default=0,
                    help="requests answered at once (more only while those are slow); default: one per 2 cores")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    help="DEBUG also writes one access-log line per request (logger vecstore.server.access)")
    return ap.parse_args(argv)


def run(server: VecstoreHTTPServer, client: Any = None) -> int:
    """Serve until SIGINT/SIGTERM, then stop cleanly and close ``client``."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="vecstore-http")
    thread.start()
    log.info("vecstore server listening on %s (data: %s)", server.url, server.config.data_dir)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log.info("stopping: finishing requests in flight")
        server.stop()
        thread.join()
        if client is not None and hasattr(client, "close"):
            client.close()
        log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    backups = tuple(Path(d).resolve() for d in args.backup_dir)
    for d in backups:
        d.mkdir(parents=True, exist_ok=True)
    config = ServerConfig(data_dir=data, host=args.host, port=args.port, api_key=args.api_key,
                          backup_dirs=backups, max_json_bytes=args.max_json_mb * MiB,
                          max_binary_bytes=args.max_binary_mb * MiB, workers=max(0, args.workers))
    import vecstore  # here, so --help works without the library's dependencies

    client = vecstore.connect(data)
    try:
        server = make_server(config, client)
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, e)
        client.close()
        return 1
    return run(server, client)


if __name__ == "__main__":
    sys.exit(main())
