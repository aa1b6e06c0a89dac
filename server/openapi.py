"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the route table.

Nothing here is written by hand per endpoint: paths, methods, parameters, request bodies and
reply kinds all come from :data:`.routes.ROUTES`, so the document cannot drift from what the
server does.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .routes import PUBLIC_PATHS, TYPES, Param, Route

OPENAPI_VERSION = "3.1.0"

_ERRORS = {
    "400": "Invalid argument; the message names the parameter",
    "401": "Missing or wrong API key",
    "403": "Server path outside the allowed folders",
    "404": "Database, collection or id not found (unknown paths: 404 with an empty body)",
    "409": "Already exists, or conflicts with the current state",
    "413": "Request body over the size limit",
    "500": "Internal error (a bug; logged on the server)",
    "503": "Unavailable: the server holds its maximum of connections, is out of file descriptors, or (with "
           "--processes) cannot reach its primary; nothing was changed, retry after Retry-After seconds",
}


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("vecstore")
    except Exception:  # not installed (running from a checkout)
        return "0.0.0"


def _schema(p: Param, *, nullable: bool) -> dict:
    s = copy.deepcopy(TYPES[p.type].schema)
    if nullable:
        s = {"anyOf": [s, {"type": "null"}]}
    if p.doc:
        s["description"] = p.doc
    if p.limit:
        s["x-server-limit"] = {"top_k": "max_top_k", "batch": "max_batch_vectors"}[p.limit]
    return s


def _words(route: Route) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9]+", route.path) if w]


def _component_name(route: Route) -> str:
    return "".join(w[:1].upper() + w[1:] for w in _words(route)) + "Request"


def _operation_id(route: Route) -> str:
    return "_".join(_words(route)) or "root"


def _request_schema(route: Route) -> dict:
    props: dict[str, Any] = {}
    required = []
    for p in route.all_params:
        if route.location(p) != "body":
            continue
        props[p.wire] = _schema(p, nullable=not p.required)
        for alias in p.aliases:
            props[alias] = {**_schema(p, nullable=True), "deprecated": True, "description": f"alias of {p.wire}"}
        if p.required:
            required.append(p.wire)
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": True}
    if route.nested:
        inner = [n for n in required if n not in ("database_name", "collection_name")]
        props[route.nested] = {"anyOf": [{"type": "object", "properties": {
            p.name: _schema(p, nullable=not p.required) for p in route.params}}, {"type": "null"}]}
        required = [n for n in required if n not in inner]
        if inner:
            schema["anyOf"] = [{"required": [route.nested]}, {"required": inner}]
    if required:
        schema["required"] = required
    return schema


def _parameters(route: Route) -> list[dict]:
    """Path and query-string parameters (a path parameter is always required)."""
    out = []
    for p in route.all_params:
        where = route.location(p)
        if where in ("path", "query"):
            out.append({"name": p.wire, "in": where, "required": p.required or where == "path",
                        "schema": _schema(p, nullable=False)})
    return out


def _success(route: Route) -> dict:
    if route.reply == "binary":
        return {"description": route.returns or "Binary block (little-endian; see lynse_api §5)",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    if route.path == "/metrics":
        return {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    if route.reply == "raw":
        return {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    if route.envelope == "zilliz":
        return {"description": "Zilliz envelope: code 0 and data" + (f" {route.returns}" if route.returns else "")
                + ", or a non-zero code and a message (errors answer HTTP 200, as Zilliz Cloud does)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ZillizReply"}}}}
    if route.envelope == "lance":
        return {"description": "OK" + (f": {route.returns}" if route.returns else ""),
                "content": {"application/json": {"schema": {"type": "object"}}}}
    description = "Success envelope" + (f"; params: {route.returns}" if route.returns else "")
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}


def _errors(route: Route) -> dict:
    """The error replies: 401 is the same everywhere (auth comes before routing); the rest in
    the route's envelope."""
    schema = {"lynse": "Error", "zilliz": "ZillizReply", "lance": "LanceError"}[route.envelope]
    out = {}
    for code, text in _ERRORS.items():
        name = "Error" if code == "401" else schema
        out[code] = {"description": text, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
    return out


def build_openapi(routes: tuple[Route, ...], server_url: str = "http://127.0.0.1:7637") -> dict:
    """The whole document for ``routes``."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Envelope": {"type": "object", "required": ["status", "params"], "properties": {
            "status": {"const": "success"}, "params": {"type": "object", "additionalProperties": True}}},
        "Error": {"type": "object", "required": ["error", "code"], "properties": {
            "error": {"type": "string"}, "code": {"type": "string"}}},
        "ZillizReply": {"type": "object", "required": ["code"], "properties": {
            "code": {"type": "integer", "description": "0 on success; 1100 invalid parameter or conflict, 100 not "
                                                      "found, 800 database not found, 1102 too large, 65535 other"},
            "data": {}, "message": {"type": "string"}}},
        "LanceError": {"type": "object", "required": ["error", "code"], "properties": {
            "error": {"type": "string"},
            "code": {"type": "integer", "description": "Lance Namespace error code: 1 NamespaceNotFound, "
                                                      "4 TableNotFound, 13 InvalidInput, 14 ConcurrentModification, "
                                                      "18 Internal"},
            "type": {"type": "string", "description": "vecstore's error code"}}},
    }
    for route in routes:
        op: dict[str, Any] = {
            "operationId": _operation_id(route),
            "tags": [route.tag],
            "summary": route.summary or route.path.strip("/").replace("_", " ").capitalize(),
            "responses": {"200": _success(route), **_errors(route)},
        }
        if route.no_content:
            op["responses"]["204"] = {"description": route.no_content.capitalize()}
        if route.path in PUBLIC_PATHS:
            op["security"] = []
        parameters = _parameters(route)
        if parameters:
            op["parameters"] = parameters
        if route.body == "json":
            if any(route.location(p) == "body" for p in route.all_params):
                name = _component_name(route)
                schemas[name] = _request_schema(route)
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
        else:
            if route.body == "binary":
                op["requestBody"] = {"required": True, "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "vecstore HTTP API", "version": _version(),
                 "description": "Embedded vector store served over HTTP; LynseDB-compatible paths."},
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "API key"},
                "basicAuth": {"type": "http", "scheme": "basic", "description": "the password part is the API key"},
            },
            "schemas": schemas,
        },
    }
