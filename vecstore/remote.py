"""The same Client / Database / Collection API over HTTP, against ``python -m vecstore.server``.

``vecstore.connect("http://127.0.0.1:7637", api_key=...)`` returns a :class:`RemoteClient`.
Results are the same typed values as locally and errors the same exception classes (the
server sends each error's ``code``; :func:`vecstore.errors.error_class_for` maps it back).
Connections are kept alive, one per thread. Integer-id writes with many rows go over the
binary records protocol (``/add_records_binary``), which avoids JSON-encoding every float.

>>> client = vecstore.connect("http://127.0.0.1:7637")          # doctest: +SKIP
>>> col = client.create_database("app").require_collection("items", dim=4)  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Sequence
from urllib.parse import quote, urlencode, urlsplit

import numpy as np

from . import validation as v
from . import wire
from .client import Client, Database, _check_durability
from .collection import Collection
from .errors import (AlreadyExistsError, ClosedError, ConflictError, InvalidArgumentError, JobCancelledError,
                     JobFailedError, NotFoundError, NotSupportedError, PayloadTooLargeError, TimeoutError_,
                     VecstoreError, error_class_for)
from .indexes.base import parse_index_mode, parse_metric
from .jobs import ZILLIZ_STATE, RefreshJob, _job_id
from .portability import _as_path
from .types import (CollectionConfig, CollectionStats, Id, IdLike, Ids, ProfiledSearch, Rows, SearchResult,
                    VectorFieldInfo)

_BATCH = 50_000  # rows per request: the server refuses more than 100,000 per call
# Bytes per request body: the server's default limits (--max-json-mb 256, --max-binary-mb 512).
# A server started with lower ones answers 413 from the request's head, before it reads the
# body, so nothing of that request was written: the client then halves its budget and sends the
# same rows again in smaller requests (_Transport.budget remembers it for the next calls).
_MAX_BYTES = {"json": 256 << 20, "binary": 512 << 20}
_STATES = {wire: state for state, wire in ZILLIZ_STATE.items()}


class _Transport:
    """HTTP/1.1 with keep-alive: one connection per thread, re-opened once if the server
    closed an idle one."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port  # a ValueError beyond 65535
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise InvalidArgumentError(f"url: expected http://host:port, got {url!r}")
        self._cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = parts.hostname, port or (443 if parts.scheme == "https" else 7637)
        self._base = parts.path.rstrip("/")
        self._timeout = timeout
        # bytes: http.client would encode a str as Latin-1 (and fail beyond it); the server reads UTF-8
        self._headers = {"Authorization": b"Bearer " + api_key.encode("utf-8")} if api_key else {}
        self._local = threading.local()
        self.url = url
        self.budget = dict(_MAX_BYTES)

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._cls(self._host, self._port, timeout=self._timeout)
        return conn

    def request(self, method: str, path: str, body: bytes | None = None, *, query: dict | None = None,
                content_type: str = "application/json") -> tuple[int, str, bytes]:
        """``(status, content type, body)`` of one exchange."""
        status, ctype, data, _ = self.exchange(method, path, body, query=query, content_type=content_type)
        return status, ctype, data

    def exchange(self, method: str, path: str, body: bytes | None = None, *, query: dict | None = None,
                 content_type: str = "application/json") -> tuple[int, str, bytes, Any]:
        """:meth:`request` plus the response headers (an ``http.client.HTTPMessage``)."""
        target = self._base + path + (("?" + urlencode(query)) if query else "")
        headers = {**self._headers, "Content-Type": content_type}
        for attempt in (0, 1):
            conn = self._conn()
            reused = getattr(self._local, "used", False)
            try:
                try:
                    conn.request(method, target, body=body, headers=headers)
                except (ConnectionResetError, BrokenPipeError):
                    # The server may have refused the request from its head (413: a body over its
                    # limit) and closed while the body was still going out: its answer is then
                    # waiting to be read. No answer (a stale keep-alive connection) raises here.
                    resp = conn.getresponse()
                    data = resp.read()
                    self.close()
                    return resp.status, resp.getheader("Content-Type", ""), data, resp.headers
                resp = conn.getresponse()
                data = resp.read()
                self._local.used = True
                return resp.status, resp.getheader("Content-Type", ""), data, resp.headers
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                self._local.conn = None
                self._local.used = False
                if attempt or not reused:  # only a stale keep-alive connection is retried
                    raise VecstoreError(f"{method} {path}: connection to {self.url} failed: {e}") from e
            except OSError as e:
                conn.close()
                self._local.conn = None
                raise VecstoreError(f"{method} {path}: cannot reach {self.url}: {e}") from e
        raise AssertionError("unreachable")

    def call(self, path: str, body: dict | None = None, *, method: str = "POST", payload: bytes | None = None) -> dict:
        """A JSON route: returns its ``params``; raises the server's error as its class.
        ``payload``: the body already encoded (:func:`_json_body`)."""
        if body is not None:
            payload = _json_body(path, body)
        status, ctype, data = self.request(method, path, payload)
        return self._params(path, status, ctype, data)

    def call_binary(self, path: str, query: dict, data: bytes, *, reply: str = "json") -> Any:
        status, ctype, out = self.request("POST", path, data, query={k: x for k, x in query.items() if x is not None},
                                          content_type="application/octet-stream")
        if reply == "binary" and status == 200:
            return out
        return self._params(path, status, ctype, out)

    @staticmethod
    def _params(path: str, status: int, ctype: str, data: bytes) -> dict:
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = None
        if status == 200:
            params = doc.get("params", doc) if isinstance(doc, dict) else None
            if not isinstance(params, dict):  # another service on that port, a proxy's page
                raise VecstoreError(f"{path}: the reply is not a vecstore server's JSON "
                                    f"(HTTP 200, {ctype or 'no content type'}); is the url right?")
            return _Reply(path, params)
        if not isinstance(doc, dict):
            doc = {"error": data.decode("utf-8", "replace")}
        if status == 404 and not data:
            raise VecstoreError(f"{path}: the server does not serve this path")
        code = doc.get("type") if isinstance(doc.get("type"), str) else doc.get("code")  # Lance: "type"
        raise error_class_for(code if isinstance(code, str) else None, status)(doc.get("error") or f"{path}: HTTP {status}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            self._local.used = False


class _Reply(dict):
    """A reply's params: a key the caller needs and the reply lacks (another service answering
    JSON on that port) is a VecstoreError, not a KeyError."""

    def __init__(self, path: str, params: dict) -> None:
        super().__init__(params)
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise VecstoreError(f"{self.path}: the reply has no {key!r}; is the url a vecstore server's?")


def _json_body(path: str, body: dict) -> bytes:
    """A request's JSON; a ``None`` value is left out (the server's default, which is the
    library's). NaN and inf have no JSON form: the server would see only "malformed JSON", so
    the parameter holding one is named here, as the library names it."""
    body = {k: x for k, x in body.items() if x is not None}
    try:
        return json.dumps(body, separators=(",", ":"), default=_plain, allow_nan=False).encode()
    except ValueError:
        for k, x in body.items():
            try:
                json.dumps(x, default=_plain, allow_nan=False)
            except ValueError:
                what = "a finite number" if isinstance(x, (float, np.floating)) else "finite numbers"
                raise InvalidArgumentError(f"{k}: expected {what}, got {repr(x)[:60]}") from None
            except TypeError:
                pass
        raise
    except TypeError as e:  # a value JSON cannot carry (a set, bytes, an object)
        raise InvalidArgumentError(f"{path}: the request cannot be sent as JSON: {e}") from None


def _plain(x: Any) -> Any:
    """numpy scalars and arrays as JSON values (``json.dumps``'s ``default``), as the library
    takes them; anything else stays unsendable (the caller's InvalidArgumentError)."""
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")


def _flat_numbers(row: Any) -> bool:
    if isinstance(row, (str, bytes)):
        return False
    try:
        return np.asarray(row).ndim == 1
    except (TypeError, ValueError):
        return False


def _vec(x: Any, param: str = "vector") -> Any:
    """One vector as a JSON list. JSON has no NaN or inf (the server would see only malformed
    JSON), so a vector holding one is refused here with the library's own error, and so is one
    that is not real numbers (a complex or date array, strings). Anything else that is not
    numbers is sent as it is: the server judges it, so the error is the local one."""
    try:
        arr = np.asarray(v.real_array(x, param), dtype=np.float32)
    except InvalidArgumentError:  # not real numbers (a ValueError, but not one for the server to judge)
        raise
    except (TypeError, ValueError, OverflowError):
        return x
    if arr.ndim == 0 or not np.isfinite(arr).all():
        v.check_vector(x, 0, param=param)  # raises: the shape's error, or the non-finite row's
    return arr.tolist()


def _vecs(x: Any, param: str = "vectors", dim: Callable[[], int] | None = None) -> Any:
    """Rows of vectors as JSON lists; see :func:`_vec`. Rows of different lengths go to the
    server as they are, to be judged with the collection's dim, unless ``dim`` is given (a
    write that may take several requests): then they are refused here, with that dim."""
    try:
        arr = np.asarray(v.real_array(x, param), dtype=np.float32)
    except InvalidArgumentError:
        raise
    except (TypeError, ValueError, OverflowError):  # not one clean matrix
        rows = x if isinstance(x, (list, tuple)) else None
        if rows is None or not all(_flat_numbers(r) for r in rows):
            v.check_vectors(x, 0, param=param)  # not rows of numbers: the library's own error
        if dim is not None and len({len(r) for r in rows}) > 1:
            # the server would find the odd row only in its request, after the others were written
            v.check_vectors(x, dim(), param=param)
        return [_vec(row, param) for row in rows]
    if arr.ndim == 0 or not np.isfinite(arr).all():
        v.check_vectors(x, 0, param=param)  # raises, as for one vector
    return arr.tolist()


def _filter_ids(ids: Any) -> list | None:
    """``filter_ids`` as sent: checked here as the library checks them (a bare ``"ab"`` is not
    two ids), ``None`` for no restriction."""
    return None if ids is None else v.check_ids(ids, param="filter_ids", allow_empty=True)


def _wire_items(items: Any, *, need_id: bool, dim: Callable[[], int]) -> Any:
    """``items`` (dicts of ``vector``, ``id``, ``field``) as sent, checked as the library checks
    them before anything is written (a bad item in a later request left the earlier ones
    written). Each ``field`` is checked here too: JSON would make an int key a str one, which the
    server could no longer refuse. An absent or null ``field`` stays so (an upsert keeps the old
    fields)."""
    items = v.check_items(items, need_id=need_id)
    vectors = _vecs([it["vector"] for it in items], "items[].vector", dim)
    return [{**it, "vector": vec} if it.get("field") is None else
            {**it, "vector": vec, "field": v.check_fields(it["field"], param=f"items[{i}].field")}
            for i, (it, vec) in enumerate(zip(items, vectors))]


def _server_path(path: Any, param: str) -> str:
    """A path on the server, checked as the library checks its own (``portability._as_path``:
    a str or an ``os.PathLike`` of one, not empty, no NUL) and sent as given; where it may point
    is the server's to judge. ``str()`` sent 5, None or b"x" as the path "5", "None", "b'x'"."""
    _as_path(path, param)
    return os.fspath(path)


def _as_returned(path: str) -> str:
    """The path a backup call returns, spelled as the library spells it (``str(Path(p))``:
    ``"snaps/"`` comes back as ``"snaps"``); the server echoes the request's spelling, as
    LynseDB does."""
    return str(Path(path))


def _remote_job_id(job_id: Any) -> int:
    """A job id checked as the library checks it (``jobs._job_id``: a bool or a non-number is
    InvalidArgumentError). A negative one names no job, NotFoundError as locally, where the
    server's schema would refuse it as an invalid argument."""
    job_id = _job_id(job_id)
    if job_id < 0:
        raise NotFoundError(f"jobId: no job {job_id}")
    return job_id


def _defined_locally(name: str) -> Callable[..., NoReturn]:
    """A method of :class:`vecstore.Database` that is done only in the process owning the data
    folder (README, "External collections and materialized views"): no route serves it, and the
    remote object says so with an error rather than an AttributeError."""
    def method(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotSupportedError(f"{name}: not supported by the remote client; external collections, their "
                                "volumes and materialized views are defined and described in the process that owns the "
                                "data folder (the server's), with vecstore.connect(folder)")
    method.__name__ = method.__qualname__ = name
    method.__doc__ = (f"Raises NotSupportedError: :meth:`vecstore.Database.{name}` is done in the process "
                      "that owns the data folder.")
    return method


class RemoteClient:
    """A vecstore server, with the API of :class:`vecstore.Client`."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        self._t = _Transport(url, api_key, timeout)
        self._closed = False
        self._t.call("/list_databases", method="GET")  # fail early on a wrong url or key

    def __repr__(self) -> str:
        return f"<vecstore.RemoteClient {self._t.url!r}>"

    @property
    def read_only(self) -> bool:
        """False: over HTTP, what a client may do is the server's to decide (its API key), so
        :func:`vecstore.connect` refuses ``read_only=True`` with a URL."""
        return False

    def __enter__(self) -> "RemoteClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, path: str, body: dict | None = None, **kw: Any) -> dict:
        if self._closed:
            raise ClosedError("client is closed")
        return self._t.call(path, body, **kw)

    # Names are checked here as well as on the server: a name JSON cannot carry faithfully (a
    # lone surrogate) would otherwise be refused by the server's body check, as another class.
    def create_database(self, name: str, drop_if_exists: bool = False) -> "RemoteDatabase":
        v.check_name(name, what="database_name")
        self._call("/create_database", {"database_name": name, "drop_if_exists": drop_if_exists})
        return RemoteDatabase(self, name)

    def get_database(self, name: str) -> "RemoteDatabase":
        v.check_name(name, what="database_name")
        if not self.database_exists(name):
            raise NotFoundError(f"database_name: no database {name!r}")
        return RemoteDatabase(self, name)

    def list_databases(self) -> list[str]:
        return sorted(self._call("/list_databases", method="GET")["databases"])

    def database_exists(self, name: str) -> bool:
        v.check_name(name, what="database_name")
        return bool(self._call("/database_exists", {"database_name": name})["exists"])

    def drop_database(self, name: str, missing_ok: bool = True) -> None:
        v.check_name(name, what="database_name")
        if not v.check_bool(missing_ok, param="missing_ok") and not self.database_exists(name):
            raise NotFoundError(f"database_name: no database {name!r}")
        self._call("/drop_database", {"database_name": name})

    delete_database = drop_database

    def snapshot_database(self, name: str, path: str) -> str:
        """``path`` is on the server's filesystem, inside its data or backup folder."""
        v.check_name(name, what="database_name")
        path = _server_path(path, "snapshot_path")
        return _as_returned(self._call("/snapshot_database", {"database_name": name, "snapshot_path": path})["snapshot_path"])

    def restore_database(self, name: str, path: str, overwrite: bool = False) -> "RemoteDatabase":
        v.check_name(name, what="database_name")
        path = _server_path(path, "snapshot_path")
        self._call("/restore_database", {"database_name": name, "snapshot_path": path, "overwrite": overwrite})
        return RemoteDatabase(self, name)

    def close(self) -> None:
        """Close the connection and forget every database and collection handle obtained through
        this client (they then raise ClosedError; the server keeps them). Idempotent."""
        self._closed = True
        self._t.close()


class RemoteDatabase:
    """A database on a server, with the API of :class:`vecstore.Database`."""

    def __init__(self, client: RemoteClient, name: str) -> None:
        self.client = client
        self.name = name
        self._closed = False

    def __repr__(self) -> str:
        return f"<vecstore.RemoteDatabase {self.name!r}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or the client's) forgot this handle."""
        return self._closed or self.client._closed

    def _client_call(self, path: str, body: dict | None = None) -> dict:
        if self._closed:
            raise ClosedError(f"database {self.name!r} is closed")
        return self.client._call(path, body)

    def _call(self, path: str, body: dict | None = None) -> dict:
        return self._client_call(path, {"database_name": self.name, **(body or {})})

    def collection_exists(self, name: str) -> bool:
        v.check_name(name, what="collection_name")
        return bool(self._call("/is_collection_exists", {"collection_name": name})["exists"])

    is_collection_exists = collection_exists

    def require_collection(self, name: str, dim: int | None = None, metric: str = "ip",
                           description: str | None = None, drop_if_exists: bool = False,
                           durability: str | None = None) -> "RemoteCollection":
        """:meth:`vecstore.Database.require_collection` on the server. ``durability`` is that of
        the server's one handle of the collection, shared by all its clients: it applies when the
        server creates or opens the collection, and the other one while it is open is a
        ConflictError."""
        v.check_name(name, what="collection_name")
        _check_durability(durability)
        if metric is None and (drop_if_exists or not self.collection_exists(name)):
            parse_metric(metric)  # raises, as the library does for a collection it creates
        self._call("/required_collection", {"collection_name": name, "dim": dim, "metric": metric,
                                            "description": description, "drop_if_exists": drop_if_exists,
                                            "durability": durability})
        return RemoteCollection(self, name)

    def create_collection(self, name: str, dim: int | None = None, metric: str = "ip",
                          description: str | None = None, durability: str | None = None) -> "RemoteCollection":
        v.check_name(name, what="collection_name")
        parse_metric(metric)  # the library checks the arguments before it looks for the name
        _check_durability(durability)
        if self.collection_exists(name):
            raise AlreadyExistsError(f"collection_name: collection {name!r} already exists")
        return self.require_collection(name, dim, metric, description, durability=durability)

    def get_collection(self, name: str) -> "RemoteCollection":
        v.check_name(name, what="collection_name")
        if not self.collection_exists(name):
            raise NotFoundError(f"collection_name: no collection {name!r} in database {self.name!r}")
        return RemoteCollection(self, name)

    def show_collections(self) -> list[str]:
        return sorted(self._call("/show_collections")["collections"])

    list_collections = show_collections

    def show_collections_details(self) -> dict[str, dict]:
        return self._call("/show_collections_details")["collections"]

    def drop_collection(self, name: str, missing_ok: bool = True) -> None:
        v.check_name(name, what="collection_name")
        if not v.check_bool(missing_ok, param="missing_ok") and not self.collection_exists(name):
            raise NotFoundError(f"collection_name: no collection {name!r}")
        self._call("/drop_collection", {"collection_name": name})

    def snapshot_collection(self, name: str, path: str) -> str:
        v.check_name(name, what="collection_name")
        return RemoteCollection(self, name).snapshot_to(path)

    def restore_collection(self, name: str, path: str, overwrite: bool = False) -> "RemoteCollection":
        v.check_name(name, what="collection_name")
        path = _server_path(path, "snapshot_path")
        self._call("/restore_collection", {"collection_name": name, "snapshot_path": path, "overwrite": overwrite})
        return RemoteCollection(self, name)

    def export_collection(self, name: str, path: str) -> str:
        v.check_name(name, what="collection_name")
        return RemoteCollection(self, name).export_to(path)

    def import_collection(self, name: str, path: str, overwrite: bool = False, *,
                          progress: bool = False) -> "RemoteCollection":
        v.check_name(name, what="collection_name")
        path = _server_path(path, "export_path")
        self._call("/import_collection", {"collection_name": name, "export_path": path, "overwrite": overwrite})
        return RemoteCollection(self, name)

    # -- refresh jobs, over the seeds' wire shapes (Zilliz for jobs, Lance for views) ----------
    def _zilliz(self, action: str, body: dict) -> Any:
        """``/v2/vectordb/jobs/external_collection/<action>``: ``{"code": 0, "data": ...}``, or a
        non-zero code with a message (HTTP 200, as the seed answers)."""
        doc = self._client_call(f"/v2/vectordb/jobs/external_collection/{action}", {"dbName": self.name, **body})
        if doc.get("code", 0) != 0:
            message = doc.get("message", "")
            cls = {100: NotFoundError, 800: NotFoundError}.get(doc["code"])
            if cls is None:
                cls = ConflictError if "already in progress" in message else InvalidArgumentError
            raise cls(message)
        return doc["data"]

    @staticmethod
    def _job(d: dict) -> RefreshJob:
        reason = d.get("reason", "") or ""
        # the Zilliz record has no kind: an external refresh is the one that names its source
        return RefreshJob(job_id=int(d["jobId"]), kind="external_refresh" if d.get("externalSource") else "mv_refresh",
                          collection_name=d["collectionName"],
                          state=_STATES[d["state"]], progress=int(d["progress"]), start_time=int(d["startTime"]),
                          end_time=int(d["endTime"]), reason=reason, cancelled=reason.startswith("cancelled"),
                          external_source=d.get("externalSource") or None)

    def refresh_external_collection(self, name: str, external_source: Any = None, external_spec: Any = None) -> int:
        """Start a refresh job of an external collection on the server; returns the job id."""
        body = {"collectionName": name}
        if external_source is not None or external_spec is not None:
            body.update(externalSource=external_source, externalSpec=external_spec)
        return int(self._zilliz("refresh", body)["jobId"])

    def describe_refresh_job(self, job_id: int) -> RefreshJob:
        """The job's state, progress, times and reason (the Zilliz record: no ``stats``)."""
        return self._job(self._zilliz("describe", {"jobId": _remote_job_id(job_id)}))

    def list_refresh_jobs(self, collection_name: str | None = None) -> list[RefreshJob]:
        """Refresh jobs of the database's external collections (the Zilliz list has no view jobs)."""
        if collection_name is not None:
            v.check_name(collection_name, what="collection_name")
        return [self._job(d) for d in self._zilliz("list", {"collectionName": collection_name})["records"]]

    def cancel_refresh_job(self, job_id: int) -> RefreshJob:
        return self._job(self._zilliz("cancel", {"jobId": _remote_job_id(job_id)}))

    def wait_refresh_job(self, job_id: int, timeout: float | None = None, *,
                         raise_on_failure: bool = False) -> RefreshJob:
        """Poll until the job ends; ``TimeoutError_`` after ``timeout`` seconds."""
        job_id = _remote_job_id(job_id)
        timeout = v.check_timeout(timeout)
        raise_on_failure = v.check_bool(raise_on_failure, param="raise_on_failure")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.describe_refresh_job(job_id)
            if job.done:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError_(f"job {job_id} still {job.state} after {timeout} s (progress {job.progress})")
            time.sleep(0.1)
        if raise_on_failure and job.state == "FAILED":
            raise (JobCancelledError if job.cancelled else JobFailedError)(f"job {job_id} failed: {job.reason}")
        return job

    def refresh_materialized_view(self, name: str, src_version: int | None = None,
                                  max_rows_per_fragment: int | None = None, concurrency: int | None = None,
                                  intra_applier_concurrency: int | None = None, output_limit: int | None = None,
                                  manifest: str | dict | None = None, cluster: str | None = None, *,
                                  full: bool = False) -> int:
        """Start a refresh of a materialized view (``POST /v1/materialized_view/{db}${view}/refresh``);
        the parameters of :meth:`vecstore.Database.refresh_materialized_view`."""
        v.check_name(name, what="view_name")
        body = {"src_version": src_version, "max_rows_per_fragment": max_rows_per_fragment,
                "concurrency": concurrency, "intra_applier_concurrency": intra_applier_concurrency,
                "output_limit": output_limit, "manifest": manifest, "cluster": cluster, "full": full or None}
        path = f"/v1/materialized_view/{quote(self.name + '$' + name, safe='')}/refresh"
        return int(self._client_call(path, body)["job_id"])

    def list_refresh_external_collection_jobs(self, collection_name: str | None = None) -> list[RefreshJob]:
        return self.list_refresh_jobs(collection_name or None)  # the Zilliz list has external jobs only

    get_refresh_external_collection_progress = describe_refresh_job

    def list_materialized_views(self) -> list[str]:
        return [n for n in self.show_collections() if RemoteCollection(self, n).kind == "view"]

    create_external_collection = _defined_locally("create_external_collection")
    create_materialized_view = _defined_locally("create_materialized_view")
    set_volumes = _defined_locally("set_volumes")
    get_volumes = _defined_locally("get_volumes")
    # (no route: a definition names the source's catalog, which may hold its credentials)
    describe_external_collection = _defined_locally("describe_external_collection")
    describe_materialized_view = _defined_locally("describe_materialized_view")

    def close(self) -> None:
        """Forget this handle: calls through it or its collections then raise ClosedError (the
        server keeps the database for its other clients). Idempotent."""
        self._closed = True


class RemoteCollection:
    """A collection on a server, with the API of :class:`vecstore.Collection`."""

    def __init__(self, db: RemoteDatabase, name: str) -> None:
        self.database = db
        self.name = name
        self._closed = False
        self._config: CollectionConfig | None = None
        self._binary_search = True  # until the server shows it cannot (string ids, older server)

    def __repr__(self) -> str:
        return f"<vecstore.RemoteCollection {self.database.name}/{self.name}>"

    def __enter__(self) -> "RemoteCollection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or that of its database or client) forgot this handle."""
        return self._closed or self.database.closed

    def _call(self, path: str, body: dict | None = None) -> dict:
        if self.closed:
            raise ClosedError(f"collection {self.name!r} is closed")
        return self.database._call(path, {"collection_name": self.name, **(body or {})})

    def _query(self) -> dict:
        return {"database_name": self.database.name, "collection_name": self.name}

    def _transport(self) -> _Transport:
        if self.closed:
            raise ClosedError(f"collection {self.name!r} is closed")
        return self.database.client._t

    # -- config and stats ------------------------------------------------------------------------
    def get_collection_config(self) -> CollectionConfig:
        self._config = CollectionConfig.from_dict(self._call("/get_collection_config")["config"])
        return self._config

    @property
    def dim(self) -> int:
        # A cached 0 is asked again: the first vectors (maybe another client's) fix the dim.
        return (self._config and self._config.dim) or self.get_collection_config().dim

    @property
    def metric(self) -> str:
        return self.get_collection_config().metric

    @property
    def kind(self) -> str:
        return self.get_collection_config().kind

    @property
    def shape(self) -> tuple[int, int]:
        n, d = self._call("/collection_shape")["shape"]
        return (n, d)

    def __len__(self) -> int:
        return self.shape[0]

    def __contains__(self, id: IdLike) -> bool:
        return self.is_id_exists(id)

    def stats(self) -> CollectionStats:
        d = self._call("/stats")["stats"]  # LynseDB's "none" on the wire is the library's None
        return CollectionStats.from_dict({**d, "index_mode": None if d.get("index_mode") == "none" else d.get("index_mode")})

    @property
    def version(self) -> int:
        return self.stats().version

    def update_description(self, description: str) -> str:
        return self._call("/update_description", {"description": description})["description"]

    def get_collection_path(self) -> str:
        return self._call("/get_collection_path")["collection_path"]

    def index_mode(self) -> str | None:
        return self._call("/index_mode")["index_mode"]

    def close(self) -> None:
        """Forget this handle (the server keeps the collection open for its other clients)."""
        self._closed = True

    # -- writes ----------------------------------------------------------------------------------
    def add_item(self, vector: Any, id: IdLike | None = None, field: dict | None = None) -> Id:
        # Named as Collection.add_item names them (it is bulk_add_items of one item).
        item = {"vector": _vec(vector, "items[].vector"), "id": id,
                "field": None if field is None else v.check_fields(field, param="items[0].field")}
        return self._call("/add_item", {"item": item})["item"]["id"]

    def bulk_add_items(self, items: Iterable[dict], *, progress: bool = False) -> list[Id]:
        return self._send_items("/bulk_add_items", _wire_items(items, need_id=False, dim=lambda: self.dim))

    def _send_items(self, path: str, items: list[dict]) -> list[Id]:
        ids = [it.get("id") for it in items]
        checked = False  # against the stored ids, before the first of several requests
        if path == "/bulk_add_items" and None in ids:
            one = self._requests("json", len(items), lambda a, b: self._json(path, {"items": items[a:b]}),
                                 lambda body, a, b: self._post(path, body), whole=True)
            if one is not None:  # one request: the server assigns the ids
                return one
            items = [{**it, "id": i} for it, i in zip(items, self._assign_ids(ids))]
            checked = True
        else:  # checked here too: a later request refused for them would leave the earlier ones written
            v.check_unique([v.check_id(i, param=f"items[{k}].id") for k, i in enumerate(ids) if i is not None],
                           param="ids")
        return self._requests("json", len(items), lambda a, b: self._json(path, {"items": items[a:b]}),  # type: ignore[return-value]
                              lambda body, a, b: self._post(path, body),
                              new_ids=ids if path == "/bulk_add_items" and not checked else None)

    def _json(self, path: str, body: dict) -> bytes:
        return _json_body(path, {**self._query(), **body})

    def _post(self, path: str, payload: bytes) -> list[Id]:
        return self._transport().call(path, payload=payload)["ids"]

    def _requests(self, kind: str, n: int, encode: Any, send: Any, *, whole: bool = False,
                  new_ids: list | None = None) -> list[Id] | None:
        """Rows ``[0, n)`` in requests of at most ``_BATCH`` rows whose bodies
        (``encode(start, end)``) fit the transport's byte budget for ``kind``; returns what
        ``send(body, start, end)`` returned, in order. A request the server refuses as too large
        (413: it read nothing of it) is cut and sent again; a single row too large for the server
        is its PayloadTooLargeError. ``whole``: one request or nothing, ``None`` when the rows
        need more than one. ``new_ids``: the ids of an add, checked against the stored ones
        before the first of several requests (:meth:`_refuse_stored`)."""
        t = self._transport()
        out: list[Id] = []
        start, size = 0, _BATCH
        while start < n:
            end = min(start + size, n)
            if whole and end < n:
                return None
            body = encode(start, end)
            budget = t.budget[kind]
            if len(body) > budget and end - start > 1:
                if whole:
                    return None
                size = max(1, (end - start) * budget // len(body) * 9 // 10)  # rows are not all alike
                continue
            if new_ids is not None and start == 0 and end < n:
                self._refuse_stored(new_ids)
                new_ids = None
            try:
                out.extend(send(body, start, end))
            except PayloadTooLargeError:
                if end - start == 1:
                    raise
                t.budget[kind] = min(t.budget[kind], len(body) // 2)
                if whole:
                    return None
                continue
            start = end
        return out

    def _refuse_stored(self, ids: list, deleted: list | None = None) -> None:
        """Before the first of several requests of an add: ids already stored (live or
        soft-deleted: ``deleted``, when the caller has them) are refused as the library refuses
        them, before anything is written (found by the server at a later request, the earlier
        ones stayed written)."""
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return
        asked = list(wanted)
        live = [i for a in range(0, len(asked), _BATCH)
                for i in self.query(filter_ids=asked[a:a + _BATCH], return_ids_only=True)]
        deleted = [i for i in (self.list_deleted_ids() if deleted is None else deleted) if i in wanted]
        if live or deleted:
            hint = " (soft-deleted: restore_items() or upsert them)" if deleted else "; use upsert to replace"
            raise AlreadyExistsError(f"ids: {len(live) + len(deleted)} already exist{hint}: {v._sample(live + deleted)}")

    def _assign_ids(self, ids: list) -> list:
        """The ids the library gives a call that the client sends in several requests (one
        request is numbered by the server itself): a row without one gets the next int after
        the largest int id stored before the call (soft-deleted rows count until ``compact``),
        skipping the call's own explicit ids, as :meth:`vecstore.Collection.bulk_add_items`.
        The server would number each request on its own, after the ids of those before it.
        A writer adding rows between this read and the last request can take one of these ids:
        that request is then refused (AlreadyExistsError) and the ones before it stay written.
        The stored ids are checked here (:meth:`_refuse_stored`): the caller sends the result
        without checking them again."""
        explicit = [v.check_id(i, param="ids") for i in ids if i is not None]
        v.check_unique(explicit, param="ids")
        deleted = self.list_deleted_ids()
        self._refuse_stored(explicit, deleted)  # first, as the library: a clash is AlreadyExistsError
        top = max([self.max_id(), *(i for i in deleted if type(i) is int)])
        taken, nxt, out = set(explicit), top + 1, []
        for i in ids:
            if i is None:
                while nxt in taken:
                    nxt += 1
                if nxt > v.MAX_INT_ID:
                    raise InvalidArgumentError(f"ids: no integer id is left above the largest one ({top}) "
                                               "to assign; pass explicit ids")
                i = nxt
                nxt += 1
            out.append(i)
        return out

    # add and upsert check the shapes as Collection.add and Collection.upsert do (same order,
    # same errors) before the rows are cut into requests: a mismatch must never show only at a
    # chunk boundary (it once stored the first len(ids) rows and dropped the rest silently).
    # Dimension 0 takes any one width; the server checks the collection's.
    def add(self, vectors: Any, ids: Ids | None = None, fields: Sequence[dict | None] | None = None,
            *, progress: bool = False) -> list[Id]:
        arr, id_list, field_list = v.check_add_columns(vectors, ids, fields, 0)
        n = len(arr)
        v.check_unique([i for i in id_list if i is not None], param="ids")
        if None in id_list:  # in one request, the items route takes null ids and assigns them
            def items(a: int, b: int) -> bytes:
                return self._json("/bulk_add_items", {"items": [
                    {"vector": row, "id": id_list[j], "field": None if field_list is None else field_list[j]}
                    for j, row in enumerate(arr[a:b].tolist(), a)]})
            one = self._requests("json", n, items, lambda body, a, b: self._post("/bulk_add_items", body),
                                 whole=True)
            if one is not None:
                return one
            # several requests: the ids are assigned here, and checked against the stored ones
            return self._write_rows("add", arr, self._assign_ids(id_list), field_list, checked=True)
        return self._write_rows("add", arr, id_list, field_list)

    def upsert(self, vectors: Any, ids: Ids, fields: Sequence[dict | None] | None = None,
               *, progress: bool = False) -> list[Id]:
        arr, id_list, field_list = v.check_upsert_columns(vectors, ids, fields, 0)
        v.check_unique(id_list, param="ids")
        return self._write_rows("upsert", arr, id_list, field_list)

    def _write_rows(self, op: str, arr: np.ndarray, ids: list, fields: list | None,
                    checked: bool = False) -> list[Id]:
        """Rows already checked (``ids`` and ``fields`` as long as ``arr``), in requests."""
        def cut(x: list | None, a: int, b: int) -> list | None:
            return None if x is None else x[a:b]

        new_ids = ids if op == "add" and not checked else None
        if all(isinstance(i, int) for i in ids):  # check_id made every int a plain non-negative int
            t, path = self._transport(), f"/{op}_records_binary"
            query = {**self._query(), "dim": arr.shape[1], "ids_encoding": "raw", "return_ids": "true"}
            return self._requests(  # type: ignore[return-value]
                "binary", len(ids), lambda a, b: wire.encode_records(arr[a:b], ids[a:b], cut(fields, a, b)),
                lambda body, a, b: t.call_binary(path, {**query, "n_vectors": b - a}, body)["ids"],
                new_ids=new_ids)
        return self._requests(  # type: ignore[return-value]
            "json", len(ids),
            lambda a, b: self._json(f"/{op}", {"ids": ids[a:b], "vectors": arr[a:b].tolist(), "fields": cut(fields, a, b)}),
            lambda body, a, b: self._post(f"/{op}", body), new_ids=new_ids)

    def upsert_items(self, items: Iterable[dict], *, progress: bool = False) -> list[Id]:
        return self._send_items("/upsert_items", _wire_items(items, need_id=True, dim=lambda: self.dim))

    # missing_ok always sent: the routes default it to true for LynseDB's clients.
    def delete_items(self, ids: Ids | None = None, where: str | None = None, *, missing_ok: bool = False) -> int:
        return self._call("/delete_items", {"ids": None if ids is None else v.check_ids(ids, allow_empty=True), "where": where,
                                            "missing_ok": v.check_bool(missing_ok, param="missing_ok")})["n_deleted"]

    delete = delete_items

    def restore_items(self, ids: Ids, *, missing_ok: bool = False) -> int:
        return self._call("/restore_items", {"ids": v.check_ids(ids, allow_empty=True),
                                             "missing_ok": v.check_bool(missing_ok, param="missing_ok")})["n_restored"]

    restore = restore_items

    def list_deleted_ids(self) -> list[Id]:
        return self._call("/list_deleted_ids")["ids"]

    def compact(self) -> int:
        return self._call("/compact")["vectors_removed"]

    def commit(self, items: Iterable[dict] | None = None) -> None:
        if items:  # as the library: bulk_add_items, in as many requests as it takes, then the barrier
            self.bulk_add_items(items)
        self._call("/commit")

    def flush(self) -> None:
        self._call("/flush")

    def checkpoint(self) -> None:
        self._call("/checkpoint")

    # -- reads -----------------------------------------------------------------------------------
    # -- blobs ----------------------------------------------------------------------------------
    def write_blob(self, key: str, data: Any) -> None:
        """See :meth:`vecstore.Collection.write_blob`."""
        self._transport().call_binary("/write_blob", {**self._query(), "key": v.check_blob_key(key)},
                                        v.check_bytes(data))

    def read_blob(self, key: str, offset: int = 0, length: int | None = None) -> bytes | None:
        """See :meth:`vecstore.Collection.read_blob`."""
        query = {**self._query(), "key": v.check_blob_key(key), "offset": v.check_nonneg_int(offset, param="offset"),
                 "length": v.check_nonneg_int(length, param="length", allow_none=True)}
        status, ctype, data = self._transport().request(
            "GET", "/read_blob", query={k: x for k, x in query.items() if x is not None})
        if status == 204:
            return None
        if status == 200:
            return data
        self._transport()._params("/read_blob", status, ctype, data)  # raises the server's error
        raise AssertionError("unreachable")

    def delete_blob(self, key: str) -> bool:
        """See :meth:`vecstore.Collection.delete_blob`."""
        return bool(self._call("/delete_blob", {"key": v.check_blob_key(key)})["deleted"])

    def list_blobs(self) -> list[str]:
        """See :meth:`vecstore.Collection.list_blobs`."""
        status, ctype, data = self._transport().request("GET", "/list_blobs", query=self._query())
        return list(self._transport()._params("/list_blobs", status, ctype, data)["keys"])

    def _rows(self, triple: list) -> Rows:
        return Rows.from_dict(triple, self.dim)

    def head(self, n: int = 5) -> Rows:
        return self._rows(self._call("/head", {"n": v.check_k(n, param="n")})["head"])

    def tail(self, n: int = 5) -> Rows:
        return self._rows(self._call("/tail", {"n": v.check_k(n, param="n")})["tail"])

    def read_by_only_id(self, id: IdLike | Ids) -> Rows:
        ids = v.check_id_or_ids(id)  # the library's check, and its error
        body_id = ids[0] if isinstance(id, (int, str, np.integer)) else ids
        return self._rows(self._call("/read_by_only_id", {"id": body_id})["item"])

    def query(self, where: str | None = None, filter_ids: Ids | None = None,
              return_ids_only: bool = False) -> list:
        return self._call("/query", {"where": where, "filter_ids": _filter_ids(filter_ids),
                                     "return_ids_only": return_ids_only})["result"]

    def query_vectors(self, where: str | None = None, filter_ids: Ids | None = None) -> Rows:
        return self._rows(self._call("/query_vectors", {"where": where, "filter_ids": _filter_ids(filter_ids)})["result"])

    def list_fields(self) -> list[str]:
        return self._call("/list_fields")["fields"]

    def is_id_exists(self, id: IdLike) -> bool:
        return self._call("/is_id_exists", {"id": id})["is_id_exists"]

    def max_id(self) -> int:
        return self._call("/max_id")["max_id"]

    # -- search ----------------------------------------------------------------------------------
    def search(self, vector: Any, k: int = 10, where: str | None = None, return_fields: bool = False,
               nprobe: int | None = None, vector_field: str = "default", *, field_name: str | None = None,
               approx: bool = False, eps: float = 1e-4) -> SearchResult:
        vf = v.check_vector_field(vector_field, field_name)
        k = v.check_k(k)  # here: the transport would drop a None and the server take its default
        if self._binary_search:
            found = self._search_binary(vector, k, where, return_fields, nprobe, vf, approx, eps)
            if found is not None:
                return found
        items = self._call("/search", {"vector": _vec(vector), "k": k, "where": where, "return_fields": return_fields,
                                       "nprobe": nprobe, "vector_field": vf, "approx": approx, "eps": eps})["items"]
        return SearchResult.from_dict(items, with_fields=return_fields)

    def _search_binary(self, vector: Any, k: Any, where: Any, return_fields: Any, nprobe: Any, vf: Any,
                       approx: Any = False, eps: Any = 1e-4, *, batch: bool = False) -> Any:
        """``/search_binary`` (or ``/batch_search_binary``): the queries as raw float32 and a
        binary reply, instead of about 50 µs of JSON work per query on the two sides. ``None``
        sends the caller to the JSON route: for input the server should judge (so errors are the
        same as local ones), and for string ids, which the binary block cannot carry (then this
        handle stays on JSON)."""
        try:
            q = np.asarray(vector)
        except (TypeError, ValueError):
            return None
        if q.dtype.kind not in v._REAL_KINDS:  # complex, dates, strings, objects: the JSON route judges them
            return None
        q = q.astype("<f4")
        plain = (type(k) is int and type(return_fields) is bool and type(approx) is bool
                 and (where is None or type(where) is str) and type(vf) is str
                 and (nprobe is None or type(nprobe) is int) and type(eps) in (int, float))
        if not plain or q.ndim != (2 if batch else 1) or not q.size or not np.isfinite(q).all():
            return None
        query = {**self._query(), "dim": q.shape[-1], "k": k, "where": where, "return_fields": return_fields,
                 "nprobe": nprobe, "vector_field": None if vf == "default" else vf}
        if batch:
            query["n_queries"] = len(q)
        else:
            query.update(approx=approx, eps=eps)
        try:
            status, ctype, data, headers = self._transport().exchange(
                "POST", "/batch_search_binary" if batch else "/search_binary", np.ascontiguousarray(q).tobytes(),
                query={x: y for x, y in query.items() if y is not None}, content_type="application/octet-stream")
        except UnicodeEncodeError:  # text with no UTF-8 form (a lone surrogate) in where: the server judges it
            return None
        index = headers.get("X-Vecstore-Index") if status == 200 else None
        if index is None:  # an error, or a server that does not say which index answered
            if status == 200:
                self._binary_search = False
            elif status == 400 and b"integer ids only" in data:
                self._binary_search = False
            return None
        blocks = wire.decode_batch_search(data) if batch else [wire.decode_search_block(data)[:3]]
        out = [SearchResult(ids=tuple(ids), scores=np.asarray(scores, dtype=np.float32),
                            fields=tuple(fields) if return_fields else None, k=k, index=index, vector_field=vf)
               for ids, scores, fields in blocks]
        return out if batch else out[0]

    def batch_search(self, vectors: Any, k: int = 10, where: str | None = None, return_fields: bool = False,
                     nprobe: int | None = None, vector_field: str = "default", *,
                     field_name: str | None = None) -> list[SearchResult]:
        vf = v.check_vector_field(vector_field, field_name)
        k = v.check_k(k)
        if self._binary_search:
            found = self._search_binary(vectors, k, where, return_fields, nprobe, vf, batch=True)
            if found is not None:
                return found
        res = self._call("/batch_search", {"vectors": _vecs(vectors), "k": k, "where": where,
                                           "return_fields": return_fields, "nprobe": nprobe, "vector_field": vf})
        return [SearchResult.from_dict({**r, "k": k}, with_fields=return_fields) for r in res["results"]]

    def search_range(self, vector: Any, threshold: float, max_results: int = 1000, where: str | None = None,
                     vector_field: str = "default", return_fields: bool = False) -> SearchResult:
        max_results = v.check_k(max_results, param="max_results")
        r = self._call("/search_range", {"vector": _vec(vector), "threshold": threshold, "max_results": max_results,
                                         "where": where, "vector_field": vector_field,
                                         "return_fields": return_fields})["result"]
        return SearchResult.from_dict({**r, "k": max_results}, with_fields=return_fields)

    def search_profile(self, vector: Any, k: int = 10, where: str | None = None, nprobe: int | None = None,
                       return_fields: bool = False, vector_field: str = "default", *, field_name: str | None = None,
                       approx: bool = False, eps: float = 1e-4) -> ProfiledSearch:
        vf = v.check_vector_field(vector_field, field_name)
        k = v.check_k(k)
        p = self._call("/search_profile", {"vector": _vec(vector), "k": k, "where": where, "nprobe": nprobe,
                                           "return_fields": return_fields, "vector_field": vf,
                                           "approx": approx, "eps": eps})
        return ProfiledSearch(result=SearchResult.from_dict(p["items"], with_fields=return_fields),
                              profile=p["profile"])

    def text_search(self, text: str, text_fields: Sequence[str] | None = None, k: int = 10,
                    where: str | None = None, return_fields: bool = False) -> SearchResult:
        k = v.check_k(k)
        items = self._call("/text_search", {"text": text, "text_fields": v.check_text_fields(text_fields),
                                            "k": k, "where": where, "return_fields": return_fields})["items"]
        return SearchResult.from_dict(items, with_fields=return_fields)

    bm25_search = text_search

    def sparse_search(self, vector: Any, k: int = 10, where: str | None = None,
                      return_fields: bool = False) -> SearchResult:
        from .indexes.sparse import parse_sparse
        k = v.check_k(k)
        idx, val = parse_sparse(vector, param="vector")
        items = self._call("/sparse_search", {"vector": {"indices": idx.tolist(), "values": val.tolist()}, "k": k,
                                              "where": where, "return_fields": return_fields})["items"]
        return SearchResult.from_dict(items, with_fields=return_fields)

    def hybrid_search(self, vector: Any = None, text: str | None = None, text_fields: Sequence[str] | None = None,
                      k: int = 10, where: str | None = None, fusion: str = "rrf", vector_weight: float = 1.0,
                      text_weight: float = 1.0, rrf_k: float = 60.0, candidate_limit: int | None = None,
                      return_fields: bool = False, nprobe: int | None = None,
                      vector_field: str = "default", *, field_name: str | None = None) -> SearchResult:
        vf = v.check_vector_field(vector_field, field_name)
        k = v.check_k(k)
        fusion, vector_weight, text_weight, rrf_k = v.check_fusion_params(fusion, vector_weight, text_weight, rrf_k)
        items = self._call("/hybrid_search", {
            "vector": None if vector is None else _vec(vector), "text": text,
            "text_fields": v.check_text_fields(text_fields), "k": k, "where": where,
            "fusion": fusion, "vector_weight": vector_weight, "text_weight": text_weight, "rrf_k": rrf_k,
            "candidate_limit": candidate_limit, "return_fields": return_fields, "nprobe": nprobe,
            "vector_field": vf})["items"]
        return SearchResult.from_dict(items, with_fields=return_fields)

    # -- indexes and vector fields -----------------------------------------------------------------
    def refresh(self) -> bool:
        """:meth:`vecstore.Collection.refresh`: always False remotely, the server's handle is the
        one that writes, so it is always current."""
        return False

    def build_index(self, index_mode: str = "FLAT", n_clusters: int | None = None, *, progress: bool = False,
                    **params: Any) -> dict:
        """:meth:`vecstore.Collection.build_index` on the server (``progress`` shows nothing
        remotely: the server does not stream it)."""
        parse_index_mode(index_mode, default_metric="ip")  # a null would be the server's default, FLAT
        r = self._call("/build_index", {"index_mode": index_mode, "n_clusters": n_clusters, "params": params or None})
        return {"index_mode": r["index_mode"], "n_clusters": r.get("n_clusters")}

    def remove_index(self) -> None:
        self._call("/remove_index")

    def create_vector_field(self, field_name: str, dim: int, metric: str = "ip",
                            index_mode: str | None = None) -> VectorFieldInfo:
        metric = parse_metric(metric)  # a null would be the server's default, ip
        f = self._call("/create_vector_field", {"field_name": field_name, "dim": dim, "metric": metric,
                                                "index_mode": index_mode})["field"]
        return VectorFieldInfo(**f)

    def list_vector_fields(self) -> list[VectorFieldInfo]:
        return [VectorFieldInfo(**f) for f in self._call("/list_vector_fields")["fields"]]

    def add_named_vectors(self, field_name: str, vectors: Any, ids: Ids) -> list[Id]:
        return self._call("/add_named_vectors", {"field_name": field_name, "vectors": _vecs(vectors),
                                                 "ids": v.check_ids(ids)})["ids"]

    def build_vector_field_index(self, field_name: str, index_mode: str = "FLAT", n_clusters: int | None = None,
                                 *, progress: bool = False, **params: Any) -> dict:
        parse_index_mode(index_mode, default_metric="ip")
        r = self._call("/build_vector_field_index", {"field_name": field_name, "index_mode": index_mode,
                                                     "n_clusters": n_clusters, "params": params or None})
        return {"field_name": field_name, "index_mode": r["index_mode"], "n_clusters": r.get("n_clusters")}

    def remove_vector_field_index(self, field_name: str) -> None:
        self._call("/remove_vector_field_index", {"field_name": field_name})

    def add_sparse_vectors(self, vectors: Sequence[Any], ids: Ids) -> list[Id]:
        from .indexes.sparse import parse_sparse
        id_list = v.check_ids(ids)
        if isinstance(vectors, dict) or not hasattr(vectors, "__len__") or len(vectors) != len(id_list):
            raise InvalidArgumentError(f"vectors: expected a list of {len(id_list)} sparse vectors to match ids")
        wire_vectors = []
        for i, x in enumerate(vectors):
            idx, val = parse_sparse(x, param=f"vectors[{i}]")
            wire_vectors.append({"indices": idx.tolist(), "values": val.tolist()})
        return self._call("/add_sparse_vectors", {"vectors": wire_vectors, "ids": id_list})["ids"]

    # -- portability (paths on the server) ---------------------------------------------------------
    def snapshot_to(self, path: str, *, progress: bool = False) -> str:
        path = _server_path(path, "snapshot_path")
        return _as_returned(self._call("/snapshot_collection", {"snapshot_path": path})["snapshot_path"])

    def export_to(self, path: str, *, progress: bool = False) -> str:
        path = _server_path(path, "export_path")
        return _as_returned(self._call("/export_collection", {"export_path": path})["export_path"])


_EXAMPLE = re.compile(r"^(\s*>>> .*?)$", re.MULTILINE)


def _skip_example(m: re.Match) -> str:
    line = m.group(1)
    if "+SKIP" in line:
        return line
    return line + (" +SKIP" if "doctest:" in line else "  # doctest: +SKIP")


def _docs_from(remote: type, local: type) -> None:
    """Give each public method and property of ``remote`` without a docstring its namesake's in
    ``local``, so ``help()`` shows what it does: it is the same call. The examples are marked
    ``+SKIP`` here: they need the local module's objects, and this module's doctests run them."""
    for name, member in list(vars(remote).items()):
        fn = member.fget if isinstance(member, property) else member
        if name.startswith("_") or not callable(fn) or fn.__doc__:
            continue
        doc = getattr(local, name).__doc__
        if doc:
            fn.__doc__ = _EXAMPLE.sub(_skip_example, doc)
            if isinstance(member, property):
                member.__doc__ = fn.__doc__


_docs_from(RemoteClient, Client)
_docs_from(RemoteDatabase, Database)
_docs_from(RemoteCollection, Collection)

__all__ = ["RemoteClient", "RemoteDatabase", "RemoteCollection", "RefreshJob"]
