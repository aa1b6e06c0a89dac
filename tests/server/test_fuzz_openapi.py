"""Property-based run against ``GET /openapi.json``: no request makes the server answer 5xx
(reliability.md T11, PR tier).

Schemathesis reads the live server's document and, for every operation, generates requests
that fit the schema (positive) and requests that do not (negative: wrong types, missing
fields, out-of-range numbers). Half of the generated ``database_name``/``collection_name``
values are swapped for a seeded collection's (deterministically, from the generated value), so
requests reach the library and not only the "not found" path. Bounded: a few dozen examples
per operation, well under two minutes on two cores.

A small Hypothesis fuzzer adds what a schema cannot describe: random binary bodies and query
strings on the binary routes, deep nesting and huge numbers in JSON bodies, random bytes as
JSON. After every run the server must still answer.
"""

from __future__ import annotations

import http.client
import json
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vecstore
from vecstore.server.openapi import build_openapi
from vecstore.server.routes import ROUTES
from live_server import start_server

schemathesis = pytest.importorskip("schemathesis")

KEY = "fuzz-key"
DB, COLL, DIM = "fz", "c", 4
MAX_EXAMPLES = 25  # per operation


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz") / "served"
    data.mkdir()
    backing = vecstore.connect(data)
    col = backing.create_database(DB).require_collection(COLL, dim=DIM)
    rng = np.random.default_rng(0)
    col.add(vectors=rng.standard_normal((50, DIM)).astype(np.float32), ids=list(range(50)),
            fields=[{"lang": ["en", "de"][i % 2], "n": i, "title": f"doc {i} apple"} for i in range(50)])
    server = start_server(data, backing, api_key=KEY, max_json_bytes=4 * 1024 * 1024,
                          max_binary_bytes=4 * 1024 * 1024)
    try:
        yield server
    finally:
        server.stop()
        backing.close()


def _pick(value, real):
    """Deterministic: the same generated value always maps the same way (Hypothesis replays)."""
    if isinstance(value, str) and zlib.crc32(value.encode("utf-8", "surrogatepass")) % 2 == 0:
        return real
    return value


# The document the server serves at /openapi.json (test_the_document_is_what_the_server_serves
# checks they are the same). Loaded at import time: schemathesis' lazy fixture loader does not
# work with pytest 9 (it sets Function._nodeid).
DOCUMENT = build_openapi(ROUTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(max_examples=MAX_EXAMPLES)


# Routes whose generated names stay random: with the seeded names they would drop or replace
# the seeded collection, and every later example would only meet "not found".
KEEP_RANDOM_NAMES = {"/create_database", "/drop_database", "/delete_database", "/drop_collection",
                     "/required_collection", "/restore_database", "/restore_collection", "/import_collection"}


def _fit(vector):
    """A generated vector resized to the seeded dimension (when it holds only numbers)."""
    if isinstance(vector, list) and vector and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   for x in vector):
        return (vector * DIM)[:DIM]
    return vector


@schema.hook
def map_case(context, case):
    if case.path in KEEP_RANDOM_NAMES:
        return case
    for container in (case.body, case.query):
        if not isinstance(container, dict):
            continue
        if "database_name" in container:
            container["database_name"] = _pick(container["database_name"], DB)
        if "collection_name" in container:
            container["collection_name"] = _pick(container["collection_name"], COLL)
        if container.get("database_name") == DB:  # reaching the seeded collection: fit the vectors too
            if "vector" in container:
                container["vector"] = _fit(container["vector"])
            if isinstance(container.get("vectors"), list):
                container["vectors"] = [_fit(v) for v in container["vectors"]]
            if isinstance(container.get("items"), list):
                for item in container["items"]:
                    if isinstance(item, dict) and "vector" in item:
                        item["vector"] = _fit(item["vector"])
            if "dim" in container and case.path != "/create_vector_field":
                container["dim"] = DIM
    return case


def _checks():
    from schemathesis.checks import CHECKS, load_all_checks
    load_all_checks()
    return [CHECKS.get_one(name) for name in CHECK_NAMES]


# Besides "no 5xx": replies match the document (status codes, content types, JSON schemas),
# requests that violate the document are refused, and every non-public operation needs the
# key. Left out on purpose: unsupported_method/allow_header_conformance (LynseDB answers 404,
# not 405, for a method a path lacks), positive_data_acceptance (a well-formed request may
# still be refused by the store: wrong dimension, unknown collection), and the stateful checks.
CHECK_NAMES = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_schema_conformance", "negative_data_rejection", "ignored_auth")
CHECKS_USED = _checks()
# The Zilliz-style job routes answer HTTP 200 with a non-zero "code" for a refused request, as
# Zilliz Cloud does (their documented 200 reply has code + message), so "negative data must get
# a 4xx" does not apply to them; everything else does.
ZILLIZ_PATHS = {r.path for r in ROUTES if r.envelope == "zilliz"}
CHECKS_ZILLIZ = [c for c in CHECKS_USED if c.__name__ != "negative_data_rejection"]
assert len(CHECKS_ZILLIZ) == len(CHECKS_USED) - 1


def _healthy(server) -> bool:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_no_5xx_from_generated_requests(case, fuzz_server):
    response = case.call(base_url=fuzz_server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    case.validate_response(response, checks=CHECKS_ZILLIZ if case.path in ZILLIZ_PATHS else CHECKS_USED)
    if case.path in ZILLIZ_PATHS and response.status_code == 200:
        assert isinstance(response.json().get("code"), int), response.text[:300]
    assert response.status_code < 500, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}\n"
        f"query={case.query!r} body={str(case.body)[:300]!r}")


def test_the_document_is_what_the_server_serves(fuzz_server):
    conn = http.client.HTTPConnection(*fuzz_server.server_address[:2], timeout=10)
    conn.request("GET", "/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    served = json.loads(conn.getresponse().read())
    conn.close()
    assert {**served, "servers": None} == json.loads(json.dumps({**DOCUMENT, "servers": None}))
    assert {(p, m.upper()) for p, ops in served["paths"].items() for m in ops} == {(r.path, r.method) for r in ROUTES}


# --------------------------------------------------------------------------------------------
# what the schema cannot describe


def _send(server, method: str, target: str, body: bytes | None, ctype: str) -> int:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        conn.request(method, target, body=body, headers={"Authorization": f"Bearer {KEY}", "Content-Type": ctype})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


BINARY_ROUTES = sorted(r.path for r in ROUTES if r.body == "binary")
QUERY_VALUE = st.one_of(st.integers(-2 ** 70, 2 ** 70).map(str), st.sampled_from(["", "true", "x", "nan", "1e400",
                                                                                   "-1", "0", "4", "float16"]),
                        st.text(max_size=20))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(BINARY_ROUTES),
       params=st.dictionaries(st.sampled_from(["dim", "n_vectors", "n_queries", "k", "where", "return_fields",
                                               "vector_encoding", "ids_encoding", "ids_start", "return_ids",
                                               "nprobe", "vector_field", "approx", "eps"]), QUERY_VALUE, max_size=6),
       body=st.one_of(st.binary(max_size=600), st.builds(lambda n: np.ones(n, "<f4").tobytes(), st.integers(0, 64))))
def test_binary_routes_with_random_bodies(fuzz_server, path, params, body):
    from urllib.parse import urlencode
    query = urlencode({"database_name": DB, "collection_name": COLL, **params})
    status = _send(fuzz_server, "POST", f"{path}?{query}", body, "application/octet-stream")
    assert status < 500, (path, params, body[:64])


def _nest(depth: int, leaf):
    out = leaf
    for i in range(depth):
        out = [out] if i % 2 else {"a": out}
    return out


JSON_ROUTES = sorted(r.path for r in ROUTES if r.body == "json" and r.method == "POST")
WEIRD = st.one_of(
    st.integers(-2 ** 200, 2 ** 200), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=30),
    st.builds(_nest, st.integers(1, 80), st.integers()),
    st.lists(st.floats(allow_nan=False, width=64), max_size=8),
    st.lists(st.lists(st.integers(-2 ** 66, 2 ** 66), max_size=4), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
KEYS = st.sampled_from(["vector", "vectors", "k", "id", "ids", "items", "item", "where", "filter_ids", "n", "text",
                        "threshold", "dim", "index_mode", "params", "fields", "field_name", "max_results",
                        "snapshot_path", "export_path", "description", "fusion", "candidate_limit", "nprobe"])


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(JSON_ROUTES), extra=st.dictionaries(KEYS, WEIRD, max_size=5),
       names=st.booleans())
def test_json_routes_with_odd_values(fuzz_server, path, extra, names):
    body = {**({"database_name": DB, "collection_name": COLL} if names else {}), **extra}
    status = _send(fuzz_server, "POST", path, json.dumps(body).encode(), "application/json")
    assert status < 500, (path, body)


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(JSON_ROUTES), raw=st.binary(max_size=300))
def test_json_routes_with_random_bytes(fuzz_server, path, raw):
    assert _send(fuzz_server, "POST", path, raw, "application/json") < 500


def test_still_serving_after_the_fuzzing(fuzz_server):
    assert _healthy(fuzz_server)


def test_the_document_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(DOCUMENT)
