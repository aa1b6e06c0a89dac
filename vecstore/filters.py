"""The ``where`` language: SQL-style boolean expressions over a row's fields (DESIGN §6).

An expression is parsed once by :func:`compile_where` into a :class:`Filter` plan (cached), and
the plan is evaluated vectorised over :class:`FieldColumns`, columnar copies of the rows' fields
kept in sync with writes. :meth:`Filter.matches` evaluates one row in plain Python.

>>> cols = FieldColumns()
>>> cols.reset([1, 2, 3], [{"lang": "en", "n": 3, "tags": ["a", "b"]},
...                        {"lang": "de", "n": 1},
...                        {"lang": "en", "n": 5, "tags": ["b"]}])
>>> f = compile_where("lang = 'en' AND (n > 4 OR tags CONTAINS 'a')")
>>> f.mask(cols).tolist()
[True, False, True]
>>> sorted(f.fields)
['lang', 'n', 'tags']
>>> f.matches(2, {"lang": "en", "tags": ["a"]})
True

Grammar (EBNF; keywords are case-insensitive, names are case-sensitive)::

    where      = or_expr ;
    or_expr    = and_expr { "OR" and_expr } ;
    and_expr   = not_expr { "AND" not_expr } ;
    not_expr   = "NOT" not_expr | predicate ;
    predicate  = sum [ cmp_op sum
                     | [ "NOT" ] "IN" "(" sum { "," sum } ")"      (* items are constants *)
                     | [ "NOT" ] "BETWEEN" sum "AND" sum           (* inclusive *)
                     | [ "NOT" ] "LIKE" sum                        (* a constant string *)
                     | [ "NOT" ] "CONTAINS" sum                    (* a constant *)
                     | "IS" [ "NOT" ] "NULL" ] ;
    cmp_op     = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;
    sum        = term { ( "+" | "-" ) term } ;
    term       = unary { ( "*" | "/" ) unary } ;
    unary      = ( "-" | "+" ) unary | atom ;
    atom       = literal | name | "(" or_expr ")" ;
    literal    = string | number | "TRUE" | "FALSE" | "NULL"
               | "DATE" string | "TIMESTAMP" string ;
    string     = "'" { any character except "'" | "''" } "'" ;       (* '' is one quote *)
    number     = digits [ "." [ digits ] ] [ exponent ] | "." digits [ exponent ] ;
    name       = identifier | quoted ;
    quoted     = '"' { any character except '"' | '""' } '"' ;    (* a string right after cmp_op *)
    identifier = ( letter | "_" ) { letter | digit | "_" | "." } ;   (* not a keyword *)

A predicate must end up boolean (``n`` alone is an error, ``(n + 1) * 2 > 5`` is fine); an
operand of a comparison must be a value. Nesting (parentheses, ``NOT``, unary minus) is limited
to :data:`MAX_DEPTH` levels so that hostile input cannot exhaust the stack. ``DATE`` and
``TIMESTAMP`` are keywords only when a string follows, so a field may be called ``date``.

Semantics:

- **Names.** ``id`` (bare or quoted) is the row's public id, so a stored field called ``id`` is
  not reachable. A double-quoted token right after a comparison operator is a string, as in
  LynseDB (``lang = "en"`` is ``lang = 'en'``); anywhere else it is a name (``"doc.lang" = 'en'``,
  and ``a = ("odd name")`` compares two fields). ``a.b`` is the key ``"a.b"`` if the row has it, else ``b`` inside the dict
  ``a``. A missing key, or ``None``, is NULL.
- **NULL and three-valued logic.** A comparison with NULL is UNKNOWN; ``NOT`` UNKNOWN is UNKNOWN
  and only TRUE rows match, so on a row without ``x`` neither ``x = 1`` nor ``NOT (x = 1)``
  nor ``x != 1`` matches (as in SQL). ``x = NULL`` never matches: use ``IS NULL``, which is
  true for a missing key and for ``None``. ``IN`` is the OR of ``=``, ``BETWEEN`` the AND of
  ``>=`` and ``<=``, each with the same three-valued rules.
- **Types.** Values are numbers (int and float compare numerically), strings (code-point
  order), bools (only with bools: ``ok = true``), lists and objects (dicts; comparable with
  nothing). Two values of different types are incomparable: UNKNOWN for that row. But when each
  side is *uniformly* of one type and the types differ -- a field whose values are all strings
  against a number, ``ok = 1`` on an all-bool field, a number literal against a string literal
  -- :class:`~vecstore.errors.FilterTypeError` is raised, since no row can ever match and the
  expression is almost certainly a mistake (``comparing string field 'lang' with number 3``).
  Fields with mixed types never raise; their rows of another type simply do not match.
  Arithmetic is always of type number. Errors that need no data (two constants, arithmetic
  against a string) are raised by :func:`compile_where`; the ones that depend on a column by
  :meth:`Filter.mask`. :meth:`Filter.matches` sees one row and no column, so it cannot tell a
  mistake from a mixed column: it never raises for data, a row of another type does not match
  (views filter rows one at a time and must not fail on one odd row). Where ``mask`` does not
  raise, ``matches`` agrees with it row for row.
- **Arithmetic** (``+ - * /``) is done in double precision on numbers; any other operand makes
  the result NULL, and so does a division by zero (as SQLite does).
- **LIKE** is case-sensitive and matches the whole string; ``%`` is any run of characters,
  ``_`` exactly one character, and there is no escape character. It is evaluated in linear time
  (RE2 in pyarrow, a greedy segment matcher in Python), never with a backtracking regex.
- **CONTAINS** is membership in a list field (``tags CONTAINS 'b'``), with the same type rules
  as ``=`` per element and no type error. On a present non-list value (a string, a number) it
  is FALSE rather than a substring test -- use ``LIKE '%b%'`` for that; on NULL it is UNKNOWN.
- **Dates** are ISO strings in the fields, so ``DATE '2026-06-02'`` and ``TIMESTAMP
  '2026-06-02T10:00:00'`` are validated and then compared as strings (ISO order is time order
  when the fields use one format). ``datetime``/``date`` objects in fields are read as ISO
  strings.
- **Precision.** Integers beyond 2**53 mixed with floats in one column are compared exactly
  (an object column); arithmetic is always float64.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .columns import _NP_OPS, BOOL, Column, FieldColumns, LIST, NULL, NUM, STR, _FLIP, _SCALARS, _TYPE_NAMES, _bool_np, _classify, _lookup, _str_op, _to_float, _unify_num
from .errors import FilterSyntaxError, FilterTypeError

__all__ = ["MAX_DEPTH", "Column", "FieldColumns", "Filter", "compile_where"]

MAX_DEPTH = 64
"""Deepest nesting of parentheses, ``NOT`` and unary signs a ``where`` may have."""

# ---------------------------------------------------------------------------------------------
# LIKE


class _LikeMatcher:
    """A LIKE pattern, matched in O(len(s) * len(pattern)) at worst: split at ``%``, the first
    and last segments are anchored and every middle one is matched at its leftmost place
    (greedy-leftmost is exact for patterns whose only variable-length wildcard is ``%``), so
    there is no backtracking and ``'%a%a%a%a%b'`` stays linear."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        # pyarrow's LIKE treats backslash as its escape character and ours has none; escaping
        # it is not enough, since pyarrow 26 mishandles an escaped backslash in its prefix and
        # suffix shortcuts ('%\' misses a string ending in one). Such patterns go to RE2 instead.
        self.arrow_pattern = pattern
        self.arrow_regex = ("(?s)^" + "".join(
            ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern) + "$"
            if "\\" in pattern else None)
        self.segments = [(seg, re.compile("".join(
            "." if ch == "_" else re.escape(ch) for ch in seg), re.DOTALL) if "_" in seg
            else None) for seg in pattern.split("%")]

    def match(self, s: str) -> bool:
        segs = self.segments
        if len(segs) == 1:
            seg, rx = segs[0]
            return bool(rx.fullmatch(s)) if rx else s == seg
        (first, frx), (last, lrx) = segs[0], segs[-1]
        end = len(s) - len(last)
        if end < len(first):
            return False
        if not (frx.match(s, 0) if frx else s.startswith(first)):
            return False
        if not (lrx.match(s, end) if lrx else s.startswith(last, end)):
            return False
        pos = len(first)
        for seg, rx in segs[1:-1]:
            if rx:
                m = rx.search(s, pos, end)
                if m is None:
                    return False
                pos = m.end()
            else:
                i = s.find(seg, pos, end)
                if i < 0:
                    return False
                pos = i + len(seg)
        return True


# ---------------------------------------------------------------------------------------------
# Plan nodes. Boolean nodes give (true, false) masks from mask() -- rows in neither are UNKNOWN
# -- and True/False/None from row(). Value nodes give a Column from vector() and a (category,
# value) pair from row(). ctx is (id, fields) for the row path.

_Masks = tuple[np.ndarray, np.ndarray]


def _describe(node: Any, types: frozenset) -> str:
    tname = _TYPE_NAMES[next(iter(types))] if len(types) == 1 else "mixed"
    if isinstance(node, _Field):
        return f"{tname} field '{node.name}'"
    if isinstance(node, _Const):
        return f"{node.type_name} {_short(node.src)}"
    return f"number expression {_short(node.src)!r}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_types(a: Any, ta: frozenset, b: Any, tb: frozenset) -> None:
    """The uniform-type rule: both sides of one known type each, and not the same type."""
    if len(ta) == 1 and len(tb) == 1 and ta != tb:
        raise FilterTypeError(f"where: comparing {_describe(a, ta)} with {_describe(b, tb)}")


def _static_types(node: Any) -> frozenset | None:
    """The types a node has whatever the data: known for constants and arithmetic only."""
    if isinstance(node, _Const):
        return node.types()
    if isinstance(node, _Arith):
        return frozenset((NUM,))
    return None


def _check_static(a: Any, b: Any) -> None:
    """Type errors that need no data (``'a' = 1``, ``n * 2 = 'x'``): raised by compile_where."""
    ta, tb = _static_types(a), _static_types(b)
    if ta is not None and tb is not None:
        _check_types(a, ta, b, tb)


class _Node:
    is_bool = False
    pos = 0
    src = ""


class _Const(_Node):
    """A literal, or a folded constant sub-expression (then possibly boolean)."""

    def __init__(self, code: int, value: Any, src: str, is_bool: bool = False,
                 type_name: str | None = None) -> None:
        self.code, self.value, self.src, self.is_bool = code, value, src, is_bool
        self.type_name = type_name or _TYPE_NAMES.get(code, "NULL")

    def types(self, cols: Any = None, col: Any = None) -> frozenset:
        return frozenset() if self.code == NULL else frozenset((self.code,))

    def row(self, ctx: tuple) -> Any:
        return self.value if self.is_bool else (self.code, self.value)

    def mask(self, cols: FieldColumns) -> _Masks:
        return np.full(cols.n, self.value is True), np.full(cols.n, self.value is False)


class _Field(_Node):
    def __init__(self, name: str, src: str) -> None:
        self.name, self.src = name, src

    def types(self, cols: Any, col: Column) -> frozenset:
        return col.cats

    def vector(self, cols: FieldColumns) -> Column:
        return cols.column(self.name)

    def row(self, ctx: tuple) -> tuple[int, Any]:
        return _classify(ctx[0] if self.name == "id" else _lookup(ctx[1], self.name))


class _Arith(_Node):
    """``operands[0] ops[0] operands[1] ...`` left to right, in float64 (n-ary, so a long
    ``a + b + c ...`` chain does not make a deep tree); ``ops[0]`` may be unary ``neg``."""

    def __init__(self, operands: list, ops: list[str], src: str) -> None:
        self.operands, self.ops, self.src = operands, ops, src

    def types(self, cols: Any = None, col: Any = None) -> frozenset:
        return frozenset((NUM,))

    def _check(self, node: Any, types: frozenset) -> None:
        if len(types) == 1 and NUM not in types:
            raise FilterTypeError(f"where: arithmetic on {_describe(node, types)}")

    @staticmethod
    def _apply(op: str, x: Any, y: Any) -> Any:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        return x / y

    def vector(self, cols: FieldColumns) -> Column:
        n = cols.n
        valid = np.ones(n, bool)
        values = []
        for node in self.operands:
            if isinstance(node, _Const):
                if node.code != NUM:
                    valid[:] = False
                    values.append(0.0)
                else:
                    values.append(_to_float(node.value))
                continue
            col = node.vector(cols)
            self._check(node, node.types(cols, col))
            values.append(col.f64())
            valid &= col.mask(NUM)
        with np.errstate(all="ignore"):
            if self.ops[0] == "neg":
                acc = -np.asarray(values[0], dtype=np.float64)
            else:
                acc = np.asarray(values[0], dtype=np.float64)
                for op, y in zip(self.ops, values[1:]):
                    if op == "/":
                        valid &= np.asarray(y) != 0
                    acc = self._apply(op, acc, y)
        acc = np.broadcast_to(acc, (n,)).astype(np.float64)
        code = np.where(valid, NUM, NULL).astype(np.int8)
        return Column(code, np.where(valid, acc, 0.0))

    def row(self, ctx: tuple) -> tuple[int, Any]:
        values, null = [], False
        for node in self.operands:
            cv = node.row(ctx)
            if cv[0] != NUM:
                null = True
            else:
                values.append(_to_float(cv[1]))
        if null:
            return NULL, None
        if self.ops[0] == "neg":
            return NUM, -values[0]
        acc = values[0]
        for op, y in zip(self.ops, values[1:]):
            if op == "/" and y == 0:
                return NULL, None
            acc = self._apply(op, acc, y)
        return NUM, acc


class _Compare(_Node):
    is_bool = True

    def __init__(self, op: str, left: Any, right: Any) -> None:
        if isinstance(left, _Const) and not isinstance(right, _Const):
            left, right, op = right, left, _FLIP[op]  # keep the constant on the right
        self.op, self.left, self.right = op, left, right
        _check_static(left, right)

    def mask(self, cols: FieldColumns) -> _Masks:
        a, b, n = self.left, self.right, cols.n
        va = a.vector(cols)
        ta = a.types(cols, va)
        if isinstance(b, _Const):
            _check_types(a, ta, b, b.types())
            if b.code not in _SCALARS:
                return np.zeros(n, bool), np.zeros(n, bool)
            t = va.compare(self.op, b.code, b.value)
            return t, va.mask(b.code) & ~t
        vb = b.vector(cols)
        _check_types(a, ta, b, b.types(cols, vb))
        t, f = np.zeros(n, bool), np.zeros(n, bool)
        for code in _SCALARS:
            both = va.mask(code) & vb.mask(code)
            if not both.any():
                continue
            if code == NUM:
                x, y = _unify_num(va.num, vb.num)
                hit = _bool_np(_NP_OPS[self.op](x, y))
            elif code == STR:
                hit = _str_op(self.op, va.strs, vb.strs)
            else:
                hit = _NP_OPS[self.op](va.bools, vb.bools)
            t |= hit & both
            f |= both & ~hit
        return t, f

    def row(self, ctx: tuple) -> bool | None:
        ca, cb = self.left.row(ctx), self.right.row(ctx)
        if ca[0] != cb[0] or ca[0] not in _SCALARS:
            return None
        return bool(_NP_OPS[self.op](ca[1], cb[1]))


class _In(_Node):
    is_bool = True

    def __init__(self, left: Any, items: list[_Const]) -> None:
        self.left, self.items = left, items
        self.codes = {it.code for it in items}
        self.by_code = {c: [it.value for it in items if it.code == c] for c in self.codes}
        for it in items:
            _check_static(left, it)

    def _check(self, ta: frozenset) -> None:
        for it in self.items:
            _check_types(self.left, ta, it, it.types())

    def mask(self, cols: FieldColumns) -> _Masks:
        va = self.left.vector(cols)
        self._check(self.left.types(cols, va))
        t = np.zeros(cols.n, bool)
        for c, values in self.by_code.items():
            if c in _SCALARS:
                t |= va.isin(c, values)
        if len(self.codes) == 1 and next(iter(self.codes)) in _SCALARS:
            # FALSE only where the row is comparable with every item (no NULL, one type).
            return t, va.mask(next(iter(self.codes))) & ~t
        return t, np.zeros(cols.n, bool)

    def row(self, ctx: tuple) -> bool | None:
        cv = self.left.row(ctx)
        unknown = False
        for it in self.items:
            if it.code != cv[0] or it.code not in _SCALARS:
                unknown = True
            elif cv[1] == it.value:
                return True
        return None if unknown else False


class _LikeNode(_Node):
    is_bool = True

    def __init__(self, left: Any, pattern: _Const) -> None:
        self.left, self.pattern = left, pattern
        self.matcher = _LikeMatcher(pattern.value) if pattern.code == STR else None
        if _static_types(left) is not None:
            self._check(_static_types(left))

    def _check(self, ta: frozenset) -> None:
        if len(ta) == 1 and STR not in ta:
            raise FilterTypeError(f"where: LIKE needs a string, got {_describe(self.left, ta)}")

    def mask(self, cols: FieldColumns) -> _Masks:
        va = self.left.vector(cols)
        self._check(self.left.types(cols, va))
        if self.matcher is None:
            return np.zeros(cols.n, bool), np.zeros(cols.n, bool)
        t = va.like(self.matcher)
        return t, va.mask(STR) & ~t

    def row(self, ctx: tuple) -> bool | None:
        cv = self.left.row(ctx)
        if self.matcher is None or cv[0] != STR:
            return None
        return self.matcher.match(cv[1])


class _IsNull(_Node):
    is_bool = True

    def __init__(self, operand: Any) -> None:
        self.operand = operand

    def mask(self, cols: FieldColumns) -> _Masks:
        t = self.operand.vector(cols).mask(NULL)
        return t.copy(), ~t

    def row(self, ctx: tuple) -> bool:
        return self.operand.row(ctx)[0] == NULL


class _Contains(_Node):
    is_bool = True

    def __init__(self, left: Any, item: _Const) -> None:
        self.left, self.item = left, item

    def mask(self, cols: FieldColumns) -> _Masks:
        va = self.left.vector(cols)
        if self.item.code not in _SCALARS:
            return np.zeros(cols.n, bool), np.zeros(cols.n, bool)
        t = va.contains(self.item.code, self.item.value)
        return t, ~va.mask(NULL) & ~t

    def row(self, ctx: tuple) -> bool | None:
        code, value = self.left.row(ctx)
        if code == NULL or self.item.code not in _SCALARS:
            return None
        if code != LIST:
            return False
        for e in value:
            ec, e = _classify(e)
            if ec == self.item.code and e == self.item.value:
                return True
        return False


class _Not(_Node):
    is_bool = True

    def __init__(self, child: Any) -> None:
        self.child = child

    def mask(self, cols: FieldColumns) -> _Masks:
        t, f = self.child.mask(cols)
        return f, t

    def row(self, ctx: tuple) -> bool | None:
        v = self.child.row(ctx)
        return None if v is None else not v


class _And(_Node):
    is_bool = True

    def __init__(self, children: list) -> None:
        self.children = children

    def mask(self, cols: FieldColumns) -> _Masks:
        # Every child is evaluated (no short cut), so type errors do not depend on data order.
        masks = [c.mask(cols) for c in self.children]
        t, f = masks[0][0].copy(), masks[0][1].copy()
        for ct, cf in masks[1:]:
            t &= ct
            f |= cf
        return t, f

    def row(self, ctx: tuple) -> bool | None:
        vals = [c.row(ctx) for c in self.children]
        if False in vals:
            return False
        return None if None in vals else True


class _Or(_And):
    def mask(self, cols: FieldColumns) -> _Masks:
        masks = [c.mask(cols) for c in self.children]
        t, f = masks[0][0].copy(), masks[0][1].copy()
        for ct, cf in masks[1:]:
            t |= ct
            f &= cf
        return t, f

    def row(self, ctx: tuple) -> bool | None:
        vals = [c.row(ctx) for c in self.children]
        if True in vals:
            return True
        return None if None in vals else False


# ---------------------------------------------------------------------------------------------
# Lexer and parser

_TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r\n\f\v]+)
  | (?P<num>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<str>'(?:[^']|'')*+')
  | (?P<qid>"(?:[^"]|"")*+")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op><>|!=|<=|>=|[=<>(),+\-*/])
""", re.VERBOSE)
_NAME_CHAR = re.compile(r"[A-Za-z0-9_.]")
_KEYWORDS = frozenset(
    ["AND", "OR", "NOT", "IN", "BETWEEN", "LIKE", "IS", "NULL", "CONTAINS", "TRUE", "FALSE"])
_CMP_OPS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class _Tok:
    __slots__ = ("end", "kind", "pos", "text", "value")

    def __init__(self, kind: str, value: Any, pos: int, end: int, text: str) -> None:
        self.kind, self.value, self.pos, self.end, self.text = kind, value, pos, end, text

    def show(self) -> str:
        if self.kind == "eof":
            return "end of input"
        if self.kind in ("str", "qid"):
            return _short(self.text)
        return f"'{_short(self.text)}'"


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "'\"":
                what = "string" if ch == "'" else "quoted name"
                raise FilterSyntaxError(
                    f"where: unterminated {what} starting at position {pos + 1}")
            raise FilterSyntaxError(
                f"where: unexpected character {ch!r} at position {pos + 1}")
        kind, end = m.lastgroup, m.end()
        raw = m.group()
        if kind == "ws":
            pass
        elif kind == "num":
            if end < n and _NAME_CHAR.match(text, end):
                bad = re.compile(r"[A-Za-z0-9_.]*").match(text, end).end()
                raise FilterSyntaxError(
                    f"where: malformed number '{_short(text[pos:bad])}' at position {pos + 1}")
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            toks.append(_Tok("num", value, pos, end, raw))
        elif kind == "str":
            toks.append(_Tok("str", raw[1:-1].replace("''", "'"), pos, end, raw))
        elif kind == "qid":  # a name, or a string right after a comparison (the parser decides)
            toks.append(_Tok("qid", raw[1:-1].replace('""', '"'), pos, end, raw))
        elif kind == "ident":
            up = raw.upper()
            if up in _KEYWORDS:
                toks.append(_Tok("kw", up, pos, end, raw))
            else:
                toks.append(_Tok("name", raw, pos, end, raw))
        else:
            toks.append(_Tok("op", raw, pos, end, raw))
        pos = end
    toks.append(_Tok("eof", None, n, n, ""))
    return toks


class _Parser:
    """Recursive descent over the grammar in the module docstring, folding constant
    sub-expressions as it goes (so ``1 = 1`` is a constant and ``'a' = 1`` fails here)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.fields: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at_kw(self, *words: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind == "kw" and tok.value in words

    def at_op(self, *ops: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind == "op" and tok.value in ops

    def error(self, what: str) -> FilterSyntaxError:
        tok = self.toks[self.i]
        after = f" after {self.toks[self.i - 1].show()}" if self.i > 0 else ""
        return FilterSyntaxError(
            f"where: expected {what}{after} at position {tok.pos + 1}, got {tok.show()}")

    def src(self, start: int) -> str:
        return self.text[start:self.toks[self.i - 1].end].strip()

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(
                f"where: expression nested deeper than {MAX_DEPTH} levels at position "
                f"{tok.pos + 1}")

    def need_bool(self, node: _Node) -> _Node:
        if not node.is_bool:
            raise self.error("a comparison operator")
        return node

    @staticmethod
    def need_value(node: _Node) -> _Node:
        if node.is_bool:
            raise FilterSyntaxError(
                f"where: expected a value at position {node.pos + 1}, got a condition")
        return node

    @staticmethod
    def fold(node: _Node, operands: Iterable, pos: int, src: str) -> _Node:
        """A constant in place of a node whose operands are all constants."""
        if all(isinstance(o, _Const) for o in operands):
            value = node.row((None, {}))
            if node.is_bool:
                node = _Const(NULL, value, src, is_bool=True)
            else:
                node = _Const(value[0], value[1], src)
        node.pos, node.src = pos, node.src or src
        return node

    # -- grammar -------------------------------------------------------------------------------

    def parse(self) -> _Node:
        node = self.or_expr("a condition")
        self.need_bool(node)
        if self.peek().kind != "eof":
            raise self.error("AND, OR or end of input")
        return node

    def or_expr(self, what: str) -> _Node:
        start = self.peek().pos
        children = [self.and_expr(what)]
        while self.at_kw("OR"):
            self.need_bool(children[-1])
            self.take()
            children.append(self.need_bool(self.and_expr("a condition")))
        if len(children) == 1:
            return children[0]
        return self.fold(_Or(children), children, start, self.src(start))

    def and_expr(self, what: str) -> _Node:
        start = self.peek().pos
        children = [self.not_expr(what)]
        while self.at_kw("AND"):
            self.need_bool(children[-1])
            self.take()
            children.append(self.need_bool(self.not_expr("a condition")))
        if len(children) == 1:
            return children[0]
        return self.fold(_And(children), children, start, self.src(start))

    def not_expr(self, what: str) -> _Node:
        if self.at_kw("NOT"):
            tok = self.take()
            self.enter(tok)
            child = self.need_bool(self.not_expr("a condition"))
            self.depth -= 1
            return self.fold(_Not(child), [child], tok.pos, self.src(tok.pos))
        return self.predicate(what)

    def predicate(self, what: str) -> _Node:
        start = self.peek().pos
        left = self.sum(what)
        tok = self.peek()
        if tok.kind == "op" and tok.value in _CMP_OPS:
            self.need_value(left)
            self.take()
            if self.peek().kind == "qid":  # lang = "en": a string, as in LynseDB (lynse_api §7.1)
                self.toks[self.i].kind = "str"
            right = self.need_value(self.sum("a value"))
            node = _Compare(_CMP_OPS[tok.value], left, right)
            return self.fold(node, [left, right], start, self.src(start))
        if self.at_kw("IS"):
            self.need_value(left)
            self.take()
            negate = self.at_kw("NOT")
            if negate:
                self.take()
            if not self.at_kw("NULL"):
                raise self.error("NULL")
            self.take()
            node = self.fold(_IsNull(left), [left], start, self.src(start))
            return self.fold(_Not(node), [node], start, self.src(start)) if negate else node
        negate = False
        if self.at_kw("NOT") and self.toks[self.i + 1].kind == "kw" and \
                self.toks[self.i + 1].value in ("IN", "BETWEEN", "LIKE", "CONTAINS"):
            self.take()
            negate = True
        if self.at_kw("IN", "BETWEEN", "LIKE", "CONTAINS"):
            self.need_value(left)
            word = self.take().value
            node = getattr(self, "tail_" + word.lower())(left, start)
            if negate:
                node = self.fold(_Not(node), [node], start, self.src(start))
            return node
        return left

    def constant(self, what: str) -> _Const:
        tok = self.peek()
        node = self.need_value(self.sum(what))
        if not isinstance(node, _Const):
            raise FilterSyntaxError(
                f"where: expected a constant at position {tok.pos + 1}, got "
                f"'{_short(node.src)}'")
        return node

    def tail_in(self, left: _Node, start: int) -> _Node:
        if not self.at_op("("):
            raise self.error("'('")
        self.take()
        items = [self.constant("a value")]
        while self.at_op(","):
            self.take()
            items.append(self.constant("a value"))
        if not self.at_op(")"):
            raise self.error("',' or ')'")
        self.take()
        return self.fold(_In(left, items), [left], start, self.src(start))

    def tail_between(self, left: _Node, start: int) -> _Node:
        low = self.need_value(self.sum("a value"))
        if not self.at_kw("AND"):
            raise self.error("AND")
        self.take()
        high = self.need_value(self.sum("a value"))
        parts = [self.fold(_Compare(">=", left, low), [left, low], start, ""),
                 self.fold(_Compare("<=", left, high), [left, high], start, "")]
        return self.fold(_And(parts), parts, start, self.src(start))

    def tail_like(self, left: _Node, start: int) -> _Node:
        pattern = self.constant("a pattern")
        if pattern.code not in (STR, NULL):
            raise FilterTypeError(
                f"where: LIKE needs a string pattern, got {pattern.type_name} "
                f"{_short(pattern.src)}")
        return self.fold(_LikeNode(left, pattern), [left], start, self.src(start))

    def tail_contains(self, left: _Node, start: int) -> _Node:
        item = self.constant("a value")
        return self.fold(_Contains(left, item), [left], start, self.src(start))

    def sum(self, what: str) -> _Node:
        start = self.peek().pos
        first = self.term(what)
        if not self.at_op("+", "-"):
            return first
        operands, ops = [self.need_value(first)], []
        while self.at_op("+", "-"):
            ops.append(self.take().value)
            operands.append(self.need_value(self.term("a value")))
        return self.arith(operands, ops, start)

    def term(self, what: str) -> _Node:
        start = self.peek().pos
        first = self.unary(what)
        if not self.at_op("*", "/"):
            return first
        operands, ops = [self.need_value(first)], []
        while self.at_op("*", "/"):
            ops.append(self.take().value)
            operands.append(self.need_value(self.unary("a value")))
        return self.arith(operands, ops, start)

    def arith(self, operands: list, ops: list[str], start: int) -> _Node:
        src = self.src(start)
        for o in operands:
            if isinstance(o, _Const) and o.code not in (NUM, NULL):
                raise FilterTypeError(f"where: arithmetic on {o.type_name} {_short(o.src)}")
        return self.fold(_Arith(operands, ops, src), operands, start, src)

    def unary(self, what: str) -> _Node:
        if self.at_op("-", "+"):
            tok = self.take()
            self.enter(tok)
            operand = self.need_value(self.unary("a value"))
            self.depth -= 1
            if tok.value == "-" and isinstance(operand, _Const) and operand.code == NUM \
                    and type(operand.value) is int:  # keep -5 an exact int, not -5.0
                return self.at(_Const(NUM, -operand.value, self.src(tok.pos)), tok)
            if tok.value == "+":
                return self.arith([operand, _Const(NUM, 0, "0")], ["+"], tok.pos)
            return self.arith([operand], ["neg"], tok.pos)
        return self.atom(what)

    def atom(self, what: str) -> _Node:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            return self.at(_Const(NUM, tok.value, tok.text), tok)
        if tok.kind == "str":
            self.take()
            return self.at(_Const(STR, tok.value, tok.text), tok)
        if tok.kind == "kw" and tok.value in ("TRUE", "FALSE", "NULL"):
            self.take()
            if tok.value == "NULL":
                return self.at(_Const(NULL, None, tok.text), tok)
            return self.at(_Const(BOOL, tok.value == "TRUE", tok.text), tok)
        if tok.kind == "qid":
            if not tok.value:
                raise FilterSyntaxError(f"where: empty quoted name at position {tok.pos + 1}")
            self.take()
            self.fields.add(tok.value)
            return self.at(_Field(tok.value, tok.text), tok)
        if tok.kind == "name":
            self.take()
            if tok.text.upper() in ("DATE", "TIMESTAMP") and self.peek().kind == "str":
                return self.date(tok, self.take())
            if self.at_op("("):  # LynseDB's SQL has LENGTH() etc.: say so, not "expected an operator"
                raise FilterSyntaxError(
                    f"where: functions are not supported, got '{_short(tok.text)}(' at position {tok.pos + 1}")
            self.fields.add(tok.value)
            return self.at(_Field(tok.value, tok.text), tok)
        if tok.kind == "op" and tok.value == "(":
            self.take()
            self.enter(tok)
            inner = self.or_expr(what if what != "a condition" else "a condition or a value")
            if not self.at_op(")"):
                raise self.error("AND, OR or ')'" if inner.is_bool else "an operator or ')'")
            self.take()
            self.depth -= 1
            inner.pos = tok.pos
            return inner
        raise self.error(what)

    @staticmethod
    def at(node: _Node, tok: _Tok) -> _Node:
        node.pos = tok.pos
        return node

    def date(self, kw: _Tok, tok: _Tok) -> _Const:
        word, value = kw.text.upper(), tok.value
        try:
            if word == "DATE":
                if not _DATE_RE.fullmatch(value):
                    raise ValueError
                _dt.date.fromisoformat(value)
            else:
                if not _DATE_RE.match(value):
                    raise ValueError
                _dt.datetime.fromisoformat(value)
                if len(value) > 10 and value[10] == " ":  # the fields use the 'T' form
                    value = value[:10] + "T" + value[11:]
        except ValueError:
            raise FilterSyntaxError(
                f"where: invalid {word} literal {_short(tok.text)} at position {kw.pos + 1}; "
                f"expected ISO 8601 such as "
                f"{'2026-06-02' if word == 'DATE' else '2026-06-02T10:00:00'}") from None
        node = _Const(STR, value, f"{kw.text} {tok.text}", type_name=word.lower())
        node.pos = kw.pos
        return node


# ---------------------------------------------------------------------------------------------
# Public API


class Filter:
    """A compiled ``where`` expression; get one from :func:`compile_where`.

    ``expression`` is the text as given, ``fields`` the names it reads (``"id"`` included when
    used), so a caller can fetch only those.

    >>> f = compile_where("n * 2 > 5 OR lang IS NULL")
    >>> f.matches(7, {"n": 3}), f.matches(7, {"n": 2, "lang": "en"}), f.matches(7, {})
    (True, False, True)
    """

    __slots__ = ("_root", "expression", "fields")

    def __init__(self, expression: str, fields: frozenset[str], root: _Node) -> None:
        self.expression = expression
        self.fields = fields
        self._root = root

    def mask(self, columns: FieldColumns) -> np.ndarray:
        """A bool array, ``True`` for the rows at positions 0..n-1 that match.

        :raises FilterTypeError: a side of a comparison is uniformly of a type the other side
            cannot equal (see the module docstring), e.g. a string field against a number.
        """
        t, _ = self._root.mask(columns)
        return np.array(t, dtype=bool, copy=True)

    def matches(self, id: Any, fields: Mapping | None) -> bool:
        """Whether one row matches: the row's entry of :meth:`mask`, except that a value of
        another type than its comparison never raises here, it just does not match."""
        return self._root.row((id, fields if fields is not None else {})) is True

    def __repr__(self) -> str:
        return f"Filter({self.expression!r})"


@functools.lru_cache(maxsize=256)
def _compile(expr: str) -> Filter:
    parser = _Parser(expr)
    root = parser.parse()
    return Filter(expr, frozenset(parser.fields), root)


def compile_where(expr: str) -> Filter:
    """Parse a ``where`` expression into a :class:`Filter` (the last 256 are cached).

    :raises FilterSyntaxError: the text does not parse; the message has the 1-based position,
        the token found and what was expected.
    :raises FilterTypeError: two constants, or a constant and arithmetic, of different types
        are compared (``'a' = 1``, ``n * 2 = 'x'``).

    >>> try:
    ...     compile_where("lang = 'en' AND")
    ... except FilterSyntaxError as e:
    ...     print(e)
    where: expected a condition after 'AND' at position 16, got end of input
    """
    if not isinstance(expr, str):
        raise FilterSyntaxError(f"where: expected a string, got {type(expr).__name__}")
    return _compile(expr)
