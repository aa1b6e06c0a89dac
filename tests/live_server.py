"""Start a real server for a test: an ephemeral loopback port, a daemon thread, over a client
the test controls (stop it with ``server.stop()``; the test closes its client)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vecstore.server.app import ServerConfig, VecstoreHTTPServer, make_server


def start_server(data: Path, backing: Any, **config: Any) -> VecstoreHTTPServer:
    server = make_server(ServerConfig(data_dir=Path(data), host="127.0.0.1", port=0, **config), backing)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server
