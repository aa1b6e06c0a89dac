"""Start a real server for a test: an ephemeral loopback port, a daemon thread, over a client
the test controls (stop it with ``server.stop()``; the test closes its client)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from vecstore.server.app import ServerConfig, VecstoreHTTPServer, make_server


def start_server(data: Path, backing: Any, **config: Any) -> VecstoreHTTPServer:
    server = make_server(ServerConfig(data_dir=Path(data), host="127.0.0.1", port=0, **config), backing)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
