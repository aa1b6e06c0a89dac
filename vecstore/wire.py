"""What travels over HTTP: JSON envelopes, error bodies and LynseDB's binary protocols.

Shared by ``vecstore.server`` and the remote client, so both ends agree byte for byte. The
layouts are LynseDB's (``shared/research/lynse_api.md`` §1 and §5); everything is
little-endian.

Decoders are strict: a payload whose lengths, counts or dimensions do not add up raises
:class:`~vecstore.errors.InvalidArgumentError` naming what was wrong. No ``struct.error``,
numpy error or ``UnicodeDecodeError`` ever leaves this module, and no count read from the
wire is trusted before the bytes behind it have been checked to exist.

>>> block = encode_search_block([0, 4, 1], [1.0, 0.7, 0.0])
>>> len(block)
44
>>> ids, scores, fields, end = decode_search_block(block)
>>> ids, [round(float(s), 2) for s in scores], fields, end
([0, 4, 1], [1.0, 0.7, 0.0], [], 44)
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import PurePath
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import InvalidArgumentError

__all__ = [
    "MAX_JSON_DEPTH",
    "envelope",
    "error_body",
    "encode_json",
    "decode_json",
    "json_depth",
    "decode_vector",
    "decode_vectors",
    "encode_search_block",
    "decode_search_block",
    "encode_batch_search",
    "decode_batch_search",
    "encode_rows_block",
    "decode_rows_block",
    "encode_fields_block",
    "decode_fields_block",
    "encode_records",
    "decode_records",
]

#: Deepest JSON nesting a request may have (objects and arrays both count one level).
MAX_JSON_DEPTH = 64

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1


# --------------------------------------------------------------------------------------------
# JSON


def envelope(params: dict) -> dict:
    """LynseDB's success envelope: ``{"status": "success", "params": {...}}``."""
    return {"status": "success", "params": params}


def error_body(message: str, code: str) -> dict:
    """The error body every non-2xx JSON response carries."""
    return {"error": message, "code": code}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; numpy values, tuples, paths and result types encode as expected."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")


_ESCAPED = re.compile(rb'\\.', re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_KEEP = bytes(range(256)).translate(None, b'[]{}"')  # every byte except the structural ones


def json_depth(raw: bytes) -> int:
    r"""The deepest nesting of ``[``/``{`` in a JSON text, without parsing it.

    Runs at C speed (escapes and strings are removed with ``re``/``bytes.translate``, then
    a cumulative sum over what is left), so a body can be refused before ``json.loads``
    spends time on it. On text that is not valid JSON the answer is only an estimate; the
    parse that follows reports such text anyway.

    >>> json_depth(b'{"a": [1, [2, "]]]"], {"b": "\\\\", "c": "\\"["}]}')
    3
    """
    stripped = _STRING.sub(b"", _ESCAPED.sub(b"", raw).translate(None, _KEEP))
    if not stripped:
        return 0
    arr = np.frombuffer(stripped, dtype=np.uint8)
    steps = np.where((arr == ord("[")) | (arr == ord("{")), 1, -1)
    return max(0, int(np.cumsum(steps).max()))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body, refusing what a well-behaved client never sends.

    :raises InvalidArgumentError: on malformed JSON, invalid UTF-8, ``NaN``/``Infinity``
        literals or nesting deeper than ``max_depth``.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    depth = json_depth(raw)
    if depth > max_depth:
        raise InvalidArgumentError(f"request body: JSON nested {depth} levels deep; the limit is {max_depth}")
    try:
        # Decoded here, strictly: json.loads(bytes) decodes with "surrogatepass", so the bytes
        # of a lone surrogate (ED A0 80, which is not UTF-8) would reach callers as a str that
        # cannot be encoded again. detect_encoding keeps what it accepts (a BOM, UTF-16/32).
        text = raw.decode(json.detect_encoding(raw))
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # pragma: no cover - the depth check above comes first
        raise InvalidArgumentError("request body: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise InvalidArgumentError(f"request body: malformed JSON: {e}") from None


# --------------------------------------------------------------------------------------------
# Raw vectors


_ENCODINGS = {
    "float32": "<f4", "f32": "<f4", "fp32": "<f4",
    "float16": "<f2", "f16": "<f2", "fp16": "<f2",
}


def _dtype_for(encoding: str | None) -> np.dtype:
    key = "float32" if encoding is None else str(encoding).lower()
    if key not in _ENCODINGS:
        raise InvalidArgumentError(f"vector_encoding: expected float32 or float16, got {encoding!r}")
    return np.dtype(_ENCODINGS[key])


def _check_count(name: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def decode_vectors(buf: bytes, n: int, dim: int, encoding: str | None = "float32", *,
                   offset: int = 0, exact: bool = True) -> np.ndarray:
    """``n`` row-major vectors of ``dim`` values from ``buf`` as a float32 ``(n, dim)`` array.

    With ``exact`` the buffer must hold exactly those bytes after ``offset``.

    :raises InvalidArgumentError: ``Expected {B} bytes ({n} vectors × {dim} dim × {w}), got {len}``.
    """
    n = _check_count("n_vectors", n)
    dim = _check_count("dim", dim, minimum=1)
    dtype = _dtype_for(encoding)
    need = n * dim * dtype.itemsize
    have = len(buf) - offset
    if have < need or (exact and have != need):
        raise InvalidArgumentError(
            f"Expected {need} bytes ({n} vectors × {dim} dim × {dtype.itemsize}), got {have}")
    arr = np.frombuffer(buf, dtype=dtype, count=n * dim, offset=offset).reshape(n, dim)
    return arr.astype(np.float32)  # always a copy: the result must not pin the request buffer


def decode_vector(buf: bytes, dim: int, encoding: str | None = "float32") -> np.ndarray:
    """One query vector: exactly ``dim`` values.

    :raises InvalidArgumentError: ``Expected X bytes, got Y``.
    """
    dim = _check_count("dim", dim, minimum=1)
    dtype = _dtype_for(encoding)
    if len(buf) != dim * dtype.itemsize:
        raise InvalidArgumentError(f"Expected {dim * dtype.itemsize} bytes, got {len(buf)}")
    return np.frombuffer(buf, dtype=dtype).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Reading helper


class _Reader:
    """A cursor over a payload that turns every short read into one clear error."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, buf: bytes, what: str, pos: int = 0) -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
        self.pos = pos
        self.what = what

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def need(self, n: int, item: str) -> None:
        if n > self.remaining():
            raise InvalidArgumentError(
                f"{self.what}: truncated at byte {self.pos} reading {item}: "
                f"need {n} bytes, {self.remaining()} left")

    def take(self, n: int, item: str) -> bytes:
        self.need(n, item)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def u8(self, item: str) -> int:
        self.need(1, item)
        self.pos += 1
        return self.buf[self.pos - 1]

    def _unpack(self, st: struct.Struct, item: str) -> Any:
        self.need(st.size, item)
        value = st.unpack_from(self.buf, self.pos)[0]
        self.pos += st.size
        return value

    def u32(self, item: str) -> int:
        return self._unpack(_U32, item)

    def u64(self, item: str) -> int:
        return self._unpack(_U64, item)

    def i64(self, item: str) -> int:
        return self._unpack(_I64, item)

    def f64(self, item: str) -> float:
        return self._unpack(_F64, item)

    def array(self, dtype: str, count: int, item: str) -> np.ndarray:
        width = np.dtype(dtype).itemsize
        self.need(count * width, item)
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += count * width
        return arr

    def text(self, n: int, item: str) -> str:
        raw = self.take(n, item)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{self.what}: {item} is not valid UTF-8") from None

    def json(self, n: int, item: str) -> Any:
        text = self.text(n, item)
        try:
            return decode_json(text)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{self.what}: {item}: {e}") from None

    def done(self) -> None:
        if self.remaining():
            raise InvalidArgumentError(f"{self.what}: {self.remaining()} unexpected trailing bytes")


# --------------------------------------------------------------------------------------------
# Search block (§5.2) and batch search (§5.3)


def _wire_ids(ids: Iterable[Any], what: str) -> np.ndarray:
    # The common case, a search's tuple of Python ints, in one conversion: 1 us, not 6.
    if isinstance(ids, tuple) and all(type(i) is int for i in ids) and (not ids or 0 <= min(ids) and max(ids) <= _U64_MAX):
        return np.array(ids, dtype="<u8")
    out = []
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) <= _U64_MAX:
            raise InvalidArgumentError(
                f"{what}: the binary protocol carries non-negative integer ids only, got {i!r}; "
                "use the JSON endpoint for string ids")
        out.append(int(i))
    return np.asarray(out, dtype="<u8")


def _fields_json(fields: Sequence[dict] | None, n: int, what: str) -> bytes:
    if not fields or n == 0:
        return b""
    fields = list(fields)
    if len(fields) != n:
        raise InvalidArgumentError(f"{what}: {len(fields)} field dicts for {n} rows")
    return encode_json(fields)


def encode_search_block(ids: Sequence[Any], scores: Sequence[float],
                        fields: Sequence[dict] | None = None) -> bytes:
    """``u32 n | u64[n] ids | f32[n] scores | u32 len | JSON array of field dicts``.

    ``fields`` empty or ``None`` writes length 0 (LynseDB does so when ``return_fields`` is
    false or there are no hits).
    """
    id_arr = _wire_ids(ids, "search block")
    score_arr = np.asarray(scores, dtype="<f4").ravel()
    n = len(id_arr)
    if len(score_arr) != n:
        raise InvalidArgumentError(f"search block: {n} ids but {len(score_arr)} scores")
    fjson = _fields_json(fields, n, "search block")
    return b"".join((_U32.pack(n), id_arr.tobytes(), score_arr.tobytes(), _U32.pack(len(fjson)), fjson))


def _read_search_block(r: _Reader) -> tuple[list[int], np.ndarray, list]:
    n = r.u32("hit count")
    r.need(n * 12 + 4, f"{n} hits")
    ids = r.array("<u8", n, "ids").tolist()
    scores = r.array("<f4", n, "scores").astype(np.float32)
    flen = r.u32("fields length")
    fields = r.json(flen, "fields JSON") if flen else []
    if not isinstance(fields, list) or (flen and len(fields) != n):
        raise InvalidArgumentError(f"{r.what}: fields JSON must be an array of {n} objects")
    return ids, scores, fields


def decode_search_block(buf: bytes, offset: int = 0) -> tuple[list[int], np.ndarray, list, int]:
    """Inverse of :func:`encode_search_block`: ``(ids, scores, fields, next_offset)``.

    Trailing bytes after the block are left for the caller (a batch holds several blocks).
    """
    r = _Reader(buf, "search block", offset)
    ids, scores, fields = _read_search_block(r)
    return ids, scores, fields, r.pos


def encode_batch_search(blocks: Sequence[tuple[Sequence[Any], Sequence[float], Sequence[dict] | None]]) -> bytes:
    """``u32 n_queries`` followed by one search block per query."""
    return _U32.pack(len(blocks)) + b"".join(encode_search_block(*b) for b in blocks)


def decode_batch_search(buf: bytes) -> list[tuple[list[int], np.ndarray, list]]:
    """Inverse of :func:`encode_batch_search`; the whole buffer must be consumed."""
    r = _Reader(buf, "batch search")
    nq = r.u32("query count")
    r.need(nq * 8, f"{nq} search blocks")  # every block is at least 8 bytes
    out = [_read_search_block(r) for _ in range(nq)]
    r.done()
    return out


# --------------------------------------------------------------------------------------------
# Rows block: head_binary / tail_binary (§5.4)


def encode_rows_block(vectors: Any, ids: Sequence[Any], fields: Sequence[dict] | None = None,
                      dim: int | None = None) -> bytes:
    """``u32 n | u32 dim | f32[n*dim] | u64[n] ids | u32 len | JSON array of field dicts``.

    ``dim`` is needed only when there are no rows (an empty ``(0, dim)`` array carries it too).
    Field dicts are always written when there are rows (``{}`` for rows without fields).
    """
    id_arr = _wire_ids(ids, "rows block")
    n = len(id_arr)
    vecs = np.asarray(vectors, dtype="<f4")
    if vecs.size == 0:
        vecs = vecs.reshape(0, dim if dim is not None else (vecs.shape[-1] if vecs.ndim == 2 else 0))
    if vecs.ndim != 2 or vecs.shape[0] != n:
        raise InvalidArgumentError(f"rows block: {n} ids but vectors of shape {vecs.shape}")
    if dim is not None and n and vecs.shape[1] != dim:
        raise InvalidArgumentError(f"rows block: dim {dim} but vectors have {vecs.shape[1]} values")
    fields = list(fields) if fields is not None else [{}] * n
    fjson = _fields_json(fields, n, "rows block")
    out_dim = vecs.shape[1] if n else (dim or vecs.shape[1])
    return b"".join((_U32.pack(n), _U32.pack(out_dim), np.ascontiguousarray(vecs).tobytes(),
                     id_arr.tobytes(), _U32.pack(len(fjson)), fjson))


def decode_rows_block(buf: bytes) -> tuple[np.ndarray, list[int], list]:
    """Inverse of :func:`encode_rows_block`: ``(vectors (n, dim), ids, fields)``."""
    r = _Reader(buf, "rows block")
    n = r.u32("row count")
    dim = r.u32("dim")
    r.need(n * dim * 4 + n * 8 + 4, f"{n} rows of dim {dim}")
    vecs = r.array("<f4", n * dim, "vectors").astype(np.float32).reshape(n, dim)
    ids = r.array("<u8", n, "ids").tolist()
    flen = r.u32("fields length")
    fields = r.json(flen, "fields JSON") if flen else []
    if not isinstance(fields, list) or (flen and len(fields) != n):
        raise InvalidArgumentError(f"rows block: fields JSON must be an array of {n} objects")
    r.done()
    return vecs, ids, fields


# --------------------------------------------------------------------------------------------
# LDBF1 fields block and binary records (§5.5)

_MAGIC = b"LDBF1"
_NULL, _FALSE, _TRUE, _I64_TAG, _U64_TAG, _F64_TAG, _STR, _ARR, _OBJ = range(9)
_MAX_VALUE_DEPTH = MAX_JSON_DEPTH


def _encode_str(s: str, out: list) -> None:
    raw = s.encode("utf-8")
    out.append(_U32.pack(len(raw)))
    out.append(raw)


def _encode_value(v: Any, out: list, depth: int) -> None:
    if depth > _MAX_VALUE_DEPTH:
        raise InvalidArgumentError(f"fields block: value nested deeper than {_MAX_VALUE_DEPTH} levels")
    if v is None:
        out.append(bytes((_NULL,)))
    elif isinstance(v, (bool, np.bool_)):
        out.append(bytes((_TRUE if v else _FALSE,)))
    elif isinstance(v, (int, np.integer)):
        v = int(v)
        if -(2**63) <= v < 2**63:
            out.append(bytes((_I64_TAG,)) + _I64.pack(v))
        elif 0 <= v <= _U64_MAX:
            out.append(bytes((_U64_TAG,)) + _U64.pack(v))
        else:
            raise InvalidArgumentError(f"fields block: integer {v} does not fit in 64 bits")
    elif isinstance(v, (float, np.floating)):
        out.append(bytes((_F64_TAG,)) + _F64.pack(float(v)))
    elif isinstance(v, str):
        out.append(bytes((_STR,)))
        _encode_str(v, out)
    elif isinstance(v, (list, tuple)):
        out.append(bytes((_ARR,)) + _U32.pack(len(v)))
        for x in v:
            _encode_value(x, out, depth + 1)
    elif isinstance(v, dict):
        out.append(bytes((_OBJ,)))
        _encode_object(v, out, depth + 1)
    else:
        raise InvalidArgumentError(f"fields block: cannot encode a value of type {type(v).__name__}")


def _encode_object(d: dict, out: list, depth: int) -> None:
    out.append(_U32.pack(len(d)))
    for k, v in d.items():
        if not isinstance(k, str):
            raise InvalidArgumentError(f"fields block: keys must be strings, got {k!r}")
        _encode_str(k, out)
        _encode_value(v, out, depth)


def encode_fields_block(rows: Sequence[dict | None]) -> bytes:
    """``b"LDBF1" | u32 count`` then per row ``0x00`` (no fields) or ``0x01`` + an object.

    An object is ``u32 n_keys`` and per key ``u32 len`` + UTF-8 key + a tagged value:
    ``0`` null, ``1`` false, ``2`` true, ``3`` i64, ``4`` u64, ``5`` f64, ``6`` string,
    ``7`` array (``u32 count`` + values), ``8`` object.
    """
    out = [_MAGIC, _U32.pack(len(rows))]
    for i, row in enumerate(rows):
        if row is None:
            out.append(b"\x00")
        elif isinstance(row, dict):
            out.append(b"\x01")
            _encode_object(row, out, 1)
        else:
            raise InvalidArgumentError(f"fields[{i}]: expected an object or None, got {type(row).__name__}")
    return b"".join(out)


def _read_value(r: _Reader, depth: int) -> Any:
    if depth > _MAX_VALUE_DEPTH:
        raise InvalidArgumentError(f"{r.what}: value nested deeper than {_MAX_VALUE_DEPTH} levels")
    tag = r.u8("value tag")
    if tag == _NULL:
        return None
    if tag == _FALSE:
        return False
    if tag == _TRUE:
        return True
    if tag == _I64_TAG:
        return r.i64("i64 value")
    if tag == _U64_TAG:
        return r.u64("u64 value")
    if tag == _F64_TAG:
        value = r.f64("f64 value")
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{r.what}: non-finite number {value} in fields")
        return value
    if tag == _STR:
        return r.text(r.u32("string length"), "string")
    if tag == _ARR:
        count = r.u32("array length")
        r.need(count, f"array of {count} values")  # every value is at least one byte
        return [_read_value(r, depth + 1) for _ in range(count)]
    if tag == _OBJ:
        return _read_object(r, depth + 1)
    raise InvalidArgumentError(f"{r.what}: unknown value tag {tag} at byte {r.pos - 1}")


def _read_object(r: _Reader, depth: int) -> dict:
    n_keys = r.u32("key count")
    r.need(n_keys * 5, f"object of {n_keys} keys")  # u32 key length + a tag, at least
    out = {}
    for _ in range(n_keys):
        key = r.text(r.u32("key length"), "key")
        out[key] = _read_value(r, depth)
    return out


def _read_fields_block(r: _Reader, expected: int | None) -> list[dict | None]:
    if r.take(len(_MAGIC), "magic") != _MAGIC:
        raise InvalidArgumentError(f"{r.what}: fields block must start with b'LDBF1'")
    count = r.u32("row count")
    if expected is not None and count != expected:
        raise InvalidArgumentError(f"{r.what}: fields block has {count} rows, expected {expected}")
    r.need(count, f"{count} rows")
    rows: list[dict | None] = []
    for i in range(count):
        flag = r.u8(f"row {i} flag")
        if flag == 0:
            rows.append(None)
        elif flag == 1:
            rows.append(_read_object(r, 1))
        else:
            raise InvalidArgumentError(f"{r.what}: row {i} flag must be 0 or 1, got {flag}")
    return rows


def decode_fields_block(buf: bytes, expected: int | None = None) -> list[dict | None]:
    """Inverse of :func:`encode_fields_block`; the whole buffer must be consumed."""
    r = _Reader(buf, "fields block")
    rows = _read_fields_block(r, expected)
    r.done()
    return rows


def encode_records(vectors: Any, ids: Sequence[int] | None = None,
                   fields: Sequence[dict | None] | None = None, encoding: str = "float32") -> bytes:
    """The body of ``/add_records_binary`` and ``/upsert_records_binary``.

    ``vectors`` row-major, then ``ids`` as u64 when given (``ids_encoding=raw``; omit them for
    ``range``), then an optional fields block.
    """
    vecs = np.asarray(vectors, dtype=np.float32)
    if vecs.ndim != 2:
        raise InvalidArgumentError(f"vectors: expected a 2-D array, got shape {vecs.shape}")
    parts = [np.ascontiguousarray(vecs, dtype=_dtype_for(encoding)).tobytes()]
    n = vecs.shape[0]
    if ids is not None:
        if len(ids) != n:
            raise InvalidArgumentError(f"ids: {len(ids)} ids for {n} vectors")
        parts.append(_wire_ids(ids, "records").tobytes())
    if fields is not None:
        if len(fields) != n:
            raise InvalidArgumentError(f"fields: {len(fields)} entries for {n} vectors")
        parts.append(encode_fields_block(fields))
    return b"".join(parts)


def decode_records(buf: bytes, n: int, dim: int, encoding: str | None = "float32",
                   ids_encoding: str | None = "raw", ids_start: int | None = None,
                   ) -> tuple[np.ndarray, list[int], list[dict | None] | None]:
    """Inverse of :func:`encode_records`: ``(vectors, ids, fields or None)``.

    ``ids_encoding="range"`` numbers the rows ``ids_start, ids_start + 1, ...``; ``"raw"``
    reads ``n`` u64 ids after the vectors. Whatever follows must be one fields block of
    ``n`` rows (its ``None`` rows mean "no fields": for an upsert, keep the old ones).
    """
    n = _check_count("n_vectors", n)
    vecs = decode_vectors(buf, n, dim, encoding, exact=False)
    r = _Reader(buf, "records", n * dim * _dtype_for(encoding).itemsize)
    mode = (ids_encoding or "raw").lower()
    if mode == "raw":
        ids = r.array("<u8", n, f"{n} ids").tolist()
    elif mode == "range":
        if ids_start is None:
            raise InvalidArgumentError("ids_start: required when ids_encoding is range")
        start = _check_count("ids_start", ids_start)
        if start + n - 1 > _U64_MAX:
            raise InvalidArgumentError(f"ids_start: {start} + {n} ids overflow u64")
        ids = list(range(start, start + n))
    else:
        raise InvalidArgumentError(f"ids_encoding: expected range or raw, got {ids_encoding!r}")
    fields = _read_fields_block(r, n) if r.remaining() else None
    r.done()
    return vecs, ids, fields
