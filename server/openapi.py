"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the route table.

Nothing here is written by hand per endpoint: paths, methods, parameters, request bodies and
reply kinds all come from :data:`.routes.ROUTES`, so the document cannot drift from what the
server does.
"""

from __future__ import annotations

import copy
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


def _component_name(route: Route) -> str:
    return "".join(w.capitalize() for w in route.path.strip("/").replace(".", "_").split("_")) + "Request"


def _request_schema(route: Route) -> dict:
    props: dict[str, Any] = {}
    required = []
    for p in route.all_params:
        props[p.name] = _schema(p, nullable=not p.required)
        for alias in p.aliases:
            props[alias] = {**_schema(p, nullable=True), "deprecated": True, "description": f"alias of {p.name}"}
        if p.required:
            required.append(p.name)
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


def _query_parameters(route: Route) -> list[dict]:
    return [{"name": p.name, "in": "query", "required": p.required, "schema": _schema(p, nullable=False)}
            for p in route.all_params]


def _success(route: Route) -> dict:
    if route.reply == "binary":
        return {"description": "Binary block (little-endian; see lynse_api §5)",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    if route.path == "/metrics":
        return {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    if route.reply == "raw":
        return {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    description = "Success envelope" + (f"; params: {route.returns}" if route.returns else "")
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}


def build_openapi(routes: tuple[Route, ...], server_url: str = "http://127.0.0.1:7637") -> dict:
    """The whole document for ``routes``."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Envelope": {"type": "object", "required": ["status", "params"], "properties": {
            "status": {"const": "success"}, "params": {"type": "object", "additionalProperties": True}}},
        "Error": {"type": "object", "required": ["error", "code"], "properties": {
            "error": {"type": "string"}, "code": {"type": "string"}}},
    }
    for route in routes:
        op: dict[str, Any] = {
            "operationId": route.path.strip("/").replace(".", "_") or "root",
            "tags": [route.tag],
            "summary": route.summary or route.path.strip("/").replace("_", " ").capitalize(),
            "responses": {"200": _success(route), **{
                code: {"description": text,
                       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for code, text in _ERRORS.items()}},
        }
        if route.path in PUBLIC_PATHS:
            op["security"] = []
        if route.body == "json":
            if route.all_params:
                name = _component_name(route)
                schemas[name] = _request_schema(route)
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
        else:
            if route.all_params:
                op["parameters"] = _query_parameters(route)
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
