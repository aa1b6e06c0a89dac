"""Columnar copies of the rows' metadata fields, for the vectorised ``where`` evaluation.

:class:`FieldColumns` keeps one :class:`Column` per field name, aligned with row positions,
built lazily on first use and kept in step with appends and in-place replacements. A column
holds a type code per row (NULL, number, string, bool, list, object) and typed arrays for the
rows of each type, so a comparison touches only rows of a comparable type. The evaluator is
in :mod:`vecstore.filters`.
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .filters import _LikeMatcher

__all__ = ["Column", "FieldColumns"]

# ---------------------------------------------------------------------------------------------
# Value categories. One code per row in a Column; NULL covers missing keys and None.

NULL, NUM, STR, BOOL, LIST, OBJ = 0, 1, 2, 3, 4, 5
_SCALARS = (NUM, STR, BOOL)
_TYPE_NAMES = {NUM: "number", STR: "string", BOOL: "bool", LIST: "list", OBJ: "object"}
_MISSING = object()
_EXACT_FLOAT_INT = 2**53  # the largest magnitude up to which every int is exactly a float


def _classify(v: Any) -> tuple[int, Any]:
    """(category, normalised value) of one field value; the single source of truth for both the
    columnar and the row path, so they cannot disagree about what a value is."""
    t = type(v)
    if t is str:
        return STR, v
    if v is None or v is _MISSING:
        return NULL, None
    if t is bool:
        return BOOL, v
    if t is int or t is float:
        return NUM, v
    if t is list or t is tuple:
        return LIST, v
    if t is dict:
        return OBJ, v
    # Slower checks for subclasses and numpy scalars (a bool is an int, so it goes first).
    if isinstance(v, (bool, np.bool_)):
        return BOOL, bool(v)
    if isinstance(v, (int, np.integer)):
        return NUM, int(v)
    if isinstance(v, (float, np.floating)):
        return NUM, float(v)
    if isinstance(v, str):
        return STR, str(v)
    if isinstance(v, (_dt.date, _dt.datetime)):
        return STR, v.isoformat()
    if isinstance(v, (list, tuple)):
        return LIST, v
    return OBJ, v


def _lookup(row: Any, name: str) -> Any:
    """The value of ``name`` in a row: the literal key first, then a path into nested dicts."""
    if not isinstance(row, Mapping):
        return _MISSING
    if name in row:
        return row[name]
    i = name.find(".")
    while i != -1:
        head = row.get(name[:i], _MISSING)
        if isinstance(head, Mapping):
            v = _lookup(head, name[i + 1:])
            if v is not _MISSING:
                return v
        i = name.find(".", i + 1)
    return _MISSING


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:  # an int beyond the float range
        return float("inf") if v > 0 else float("-inf")


# ---------------------------------------------------------------------------------------------
# Columns


def _num_array(values: list) -> np.ndarray:
    """int64 when all values are ints that fit, float64 when that is exact, else object (exact
    Python comparisons, still run by numpy's C loop)."""
    if not any(type(v) is float for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return np.array(values, dtype=object)
    if any(type(v) is int and abs(v) > _EXACT_FLOAT_INT for v in values):
        return np.array(values, dtype=object)
    return np.array(values, dtype=np.float64)


def _unify_num(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast two number arrays to one dtype without losing exactness."""
    if a.dtype == b.dtype:
        return a, b
    if a.dtype == object or b.dtype == object:
        return a.astype(object), b.astype(object)
    ints = a if a.dtype == np.int64 else b
    if ints.size and int(np.abs(ints).max()) > _EXACT_FLOAT_INT:
        return a.astype(object), b.astype(object)
    return a.astype(np.float64), b.astype(np.float64)


def _exact_operands(arr: np.ndarray, value: Any) -> tuple[np.ndarray, Any]:
    """A number array and a number constant in forms numpy compares exactly, as Python does.

    Numpy compares an int64 array with a float, and a float64 array with an int, in float64,
    which rounds ints beyond 2**53: 2**53 + 1 would equal 2.0**53 and not exceed it, where
    :meth:`Filter.matches` says the opposite. So an integral float against ints is compared as
    the int it is (numpy compares ints exactly, also beyond the int64 range); any other float
    is below 2**52 in magnitude (every float from there on is an integer), and rounding an int
    to float64 is monotone and keeps those within 2**53 exact, so it never moves an int across
    such a value: float64 orders them right (NaN and the infinities included). A large int
    against floats widens the array to Python objects.
    """
    if type(value) is float and arr.dtype == np.int64 and value.is_integer():
        return arr, int(value)
    if type(value) is int and abs(value) > _EXACT_FLOAT_INT and arr.dtype == np.float64:
        return arr.astype(object), value
    return arr, value


def _str_array(values: list) -> Any:
    """A pyarrow string array (None = not a string); an object array for strings pyarrow cannot
    encode (lone surrogates), with '' in the gaps so that comparisons never meet None."""
    try:
        return pa.array(values, type=pa.string())
    except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        return np.array(["" if v is None else v for v in values], dtype=object)


def _utf8(s: Any) -> bool:
    """False for a str pyarrow cannot encode (a lone surrogate); True for anything else."""
    if not isinstance(s, str) or s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _str_to_object(arr: Any) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return np.array(["" if v is None else v for v in arr.to_pylist()], dtype=object)


def _str_concat(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.concatenate([_str_to_object(a), _str_to_object(b)])
    return pa.concat_arrays([a, b])


def _str_take(arr: Any, keep: np.ndarray) -> Any:
    return arr[keep] if isinstance(arr, np.ndarray) else arr.filter(pa.array(keep))


def _bool_np(res: Any) -> np.ndarray:
    """A pyarrow boolean result (nulls = no) or a numpy result as a plain bool ndarray."""
    if isinstance(res, np.ndarray):
        return res.astype(bool, copy=False)
    return res.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


class Column:
    """One field over all rows, by category: what :meth:`FieldColumns.column` returns.

    ``code[i]`` is the category of row ``i`` (NULL, NUM, STR, BOOL, LIST, OBJ); ``num``,
    ``strs`` and ``bools`` hold the row's value where its code says so (garbage elsewhere) and
    are ``None`` when no row has that category; ``elems`` maps a scalar category to
    ``(rows, values)``, the exploded scalar elements of list values. Treat it as read-only.
    """

    __slots__ = ("_cats", "_f64", "_masks", "bools", "code", "elems", "n", "num", "strs")

    def __init__(self, code: np.ndarray, num: np.ndarray | None = None, strs: Any = None,
                 bools: np.ndarray | None = None, elems: dict | None = None) -> None:
        self.n = len(code)
        self.code = code
        self.num = num
        self.strs = strs
        self.bools = bools
        self.elems = elems or {}
        self._masks: dict[int, np.ndarray] = {}
        self._f64: np.ndarray | None = None
        self._cats: frozenset[int] | None = None

    @classmethod
    def build(cls, values: Sequence) -> Column:
        """The column of raw field values (the one per-row Python loop of the module)."""
        n = len(values)
        codes = bytearray(n)
        num_i: list[int] = []
        num_v: list = []
        str_i: list[int] = []
        str_v: list[str] = []
        bool_i: list[int] = []
        bool_v: list[bool] = []
        ev: dict[int, tuple[list, list]] = {NUM: ([], []), STR: ([], []), BOOL: ([], [])}
        for i, raw in enumerate(values):
            c, v = _classify(raw)
            codes[i] = c
            if c == STR:
                str_i.append(i)
                str_v.append(v)
            elif c == NUM:
                num_i.append(i)
                num_v.append(v)
            elif c == BOOL:
                bool_i.append(i)
                bool_v.append(v)
            elif c == LIST:
                for e in v:
                    ec, e = _classify(e)
                    if ec in ev:
                        ev[ec][0].append(i)
                        ev[ec][1].append(e)
        num = bools = strs = None
        if num_i:
            vals = _num_array(num_v)
            num = np.zeros(n, dtype=vals.dtype)
            num[num_i] = vals
        if str_i:
            full: list = [None] * n
            for i, v in zip(str_i, str_v):
                full[i] = v
            strs = _str_array(full)
        if bool_i:
            bools = np.zeros(n, dtype=bool)
            bools[bool_i] = bool_v
        elems = {}
        for c, (rows, vals) in ev.items():
            if rows:
                arr = (_num_array(vals) if c == NUM else _str_array(vals) if c == STR
                       else np.array(vals, dtype=bool))
                elems[c] = (np.array(rows, dtype=np.int64), arr)
        return cls(np.frombuffer(bytes(codes), dtype=np.int8).copy(), num, strs, bools, elems)

    def mask(self, code: int) -> np.ndarray:
        """Rows of one category (cached; do not modify)."""
        m = self._masks.get(code)
        if m is None:
            m = self._masks[code] = self.code == code
        return m

    @property
    def cats(self) -> frozenset[int]:
        """The non-NULL categories present (decides the uniform-type errors)."""
        if self._cats is None:
            counts = np.bincount(self.code, minlength=OBJ + 1)
            self._cats = frozenset(c for c in range(NUM, OBJ + 1) if counts[c])
        return self._cats

    def f64(self) -> np.ndarray:
        """Numbers as float64 (zeros elsewhere), for arithmetic."""
        if self._f64 is None:
            if self.num is None:
                self._f64 = np.zeros(self.n)
            elif self.num.dtype == object:
                try:
                    self._f64 = self.num.astype(np.float64)
                except OverflowError:
                    self._f64 = np.fromiter((_to_float(v) for v in self.num), np.float64, self.n)
            else:
                self._f64 = self.num.astype(np.float64, copy=False)
        return self._f64

    # -- incremental maintenance ---------------------------------------------------------------

    def concat(self, other: Column) -> Column:
        """This column followed by ``other`` (appended rows); copies in C, no Python per row."""
        n, m = self.n, other.n
        num = strs = bools = None
        if self.num is not None or other.num is not None:
            a = self.num if self.num is not None else np.zeros(n, np.int64)
            b = other.num if other.num is not None else np.zeros(m, np.int64)
            num = np.concatenate(_unify_num(a, b))
        if self.strs is not None or other.strs is not None:
            strs = _str_concat(self.strs if self.strs is not None else pa.nulls(n, pa.string()),
                               other.strs if other.strs is not None else pa.nulls(m, pa.string()))
        if self.bools is not None or other.bools is not None:
            bools = np.concatenate([
                self.bools if self.bools is not None else np.zeros(n, bool),
                other.bools if other.bools is not None else np.zeros(m, bool)])
        elems = dict(self.elems)
        for c, (rows, vals) in other.elems.items():
            if c in elems:
                rows0, vals0 = elems[c]
                rows = np.concatenate([rows0, rows + n])
                vals = (_str_concat(vals0, vals) if c == STR
                        else np.concatenate(_unify_num(vals0, vals)) if c == NUM
                        else np.concatenate([vals0, vals]))
                elems[c] = (rows, vals)
            else:
                elems[c] = (rows + n, vals)
        return Column(np.concatenate([self.code, other.code]), num, strs, bools, elems)

    def patched(self, positions: np.ndarray, new: Column) -> Column:
        """A copy with the rows at sorted unique ``positions`` replaced by the rows of ``new``."""
        n = self.n
        replaced = np.zeros(n, bool)
        replaced[positions] = True
        code = self.code.copy()
        code[positions] = new.code
        num = strs = bools = None
        if self.num is not None or new.num is not None:
            a = self.num if self.num is not None else np.zeros(n, np.int64)
            b = new.num if new.num is not None else np.zeros(new.n, np.int64)
            a, b = _unify_num(a, b)
            num = a.copy()
            num[positions] = b
        if self.bools is not None or new.bools is not None:
            bools = self.bools.copy() if self.bools is not None else np.zeros(n, bool)
            bools[positions] = new.bools if new.bools is not None else False
        if self.strs is not None or new.strs is not None:
            a = self.strs if self.strs is not None else pa.nulls(n, pa.string())
            b = new.strs if new.strs is not None else pa.nulls(new.n, pa.string())
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                strs = _str_to_object(a).copy()
                strs[positions] = _str_to_object(b)
            else:  # replace_with_mask takes the replacements in row order: positions are sorted
                strs = pc.replace_with_mask(a, pa.array(replaced), b)
        elems = {}
        for c in set(self.elems) | set(new.elems):
            parts_rows, parts_vals = [], []
            if c in self.elems:
                rows, vals = self.elems[c]
                keep = ~replaced[rows]
                parts_rows.append(rows[keep])
                parts_vals.append(_str_take(vals, keep) if c == STR else vals[keep])
            if c in new.elems:
                rows, vals = new.elems[c]
                parts_rows.append(positions[rows])
                parts_vals.append(vals)
            rows = np.concatenate(parts_rows)
            vals = parts_vals[0]
            for more in parts_vals[1:]:
                vals = (_str_concat(vals, more) if c == STR
                        else np.concatenate(_unify_num(vals, more)) if c == NUM
                        else np.concatenate([vals, more]))
            if len(rows):
                elems[c] = (rows, vals)
        return Column(code, num, strs, bools, elems)

    # -- vectorised predicates -----------------------------------------------------------------

    def compare(self, op: str, code: int, value: Any) -> np.ndarray:
        """Rows of category ``code`` whose value ``op`` the scalar ``value`` holds."""
        if code == NUM and self.num is not None:
            arr, value = _exact_operands(self.num, value)
            return _bool_np(_NP_OPS[op](arr, value)) & self.mask(NUM)
        if code == STR and self.strs is not None:
            return _str_op(op, self.strs, value) & self.mask(STR)
        if code == BOOL and self.bools is not None:
            return _NP_OPS[op](self.bools, value) & self.mask(BOOL)
        return np.zeros(self.n, bool)

    def isin(self, code: int, values: list) -> np.ndarray:
        """Rows of category ``code`` equal to one of ``values`` (all of that category)."""
        if code == NUM and self.num is not None:
            vals = [v for v in values if not (type(v) is float and math.isnan(v))]  # NaN = nothing
            if self.num.dtype == np.int64:
                # Ints against ints, as in _exact_operands: a float that is no integer equals
                # no row, and keeping it would send every row through a rounding float64 isin.
                vals = [int(v) for v in vals if type(v) is int or v.is_integer()]
            if self.num.dtype != object and all(
                    type(v) is float or abs(v) <= _EXACT_FLOAT_INT for v in vals):
                return np.isin(self.num, np.array(vals, dtype=self.num.dtype
                                                  if all(type(v) is int for v in vals)
                                                  else np.float64)) & self.mask(NUM)
            hit = np.zeros(self.n, bool)
            for v in vals:  # huge ints: compare exactly, one value at a time
                hit |= self.compare("=", NUM, v)
            return hit
        if code == STR and self.strs is not None:
            value_set = _str_array(values)
            if isinstance(self.strs, np.ndarray) or isinstance(value_set, np.ndarray):
                hit = np.zeros(self.n, bool)
                strs = _str_to_object(self.strs)
                for v in set(values):
                    hit |= _bool_np(strs == v)
            else:
                hit = _bool_np(pc.is_in(self.strs, value_set=value_set))
            return hit & self.mask(STR)
        if code == BOOL and self.bools is not None:
            hit = np.zeros(self.n, bool)
            for v in set(values):
                hit |= self.bools == v
            return hit & self.mask(BOOL)
        return np.zeros(self.n, bool)

    def contains(self, code: int, value: Any) -> np.ndarray:
        """Rows whose list value has an element of category ``code`` equal to ``value``."""
        out = np.zeros(self.n, bool)
        if code in self.elems:
            rows, vals = self.elems[code]
            if code == STR:
                hit = _str_op("=", vals, value)
            else:
                hit = _bool_np(operator.eq(*_exact_operands(vals, value)))
            out[rows[hit]] = True
        return out

    def like(self, matcher: _LikeMatcher) -> np.ndarray:
        if self.strs is None:
            return np.zeros(self.n, bool)
        if not isinstance(self.strs, np.ndarray) and _utf8(matcher.pattern):
            hit = (pc.match_substring_regex(self.strs, matcher.arrow_regex)
                   if matcher.arrow_regex else pc.match_like(self.strs, matcher.arrow_pattern))
            return _bool_np(hit) & self.mask(STR)
        # Rare fallback for strings pyarrow cannot hold: the linear matcher, row by row.
        strs = _str_to_object(self.strs)
        return np.fromiter((matcher.match(s) for s in strs), bool, self.n) & self.mask(STR)


_NP_OPS: dict[str, Callable] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_PC_OPS: dict[str, Callable] = {
    "=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _str_op(op: str, a: Any, b: Any) -> np.ndarray:
    """A comparison of string arrays (or an array and a str), whichever storage they use."""
    if not (isinstance(a, np.ndarray) or isinstance(b, np.ndarray)) and _utf8(b):
        return _bool_np(_PC_OPS[op](a, b))
    # Strings pyarrow cannot hold (lone surrogates) are compared by numpy's object loop.
    a = _str_to_object(a) if not isinstance(a, str) else a
    b = _str_to_object(b) if not isinstance(b, str) else b
    return _bool_np(_NP_OPS[op](a, b))


class FieldColumns:
    """Columnar copies of the rows' fields, aligned with row positions 0..n-1.

    Rows are kept by reference (do not mutate a dict after handing it over; pass a new one to
    :meth:`set`). A column is extracted from the rows the first time a filter asks for it and
    brought up to date lazily on the next read: rows appended since are built and concatenated,
    rows replaced since are patched in place, so a one-row write never re-reads every row in
    Python. A write costs the same however many columns are cached: it only logs the replaced
    positions, which each column catches up on when it is read. At most :attr:`CACHE_SIZE`
    columns are kept (least recently used out), and a name no row has (a typo, a per-user key)
    gets a shared all-NULL column and is not cached, so the names queried over a long life cost
    no memory. Built columns are immutable snapshots and reads may run on several threads, but
    a write must not run while a :meth:`Filter.mask` over the same object is in progress (the
    caller's write lock).

    >>> cols = FieldColumns()
    >>> cols.reset(["a"], [{"n": 1}])
    >>> cols.append(["b"], [{"n": 2.5}])
    >>> cols.column("n").f64().tolist(), cols.n
    ([1.0, 2.5], 2)
    """

    CACHE_SIZE = 64

    def __init__(self) -> None:
        self.n = 0
        self._ids: list = []
        self._rows: list = []
        # field -> (built column, length of the write log it has caught up with)
        self._cols: OrderedDict[str, tuple[Column, int]] = OrderedDict()
        self._log: list[int] = []  # positions replaced since the oldest cached column was read
        self._log_base = 0  # the write-log count of self._log[0]
        self._keys: set | None = None  # every top-level key of a row (a superset); lazy
        self._null: Column | None = None  # the shared all-NULL column of the last n asked for
        # Filters may run on several threads; building a column mutates the caches.
        self._lock = threading.RLock()

    @staticmethod
    def _check(ids: Sequence, fields: Sequence) -> None:
        if len(ids) != len(fields):
            raise InvalidArgumentError(
                f"fields: expected one dict per id ({len(ids)} ids), got {len(fields)}")

    def reset(self, ids: Sequence, fields: Sequence[dict]) -> None:
        """Replace every row."""
        self._check(ids, fields)
        with self._lock:
            self._ids = list(ids)
            self._rows = [f if f is not None else {} for f in fields]
            self.n = len(self._ids)
            self._cols.clear()
            self._log.clear()
            self._log_base = 0
            self._keys = self._null = None

    def append(self, ids: Sequence, fields: Sequence[dict]) -> None:
        """Add rows at the end."""
        self._check(ids, fields)
        with self._lock:
            rows = [f if f is not None else {} for f in fields]
            self._ids.extend(ids)
            self._rows.extend(rows)
            self.n = len(self._ids)
            self._add_keys(rows)

    def set(self, positions: Sequence[int], ids: Sequence, fields: Sequence[dict]) -> None:
        """Replace the rows at ``positions`` (the last one wins for a repeated position)."""
        self._check(ids, fields)
        if len(positions) != len(ids):
            raise InvalidArgumentError(
                f"positions: expected one position per id ({len(ids)} ids), got {len(positions)}")
        with self._lock:
            for p in positions:
                if not (isinstance(p, (int, np.integer)) and 0 <= p < self.n):
                    raise InvalidArgumentError(
                        f"positions: expected integers in [0, {self.n}), got {p!r}")
            for p, i, f in zip(positions, ids, fields):
                self._ids[p] = i
                self._rows[p] = f if f is not None else {}
            self._add_keys(self._rows[p] for p in positions)
            if self._cols:
                self._log.extend(int(p) for p in positions)
                if len(self._log) > max(1024, self.n // 2):
                    self._trim_log()

    def _add_keys(self, rows: Iterable) -> None:
        if self._keys is not None:
            for r in rows:
                if isinstance(r, Mapping):
                    self._keys.update(r)

    def _trim_log(self) -> None:
        """Drop the columns that would be rebuilt anyway (more than a quarter of their rows
        replaced) and the log entries every remaining column has caught up with, so the log
        stays within about n/4 entries at an amortised O(1) cost per write."""
        end = self._log_base + len(self._log)
        for name, (col, seen) in list(self._cols.items()):
            if end - seen > col.n // 4:
                del self._cols[name]
        self._forget_caught_up(end)

    def _forget_caught_up(self, end: int) -> None:
        """Drop the log entries every cached column has read (``end``: the log's count now)."""
        oldest = min((seen for _, seen in self._cols.values()), default=end)
        del self._log[:oldest - self._log_base]
        self._log_base = oldest

    def _absent(self, name: str) -> bool:
        """True when no row has ``name``: neither as a key nor as a path through nested dicts
        (see :func:`_lookup`). Conservative: False may still mean no row has it."""
        if self._keys is None:
            self._keys = set()
            self._add_keys(self._rows)
        if name in self._keys:
            return False
        i = name.find(".")
        while i != -1:
            if name[:i] in self._keys:
                return False
            i = name.find(".", i + 1)
        return True

    def _values(self, name: str, start: int = 0) -> list:
        """The raw values of ``name`` in rows ``start`` onwards."""
        if name == "id":
            return self._ids[start:]
        return [_lookup(r, name) for r in (self._rows[start:] if start else self._rows)]

    def column(self, name: str) -> Column:
        """The column of one field (``"id"``: the row ids), built on first use and cached."""
        with self._lock:
            end = self._log_base + len(self._log)
            entry = self._cols.get(name)
            if entry is None:
                if name != "id" and self._absent(name):
                    if self._null is None or self._null.n != self.n:
                        self._null = Column(np.zeros(self.n, dtype=np.int8))
                    return self._null
                col = Column.build(self._values(name))
            else:
                col, seen = entry
                self._cols.move_to_end(name)
                if seen == end and col.n == self.n:
                    return col  # the common case: nothing written since the last read
                dirty = {p for p in self._log[seen - self._log_base:] if p < col.n}
                if len(dirty) > col.n // 4:  # patching most rows costs more than a rebuild
                    col = Column.build(self._values(name))
                else:
                    if dirty:
                        pos = sorted(dirty)
                        col = col.patched(np.array(pos, dtype=np.int64), Column.build(
                            [self._ids[p] if name == "id" else _lookup(self._rows[p], name)
                             for p in pos]))
                    if col.n < self.n:
                        col = col.concat(Column.build(self._values(name, col.n)))
            self._cols[name] = (col, end)
            if len(self._cols) > self.CACHE_SIZE:
                self._cols.popitem(last=False)
            if self._log:
                self._forget_caught_up(end)
            return col
