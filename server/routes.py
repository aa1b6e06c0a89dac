"""The route table: every HTTP path, the library method it calls and its request schema.

One :class:`Route` per path. The generic handler in :mod:`.app` does everything else (auth,
limits, decoding, validation, the call, encoding, errors), so adding an endpoint is adding
one entry here. Paths, field names and response keys are LynseDB's
(``shared/research/lynse_api.md`` §2-§6, §11); the seed document's variant field names are
accepted as aliases (``field_name`` for ``vector_field``, ``dimension`` for ``dim``,
top-level ``vector/id/field`` for ``/add_item``'s nested ``item``, ``ids/vectors/fields`` for
``/upsert_items``'s ``items``).

Defaults live only in the library's method signatures: a parameter the request leaves out
(or sends as ``null``) is not passed at all.

A route is::

    Route(path, target, call, params, respond, method="POST", body="json", reply="json", ...)

- ``target``: what ``call`` runs on. ``"collection"`` (resolved from the required
  ``database_name`` + ``collection_name``, which are added automatically), ``"database"``
  (from ``database_name``, added automatically), ``"client"`` or ``"server"``.
- ``call``: a method name on the target, or a function ``f(target, **kwargs)`` for the few
  routes that adapt the wire to the library (binary bodies, the two-shape ``/upsert_items``).
- ``params``: :class:`Param` entries. ``kwarg`` renames a parameter for the call (``""``
  means "validate and echo, don't pass"); ``aliases`` are other accepted JSON keys; ``limit``
  names a server limit (``"top_k"``, ``"batch"``) the value must respect.
- ``respond(result, call)``: the endpoint-specific part of the reply. For ``reply="json"`` a
  dict merged into ``params`` after the ``database_name``/``collection_name`` echo; for
  ``"binary"`` bytes; for ``"raw"`` the whole JSON body (or a :class:`Reply`).
- ``body``: ``"json"`` (parameters from the JSON object), ``"binary"`` (parameters from the
  query string, raw body passed to ``call`` as ``body=``) or ``"none"`` (query string only).
  A :class:`Param` may say where it comes from instead (``location="path"`` for a ``{name}``
  segment of the path, ``"query"`` for the query string of a JSON route), and ``key`` when
  its name on the wire differs from its name in the table.
- ``envelope``: ``"lynse"`` (the default: ``{"status": "success", "params": ...}`` and
  ``{"error", "code"}`` errors), ``"zilliz"`` (``{"code": 0, "data": ...}``; errors HTTP 200
  ``{"code": n, "message"}``) or ``"lance"`` (the reply as is; errors Lance ``ErrorResponse``).
  Codes: :func:`error_reply`.
- ``invalidates``: the route may drop or replace databases or collections, so the server
  forgets its cached handles after it (and, with ``--processes``, tells the replicas).
- ``read``: a collection route that only reads and needs no text index. With ``--processes``
  a replica answers it from its own read-only handle (caught up with ``refresh()`` first);
  every other route is forwarded to the primary, the one writer. Text searches are not
  ``read``: a read-only handle would build a private tantivy index of its own.

Job routes (refresh.md §5.1, §5.3.5): ``/v2/vectordb/jobs/external_collection/{refresh, list,
describe, cancel}`` (Zilliz shapes; ``dbName`` defaults to ``"default"``, as in Zilliz, and also
names the database of ``describe``/``cancel`` since job ids are per database), and
``POST /v1/materialized_view/{id}/refresh?delimiter=$`` plus
``GET /v1/materialized_view/{id}/jobs/{job_id}`` (Lance shapes; ``id`` is ``database$view``,
a bare ``view`` is in database ``"default"``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np

from vecstore import wire
from vecstore.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    VecstoreError,
)
from vecstore.indexes.base import lynse_build_params, parse_index_mode
from vecstore.views import JOB_KIND as MV_JOB_KIND
from vecstore.views import parse_lance_id

# --------------------------------------------------------------------------------------------
# Parameter types: convert a JSON (or query-string) value, or raise InvalidArgumentError that
# names the parameter. Each type also has the JSON Schema /openapi.json shows.


def _bad(name: str, expected: str, value: Any) -> InvalidArgumentError:
    got = "null" if value is None else type(value).__name__
    got = {"str": "string", "dict": "object", "list": "array", "bool": "boolean", "float": "number", "int": "integer"}.get(got, got)
    return InvalidArgumentError(f"{name}: expected {expected}, got {got}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(v, name, q):
    if not isinstance(v, str):
        raise _bad(name, "a string", v)
    return v


def _int(v, name, q):
    if q and isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            raise InvalidArgumentError(f"{name}: expected an integer, got {v!r}") from None
    if not _is_int(v):
        raise _bad(name, "an integer", v)
    return v


def _uint(v, name, q):
    v = _int(v, name, q)
    if v < 0:
        raise InvalidArgumentError(f"{name}: expected a non-negative integer, got {v}")
    return v


def _float(v, name, q):
    if q and isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise InvalidArgumentError(f"{name}: expected a number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(name, "a number", v)
    try:
        v = float(v)
    except OverflowError:  # an integer literal beyond float range
        v = math.inf
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name}: expected a finite number, got {v}")
    return v


def _bool(v, name, q):
    if q and isinstance(v, str) and v.lower() in ("true", "false", "1", "0"):
        return v.lower() in ("true", "1")
    if not isinstance(v, bool):
        raise _bad(name, "a boolean", v)
    return v


def _decimal(v: str, name: str, expected: str) -> int:
    """An ASCII decimal string as an integer: past 4300 digits Python's int() refuses it
    (ValueError), which is the client's error, not a bug."""
    try:
        return int(v)
    except ValueError:
        raise InvalidArgumentError(f"{name}: expected {expected}, got a string of {len(v)} digits") from None


def _id(v, name, q):
    if q and isinstance(v, str) and v.isascii() and v.isdigit():  # "²".isdigit(), but int("²") fails
        return _decimal(v, name, "a non-negative integer or a non-empty string id")
    if _is_int(v) and v >= 0:
        return v
    if isinstance(v, str) and v:
        return v
    if _is_int(v):
        raise InvalidArgumentError(f"{name}: ids must be non-negative, got {v}")
    raise _bad(name, "a non-negative integer or a non-empty string id", v)


def _list(v, name, expected="an array"):
    if not isinstance(v, list):
        raise _bad(name, expected, v)
    return v


def _ids(v, name, q):
    return [_id(x, f"{name}[{i}]", q) for i, x in enumerate(_list(v, name, "an array of ids"))]


def _id_or_ids(v, name, q):
    return _ids(v, name, q) if isinstance(v, list) else _id(v, name, q)


def _numbers(v, name: str, ndim: int) -> np.ndarray | list:
    expected = "an array of numbers" if ndim == 1 else "an array of arrays of numbers"
    _list(v, name, expected)
    # A wrong shape ([[1, 0]] for a vector, [] for either, rows of several widths) is left to
    # the library, which knows the dimension: its DimensionMismatchError is then the local one,
    # word for word, and no queries at all ([] to /batch_search) an empty answer, as locally.
    try:
        arr = np.asarray(v)
    except (ValueError, TypeError):  # ragged rows
        if ndim == 2:
            return [_numbers(row, f"{name}[{i}]", 1) for i, row in enumerate(v)]
        raise InvalidArgumentError(f"{name}: expected {expected} of equal length") from None
    if arr.size and arr.dtype.kind not in "iuf":
        raise InvalidArgumentError(f"{name}: expected {expected}")
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise InvalidArgumentError(f"{name}: values must be finite float32 numbers")
    return out


def _vector(v, name, q):
    return _numbers(v, name, 1)


def _vectors(v, name, q):
    return _numbers(v, name, 2)


def _sparse(v, name, q):
    """``{"indices": [...], "values": [...]}`` (the wire form), ``{"3": 0.5}`` or ``[[3, 0.5]]``."""
    if isinstance(v, dict) and set(v) == {"indices", "values"}:
        idx, val = _list(v["indices"], f"{name}.indices"), _list(v["values"], f"{name}.values")
        if len(idx) != len(val):
            raise InvalidArgumentError(f"{name}: {len(idx)} indices but {len(val)} values")
        pairs = zip(idx, val)
    elif isinstance(v, dict):
        # ASCII digits only: "²".isdigit() is true, but int("²") fails (and "١" would pass as 1,
        # which the library's parse_sparse refuses).
        pairs = ((int(k) if isinstance(k, str) and k.isascii() and k.isdigit() else k, w) for k, w in v.items())
    elif isinstance(v, list):
        if not all(isinstance(p, list) and len(p) == 2 for p in v):
            raise InvalidArgumentError(f"{name}: expected [index, weight] pairs")
        pairs = (tuple(p) for p in v)
    else:
        raise _bad(name, 'a sparse vector {"indices": [...], "values": [...]}', v)
    out: dict[int, float] = {}
    for i, w in pairs:
        i = _uint(i, f"{name} index", False)
        if i in out:  # as the library's parse_sparse: a duplicate is refused, never last-wins
            raise InvalidArgumentError(f"{name}: duplicate sparse index {i}")
        out[i] = _float(w, f"{name} weight", False)
    return out


def _sparse_list(v, name, q):
    return [_sparse(x, f"{name}[{i}]", q) for i, x in enumerate(_list(v, name))]


def _object(v, name, q):
    if not isinstance(v, dict):
        raise _bad(name, "an object", v)
    return v


def _objects_or_null(v, name, q):
    return [None if x is None else _object(x, f"{name}[{i}]", q) for i, x in enumerate(_list(v, name))]


def _str_list(v, name, q):
    return [_str(x, f"{name}[{i}]", q) for i, x in enumerate(_list(v, name, "an array of strings"))]


def _items(v, name, q):
    """``[{"vector": [...], "id": ..., "field": {...}}]``; null ``id``/``field`` are left out."""
    rows = []
    for i, item in enumerate(_list(v, name, "an array of objects")):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise _bad(where, "an object", item)
        if item.get("vector") is None:
            raise InvalidArgumentError(f"{where}.vector: missing required parameter")
        row = {"vector": item["vector"]}
        if item.get("id") is not None:
            row["id"] = _id(item["id"], f"{where}.id", q)
        fields = item.get("field", item.get("fields"))
        if fields is not None:
            row["field"] = _object(fields, f"{where}.field", q)
        rows.append(row)
    try:  # one conversion for the whole batch (the common case: one dimension)
        vectors = list(_numbers([r["vector"] for r in rows], name, 2)) if rows else []
    except InvalidArgumentError:  # find the culprit, or keep ragged rows for the library to judge
        vectors = [_vector(r["vector"], f"{name}[{i}].vector", q) for i, r in enumerate(rows)]
    for row, vector in zip(rows, vectors):
        row["vector"] = vector
    return rows


def _job_id(v, name, q):
    """A job id: a non-negative integer, or its decimal string (int64 ids lose precision in
    JavaScript, so clients may send them quoted)."""
    if isinstance(v, str) and v.isdigit() and v.isascii():
        return _decimal(v, name, "a non-negative integer job id")
    if _is_int(v) and v >= 0:
        return v
    raise _bad(name, "a non-negative integer job id", v)


def _json_text(v, name, q):
    """A JSON document sent as a string (the Zilliz and Geneva way) or as an object."""
    if isinstance(v, (str, dict)):
        return v
    raise _bad(name, "a JSON string or an object", v)


def _path(v, name, q):
    # Confinement to the allowed folders happens in the app, which knows them.
    return _str(v, name, q)


_ID_SCHEMA = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1}]}
_VECTOR_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": 1}
_SPARSE_SCHEMA = {"type": "object", "properties": {
    "indices": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "values": {"type": "array", "items": {"type": "number"}}}, "required": ["indices", "values"]}
_OBJECT_SCHEMA = {"type": "object", "additionalProperties": True}
# "id": null (assign one) and "field": null (no fields) are what LynseDB clients send.
_ITEM_SCHEMA = {"type": "object", "properties": {
    "vector": _VECTOR_SCHEMA, "id": {"anyOf": [_ID_SCHEMA, {"type": "null"}]},
    "field": {"anyOf": [_OBJECT_SCHEMA, {"type": "null"}]}}, "required": ["vector"]}


@dataclass(frozen=True)
class ParamType:
    convert: Callable[[Any, str, bool], Any]
    schema: dict


TYPES: dict[str, ParamType] = {
    "str": ParamType(_str, {"type": "string"}),
    "int": ParamType(_int, {"type": "integer"}),
    "uint": ParamType(_uint, {"type": "integer", "minimum": 0}),
    "float": ParamType(_float, {"type": "number"}),
    "bool": ParamType(_bool, {"type": "boolean"}),
    "id": ParamType(_id, _ID_SCHEMA),
    "ids": ParamType(_ids, {"type": "array", "items": _ID_SCHEMA}),
    "id_or_ids": ParamType(_id_or_ids, {"oneOf": [_ID_SCHEMA, {"type": "array", "items": _ID_SCHEMA}]}),
    "vector": ParamType(_vector, _VECTOR_SCHEMA),
    "vectors": ParamType(_vectors, {"type": "array", "items": _VECTOR_SCHEMA}),
    "sparse": ParamType(_sparse, _SPARSE_SCHEMA),
    "sparse_list": ParamType(_sparse_list, {"type": "array", "items": _SPARSE_SCHEMA}),
    "object": ParamType(_object, _OBJECT_SCHEMA),
    "objects_or_null": ParamType(_objects_or_null, {"type": "array", "items": {"type": ["object", "null"]}}),
    "str_list": ParamType(_str_list, {"type": "array", "items": {"type": "string"}}),
    "items": ParamType(_items, {"type": "array", "items": _ITEM_SCHEMA}),
    "job_id": ParamType(_job_id, {"oneOf": [{"type": "integer", "minimum": 0},
                                            {"type": "string", "pattern": "^[0-9]+$"}]}),
    "json_text": ParamType(_json_text, {"oneOf": [{"type": "string"}, {"type": "object"}]}),
    "path": ParamType(_path, {"type": "string", "description": "a path on the server, inside the data or backup folder"}),
}

# --------------------------------------------------------------------------------------------
# Table entries


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    kwarg: str | None = None  # name of the keyword in the call; "" = don't pass
    limit: str | None = None  # "top_k" | "batch"
    doc: str = ""
    location: str | None = None  # "body" | "query" | "path"; default: the route's (body or query)
    key: str | None = None  # the key on the wire when it differs from ``name``

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"param {self.name}: unknown type {self.type!r}")
        if self.location not in (None, "body", "query", "path"):
            raise ValueError(f"param {self.name}: unknown location {self.location!r}")

    @property
    def wire(self) -> str:
        """The key the value has in the request (JSON body, query string or path)."""
        return self.key or self.name


@dataclass(frozen=True)
class Reply:
    """A complete response, for routes whose status or body is not the usual envelope."""

    status: int
    body: Any
    content_type: str = "application/json"
    headers: bytes = b""  # extra header lines, each ending in CRLF


def _nothing(result: Any, call: Any) -> dict:
    return {}


ENVELOPES = ("lynse", "zilliz", "lance")
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    path: str
    target: str
    call: str | Callable[..., Any]
    params: tuple[Param, ...] = ()
    respond: Callable[[Any, Any], Any] = _nothing
    method: str = "POST"
    body: str = "json"
    reply: str = "json"
    nested: str | None = None
    echo: bool = True
    tag: str = "collection"
    summary: str = ""
    returns: str = ""
    envelope: str = "lynse"  # "lynse" | "zilliz" | "lance": success and error body shapes
    invalidates: bool = False  # drops, restores or imports: the server forgets cached handles
    read: bool = False  # only reads a collection (no text index): replicas answer it themselves
    no_content: str = ""  # when the route may answer 204 No Content: the case, for /openapi.json

    def __post_init__(self) -> None:
        assert self.target in ("server", "client", "database", "collection"), self.target
        assert self.body in ("json", "binary", "none") and self.reply in ("json", "binary", "raw")
        assert self.envelope in ENVELOPES, self.envelope
        assert not self.read or (self.target == "collection" and not self.invalidates), self.path
        names = set(_TEMPLATE.findall(self.path))
        declared = {p.wire for p in self.params if p.location == "path"}
        assert names == declared, f"{self.path}: path parameters {sorted(names)} vs declared {sorted(declared)}"

    def location(self, p: Param) -> str:
        """Where ``p`` is read from: its own ``location``, else the JSON body for JSON routes
        and the query string for the others."""
        return p.location or ("body" if self.body == "json" else "query")

    @cached_property  # asked on every request: the route never changes
    def path_params(self) -> tuple[str, ...]:
        return tuple(_TEMPLATE.findall(self.path))

    @cached_property
    def has_query_params(self) -> bool:
        return any(self.location(p) == "query" for p in self.all_params)

    @cached_property
    def memo_query(self) -> bool:
        """Bound parameters may be reused for the same query string: all come from it, and
        none is a server path (whose confinement depends on the file system at the time)."""
        return self.body != "json" and not self.path_params and all(p.type != "path" for p in self.all_params)

    @cached_property
    def all_params(self) -> tuple[Param, ...]:
        """The declared params, preceded by the ones that name the target."""
        lead: tuple[Param, ...] = ()
        if self.target in ("database", "collection"):
            lead = (DB,)
        if self.target == "collection":
            lead = (DB, COLL)
        return lead + self.params


DB = Param("database_name", "str", True, kwarg="", doc="the database")
COLL = Param("collection_name", "str", True, kwarg="", doc="the collection")


def P(name: str, type: str, required: bool = False, **kw: Any) -> Param:
    return Param(name, type, required, **kw)


# Common parameter sets -------------------------------------------------------------------------

K = P("k", "int", limit="top_k", doc="number of hits")
WHERE = P("where", "str", doc="filter expression")
RETURN_FIELDS = P("return_fields", "bool", doc="include each hit's fields")
NPROBE = P("nprobe", "int", doc="IVF lists to probe / HNSW ef")
VECTOR_FIELD = P("vector_field", "str", aliases=("field_name",), doc="vector field to search")
VECTOR = P("vector", "vector", True)
IDS = P("ids", "ids", True, limit="batch")
SNAPSHOT_PATH = P("snapshot_path", "path", True, kwarg="path")
EXPORT_PATH = P("export_path", "path", True, kwarg="path")
OVERWRITE = P("overwrite", "bool")
MISSING_OK = P("missing_ok", "bool", doc="skip ids that do not exist (default here: true, as LynseDB); "
                                          "false: 404 and nothing changed")
COLL_AS_NAME = P("collection_name", "str", True, kwarg="name")
DB_AS_NAME = P("database_name", "str", True, kwarg="name")
DIM_Q = P("dim", "uint", True)
ENCODING_Q = P("vector_encoding", "str")


# Adapters: the few routes whose wire shape differs from the library call ----------------------

def _shape(c):
    return c.shape


def _upsert_items(c, items=None, **kw):
    """Seed shape ``items`` -> ``upsert_items``; the seed doc's ``ids/vectors/fields`` -> ``upsert``."""
    if items is not None:
        return c.upsert_items(items)
    if "ids" not in kw or "vectors" not in kw:
        raise InvalidArgumentError("items: missing required parameter (or send ids and vectors)")
    return c.upsert(**kw)


def _bulk_add_binary(c, body, dim, n_vectors, vector_encoding=None):
    vectors = wire.decode_vectors(body, n_vectors, dim, vector_encoding)  # n_vectors=0: an empty body
    return c.add(vectors=vectors) if len(vectors) else []  # ids assigned; none for no rows, as LynseDB


def _records(method: str):
    def call(c, body, dim, n_vectors, vector_encoding=None, ids_encoding=None, ids_start=None):
        vectors, ids, fields = wire.decode_records(body, n_vectors, dim, vector_encoding, ids_encoding, ids_start)
        return getattr(c, method)(ids=ids, vectors=vectors, **({"fields": fields} if fields is not None else {}))
    return call


def _path_of(c):
    return c.get_collection_path()


# LynseDB skips ids that do not exist (lynse_api §4.6) and its clients count on it: over the
# wire an absent missing_ok is true. vecstore's remote client always sends it.
def _delete(c, missing_ok=True, **kw):
    return c.delete_items(missing_ok=missing_ok, **kw)


def _restore(c, missing_ok=True, **kw):
    return c.restore_items(missing_ok=missing_ok, **kw)


def _search_binary(c, body, dim, vector_encoding=None, **kw):
    return c.search(wire.decode_vector(body, dim, vector_encoding), **kw)


def _search_block_reply(r, call):
    # The block has no room for the index that answered; vecstore's remote client reads it here.
    return Reply(200, wire.encode_search_block(r.ids, r.scores, r.fields), "application/octet-stream",
                 b"X-Vecstore-Index: %s\r\n" % r.index.encode("ascii", "replace"))


def _batch_block_reply(r, call):
    index = r[0].index if r else ""
    return Reply(200, wire.encode_batch_search([(x.ids, x.scores, x.fields) for x in r]), "application/octet-stream",
                 b"X-Vecstore-Index: %s\r\n" % index.encode("ascii", "replace") if index else b"")


def _batch_search_binary(c, body, dim, n_queries, vector_encoding=None, **kw):
    return c.batch_search(wire.decode_vectors(body, n_queries, dim, vector_encoding), **kw)


def _build_index(c, params=None, field_name=None, **kw):
    """``/build_index`` and ``/build_vector_field_index`` (with ``field_name``): the index's own
    parameters come in ``params``."""
    params = params or {}
    # The 0.9.0 client also copies params' n_clusters (or n_centroids) to the legacy top level.
    if "n_clusters" in kw and kw["n_clusters"] in (params.get("n_clusters"), params.get("n_centroids")):
        del kw["n_clusters"]
    # Its params dict may hold other index families' keys (LynseDB ignores them): filtered here,
    # since n_clusters would otherwise become build_index's own argument.
    extra = lynse_build_params(parse_index_mode(kw.get("index_mode", "FLAT"), default_metric="ip").kind, params)
    clash = sorted(set(extra) & set(kw))
    if clash:
        raise InvalidArgumentError(f"params: {', '.join(clash)} given twice (top level and in params)")
    if field_name is not None:
        return c.build_vector_field_index(field_name, **kw, **extra)
    return c.build_index(**kw, **extra)


def _field_info(c, name):
    return next((f for f in c.list_vector_fields() if f.name == name), None)


# Job routes (Zilliz and Lance/Geneva shapes) ---------------------------------------------------

class DatabaseNotFoundError(NotFoundError):
    """The database named by a job route does not exist (Zilliz code 800, Lance code 1)."""


ZILLIZ_DEFAULT_DB = "default"  # Zilliz / Milvus: a request without dbName is in "default"


def _database(client, name):
    try:
        return client.get_database(name)
    except DatabaseNotFoundError:
        raise
    except NotFoundError as e:
        raise DatabaseNotFoundError(str(e)) from None


def _ext_refresh(client, name, db_name=ZILLIZ_DEFAULT_DB, external_source=None, external_spec=None):
    # Checked here too so the answer does not depend on whether the collection exists.
    if (external_source not in (None, "")) != (external_spec not in (None, "")):
        raise InvalidArgumentError("externalSource and externalSpec must be given together (both or neither)")
    return _database(client, db_name).refresh_external_collection(name, external_source, external_spec)


def _ext_list(client, db_name=ZILLIZ_DEFAULT_DB, name=None):
    return _database(client, db_name).list_refresh_external_collection_jobs(name or None)


def _ext_describe(client, job_id, db_name=ZILLIZ_DEFAULT_DB):
    return _database(client, db_name).describe_refresh_job(job_id)


def _ext_cancel(client, job_id, db_name=ZILLIZ_DEFAULT_DB):
    return _database(client, db_name).cancel_refresh_job(job_id)


def _lance_view(client, view_id, delimiter=None, body_id=None):
    """(database, view name) of a Lance Namespace id; a bare name is in database "default"."""
    db_name, view = parse_lance_id(view_id, delimiter)
    if body_id is not None and parse_lance_id(body_id, delimiter) != (db_name, view):
        raise InvalidArgumentError(f"id: the body's {body_id!r} names another object than the path's {view_id!r}")
    return _database(client, db_name or ZILLIZ_DEFAULT_DB), view


def _mv_refresh(client, view_id, delimiter=None, body_id=None, **kw):
    db, view = _lance_view(client, view_id, delimiter, body_id)
    return db.refresh_materialized_view(view, **kw)


def _mv_job(client, view_id, job_id, delimiter=None):
    db, view = _lance_view(client, view_id, delimiter)
    db.describe_materialized_view(view)  # NotFoundError unless it is a view
    job = db.describe_refresh_job(job_id)
    if job.collection_name != view or job.kind != MV_JOB_KIND:
        raise NotFoundError(f"job_id: no refresh job {job_id} of materialized view {view!r}")
    return job


def _records_reply(r, call):
    return {"records": [job.to_zilliz() for job in r]}


def _job_reply(r, call):
    return r.to_zilliz()


# Response shapes ---------------------------------------------------------------------------------

def _items_reply(r, call):
    return {"items": r.to_dict()}


def _hybrid_reply(r, call):
    # LynseDB echoes the fusion it used (lynse_api §4.5).
    return {"items": {**r.to_dict(), "fusion": call.args.get("fusion") or "rrf"}}


def _ids_reply(r, call):
    return {"ids": list(r)}


def _range_reply(r, call):
    d = r.to_dict()
    # "fields", "index" and "vector_field" are additions to LynseDB's shape (which has none;
    # clients ignore unknown keys): vecstore's remote client rebuilds the local SearchResult.
    return {"result": {"ids": d["ids"], "distances": d["scores"], "fields": d["fields"], "index": d["index"],
                       "vector_field": d["vector_field"]}}


def _rows_block(r, call):
    return wire.encode_rows_block(r.vectors, r.ids, r.fields)


def _write_blob(c, body, key):
    c.write_blob(key, body)


def _blob_reply(data, call):
    # LynseDB HEAD: the bytes as they are, or 204 No Content when the key is absent.
    return Reply(204, b"", "") if data is None else data


def _echo(*names: str):
    return lambda r, call: {n: call.args.get(n) for n in names}


# The table ---------------------------------------------------------------------------------------

ZILLIZ_JOBS = "/v2/vectordb/jobs/external_collection"
Z_DB = P("dbName", "str", kwarg="db_name", doc='the database (default "default")')
Z_COLL = P("collectionName", "str", True, kwarg="name", doc="the external collection")
Z_JOB = P("jobId", "job_id", True, kwarg="job_id", doc="the job id the refresh returned")
LANCE_ID = P("id", "str", True, kwarg="view_id", location="path",
             doc="Lance Namespace id of the view: 'database$view' (a bare 'view' is in database 'default')")
LANCE_DELIMITER = P("delimiter", "str", location="query", doc="of the id (default '$')")

SEARCH_PARAMS = (K, WHERE, RETURN_FIELDS, NPROBE, VECTOR_FIELD)
BINARY_SEARCH_PARAMS = (DIM_Q, ENCODING_Q, K, WHERE, RETURN_FIELDS, NPROBE, VECTOR_FIELD)
RECORDS_PARAMS = (DIM_Q, P("n_vectors", "uint", True, limit="batch"), ENCODING_Q,
                  P("ids_encoding", "str"), P("ids_start", "uint"), P("return_ids", "bool", kwarg=""))


def _system(path, call, respond, summary, **kw):
    return Route(path, "server", call, respond=respond, method="GET", body="none", reply="raw",
                 echo=False, tag="system", summary=summary, **kw)


ROUTES: tuple[Route, ...] = (
    # -- system ---------------------------------------------------------------------------------
    _system("/", "root", lambda r, c: r, "Service banner; LynseDB clients require status=success."),
    _system("/healthz", "healthz", lambda r, c: r, "Liveness."),
    _system("/readyz", "readyz", lambda r, c: r, "Readiness: 200 ready, 503 not_ready."),
    _system("/metrics", "metrics", lambda r, c: r, "Prometheus text metrics."),
    _system("/openapi.json", "openapi", lambda r, c: r, "This document."),

    # -- databases (Client) ---------------------------------------------------------------------
    Route("/create_database", "client", "create_database", (DB_AS_NAME, P("drop_if_exists", "bool")),
          tag="database", summary="Create a database (existing: no-op).", invalidates=True),
    Route("/drop_database", "client", "drop_database", (DB_AS_NAME,), tag="database",
          summary="Drop a database; missing is fine.", invalidates=True),
    Route("/delete_database", "client", "drop_database", (DB_AS_NAME,), tag="database",
          summary="Alias of /drop_database (used by VectorDBClient.drop_database).", invalidates=True),
    Route("/database_exists", "client", "database_exists", (DB_AS_NAME,),
          lambda r, c: {"exists": bool(r)}, tag="database", returns='{"exists": bool}'),
    Route("/list_databases", "client", "list_databases", (), lambda r, c: {"databases": list(r)},
          method="GET", body="none", tag="database", returns='{"databases": [str]}'),
    Route("/snapshot_database", "client", "snapshot_database", (DB_AS_NAME, SNAPSHOT_PATH),
          _echo("snapshot_path"), tag="database", summary="Snapshot a database to a server folder."),
    Route("/restore_database", "client", "restore_database", (DB_AS_NAME, SNAPSHOT_PATH, OVERWRITE),
          _echo("snapshot_path"), tag="database", invalidates=True),

    # -- collections (Database) -----------------------------------------------------------------
    Route("/required_collection", "database", "require_collection",
          (COLL_AS_NAME, P("dim", "uint"), P("metric", "str"), P("description", "str"), P("drop_if_exists", "bool"),
           P("durability", "str", doc="'safe' or 'fast' (default: the server's, safe); the server has one handle "
                                      "per collection, shared by its clients: the other one while it is open is 409")),
          tag="collection", summary="Create or open a collection (a null dim: an existing one's, or, for a new one, "
                  "that of its first vectors; 0 until then).",
          invalidates=True),
    Route("/drop_collection", "database", "drop_collection", (COLL_AS_NAME,),
          summary="Drop a collection; missing is fine.", invalidates=True),
    Route("/show_collections", "database", "show_collections", (),
          lambda r, c: {"collections": list(r)}, returns='{"collections": [str]}'),
    Route("/show_collections_details", "database", "show_collections_details", (),
          lambda r, c: {"collections": r}, returns='{"collections": {name: {...}}}'),
    Route("/is_collection_exists", "database", "collection_exists", (COLL_AS_NAME,),
          lambda r, c: {"exists": bool(r)}, returns='{"exists": bool}'),
    Route("/restore_collection", "database", "restore_collection", (COLL_AS_NAME, SNAPSHOT_PATH, OVERWRITE),
          _echo("snapshot_path"), tag="backup", invalidates=True),
    Route("/import_collection", "database", "import_collection", (COLL_AS_NAME, EXPORT_PATH, OVERWRITE),
          _echo("export_path"), tag="backup", invalidates=True),

    # -- collection management ------------------------------------------------------------------
    Route("/collection_shape", "collection", _shape, (), lambda r, c: {"shape": list(r)},
          returns='{"shape": [n_vectors, dim]}', read=True),
    # LynseDB's /stats says "none" where its /index_mode (and the library) says null
    Route("/stats", "collection", "stats", (), lambda r, c: {"stats": {**r.to_dict(), "index_mode": r.index_mode or "none"}},
          read=True),
    Route("/get_collection_config", "collection", "get_collection_config", (),
          lambda r, c: {"config": r.to_dict()}, read=True),
    Route("/update_description", "collection", "update_description", (P("description", "str", True),),
          _echo("description")),
    Route("/update_collection_description", "collection", "update_description",
          (P("description", "str", True),), _echo("description"), summary="Alias of /update_description."),
    Route("/get_collection_path", "collection", _path_of, (), lambda r, c: {"collection_path": str(r)}, read=True),
    # The server shares one handle per collection among all requests: "close" is a checkpoint
    # (index files written, nothing left to replay), never a close under other requests' feet.
    Route("/close_collection", "collection", "checkpoint", summary="Flush and checkpoint (the handle stays open)."),

    # -- writes ---------------------------------------------------------------------------------
    Route("/add_item", "collection", "add_item", (VECTOR, P("id", "id"), P("field", "object")),
          lambda r, c: {"item": {"id": r}}, nested="item", tag="write",
          summary='Add one row: {"item": {"vector", "id", "field"}} (top-level keys accepted too).'),
    Route("/bulk_add_items", "collection", "bulk_add_items", (P("items", "items", True, limit="batch"),),
          _ids_reply, tag="write"),
    Route("/upsert_items", "collection", _upsert_items,
          (P("items", "items", limit="batch"), P("ids", "ids", limit="batch"), P("vectors", "vectors"),
           P("fields", "objects_or_null")), _ids_reply, tag="write",
          summary="Insert or replace rows: items (seed) or ids/vectors/fields."),
    Route("/bulk_add_binary", "collection", _bulk_add_binary,
          (DIM_Q, P("n_vectors", "uint", True, limit="batch"), ENCODING_Q, P("return_ids", "bool", kwarg="")),
          lambda r, c: {"n_vectors": len(r), **({"ids": list(r)} if c.args.get("return_ids") else {})},
          body="binary", tag="write", summary="Add raw float32 vectors (ids assigned)."),
    Route("/commit", "collection", "commit", (P("items", "items", limit="batch"),),
          lambda r, c: {"status": "Success", "result": {"database_name": c.args["database_name"],
                                                         "collection_name": c.args["collection_name"]}},
          echo=False, tag="write", summary="Add pending items (if any) and commit."),
    Route("/flush", "collection", "flush", tag="write"),
    Route("/checkpoint", "collection", "checkpoint", tag="write"),
    Route("/add", "collection", "add", (IDS, P("vectors", "vectors", True), P("fields", "objects_or_null")),
          _ids_reply, tag="write", summary="Add rows (HEAD-era name)."),
    Route("/upsert", "collection", "upsert", (IDS, P("vectors", "vectors", True), P("fields", "objects_or_null")),
          _ids_reply, tag="write", summary="Insert or replace rows (HEAD-era name)."),
    Route("/add_records_binary", "collection", _records("add"), RECORDS_PARAMS, _ids_reply,
          body="binary", tag="write", summary="Add rows: vectors, u64 ids, LDBF1 fields block."),
    Route("/upsert_records_binary", "collection", _records("upsert"), RECORDS_PARAMS, _ids_reply,
          body="binary", tag="write"),

    # -- indexes and vector fields ----------------------------------------------------------------
    Route("/build_index", "collection", _build_index,
          (P("index_mode", "str"), P("n_clusters", "uint"), P("params", "object")),
          lambda r, c: {"index_mode": c.args.get("index_mode") or c.target.index_mode(),
                        "n_clusters": r.get("n_clusters")}, tag="index"),
    Route("/remove_index", "collection", "remove_index", tag="index"),
    Route("/index_mode", "collection", "index_mode", (), lambda r, c: {"index_mode": r}, tag="index", read=True),
    Route("/build_vector_field_index", "collection", _build_index,
          (P("field_name", "str", True), P("index_mode", "str"), P("n_clusters", "uint"), P("params", "object")),
          lambda r, c: {"field_name": c.args["field_name"], "n_clusters": c.args.get("n_clusters"),
                        "index_mode": c.args.get("index_mode") or getattr(
                            _field_info(c.target, c.args["field_name"]), "index_mode", None)}, tag="index"),
    Route("/remove_vector_field_index", "collection", "remove_vector_field_index",
          (P("field_name", "str", True),), _echo("field_name"), tag="index"),
    Route("/create_vector_field", "collection", "create_vector_field",
          (P("field_name", "str", True), P("dim", "uint", True, aliases=("dimension",)), P("metric", "str"),
           P("index_mode", "str")), lambda r, c: {"field": r.to_dict()}, tag="index"),
    Route("/list_vector_fields", "collection", "list_vector_fields", (),
          lambda r, c: {"fields": [f.to_dict() for f in r]}, tag="index", read=True),
    Route("/add_named_vectors", "collection", "add_named_vectors",
          (P("field_name", "str", True), P("vectors", "vectors", True), IDS),
          lambda r, c: {"field_name": c.args["field_name"], "ids": list(r)}, tag="write"),
    Route("/add_sparse_vectors", "collection", "add_sparse_vectors",
          (P("vectors", "sparse_list", True, limit="batch"), IDS), _ids_reply, tag="write"),

    # -- search -----------------------------------------------------------------------------------
    Route("/search", "collection", "search",
          (VECTOR, *SEARCH_PARAMS, P("approx", "bool"), P("eps", "float")), _items_reply, tag="search", read=True),
    Route("/search_binary", "collection", _search_binary,
          (*BINARY_SEARCH_PARAMS, P("approx", "bool"), P("eps", "float")),
          _search_block_reply,
          body="binary", reply="binary", tag="search", read=True,
          summary="Search; float32 query in, search block out (the index that answered in X-Vecstore-Index)."),
    Route("/batch_search", "collection", "batch_search",
          (P("vectors", "vectors", True, limit="batch"), *SEARCH_PARAMS),
          lambda r, c: {"results": [x.to_dict() for x in r]}, tag="search", read=True),
    Route("/batch_search_binary", "collection", _batch_search_binary,
          (*BINARY_SEARCH_PARAMS, P("n_queries", "uint", True, limit="batch")),
          _batch_block_reply, body="binary", reply="binary", tag="search", read=True),
    Route("/search_range", "collection", "search_range",
          (VECTOR, P("threshold", "float", True), P("max_results", "int", limit="top_k"), WHERE, RETURN_FIELDS,
           VECTOR_FIELD),
          _range_reply,
          tag="search", returns='{"result": {"ids": [...], "distances": [...]}}', read=True),
    Route("/search_profile", "collection", "search_profile",
          (VECTOR, *SEARCH_PARAMS, P("approx", "bool"), P("eps", "float")),
          lambda r, c: r.to_dict(), tag="search", returns='{"items": {...}, "profile": {...}}', read=True),
    Route("/text_search", "collection", "text_search",
          (P("text", "str", True), P("text_fields", "str_list"), K, WHERE, RETURN_FIELDS),
          _items_reply, tag="search", summary="BM25 over text fields."),
    Route("/bm25_search", "collection", "text_search",
          (P("text", "str", True), P("text_fields", "str_list"), K, WHERE, RETURN_FIELDS),
          _items_reply, tag="search", summary="HEAD-era name of /text_search."),
    Route("/sparse_search", "collection", "sparse_search",
          (P("vector", "sparse", True), K, WHERE, RETURN_FIELDS), _items_reply, tag="search", read=True),
    Route("/hybrid_search", "collection", "hybrid_search",
          (P("vector", "vector"), P("text", "str"), P("text_fields", "str_list"), K, WHERE,
           P("fusion", "str"), P("vector_weight", "float"), P("text_weight", "float"), P("rrf_k", "float"),
           P("candidate_limit", "int", limit="top_k"), RETURN_FIELDS, NPROBE, VECTOR_FIELD),
          _hybrid_reply, tag="search"),

    # -- retrieval --------------------------------------------------------------------------------
    Route("/query", "collection", "query",
          (WHERE, P("filter_ids", "ids", limit="batch"), P("return_ids_only", "bool")),
          lambda r, c: {"result": list(r)}, tag="read", read=True),
    Route("/query_vectors", "collection", "query_vectors", (WHERE, P("filter_ids", "ids", limit="batch")),
          lambda r, c: {"result": r.to_dict()}, tag="read", returns='{"result": [vectors, ids, fields]}', read=True),
    Route("/head", "collection", "head", (P("n", "int", limit="top_k"),), lambda r, c: {"head": r.to_dict()},
          tag="read", read=True),
    Route("/tail", "collection", "tail", (P("n", "int", limit="top_k"),), lambda r, c: {"tail": r.to_dict()},
          tag="read", read=True),
    Route("/head_binary", "collection", "head", (P("n", "int", limit="top_k"),), _rows_block,
          method="GET", body="none", reply="binary", tag="read", read=True),
    Route("/tail_binary", "collection", "tail", (P("n", "int", limit="top_k"),), _rows_block,
          method="GET", body="none", reply="binary", tag="read", read=True),
    Route("/write_blob", "collection", _write_blob, (P("key", "str", True, doc="the blob's key"),),
          lambda r, c: {"written": True}, body="binary", tag="blob",
          summary="Store the raw request body as blob `key` (replacing it)."),
    Route("/read_blob", "collection", "read_blob",
          (P("key", "str", True), P("offset", "uint", doc="first byte"), P("length", "uint", doc="bytes at most")),
          _blob_reply, method="GET", body="none", reply="binary", tag="blob", no_content="there is no blob with this key",
          returns="the blob's bytes from offset, at most length of them",
          read=True, summary="The blob's bytes (application/octet-stream); 204 when there is no such key."),
    Route("/delete_blob", "collection", "delete_blob", (P("key", "str", True),),
          lambda r, c: {"deleted": bool(r)}, tag="blob"),
    Route("/list_blobs", "collection", "list_blobs", (), lambda r, c: {"keys": list(r)}, method="GET",
          body="none", tag="blob", summary="The blob keys.", read=True),
    Route("/read_by_only_id", "collection", "read_by_only_id", (P("id", "id_or_ids", True),),
          lambda r, c: {"item": r.to_dict()}, tag="read", read=True),
    Route("/list_fields", "collection", "list_fields", (), lambda r, c: {"fields": list(r)}, tag="read", read=True),
    Route("/is_id_exists", "collection", "is_id_exists", (P("id", "id", True),),
          lambda r, c: {"is_id_exists": bool(r)}, tag="read", read=True),
    Route("/max_id", "collection", "max_id", (), lambda r, c: {"max_id": r}, tag="read", read=True),

    # -- delete, restore, compact -------------------------------------------------------------------
    Route("/delete_items", "collection", _delete, (P("ids", "ids", limit="batch"), WHERE, MISSING_OK),
          lambda r, c: {"status": "ok", "n_deleted": r}, tag="delete", summary="Soft-delete by ids or where."),
    Route("/delete", "collection", _delete, (P("ids", "ids", limit="batch"), WHERE, MISSING_OK),
          lambda r, c: {"status": "ok", "n_deleted": r}, tag="delete", summary="HEAD-era name of /delete_items."),
    Route("/restore_items", "collection", _restore, (IDS, MISSING_OK),
          lambda r, c: {"status": "ok", "n_restored": r}, tag="delete"),
    Route("/restore", "collection", _restore, (IDS, MISSING_OK),
          lambda r, c: {"status": "ok", "n_restored": r}, tag="delete", summary="HEAD-era name of /restore_items."),
    Route("/list_deleted_ids", "collection", "list_deleted_ids", (), _ids_reply, tag="delete", read=True),
    Route("/compact", "collection", "compact", (), lambda r, c: {"vectors_removed": r}, tag="delete"),

    # -- backup -------------------------------------------------------------------------------------
    Route("/snapshot_collection", "collection", "snapshot_to", (SNAPSHOT_PATH,), _echo("snapshot_path"),
          tag="backup"),
    Route("/export_collection", "collection", "export_to", (EXPORT_PATH,), _echo("export_path"), tag="backup"),

    # -- jobs: external collections (Zilliz v2 REST shapes, spec 000/001) ----------------------------
    Route(f"{ZILLIZ_JOBS}/refresh", "client", _ext_refresh,
          (Z_DB, Z_COLL, P("externalSource", "json_text", kwarg="external_source",
                           doc="JSON source (given with externalSpec, or neither: the persisted one)"),
           P("externalSpec", "json_text", kwarg="external_spec", doc="JSON spec (given with externalSource)")),
          lambda r, c: {"jobId": r}, envelope="zilliz", tag="jobs",
          summary="Start a refresh job of an external collection.", returns='{"jobId": int}'),
    Route(f"{ZILLIZ_JOBS}/list", "client", _ext_list,
          (Z_DB, P("collectionName", "str", kwarg="name", doc="one collection; omitted or empty: all")),
          _records_reply, envelope="zilliz", tag="jobs",
          summary="Refresh jobs of external collections, oldest first.", returns='{"records": [job]}'),
    Route(f"{ZILLIZ_JOBS}/describe", "client", _ext_describe, (Z_JOB, Z_DB), _job_reply, envelope="zilliz",
          tag="jobs", summary="One refresh job: state, progress, times, reason when failed.", returns="job"),
    Route(f"{ZILLIZ_JOBS}/cancel", "client", _ext_cancel, (Z_JOB, Z_DB), _job_reply, envelope="zilliz",
          tag="jobs", summary="Cancel a pending or running refresh job (vecstore extension).", returns="job"),

    # -- jobs: materialized views (Lance Namespace / Geneva shapes, spec 002) -----------------------
    Route("/v1/materialized_view/{id}/refresh", "client", _mv_refresh,
          (LANCE_ID, LANCE_DELIMITER,
           P("body_id", "str_list", key="id", doc="the same id in list form (optional; must match the path)"),
           P("identity", "object", kwarg="", doc="accepted and ignored (the API key authenticates)"),
           P("src_version", "uint", doc="source version to reach (default: current)"),
           P("max_rows_per_fragment", "int"), P("concurrency", "int"), P("intra_applier_concurrency", "int"),
           P("cluster", "str", doc='"local" or "ray://host:port" (needs Ray); default: threads'),
           P("output_limit", "int", doc="cap on the view's rows; chunker views only"),
           P("manifest", "json_text", doc="per-refresh overrides (JSON)"),
           P("full", "bool", doc="vecstore: recompute every row")),
          lambda r, c: {"job_id": str(r)}, envelope="lance", tag="jobs",
          summary="Trigger an async materialized view refresh.", returns='{"job_id": str}'),
    Route("/v1/materialized_view/{id}/jobs/{job_id}", "client", _mv_job,
          (LANCE_ID, P("job_id", "job_id", True, location="path", doc="from the refresh reply"), LANCE_DELIMITER),
          lambda r, c: r.to_geneva(), method="GET", body="none", envelope="lance", tag="jobs",
          summary="A refresh job of the view (vecstore extension): status PENDING/RUNNING/DONE/FAILED.",
          returns="job"),
)

PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz"})


def route_map(routes: tuple[Route, ...] = ROUTES) -> dict[str, Route]:
    """Routes by path; a path must not appear twice."""
    out: dict[str, Route] = {}
    for r in routes:
        if r.path in out:
            raise ValueError(f"duplicate route {r.path}")
        out[r.path] = r
    return out


class RouteTable:
    """Finds the route of a request: exact paths by dictionary, templated ones
    (``/v1/materialized_view/{id}/refresh``) by pattern, each ``{name}`` one path segment."""

    def __init__(self, routes: tuple[Route, ...] = ROUTES) -> None:
        self.exact = {r.path: r for r in routes if not r.path_params}
        self.templated = [(re.compile("^" + _TEMPLATE.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(r.path)
                                                          .replace(r"\{", "{").replace(r"\}", "}")) + "$"), r)
                          for r in routes if r.path_params]

    def find(self, method: str, path: str) -> tuple[Route, dict] | None:
        """``(route, path parameters)``, or None for an unknown path or a method it lacks."""
        route = self.exact.get(path)
        if route is not None:
            return (route, {}) if route.method == method else None
        for pattern, route in self.templated:
            m = pattern.match(path)
            if m is not None:
                return (route, m.groupdict()) if route.method == method else None
        return None


# --------------------------------------------------------------------------------------------
# Error bodies per envelope.
#
# lynse:  the exception's HTTP status, {"error": message, "code": "<vecstore code>"}.
# zilliz: HTTP 200 (as Zilliz Cloud answers), {"code": <int>, "message": message}:
#         1100 invalid parameter or conflicting state (e.g. a refresh already in progress),
#         100 collection / job not found, 800 database not found, 1102 body over the size
#         limit (HTTP 413: the connection closes), 65535 anything else (HTTP 500 for a bug).
# lance:  the exception's HTTP status, Lance Namespace ErrorResponse {"error": message,
#         "code": <Lance error code>, "type": "<vecstore code>"}: 13 InvalidInput (400, 413),
#         1 NamespaceNotFound (404, the database), 4 TableNotFound (404, the view or its job),
#         14 ConcurrentModification (409), 18 Internal (anything else).

ZILLIZ_CODES = {"invalid": 1100, "not_found": 100, "database_not_found": 800, "too_large": 1102, "other": 65535}
LANCE_CODES = {"invalid": 13, "not_found": 4, "database_not_found": 1, "conflict": 14, "other": 18}


def error_reply(e: VecstoreError | None, envelope: str, internal_message: str = "") -> Reply:
    """The reply for an error in ``envelope``; ``e=None`` is a bug (500, ``internal_message``)."""
    if e is None:
        status, message, code = 500, internal_message, "internal_error"
    else:
        status, message, code = e.http_status, str(e), e.code
    retry = b"Retry-After: 1\r\n" if status == 503 else b""
    if envelope == "lynse":
        return Reply(status, wire.error_body(message, code), headers=retry)
    if isinstance(e, DatabaseNotFoundError):
        kind = "database_not_found"
    elif isinstance(e, NotFoundError):
        kind = "not_found"
    elif isinstance(e, PayloadTooLargeError):
        kind = "too_large"
    elif isinstance(e, InvalidArgumentError) and status < 500:
        kind = "invalid"
    elif isinstance(e, ConflictError) or status == 409:
        kind = "conflict"
    else:
        kind = "other"
    if envelope == "zilliz":
        number = ZILLIZ_CODES["invalid" if kind == "conflict" else kind]
        http = status if e is None or kind == "too_large" or status in (411, 503) else 200
        return Reply(http, {"code": number, "message": message}, headers=retry)
    number = LANCE_CODES["invalid" if kind == "too_large" else kind]
    return Reply(status, {"error": message, "code": number, "type": code}, headers=retry)
