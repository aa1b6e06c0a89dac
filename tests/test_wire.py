"""The wire formats of vecstore.wire: round trips, LynseDB's worked example, malformed input."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vecstore import wire
from vecstore.errors import InvalidArgumentError

# --------------------------------------------------------------------------------------------
# strategies

u64 = st.integers(min_value=0, max_value=2**64 - 1)
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)
field_dict = st.dictionaries(st.text(max_size=10), json_value, max_size=5)


@st.composite
def hits(draw):
    n = draw(st.integers(0, 20))
    ids = draw(st.lists(u64, min_size=n, max_size=n))
    scores = draw(st.lists(f32, min_size=n, max_size=n))
    fields = draw(st.one_of(st.none(), st.lists(field_dict, min_size=n, max_size=n)))
    return ids, scores, fields


@st.composite
def rows(draw):
    n = draw(st.integers(0, 10))
    dim = draw(st.integers(1, 8))
    vecs = draw(st.lists(f32, min_size=n * dim, max_size=n * dim))
    ids = draw(st.lists(u64, min_size=n, max_size=n))
    fields = draw(st.lists(field_dict, min_size=n, max_size=n))
    return np.asarray(vecs, dtype=np.float32).reshape(n, dim), ids, fields, dim


# --------------------------------------------------------------------------------------------
# JSON


def test_envelope_and_error_body():
    assert wire.envelope({"a": 1}) == {"status": "success", "params": {"a": 1}}
    assert wire.error_body("bad k", "invalid_argument") == {"error": "bad k", "code": "invalid_argument"}


def test_encode_json_handles_numpy_and_tuples():
    out = json.loads(wire.encode_json({"a": np.float32(0.5), "b": np.arange(3), "c": (1, 2), "d": np.int64(7)}))
    assert out == {"a": 0.5, "b": [0, 1, 2], "c": [1, 2], "d": 7}


@pytest.mark.parametrize("body", [b"{", b"[1,]", b"\xff\xfe{}", b'{"a": NaN}', b'{"a": Infinity}', b"", b"nul"])
def test_decode_json_malformed(body):
    with pytest.raises(InvalidArgumentError, match="request body"):
        wire.decode_json(body)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_decode_json_too_deep(depth):
    with pytest.raises(InvalidArgumentError, match="nested"):
        wire.decode_json(b"[" * depth + b"]" * depth)
    with pytest.raises(InvalidArgumentError, match="nested"):
        wire.decode_json(b'{"a":' * depth + b"1" + b"}" * depth)


def test_decode_json_depth_ignores_brackets_in_strings():
    body = json.dumps({"where": "[" * 500, "s": "\\" * 3 + '"' + "{" * 200}).encode()
    assert wire.decode_json(body)["where"] == "[" * 500


@given(json_value)
def test_json_depth_matches_structure(value):
    def depth(v):
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0
    assert wire.json_depth(json.dumps(value).encode()) == depth(value)


# --------------------------------------------------------------------------------------------
# search block


def test_search_block_worked_example():
    """lynse_api §5.2: n=3, ids=[0,4,1], scores=[1.0,0.7,0.0], no fields: 44 bytes."""
    expected = bytes.fromhex(
        "03000000" "0000000000000000" "0400000000000000" "0100000000000000"
        "0000803f" "3333333f" "00000000" "00000000")
    assert wire.encode_search_block([0, 4, 1], [1.0, 0.7, 0.0]) == expected
    ids, scores, fields, end = wire.decode_search_block(expected)
    assert ids == [0, 4, 1]
    assert scores.dtype == np.float32 and scores.tolist() == [1.0, np.float32(0.7), 0.0]
    assert fields == [] and end == 44


def test_search_block_fields_empty_when_no_hits():
    assert wire.encode_search_block([], [], [{}]) == b"\x00" * 8


@given(hits())
def test_search_block_round_trip(h):
    ids, scores, fields = h
    buf = wire.encode_search_block(ids, scores, fields)
    got_ids, got_scores, got_fields, end = wire.decode_search_block(buf + b"tail")
    assert end == len(buf)
    assert got_ids == ids
    assert got_scores.tolist() == np.asarray(scores, dtype=np.float32).tolist()
    assert got_fields == (fields if fields and ids else [])


@given(st.lists(hits(), max_size=5))
def test_batch_search_round_trip(blocks):
    buf = wire.encode_batch_search(blocks)
    out = wire.decode_batch_search(buf)
    assert len(out) == len(blocks)
    for (ids, scores, fields), (gi, gs, gf) in zip(blocks, out):
        assert gi == ids and gs.tolist() == np.asarray(scores, dtype=np.float32).tolist()
        assert gf == (fields if fields and ids else [])


def test_search_block_refuses_string_and_negative_ids():
    with pytest.raises(InvalidArgumentError, match="integer ids"):
        wire.encode_search_block(["a"], [1.0])
    with pytest.raises(InvalidArgumentError, match="integer ids"):
        wire.encode_search_block([-1], [1.0])
    with pytest.raises(InvalidArgumentError, match="2 ids but 1 scores"):
        wire.encode_search_block([1, 2], [1.0])
    # a search result's ids are a tuple, which takes a faster path: the same checks
    for bad in (("a",), (-1,), (True,), (2**64,), (1, 2.0)):
        with pytest.raises(InvalidArgumentError, match="integer ids"):
            wire.encode_search_block(bad, [1.0] * len(bad))
    assert wire.encode_search_block((0, 2**64 - 1), [1.0, 0.5])[4:20] == bytes(8) + b"\xff" * 8


def test_search_block_every_truncation_is_invalid_argument():
    buf = wire.encode_search_block([1, 2], [0.5, 0.25], [{"a": 1}, {"b": "x"}])
    for cut in range(len(buf)):
        with pytest.raises(InvalidArgumentError):
            wire.decode_search_block(buf[:cut])


@pytest.mark.parametrize("buf, match", [
    (struct.pack("<I", 2**32 - 1), "truncated"),                                   # huge count
    (struct.pack("<I", 1) + b"\0" * 12 + struct.pack("<I", 2) + b"\xff\xff", "UTF-8"),
    (struct.pack("<I", 1) + b"\0" * 12 + struct.pack("<I", 2) + b"{}", "array"),
    (struct.pack("<I", 1) + b"\0" * 12 + struct.pack("<I", 2) + b"[]", "array of 1"),
    (struct.pack("<I", 0) + struct.pack("<I", 3) + b"[1,", "malformed JSON"),
])
def test_search_block_malformed(buf, match):
    with pytest.raises(InvalidArgumentError, match=match):
        wire.decode_search_block(buf)


def test_batch_search_malformed():
    with pytest.raises(InvalidArgumentError, match="trailing"):
        wire.decode_batch_search(wire.encode_batch_search([([1], [1.0], None)]) + b"x")
    with pytest.raises(InvalidArgumentError, match="truncated"):
        wire.decode_batch_search(struct.pack("<I", 1000))


# --------------------------------------------------------------------------------------------
# rows block (head/tail)


@given(rows())
def test_rows_block_round_trip(r):
    vecs, ids, fields, dim = r
    buf = wire.encode_rows_block(vecs, ids, fields, dim=dim)
    got_vecs, got_ids, got_fields = wire.decode_rows_block(buf)
    assert got_vecs.shape == (len(ids), dim)
    assert np.array_equal(got_vecs, vecs)
    assert got_ids == ids and got_fields == (fields if ids else [])


def test_rows_block_layout():
    buf = wire.encode_rows_block(np.array([[1.0, 2.0]], dtype=np.float32), [7], [{}])
    assert buf == (struct.pack("<II", 1, 2) + struct.pack("<ff", 1, 2) + struct.pack("<Q", 7)
                   + struct.pack("<I", 4) + b"[{}]")


def test_rows_block_malformed():
    good = wire.encode_rows_block(np.ones((2, 3), np.float32), [1, 2], [{"a": 1}, {}])
    for cut in range(len(good)):
        with pytest.raises(InvalidArgumentError):
            wire.decode_rows_block(good[:cut])
    with pytest.raises(InvalidArgumentError, match="trailing"):
        wire.decode_rows_block(good + b"\0")
    with pytest.raises(InvalidArgumentError, match="truncated"):
        wire.decode_rows_block(struct.pack("<II", 2**31, 2**31))
    with pytest.raises(InvalidArgumentError, match="vectors of shape"):
        wire.encode_rows_block(np.ones((1, 3)), [1, 2])


# --------------------------------------------------------------------------------------------
# raw vectors (bulk_add_binary, search_binary)


def test_decode_vectors_exact_length_message():
    buf = np.arange(6, dtype="<f4").tobytes()
    assert wire.decode_vectors(buf, 2, 3).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(InvalidArgumentError, match=r"Expected 32 bytes \(2 vectors × 4 dim × 4\), got 24"):
        wire.decode_vectors(buf, 2, 4)
    with pytest.raises(InvalidArgumentError, match="Expected 20 bytes"):
        wire.decode_vectors(buf[:20] + b"\0\0", 1, 5)
    with pytest.raises(InvalidArgumentError, match="dim: expected an integer >= 1"):
        wire.decode_vectors(buf, 2, 0)
    with pytest.raises(InvalidArgumentError, match="n_vectors"):
        wire.decode_vectors(buf, -1, 3)


def test_decode_vectors_float16():
    buf = np.array([[1.5, -2.0]], dtype="<f2").tobytes()
    out = wire.decode_vectors(buf, 1, 2, "f16")
    assert out.dtype == np.float32 and out.tolist() == [[1.5, -2.0]]
    with pytest.raises(InvalidArgumentError, match="vector_encoding"):
        wire.decode_vectors(buf, 1, 2, "int8")


def test_decode_vector_single():
    assert wire.decode_vector(struct.pack("<2f", 1, 2), 2).tolist() == [1, 2]
    with pytest.raises(InvalidArgumentError, match="Expected 12 bytes, got 8"):
        wire.decode_vector(struct.pack("<2f", 1, 2), 3)


# --------------------------------------------------------------------------------------------
# LDBF1 fields block and binary records


@given(st.lists(st.one_of(st.none(), field_dict), max_size=8))
def test_fields_block_round_trip(rows_):
    buf = wire.encode_fields_block(rows_)
    assert buf.startswith(b"LDBF1")
    assert wire.decode_fields_block(buf, expected=len(rows_)) == rows_


def test_fields_block_layout():
    buf = wire.encode_fields_block([None, {"a": True, "b": [1, "x"], "c": None, "d": 2**64 - 1, "e": 1.5}])
    expected = (b"LDBF1" + struct.pack("<I", 2) + b"\x00" + b"\x01" + struct.pack("<I", 5)
                + struct.pack("<I", 1) + b"a" + b"\x02"
                + struct.pack("<I", 1) + b"b" + b"\x07" + struct.pack("<I", 2)
                + b"\x03" + struct.pack("<q", 1) + b"\x06" + struct.pack("<I", 1) + b"x"
                + struct.pack("<I", 1) + b"c" + b"\x00"
                + struct.pack("<I", 1) + b"d" + b"\x04" + struct.pack("<Q", 2**64 - 1)
                + struct.pack("<I", 1) + b"e" + b"\x05" + struct.pack("<d", 1.5))
    assert buf == expected


def _obj(*pairs: bytes) -> bytes:
    return b"LDBF1" + struct.pack("<I", 1) + b"\x01" + struct.pack("<I", len(pairs)) + b"".join(pairs)


@pytest.mark.parametrize("buf, match", [
    (b"LDBF2" + struct.pack("<I", 0), "LDBF1"),
    (b"LDBF1" + struct.pack("<I", 1) + b"\x02", "flag must be 0 or 1"),
    (b"LDBF1" + struct.pack("<I", 2**32 - 1), "truncated"),
    (_obj(struct.pack("<I", 1) + b"a" + b"\x09"), "unknown value tag 9"),
    (_obj(struct.pack("<I", 1) + b"\xff" + b"\x00"), "UTF-8"),
    (_obj(struct.pack("<I", 1) + b"a" + b"\x07" + struct.pack("<I", 2**32 - 1)), "truncated"),
    (_obj(struct.pack("<I", 1) + b"a" + b"\x05" + struct.pack("<d", float("nan"))), "non-finite"),
    (b"LDBF1" + struct.pack("<I", 0) + b"x", "trailing"),
])
def test_fields_block_malformed(buf, match):
    with pytest.raises(InvalidArgumentError, match=match):
        wire.decode_fields_block(buf)


def test_fields_block_deep_nesting_refused():
    body = _obj(struct.pack("<I", 1) + b"a" + (b"\x07" + struct.pack("<I", 1)) * 100 + b"\x00")
    with pytest.raises(InvalidArgumentError, match="deeper"):
        wire.decode_fields_block(body)
    with pytest.raises(InvalidArgumentError, match="deeper"):
        nested: list = []
        for _ in range(100):
            nested = [nested]
        wire.encode_fields_block([{"a": nested}])


def test_fields_block_count_mismatch():
    with pytest.raises(InvalidArgumentError, match="expected 3"):
        wire.decode_fields_block(wire.encode_fields_block([None]), expected=3)


@given(st.integers(0, 6), st.integers(1, 5), st.booleans(), st.booleans(), st.data())
def test_records_round_trip(n, dim, raw_ids, with_fields, data):
    vecs = np.asarray(data.draw(st.lists(f32, min_size=n * dim, max_size=n * dim)), np.float32).reshape(n, dim)
    ids = data.draw(st.lists(u64, min_size=n, max_size=n))
    fields = data.draw(st.lists(st.one_of(st.none(), field_dict), min_size=n, max_size=n)) if with_fields else None
    buf = wire.encode_records(vecs, ids if raw_ids else None, fields)
    got_v, got_ids, got_f = wire.decode_records(
        buf, n, dim, "float32", "raw" if raw_ids else "range", None if raw_ids else 10)
    assert np.array_equal(got_v, vecs)
    assert got_ids == (ids if raw_ids else list(range(10, 10 + n)))
    assert got_f == fields


def test_records_float16_and_errors():
    vecs = np.array([[1, 2], [3, 4]], np.float32)
    buf = wire.encode_records(vecs, [5, 6], [None, {"a": 1}], encoding="float16")
    v, ids, f = wire.decode_records(buf, 2, 2, "float16", "raw")
    assert v.tolist() == vecs.tolist() and ids == [5, 6] and f == [None, {"a": 1}]
    with pytest.raises(InvalidArgumentError, match="ids_start"):
        wire.decode_records(buf, 2, 2, "float16", "range")
    with pytest.raises(InvalidArgumentError, match="ids_encoding"):
        wire.decode_records(buf, 2, 2, "float16", "zigzag")
    with pytest.raises(InvalidArgumentError, match="Expected"):
        wire.decode_records(buf[:5], 2, 2, "float16", "raw")
    with pytest.raises(InvalidArgumentError, match="truncated"):
        wire.decode_records(buf[:12], 2, 2, "float16", "raw")
    with pytest.raises(InvalidArgumentError, match="LDBF1"):
        wire.decode_records(buf[:24] + b"junk!", 2, 2, "float16", "raw")
    with pytest.raises(InvalidArgumentError, match="expected 2"):
        wire.decode_records(wire.encode_records(vecs, [5, 6]) + wire.encode_fields_block([None]), 2, 2)


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(0, 4), st.integers(1, 4))
def test_random_bytes_never_escape_as_other_errors(buf, n, dim):
    for decode in (wire.decode_search_block, wire.decode_batch_search, wire.decode_rows_block,
                   wire.decode_fields_block, lambda b: wire.decode_records(b, n, dim),
                   lambda b: wire.decode_records(b, n, dim, "f16", "range", 0)):
        try:
            decode(buf)
        except InvalidArgumentError:
            pass
        try:
            decode(b"LDBF1" + buf)
        except InvalidArgumentError:
            pass
