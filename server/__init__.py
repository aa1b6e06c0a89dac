"""``vecstore.server``: the store over HTTP, on LynseDB's REST paths.

Run it with ``python -m vecstore.server --data ./data``. From Python::

    import vecstore
    from vecstore.server import ServerConfig, make_server

    server = make_server(ServerConfig(data_dir=path, port=0), vecstore.connect(path))
    threading.Thread(target=server.serve_forever).start()   # server.url is where it listens
    ...
    server.stop()

The route table (:data:`ROUTES`) is the whole API; :mod:`.app` is the one generic handler.
"""

from .app import ServerConfig, VecstoreHTTPServer, check_api_key, confine_path, make_server
from .routes import PUBLIC_PATHS, ROUTES, Param, Reply, Route

__all__ = [
    "ServerConfig", "VecstoreHTTPServer", "make_server", "check_api_key", "confine_path",
    "ROUTES", "PUBLIC_PATHS", "Route", "Param", "Reply",
]
