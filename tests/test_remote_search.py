"""The remote client searches over ``/search_binary`` where it can (integer ids) and over JSON
``/search`` otherwise, with the same results as the local client either way."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest

import vecstore
from vecstore.errors import DimensionMismatchError, FilterSyntaxError, InvalidArgumentError, PayloadTooLargeError


def _requests(url: str) -> dict[str, int]:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    out: dict[str, int] = {}
    for path, n in re.findall(r'vecstore_http_requests_total\{path="([^"]+)",status="200"\} (\d+)', text):
        out[path] = out.get(path, 0) + int(n)
    return out


@pytest.fixture
def pair(tmp_path, server_url):
    """The same rows in a local store and on a server."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    fields = [{"lang": ("en", "de")[i % 2], "n": i} for i in range(300)]
    local = vecstore.connect(tmp_path / "local")
    remote = vecstore.connect(server_url)
    cols = []
    for client in (local, remote):
        col = client.create_database("app").require_collection("items", dim=8, metric="l2")
        col.add(x, ids=list(range(1000, 1300)), fields=fields)
        col.create_vector_field("tv", dim=8, metric="cosine")
        col.add_named_vectors("tv", x[:50][:, ::-1].copy(), ids=list(range(1000, 1050)))
        col.build_index("HNSW-L2")
        cols.append(col)
    yield (*cols, rng, server_url)
    local.close()
    remote.close()


def test_int_ids_search_over_binary_like_local(pair):
    local, remote, rng, url = pair
    before = _requests(url)
    for kw in ({}, {"where": "lang = 'de'", "return_fields": True}, {"nprobe": 40, "k": 3},
               {"vector_field": "tv", "k": 4}, {"field_name": "tv", "return_fields": True}):
        q = rng.standard_normal(8).astype(np.float32)
        a, b = local.search(q, **kw), remote.search(q, **kw)
        assert a.ids == b.ids and a.fields == b.fields and (a.k, a.index, a.vector_field) == (b.k, b.index, b.vector_field)
        np.testing.assert_array_equal(a.scores, b.scores)
    after = _requests(url)
    assert after.get("/search_binary", 0) - before.get("/search_binary", 0) == 5
    assert after.get("/search", 0) == before.get("/search", 0)


def test_hybrid_names_the_vector_field_it_searched_like_local(pair):
    local, remote, rng, _ = pair
    q = rng.standard_normal(8).astype(np.float32)
    for kw in ({"vector_field": "tv"}, {"field_name": "tv"}, {}):
        a, b = local.hybrid_search(q, k=4, **kw), remote.hybrid_search(q, k=4, **kw)
        assert a.ids == b.ids and (a.k, a.index, a.vector_field) == (b.k, b.index, b.vector_field)
        assert a.vector_field == ("tv" if kw else "default")


def test_string_ids_fall_back_to_json_and_stay_there(tmp_path, server_url):
    remote = vecstore.connect(server_url)
    col = remote.create_database("app").require_collection("s", dim=2)
    col.add(np.eye(2, dtype=np.float32), ids=["a", "b"])
    assert col.search([1.0, 0.0], k=1).ids == ("a",)
    assert col.search([0.0, 1.0], k=1).ids == ("b",)
    seen = _requests(server_url)
    assert seen.get("/search", 0) == 2 and seen.get("/search_binary", 0) == 0  # one refused try, then JSON only
    remote.close()


@pytest.mark.parametrize("vector, kw, error", [
    ([1.0, 2.0], {}, DimensionMismatchError),
    ([np.nan] * 8, {}, InvalidArgumentError),
    ([0.0] * 8, {"where": "lang = "}, FilterSyntaxError),
    ([0.0] * 8, {"k": -1}, InvalidArgumentError),
    ([0.0] * 8, {"k": 2.5}, InvalidArgumentError),
])
def test_errors_are_the_local_ones(pair, vector, kw, error):
    local, remote, _, _ = pair
    with pytest.raises(error) as a:
        local.search(vector, **kw)
    with pytest.raises(error) as b:
        remote.search(vector, **kw)
    assert type(a.value) is type(b.value)


def test_batch_search_over_binary_like_local(pair):
    local, remote, rng, url = pair
    before = _requests(url)
    for kw in ({}, {"where": "n < 150", "return_fields": True, "k": 5}, {"vector_field": "tv", "nprobe": 30}):
        qs = rng.standard_normal((7, 8)).astype(np.float32)
        a, b = local.batch_search(qs, **kw), remote.batch_search(qs, **kw)
        assert len(a) == len(b) == 7
        for x, y in zip(a, b):
            assert x.ids == y.ids and x.fields == y.fields and (x.k, x.index, x.vector_field) == (y.k, y.index, y.vector_field)
            np.testing.assert_array_equal(x.scores, y.scores)
    after = _requests(url)
    assert after.get("/batch_search_binary", 0) - before.get("/batch_search_binary", 0) == 3
    assert after.get("/batch_search", 0) == before.get("/batch_search", 0)


@pytest.mark.parametrize("call", [
    lambda c: c.search([[0.0] * 8], k=1),  # 2-D: the server once said InvalidArgumentError
    lambda c: c.search([], k=1),
    lambda c: c.search([np.nan] * 8),  # NaN has no JSON form: "malformed JSON" once
    lambda c: c.search([1.0, np.inf] + [0.0] * 6, k=3, where="lang = 'de'"),
    lambda c: c.search_range([np.nan] * 8, threshold=1.0),
    lambda c: c.search_range([[0.0] * 8], threshold=1.0),
    lambda c: c.search_profile([], k=2),
    lambda c: c.batch_search([[0.0] * 8, [0.0] * 7]),
    lambda c: c.batch_search([[np.nan] * 8, [0.0] * 8]),
    lambda c: c.batch_search([[[0.0] * 8]]),
    lambda c: c.hybrid_search([[0.0] * 8]),
], ids=["2d", "empty", "nan", "inf-where", "range-nan", "range-2d", "profile-empty", "batch-ragged", "batch-nan",
        "batch-3d", "hybrid-2d"])
def test_error_classes_and_messages_are_the_local_ones(pair, call):
    local, remote, _, _ = pair
    with pytest.raises(vecstore.VecstoreError) as a:
        call(local)
    with pytest.raises(vecstore.VecstoreError) as b:
        call(remote)
    assert (type(b.value), str(b.value)) == (type(a.value), str(a.value))


def test_empty_batches_and_range_results_like_local(pair):
    local, remote, rng, _ = pair
    assert local.batch_search(np.zeros((0, 8)), k=2) == remote.batch_search(np.zeros((0, 8)), k=2) == []
    q = rng.standard_normal(8).astype(np.float32)
    for kw in ({"threshold": 12.0}, {"threshold": 1.0, "vector_field": "tv", "return_fields": True},
               {"threshold": 10.0, "where": "n < 100", "max_results": 5}):
        a, b = local.search_range(q, **kw), remote.search_range(q, **kw)
        assert len(a.ids) > 0
        assert a.ids == b.ids and a.fields == b.fields and (a.k, a.index, a.vector_field) == (b.k, b.index, b.vector_field)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_writes_fit_the_servers_body_limits(tmp_path):
    """The client cut writes into 50,000-row requests whatever their size, so a server's byte
    limit turned a valid call into an error, reported as "connection failed: Broken pipe" (the
    server answers 413 from the request's head and closes while the body is still going out).
    Requests now fit the limit (a 413 costs nothing: the client cuts the rows finer and sends
    them again), and a single row over it is PayloadTooLargeError."""
    from live_server import start_server
    data = tmp_path / "served"
    data.mkdir()
    backing = vecstore.connect(data)
    server = start_server(data, backing, max_json_bytes=64 << 10, max_binary_bytes=64 << 10)
    remote = vecstore.connect(server.url)
    try:
        col = remote.create_database("app").create_collection("c", dim=32, metric="l2")
        x = np.random.default_rng(3).standard_normal((600, 32)).astype(np.float32)  # 82 KB binary, 2 MB JSON
        assert col.add(x, ids=list(range(600))) == list(range(600))
        assert col.add(x[:200], ids=[f"s{i}" for i in range(200)]) == [f"s{i}" for i in range(200)]
        assert col.bulk_add_items([{"vector": r} for r in x[:200]]) == list(range(600, 800))
        assert col.add(x[:300], ids=[None, 5000] + [None] * 298) == [800, 5000, *range(801, 1099)]
        assert col.upsert(x[::-1], ids=list(range(600))) == list(range(600))
        assert col.upsert_items([{"vector": r, "id": f"s{i}"} for i, r in enumerate(x[:200] * 2)])[-1] == "s199"
        assert col.shape == (1300, 32)
        got = col.query_vectors(filter_ids=[0, 599, "s7", 600, 1098])
        np.testing.assert_array_equal(got.vectors, np.stack([x[599], x[0], x[7] * 2, x[0], x[299]]))
        with pytest.raises(PayloadTooLargeError, match="exceeds the limit"):
            col.add_item(x[0], id=9999, field={"text": "x" * (8 << 20)})  # still sending when refused
        assert col.shape == (1300, 32) and col.search(x[5], k=1).ids == (594,)
        # An add of several requests holding a stored id is refused before the first request, as
        # the library refuses it before writing anything (the earlier requests stayed written).
        col.delete_items(["s3"])
        for call in (lambda: col.add(x, ids=[f"n{i}" for i in range(599)] + [1098]),
                     lambda: col.add(x, ids=[None] * 599 + ["s3"]),  # soft-deleted
                     lambda: col.bulk_add_items([{"vector": r} for r in x[:599]] + [{"vector": x[0], "id": 5}]),
                     lambda: col.bulk_add_items([{"vector": r, "id": f"m{i}"} for i, r in enumerate(x)] + [{"vector": x[0], "id": 7}])):
            with pytest.raises(vecstore.AlreadyExistsError, match="already exist"):
                call()
        assert col.shape == (1299, 32)
        # A bad item in the last request: refused before the first, as locally.
        short = [{"vector": r} for r in x.tolist()] + [{"vector": x[0, :31].tolist()}]
        with pytest.raises(vecstore.DimensionMismatchError):
            col.bulk_add_items(short)
        with pytest.raises(vecstore.InvalidArgumentError, match="'id'"):
            col.upsert_items([{"vector": r, "id": f"u{i}"} for i, r in enumerate(x)] + [{"vector": x[0]}])
        assert col.shape == (1299, 32)
    finally:
        remote.close()
        server.stop()
        backing.close()


def test_overflowed_scores_come_back_infinite_over_json_like_local(tmp_path, server_url):
    """JSON has no infinity, so the server sends an overflowed score as ±3.4028235e38; the
    binary search route kept inf, but every JSON route (profile, range, string ids, hybrid) gave
    the remote caller ±3.4e38 where the local call gives ±inf."""
    pairs = []
    for client in (vecstore.connect(tmp_path / "local"), vecstore.connect(server_url)):
        db = client.create_database("app")
        l2 = db.require_collection("l2", dim=2, metric="l2")
        l2.add([[0, 0], [1e30, 0]], ids=["a", "b"])       # string ids: search goes over JSON
        ip = db.require_collection("ip", dim=2, metric="ip")
        ip.add([[1e30, 0], [-1e30, 0], [1, 0]], ids=[1, 2, 3])
        pairs.append((client, l2, ip))
    calls = [lambda l2, ip: l2.search([0, 0], k=2),
             lambda l2, ip: l2.batch_search([[0, 0]] * 2, k=2)[1],
             lambda l2, ip: l2.search_profile([0, 0], k=2).result,
             lambda l2, ip: ip.search_range([1e30, 0], threshold=0.5),
             lambda l2, ip: ip.search_profile([1e30, 0], k=3).result,
             lambda l2, ip: ip.search([1e30, 0], k=3)]
    for call in calls:
        a, b = (call(l2, ip) for _, l2, ip in pairs)
        assert a.ids == b.ids and np.isinf(a.scores).any()
        np.testing.assert_array_equal(a.scores, b.scores)
    assert pairs[1][2].search_profile([1e30, 0], k=3).result.scores.tolist() == [np.inf, float(np.float32(1e30)), -np.inf]
    for client, _, _ in pairs:
        client.close()
