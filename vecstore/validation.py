"""Input checks done once, at the public boundary (Client, Database, Collection).

Every error names the parameter and the value ("Expected X, got Y"), and is raised before
anything is written, so a rejected call changes nothing.

>>> check_name("items", what="collection_name")
'items'
>>> check_name("../etc", what="collection_name")
Traceback (most recent call last):
...
vecstore.errors.InvalidNameError: collection_name: expected 1-128 characters of [A-Za-z0-9._-], not starting with '.' and without '..', got '../etc'
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import numbers
import re
from typing import Any, Sequence

import numpy as np

from .errors import DimensionMismatchError, InvalidArgumentError, InvalidNameError

_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_STR_ID_BYTES = 400  # LMDB keys are at most 511 bytes; leave room for the type tag
MAX_INT_ID = 2**63 - 1
MAX_DIM = 65536
_MAX_FIELD_DEPTH = 8


def _utf8_len(s: str, param: str) -> int:
    """The UTF-8 size of ``s``; InvalidArgumentError when it has none. A lone surrogate
    (``"\\ud800"``: a legal JSON escape, and what ``surrogateescape`` decoding yields) is a str
    that LMDB keys, msgpack and tantivy cannot encode, and would fail deep inside a write as a
    bare UnicodeEncodeError. ASCII, nearly every string, is not encoded at all."""
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{param}: expected valid Unicode text, got {_brief(s)}") from None


def _sample(values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def check_name(name: Any, *, what: str) -> str:
    """A database, collection or field name: ``[A-Za-z0-9._-]``, 1-128 chars, no leading dot,
    no ``..``, so a name can never leave the data folder."""
    # A leading dot is refused too: vecstore keeps its own folders (``.jobs``) under dot-names.
    # fullmatch, not match: "$" also matches before a final newline, so "items\\n" got through.
    # The pattern is ASCII, so text without a UTF-8 form (a lone surrogate) is refused as well.
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name or name.startswith("."):
        raise InvalidNameError(
            f"{what}: expected 1-128 characters of [A-Za-z0-9._-], not starting with '.' and "
            f"without '..', got {name!r}")
    return name


def check_id(value: Any, *, param: str = "id") -> int | str:
    """A public id: a non-negative int (< 2**63) or a non-empty string."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{param}: expected a non-negative int or a string, got {value!r}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if 0 <= v <= MAX_INT_ID:
            return v
        raise InvalidArgumentError(f"{param}: expected an int in [0, 2**63), got {v!r}")
    if isinstance(value, str):
        if value and _utf8_len(value, param) <= MAX_STR_ID_BYTES:
            return _text(value)
        raise InvalidArgumentError(
            f"{param}: expected a non-empty string of at most {MAX_STR_ID_BYTES} bytes, got {value[:40]!r}")
    raise InvalidArgumentError(f"{param}: expected a non-negative int or a string, got {type(value).__name__} {value!r}")


def _text(s: str) -> str:
    """``s`` as a plain str: a str subclass (a str-valued Enum) is stored as its text, so kept as
    the object it read back differently before and after a reopen."""
    return s if type(s) is str else str.__str__(s)


def _not_a_list(values: Any) -> bool:
    """Not a list (of ids, items, names): a str (it would be split into letters), a dict (its
    keys, by mistake), a scalar (not iterable)."""
    return isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__")


def check_ids(values: Any, *, param: str = "ids", allow_empty: bool = False) -> list[int | str]:
    if _not_a_list(values):
        raise InvalidArgumentError(f"{param}: expected a list of ids, got {_brief(values)}")
    out = [check_id(v, param=param) for v in values]
    if not out and not allow_empty:
        raise InvalidArgumentError(f"{param}: expected at least one id, got an empty list")
    return out


def check_id_or_ids(value: Any, *, param: str = "id") -> list[int | str]:
    """One id, or a list of them in the order the caller wants the rows back: a set has no
    order, so it is refused (as the remote client, which cannot send one, always did).

    >>> check_id_or_ids({1, 2})
    Traceback (most recent call last):
    ...
    vecstore.errors.InvalidArgumentError: id: expected an id or a list of ids, got a set (no order to return the rows in)
    """
    if isinstance(value, (int, str, np.integer)):
        return [check_id(value, param=param)]
    if isinstance(value, (set, frozenset, dict, type({}.keys()))):
        raise InvalidArgumentError(f"{param}: expected an id or a list of ids, got a {type(value).__name__} "
                                   "(no order to return the rows in)")
    return check_ids(value, param=param)


def check_unique(ids: Sequence[Any], *, param: str = "ids") -> None:
    if len(set(ids)) != len(ids):
        seen: set = set()
        dups = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise InvalidArgumentError(f"{param}: expected unique ids, found {len(dups)} duplicated: {_sample(dups)}")


def check_vectors(values: Any, dim: int, *, param: str = "vectors", normalise: bool = False,
                  nonzero: bool = False) -> np.ndarray:
    """A 2-D float32, C-contiguous, finite ``(n, dim)`` matrix (a copy: callers may reuse theirs).
    ``normalise`` scales queries to unit length; ``nonzero`` refuses a zero row and keeps the rows
    as given (vectors to store in a cosine field: stored as written, normalised only in memory).

    ``dim=0`` (a collection whose dimension is not known yet) takes the width of ``values``,
    which must still be one width for all rows, in [1, MAX_DIM].

    >>> check_vectors([[1, 2], [3, 4]], 0).shape
    (2, 2)
    >>> check_vectors([[1, 2], [3]], 0)
    Traceback (most recent call last):
    ...
    vecstore.errors.DimensionMismatchError: vectors: expected rows of one dimension, got dimensions [1, 2]
    """
    try:
        arr = np.array(real_array(values, param), dtype=np.float32, copy=True, order="C")
    except InvalidArgumentError:
        raise
    except (TypeError, ValueError, OverflowError) as e:  # Overflow: an int beyond float range
        widths = _row_widths(values)
        if len(widths) > 1:
            raise DimensionMismatchError(f"{param}: expected rows of one dimension{f' ({dim})' if dim else ''}, "
                                         f"got dimensions {sorted(widths)}") from None
        raise InvalidArgumentError(f"{param}: expected numbers of shape (n, {dim or 'dim'}), got {_brief(values)} ({e})") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, dim)
    if arr.ndim != 2:
        raise DimensionMismatchError(f"{param}: expected a 2-D array of shape (n, {dim or 'dim'}), got shape {arr.shape}")
    _check_width(arr.shape[1], dim, param, len(arr))
    _check_finite(arr, param)
    if normalise:
        _normalise(arr, param)
    elif nonzero:
        _refuse_zero(row_norms(arr), param)
    return arr


_REAL_KINDS = frozenset("biuf")  # bool, int, uint, float: numpy casts each to float32 faithfully


def real_array(values: Any, param: str) -> np.ndarray:
    """``values`` as an array of real numbers, not yet cast (``values`` itself when it is one):
    bools, ints and floats, or objects that are each one (ints beyond int64, ``Decimal``).
    Anything else is refused here, since numpy's cast to float32 would take it silently: a
    complex number loses its imaginary part, a date becomes days since 1970, ``"1.5"`` a number.
    Input that is no array at all (ragged rows) raises numpy's own TypeError or ValueError for
    the caller to name.

    >>> real_array([[1, 2.5]], "vectors").dtype.kind
    'f'
    >>> real_array([1j, 0], "vector")
    Traceback (most recent call last):
    ...
    vecstore.errors.InvalidArgumentError: vector: expected real numbers, got dtype complex128: [1j, 0]
    """
    arr = values if type(values) is np.ndarray else np.asarray(values)
    if arr.dtype.kind not in _REAL_KINDS:
        if arr.dtype.kind != "O":
            raise InvalidArgumentError(f"{param}: expected real numbers, got dtype {arr.dtype}: {_brief(values)}")
        for x in arr.flat:
            if not isinstance(x, (numbers.Real, decimal.Decimal)):
                raise InvalidArgumentError(f"{param}: expected real numbers, got {_brief(x)} "
                                           f"({type(x).__name__})")
    return arr


_FINITE_PROBE: dict[int, np.ndarray] = {}


def check_vector(value: Any, dim: int, *, param: str = "vector", normalise: bool = False) -> np.ndarray:
    """One vector as a ``(1, dim)`` float32 matrix; ``dim=0`` (not known yet) takes its length.

    >>> check_vector([1, 2, 3], 0).shape
    (1, 3)
    """
    # Only for a known dim: with dim 0 an empty float32 array has the shape (dim,), and 0.5 / 0.
    if dim and type(value) is np.ndarray and value.dtype == np.float32 and value.shape == (dim,) and not normalise:
        # The common case of a search loop, kept to a few hundred nanoseconds: a dot product
        # with 1/(2·dim) weights is finite exactly when every element is (it cannot overflow).
        probe = _FINITE_PROBE.get(dim)
        if probe is None:
            probe = _FINITE_PROBE.setdefault(dim, np.full(dim, 0.5 / dim, np.float32))
        if math.isfinite(value.dot(probe)):
            return value.reshape(1, dim)
    try:
        arr = np.array(real_array(value, param), dtype=np.float32, copy=True, order="C")
    except InvalidArgumentError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError(f"{param}: expected {dim or 'dim'} numbers, got {_brief(value)} ({e})") from None
    if arr.ndim != 1:
        raise DimensionMismatchError(f"{param}: expected a 1-D vector of dimension {dim or 'dim'}, got shape {arr.shape}")
    _check_width(arr.shape[0], dim, param)
    arr = arr.reshape(1, -1)
    _check_finite(arr, param)
    if normalise:
        _normalise(arr, param)
    return arr


def _row_widths(values: Any) -> set[int]:
    """The lengths of the rows of a ragged list (empty when it is not a list of sequences)."""
    try:
        return {len(row) for row in values}
    except TypeError:
        return set()


def _check_width(width: int, dim: int, param: str, rows: int = 1) -> None:
    if dim:
        if width != dim:
            raise DimensionMismatchError(f"{param}: expected dimension {dim}, got {width}")
    elif rows and not 1 <= width <= MAX_DIM:  # the dim is not known yet: these vectors set it
        raise DimensionMismatchError(f"{param}: expected a dimension in [1, {MAX_DIM}], got {width}")


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_finite(arr: np.ndarray, param: str) -> None:
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise InvalidArgumentError(f"{param}: expected finite numbers, found NaN or inf in row(s) {_sample(bad.tolist())}")


# Rows whose float32 norm is below this are measured again in float64 (row_norms): each square
# under float32's normals (2**-126) loses up to 2**-150 to rounding, MAX_DIM of them at most
# 2**-134, which is 2**-34 of a sum of squares >= 2**-100, but as much as 2**-8 of one near 2**-126.
_TINY_NORM = np.float32(2.0 ** -50)


def row_norms(arr: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of a finite float32 matrix, right also where the float32 sum of
    squares overflows (|x| > ~1e19) or loses to underflow (|x| < 2**-50, ~9e-16); 0 only for a
    zero row. Every cosine normalisation goes through here, and so do the exact cosine re-scores.

    >>> row_norms(np.array([[3e20, 4e20], [3e-22, 4e-22], [0, 0]], np.float32)).tolist()
    [5.000000...e+20, 5.000000...e-22, 0.0]
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(arr, axis=1)
    odd = np.flatnonzero(~(norms >= _TINY_NORM) | (norms == np.inf))
    if len(odd):
        # scale each such row by its largest magnitude first, in float64
        rows = arr[odd].astype(np.float64)
        top = np.abs(rows).max(axis=1)
        with np.errstate(invalid="ignore"):
            norms = norms.astype(np.float64)
            norms[odd] = np.where(top > 0, top * np.linalg.norm(rows / np.where(top > 0, top, 1)[:, None], axis=1), 0)
    return norms


def _refuse_zero(norms: np.ndarray, param: str) -> None:
    if (norms == 0).any():
        bad = np.flatnonzero(norms == 0)
        raise InvalidArgumentError(f"{param}: a zero vector has no cosine direction, in row(s) {_sample(bad.tolist())}")


def _normalise(arr: np.ndarray, param: str) -> None:
    _refuse_zero(_to_unit(arr), param)


def _to_unit(arr: np.ndarray) -> np.ndarray:
    """Scale the rows of a float32 matrix to unit length in place (a zero row becomes NaN);
    returns their norms. Each row comes out the same whatever the other rows are: a norm that
    is a float32 divides in float32, only one that needed float64 (see :func:`row_norms`) in
    float64, rounded once to float32."""
    norms = row_norms(arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        if norms.dtype == np.float32:
            arr /= norms[:, None]
            return norms
        as32 = norms.astype(np.float32)
        exact = as32 == norms
        arr[exact] /= as32[exact, None]
        arr[~exact] = arr[~exact] / norms[~exact, None]
    return norms


def unit_rows(arr: np.ndarray) -> np.ndarray:
    """A float32 copy of ``arr`` with every row scaled to unit length, bit for bit what a query
    normalised for cosine is (a zero row becomes NaN: cosine fields hold none). Cosine vectors
    are stored as written; the searches and indexes of a cosine field use these.

    >>> unit_rows(np.array([[3, 4]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    out = np.array(arr, dtype=np.float32, order="C")
    _to_unit(out)
    return out


def check_add_columns(vectors: Any, ids: Any, fields: Any, dim: int, *,
                      nonzero: bool = False) -> tuple[np.ndarray, list, list | None]:
    """The input of a columnar add: a finite ``(n >= 1, dim)`` matrix, ``ids`` None or one per
    row (a None is assigned), ``fields`` None or one dict (or None) per row. Returns
    ``(vectors, ids, fields or None)``. The remote client checks the same before it cuts rows
    into requests, so both refuse the same calls with the same errors.

    >>> check_add_columns([[1, 2]], None, [{"a": 1}], 2)[1:]
    ([None], [{'a': 1}])
    """
    vecs = check_vectors(vectors, dim, param="vectors", nonzero=nonzero)
    n = len(vecs)
    if n == 0:
        raise InvalidArgumentError("vectors: expected at least one vector, got none")
    if ids is not None and _not_a_list(ids):
        raise InvalidArgumentError(f"ids: expected a list of ids (or None), got {_brief(ids)}")
    id_list = [None] * n if ids is None else [None if i is None else check_id(i, param="ids") for i in ids]
    field_list = None if fields is None else _fields_column(fields, n, "dicts", keep_none=False)
    if len(id_list) != n:
        raise InvalidArgumentError(f"ids: expected {n} ids to match vectors, got {len(id_list)}")
    return vecs, id_list, field_list


def check_upsert_columns(vectors: Any, ids: Any, fields: Any, dim: int, *,
                         nonzero: bool = False) -> tuple[np.ndarray, list, list | None]:
    """The input of a columnar upsert: as :func:`check_add_columns`, but every row has an id,
    and a ``None`` in ``fields`` (or ``fields=None``) keeps the stored fields."""
    vecs = check_vectors(vectors, dim, param="vectors", nonzero=nonzero)
    id_list = check_ids(ids, param="ids")
    if len(id_list) != len(vecs):
        raise InvalidArgumentError(f"ids: expected {len(vecs)} ids to match vectors, got {len(id_list)}")
    field_list = None if fields is None else _fields_column(fields, len(vecs), "entries", keep_none=True)
    return vecs, id_list, field_list


def _fields_column(fields: Any, n: int, noun: str, *, keep_none: bool) -> list:
    if isinstance(fields, (str, bytes, dict)) or not hasattr(fields, "__len__"):
        raise InvalidArgumentError(f"fields: expected a list of dicts (one per vector), got {type(fields).__name__}")
    if len(fields) != n:
        raise InvalidArgumentError(f"fields: expected {n} {noun} to match vectors, got {len(fields)}")
    return [None if f is None and keep_none else check_fields(f, param=f"fields[{i}]") for i, f in enumerate(fields)]


def check_items(items: Any, *, need_id: bool) -> list[dict]:
    """Rows given as dicts (``bulk_add_items``, ``upsert_items``): a non-empty list of dicts
    with a ``vector`` (and an ``id``, for an upsert)."""
    if _not_a_list(items):
        raise InvalidArgumentError(f"items: expected a list of dicts with 'vector', got {type(items).__name__}")
    items = list(items)
    if not items:
        raise InvalidArgumentError("items: expected at least one item, got an empty list")
    for i, it in enumerate(items):
        if not isinstance(it, dict) or "vector" not in it or (need_id and it.get("id") is None):
            need = "'vector' and 'id'" if need_id else "a 'vector' key"
            # The keys, not the values: a vector's repr is long (and over HTTP a numpy array's).
            got = f"a dict with keys {sorted(map(str, it))}" if isinstance(it, dict) else _brief(it)
            raise InvalidArgumentError(f"items[{i}]: expected a dict with {need}, got {got}")
    return items


def check_fields(value: Any, *, param: str = "field") -> dict:
    """Metadata of one row: a dict of str keys to JSON-like values. Dates and datetimes become ISO
    strings; numpy scalars become Python scalars; tuples become lists."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{param}: expected a dict of metadata, got {type(value).__name__} {_brief(value)}")
    if "id" in value:  # query() would overwrite it and `where id = ...` could never reach it
        raise InvalidArgumentError(f"{param}: 'id' is the row's id (query() returns it, where 'id' filters on it); "
                                   "give the field another name")
    return _clean_dict(value, param, 0)


def _clean_dict(d: dict, param: str, depth: int) -> dict:
    if depth > _MAX_FIELD_DEPTH:
        raise InvalidArgumentError(f"{param}: metadata nested deeper than {_MAX_FIELD_DEPTH} levels")
    out = {}
    for k, v in d.items():
        if not isinstance(k, str) or not k:
            raise InvalidArgumentError(f"{param}: expected non-empty string keys, got key {k!r}")
        _utf8_len(k, f"{param} key")
        out[_text(k)] = _clean_value(v, f"{param}[{k!r}]", depth)
    return out


def _clean_value(v: Any, where: str, depth: int) -> Any:
    if isinstance(v, str):
        _utf8_len(v, where)
        return _text(v)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        iv = int(v)
        if not -(2**63) <= iv < 2**64:
            raise InvalidArgumentError(f"{where}: integer {iv} does not fit in 64 bits")
        return iv
    if isinstance(v, (float, np.floating)):
        fv = float(v)
        if not math.isfinite(fv):
            raise InvalidArgumentError(f"{where}: expected a finite number, got {fv!r}")
        return fv
    if isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        if depth + 1 > _MAX_FIELD_DEPTH:  # lists count as levels too (msgpack and reads recurse)
            raise InvalidArgumentError(f"{where}: metadata nested deeper than {_MAX_FIELD_DEPTH} levels")
        return [_clean_value(x, where, depth + 1) for x in v]
    if isinstance(v, dict):
        return _clean_dict(v, where, depth + 1)
    raise InvalidArgumentError(
        f"{where}: unsupported field type {type(v).__name__}; expected str, int, float, bool, None, "
        f"date, a list or a dict of those")


MAX_K = 1_000_000  # k, n, max_results of the library; a server has its own, lower max_top_k


def check_k(k: Any, *, param: str = "k", limit: int = MAX_K) -> int:
    """A number of results: 0 asks for none (an empty result, as in LynseDB), not an error."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) <= limit:
        raise InvalidArgumentError(f"{param}: expected an int in [0, {limit}], got {k!r}")
    return int(k)


def check_bool(v: Any, *, param: str) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise InvalidArgumentError(f"{param}: expected true or false, got {v!r}")


def check_search_flags(return_fields: Any, approx: Any = False, eps: Any = 1e-4) -> None:
    """A search's ``return_fields`` and LynseDB's ``approx`` / ``eps`` (accepted, ignored): a
    string such as ``"false"`` would otherwise be taken as true."""
    if type(return_fields) is bool and type(approx) is bool and type(eps) is float and math.isfinite(eps):
        return  # the usual call, in one test
    check_bool(return_fields, param="return_fields")
    check_bool(approx, param="approx")
    check_number(eps, param="eps")


def check_str(v: Any, *, param: str, allow_none: bool = False) -> str | None:
    if v is None and allow_none:
        return None
    if not isinstance(v, str):
        raise InvalidArgumentError(f"{param}: expected a string, got {_brief(v)}")
    _utf8_len(v, param)
    return v


def check_text_fields(text_fields: Any) -> list[str] | None:
    """``text_fields`` of a text or hybrid search: None (every text field) or a list of names;
    a bare string is not a list of one-letter names.

    >>> check_text_fields(("title", "body"))
    ['title', 'body']
    """
    if text_fields is None:
        return None
    out = None if _not_a_list(text_fields) else list(text_fields)
    if out is None or not all(isinstance(f, str) for f in out):
        raise InvalidArgumentError(f"text_fields: expected a list of field names, got {_brief(text_fields)}")
    return out


MAX_WEIGHT = 1e30  # fused scores stay within float32 range (a result's scores are float32)


def check_fusion_params(fusion: Any, vector_weight: Any, text_weight: Any, rrf_k: Any) -> tuple[str, float, float, float]:
    """The fusion parameters of a hybrid search, checked the same way locally and by the remote
    client (a ``None`` is an error, not the default).

    >>> check_fusion_params("rrf", 1, 0.5, 60)
    ('rrf', 1.0, 0.5, 60.0)
    """
    if fusion not in ("rrf", "weighted"):
        raise InvalidArgumentError(f"fusion: expected 'rrf' or 'weighted', got {_brief(fusion)}")
    weights = []
    for param, w in (("vector_weight", vector_weight), ("text_weight", text_weight)):
        w = check_number(w, param=param)
        if abs(w) > MAX_WEIGHT:
            raise InvalidArgumentError(f"{param}: expected a weight of magnitude at most {MAX_WEIGHT:g}, got {w!r}")
        weights.append(w)
    return fusion, weights[0], weights[1], check_number(rrf_k, param="rrf_k")


def check_vector_field(vector_field: Any, field_name: Any = None) -> str:
    """The vector field a search names: ``vector_field``, or its alias ``field_name`` (the seed
    document's name); ``"default"`` when neither is given. Two different names are an error, not
    a silent choice.

    >>> check_vector_field("default", "title_vec"), check_vector_field(None)
    ('title_vec', 'default')
    """
    vector_field = check_str(vector_field, param="vector_field", allow_none=True)
    field_name = check_str(field_name, param="field_name", allow_none=True)
    if field_name is None or field_name == vector_field:
        return "default" if vector_field is None else vector_field
    if vector_field in (None, "default"):
        return field_name
    raise InvalidArgumentError(f"field_name: {field_name!r} names another field than "
                               f"vector_field={vector_field!r}; give one of them")


def check_number(v: Any, *, param: str) -> float:
    try:
        x = None if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) else float(v)
    except OverflowError:  # an int beyond float range
        x = None
    if x is None or not math.isfinite(x):
        raise InvalidArgumentError(f"{param}: expected a finite number, got {_brief(v)}")
    return x


def check_timeout(v: Any, *, param: str = "timeout") -> float | None:
    """Seconds to wait: ``None`` (no limit) or a finite number >= 0."""
    if v is None:
        return None
    x = check_number(v, param=param)
    if x < 0:
        raise InvalidArgumentError(f"{param}: expected seconds >= 0 or None, got {_brief(v)}")
    return x


def check_positive_int(v: Any, *, param: str, allow_none: bool = True, limit: int | None = None) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise InvalidArgumentError(f"{param}: expected a positive int, got {_brief(v)}")
    if limit is not None and int(v) > limit:
        raise InvalidArgumentError(f"{param}: expected an int in [1, {limit}], got {_brief(v)}")
    return int(v)


MAX_BREADTH = (1 << 31) - 1  # nprobe / ef: the indexes' C++ side takes a 32-bit int


def check_nprobe(v: Any) -> int | None:
    """The search breadth (IVF lists probed, HNSW ``ef``); ``None`` for the index's default."""
    return check_positive_int(v, param="nprobe", limit=MAX_BREADTH)


_MAX_BLOB_KEY = 511  # LMDB's default maximum key size, in bytes


def check_blob_key(v: Any, *, param: str = "key") -> str:
    """A blob key: a non-empty string of at most 511 UTF-8 bytes (LMDB's key limit)."""
    if not isinstance(v, str) or not v:
        raise InvalidArgumentError(f"{param}: expected a non-empty string, got {_brief(v)}")
    n = _utf8_len(v, param)
    if n > _MAX_BLOB_KEY:
        raise InvalidArgumentError(f"{param}: at most {_MAX_BLOB_KEY} UTF-8 bytes, got {n}")
    return v


def check_bytes(v: Any, *, param: str = "data") -> bytes:
    """Bytes-like data (``bytes``, ``bytearray``, ``memoryview``, a contiguous numpy array) as ``bytes``."""
    if isinstance(v, bytes):
        return v
    if not isinstance(v, str):  # text has no single byte form: the caller encodes it
        try:
            return memoryview(v).tobytes()
        except (TypeError, ValueError):
            pass
    raise InvalidArgumentError(f"{param}: expected bytes, got {type(v).__name__}")


def check_nonneg_int(v: Any, *, param: str, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise InvalidArgumentError(f"{param}: expected a non-negative integer, got {_brief(v)}")
    return int(v)
