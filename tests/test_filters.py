"""Tests for vecstore.filters: the ``where`` language.

The core is a differential test: random rows (NULLs, missing keys, lists, mixed-type columns)
and random expression trees are generated with hypothesis, rendered to text, and the engine's
``mask()`` and ``matches()`` are compared with a plain-Python reference evaluator written here,
independently of the implementation (chroma's ``_filter_where_clause`` pattern).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import random
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecstore.errors import FilterSyntaxError, FilterTypeError, InvalidArgumentError
from vecstore.filters import (
    BOOL,
    MAX_DEPTH,
    NUM,
    STR,
    FieldColumns,
    Filter,
    compile_where,
)

FILTER_ERRORS = (FilterSyntaxError, FilterTypeError)


def table(rows, ids=None):
    cols = FieldColumns()
    cols.reset(list(range(len(rows))) if ids is None else ids, rows)
    return cols


def mask_hits(expr, rows, ids=None):
    """Positions matched by ``expr`` through mask() only."""
    return np.flatnonzero(compile_where(expr).mask(table(rows, ids))).tolist()


def hits(expr, rows, ids=None):
    """Positions matched by ``expr``, checked to agree between mask() and matches()."""
    ids = list(range(len(rows))) if ids is None else ids
    f = compile_where(expr)
    mask = f.mask(table(rows, ids))
    assert mask.dtype == bool and mask.shape == (len(rows),)
    by_mask = [i for i in range(len(rows)) if mask[i]]
    by_row = [i for i, (id_, r) in enumerate(zip(ids, rows)) if f.matches(id_, r)]
    assert by_mask == by_row, expr
    return by_mask


# ---------------------------------------------------------------------------------------------
# The reference evaluator. Expressions are tuples:
#   ("field", name) ("lit", kind, value) ("arith", op, a, b) ("neg", a)            -- values
#   ("cmp", op, a, b) ("in", a, [lits], neg) ("between", a, lo, hi, neg) ("like", a, pat, neg)
#   ("isnull", a, neg) ("contains", a, lit, neg) ("not", x) ("and", x, y) ("or", x, y)

class RefTypeError(Exception):
    pass


def rtype(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    return "obj"


def rlookup(row, name):
    if name in row:
        return row[name]
    head, _, rest = name.partition(".")
    if rest and isinstance(row.get(head), dict):
        return row[head].get(rest)
    return None


def rvalue(node, id_, row):
    kind = node[0]
    if kind == "field":
        return id_ if node[1] == "id" else rlookup(row, node[1])
    if kind == "lit":
        return node[2]
    if kind == "neg":
        x = rvalue(node[1], id_, row)
        return -float(x) if rtype(x) == "num" else None
    x, y = rvalue(node[2], id_, row), rvalue(node[3], id_, row)
    if rtype(x) != "num" or rtype(y) != "num":
        return None
    x, y = float(x), float(y)
    if node[1] == "/":
        return None if y == 0 else x / y
    return {"+": x + y, "-": x - y, "*": x * y}[node[1]]


def rtypes(node, ids, rows):
    """The set of non-NULL types a value node takes over the whole table."""
    if node[0] == "field":
        vals = ids if node[1] == "id" else [rlookup(r, node[1]) for r in rows]
        return {rtype(v) for v in vals} - {None}
    if node[0] == "lit":
        return {"str" if node[1] == "date" else node[1]} - {"null"}
    return {"num"}


def rcheck(node, ids, rows, static=False):
    """Raise RefTypeError where the uniform-type rule says the expression is a type error;
    with ``static``, only for the errors that involve no field (compile-time ones)."""
    kind = node[0]

    def known(a):
        return not (static and a[0] == "field")

    def clash(a, b):
        ta, tb = rtypes(a, ids, rows), rtypes(b, ids, rows)
        if known(a) and known(b) and len(ta) == 1 and len(tb) == 1 and ta != tb:
            raise RefTypeError

    if kind in ("field", "lit"):
        return
    if kind in ("arith", "neg"):
        for sub in node[2:] if kind == "arith" else node[1:]:
            t = rtypes(sub, ids, rows)
            if known(sub) and len(t) == 1 and t != {"num"}:
                raise RefTypeError
            rcheck(sub, ids, rows, static)
        return
    if kind == "cmp":
        clash(node[2], node[3])
        rcheck(node[2], ids, rows, static)
        rcheck(node[3], ids, rows, static)
    elif kind == "in":
        for item in node[2]:
            clash(node[1], item)
        rcheck(node[1], ids, rows, static)
    elif kind == "between":
        clash(node[1], node[2])
        clash(node[1], node[3])
        for sub in node[1:4]:
            rcheck(sub, ids, rows, static)
    elif kind == "like":
        t = rtypes(node[1], ids, rows)
        if known(node[1]) and len(t) == 1 and t != {"str"}:
            raise RefTypeError
        rcheck(node[1], ids, rows, static)
    elif kind in ("isnull", "contains", "not"):
        rcheck(node[1], ids, rows, static)
    else:
        rcheck(node[1], ids, rows, static)
        rcheck(node[2], ids, rows, static)


def like_dp(s, p):
    """SQL LIKE by dynamic programming: an implementation unlike the engine's."""
    prev = [True] + [False] * len(s)
    for ch in p:
        cur = [prev[0] and ch == "%"] + [False] * len(s)
        for j in range(1, len(s) + 1):
            if ch == "%":
                cur[j] = prev[j] or cur[j - 1]
            else:
                cur[j] = prev[j - 1] and (ch == "_" or ch == s[j - 1])
        prev = cur
    return prev[-1]


def r3not(x):
    return None if x is None else not x


def r3and(x, y):
    if x is False or y is False:
        return False
    return None if x is None or y is None else True


def r3or(x, y):
    if x is True or y is True:
        return True
    return None if x is None or y is None else False


OPS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b,
       "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
       ">=": lambda a, b: a >= b}


def rcmp(op, x, y):
    tx, ty = rtype(x), rtype(y)
    if tx is None or ty is None or tx != ty or tx not in ("num", "str", "bool"):
        return None
    return OPS[op](x, y)


def rbool(node, id_, row):
    """Three-valued: True, False or None (UNKNOWN)."""
    kind = node[0]
    if kind == "cmp":
        return rcmp(node[1], rvalue(node[2], id_, row), rvalue(node[3], id_, row))
    if kind == "in":
        x, out = rvalue(node[1], id_, row), False
        for item in node[2]:
            out = r3or(out, rcmp("=", x, item[2]))
        return r3not(out) if node[3] else out
    if kind == "between":
        x = rvalue(node[1], id_, row)
        out = r3and(rcmp(">=", x, rvalue(node[2], id_, row)),
                    rcmp("<=", x, rvalue(node[3], id_, row)))
        return r3not(out) if node[4] else out
    if kind == "like":
        x = rvalue(node[1], id_, row)
        out = like_dp(x, node[2]) if rtype(x) == "str" else None
        return r3not(out) if node[3] else out
    if kind == "isnull":
        out = rvalue(node[1], id_, row) is None
        return (not out) if node[2] else out
    if kind == "contains":
        x, lit = rvalue(node[1], id_, row), node[2][2]
        if x is None or lit is None:
            out = None
        elif not isinstance(x, list):
            out = False
        else:
            out = any(rtype(e) == rtype(lit) and e == lit for e in x)
        return r3not(out) if node[3] else out
    if kind == "not":
        return r3not(rbool(node[1], id_, row))
    if kind == "and":
        return r3and(rbool(node[1], id_, row), rbool(node[2], id_, row))
    return r3or(rbool(node[1], id_, row), rbool(node[2], id_, row))


def reference(node, ids, rows):
    """The expected mask as a list of bools, or RefTypeError."""
    rcheck(node, ids, rows)
    return [rbool(node, i, r) is True for i, r in zip(ids, rows)]


# ---------------------------------------------------------------------------------------------
# Rendering expressions to text (random keyword case and quoting)

PREC = {"or": 1, "and": 2, "not": 3}


def kw(rnd, word):
    return rnd.choice([word, word.lower(), word.capitalize()])


def render_lit(rnd, node):
    kind, v = node[1], node[2]
    if kind == "null":
        return kw(rnd, "NULL")
    if kind == "bool":
        return kw(rnd, "TRUE" if v else "FALSE")
    if kind == "date":
        return f"{kw(rnd, 'DATE')} '{v}'"
    if kind == "str":
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def render_value(rnd, node, after_cmp=False):
    """``after_cmp``: the operand right after a comparison operator, where a double-quoted
    token is a string (LynseDB), so a quoted name needs parentheses to stay a name."""
    kind = node[0]
    if kind == "field":
        name = node[1]
        if name == "doc.lang" and rnd.random() < 0.5 or name == "odd name":
            return f'("{name}")' if after_cmp else '"' + name + '"'
        return name
    if kind == "lit":
        if after_cmp and node[1] == "str" and rnd.random() < 0.5:
            return '"' + node[2].replace('"', '""') + '"'
        return render_lit(rnd, node)
    if kind == "neg":
        return f"-({render_value(rnd, node[1])})"
    return f"({render_value(rnd, node[2])} {node[1]} {render_value(rnd, node[3])})"


def render(node, rnd=None, parent=0):
    rnd = rnd or random.Random(0)
    kind = node[0]
    n = kw(rnd, "NOT") + " "
    if kind == "cmp":
        text = f"{render_value(rnd, node[2])} {node[1]} {render_value(rnd, node[3], after_cmp=True)}"
    elif kind == "in":
        items = ", ".join(render_lit(rnd, i) for i in node[2])
        text = f"{render_value(rnd, node[1])} {n if node[3] else ''}{kw(rnd, 'IN')} ({items})"
    elif kind == "between":
        text = (f"{render_value(rnd, node[1])} {n if node[4] else ''}{kw(rnd, 'BETWEEN')} "
                f"{render_value(rnd, node[2])} {kw(rnd, 'AND')} {render_value(rnd, node[3])}")
    elif kind == "like":
        pat = "'" + node[2].replace("'", "''") + "'"
        text = f"{render_value(rnd, node[1])} {n if node[3] else ''}{kw(rnd, 'LIKE')} {pat}"
    elif kind == "isnull":
        text = f"{render_value(rnd, node[1])} {kw(rnd, 'IS')} {n if node[2] else ''}" \
               f"{kw(rnd, 'NULL')}"
    elif kind == "contains":
        text = (f"{render_value(rnd, node[1])} {n if node[3] else ''}{kw(rnd, 'CONTAINS')} "
                f"{render_lit(rnd, node[2])}")
    elif kind == "not":
        text = n + render(node[1], rnd, PREC["not"])
        return f"({text})" if parent > PREC["not"] else text
    else:
        prec = PREC[kind]
        # Children of the same operator may go unparenthesised (associative); a looser child
        # must be parenthesised -- this exercises precedence without hand-written cases.
        text = (f"{render(node[1], rnd, prec)} {kw(rnd, kind.upper())} "
                f"{render(node[2], rnd, prec + 1 if rnd.random() < 0.3 else prec)}")
        return f"({text})" if parent > prec or rnd.random() < 0.1 else text
    return f"({text})" if rnd.random() < 0.1 else text


# ---------------------------------------------------------------------------------------------
# Strategies

FIELDS = ["a", "b", "s", "tags", "ok", "doc.lang", "missing", "odd name"]
STR_ALPHABET = "ab%_'\\é\n "
# Small shared pools make equality hits likely; the wider strategies keep the edge cases.
TEXT = st.sampled_from(["", "a", "b", "ab", "a%", "it's", "é"]) | st.text(
    alphabet=STR_ALPHABET, max_size=5)
DATES = st.sampled_from(["2026-06-01", "2026-06-02", "2026-06-30", "2025-12-31"])
INTS = st.integers(-3, 3) | st.integers(-2**40, 2**40)
FLOATS = st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.5, -2.5, 1e-5, 3.0])
SCALAR = {
    "num": INTS | FLOATS,
    "str": TEXT | DATES,
    "bool": st.booleans(),
}
ROW_FLOATS = FLOATS | st.sampled_from([math.inf, -math.inf, math.nan])


SCALAR_OR_NONE = st.one_of(SCALAR["num"], SCALAR["str"], SCALAR["bool"], st.none())
KIND_VALUES = {
    "num": INTS | ROW_FLOATS,
    "str": SCALAR["str"],
    "bool": SCALAR["bool"],
    "list": st.lists(SCALAR_OR_NONE, max_size=4),
    "obj": TEXT.map(lambda t: {"k": t}),
}
ABSENT = object()
KIND_SETS = [tuple(sorted(c)) for c in (
    ["num"], ["str"], ["bool"], ["list"], ["obj"], ["num", "str"], ["num", "bool"],
    ["str", "list"], ["num", "str", "bool"], ["num", "obj"], ["str", "list", "bool"])]

NUMERIC_SETS = [("num",), ("num",), ("num",), ("num", "str"), ("bool", "num"), ("str",)]


@functools.cache
def cell(kinds):
    """A cell of a column whose values have the given kinds: often a value, sometimes None,
    sometimes absent. Cached, because building strategies per draw is what makes hypothesis
    slow here."""
    value = st.one_of([KIND_VALUES[k] for k in kinds])
    return st.one_of(value, value, value, st.none(), st.just(ABSENT))


@st.composite
def tables(draw, max_rows=10):
    n = draw(st.integers(0, max_rows))
    # One type per column about half of the time (to hit the type-error rule), else mixed.
    profiles = {name: draw(st.sampled_from(NUMERIC_SETS if name in ("a", "b") else KIND_SETS))
                for name in FIELDS if name != "missing"}
    id_kind = draw(st.sampled_from(["int", "str", "mixed"]))
    rows, ids = [], []
    for i in range(n):
        row = {}
        for name, kinds in profiles.items():
            value = draw(cell(kinds))
            if value is ABSENT:
                continue
            if name == "doc.lang" and draw(st.booleans()):
                row["doc"] = {"lang": value}  # the dotted name reaches into a nested dict
            else:
                row[name] = value
        rows.append(row)
        use_str = id_kind == "str" or id_kind == "mixed" and draw(st.booleans())
        ids.append(f"id{i}" if use_str else i * 3)
    return ids, rows


def lits(kinds=("num", "str", "bool", "null", "date")):
    return st.sampled_from(kinds).flatmap(lambda k: (
        st.just(("lit", "null", None)) if k == "null" else
        DATES.map(lambda v: ("lit", "date", v)) if k == "date" else
        SCALAR[k].map(lambda v, k=k: ("lit", k, v))))


def column_values(node, ids, rows, elements=False):
    """The finite scalar values a field takes in the table (list elements with ``elements``)."""
    if node[0] != "field":
        return []
    out = []
    for id_, row in zip(ids, rows):
        v = id_ if node[1] == "id" else rlookup(row, node[1])
        for x in (v if isinstance(v, list) else []) if elements else [v]:
            kind = rtype(x)
            if kind in ("str", "bool") or kind == "num" and math.isfinite(x):
                out.append(("lit", kind, x))
    return out


def with_pool(node, ids, rows, rnd):
    """The tree with most literals next to a field replaced by values that field has, so that
    comparisons are mostly well-typed and hit some rows but not all."""
    def pick(field, lit, elements=False):
        values = column_values(field, ids, rows, elements)
        if values and lit[0] == "lit" and rnd.random() < 0.7:
            return rnd.choice(values)
        return lit

    kind = node[0]
    if kind == "cmp":
        a, b = node[2], node[3]
        return ("cmp", node[1], pick(b, a), pick(a, b))
    if kind == "in":
        return ("in", node[1], [pick(node[1], i) for i in node[2]], node[3])
    if kind == "between":
        return ("between", node[1], pick(node[1], node[2]), pick(node[1], node[3]), node[4])
    if kind == "contains":
        return ("contains", node[1], pick(node[1], node[2], elements=True), node[3])
    if kind == "like":
        values = [v for v in column_values(node[1], ids, rows) if v[1] == "str"]
        if values and rnd.random() < 0.6:
            pattern = list(rnd.choice(values)[2])
            for _ in range(rnd.randint(0, 2)):
                if pattern:
                    pattern[rnd.randrange(len(pattern))] = rnd.choice("%_")
            if rnd.random() < 0.5:
                pattern = ["%"] + pattern[rnd.randint(0, len(pattern)):]
            return ("like", node[1], "".join(pattern), node[3])
        return node
    if kind == "not":
        return ("not", with_pool(node[1], ids, rows, rnd))
    if kind in ("and", "or"):
        return (kind, with_pool(node[1], ids, rows, rnd), with_pool(node[2], ids, rows, rnd))
    return node


FIELD_NODES = st.sampled_from(FIELDS + ["id"]).map(lambda f: ("field", f))
NUM_FIELDS = st.sampled_from(["a", "b", "missing"]).map(lambda f: ("field", f))


@st.composite
def operands(draw):
    choice = draw(st.integers(0, 9))
    if choice <= 5:
        return draw(FIELD_NODES)
    if choice <= 7:
        return draw(lits())
    if choice == 8:
        return ("neg", draw(NUM_FIELDS))
    return ("arith", draw(st.sampled_from("+-*/")),
            draw(st.one_of(NUM_FIELDS, NUM_FIELDS, FIELD_NODES)), draw(NUM_FIELDS | lits(("num",))))


@st.composite
def predicates(draw):
    kind = draw(st.sampled_from(["cmp", "cmp", "cmp", "in", "between", "like", "isnull",
                                 "contains"]))
    neg = draw(st.booleans())
    if kind == "cmp":
        return ("cmp", draw(st.sampled_from(list(OPS))), draw(operands()),
                draw(lits() if draw(st.booleans()) else operands()))
    if kind == "in":
        return ("in", draw(operands()),
                draw(st.lists(lits(), min_size=1, max_size=4)), neg)
    if kind == "between":
        return ("between", draw(operands()), draw(operands()), draw(operands()), neg)
    if kind == "like":
        return ("like", draw(operands()), draw(st.text(alphabet="ab%_'\\é\n", max_size=6)),
                neg)
    if kind == "isnull":
        return ("isnull", draw(operands()), neg)
    return ("contains", draw(operands()), draw(lits()), neg)


expressions = st.recursive(
    predicates(),
    lambda sub: st.one_of(
        sub.map(lambda x: ("not", x)),
        st.tuples(st.sampled_from(["and", "or"]), sub, sub)),
    max_leaves=6)


def engine_mask(text, ids, rows):
    """("error",) when the engine raises FilterTypeError, else the mask as a list."""
    try:
        return compile_where(text).mask(table(rows, ids)).tolist()
    except FilterTypeError:
        return ("error",)


def engine_row(text, id_, row):
    try:
        return compile_where(text).matches(id_, row)
    except FilterTypeError:
        return ("error",)


def expected(node, ids, rows):
    try:
        return reference(node, ids, rows)
    except RefTypeError:
        return ("error",)


def expected_row(node, id_, row):
    """What matches() must give: only the errors that need no data, else the 3VL result."""
    try:
        rcheck(node, [], [], static=True)
    except RefTypeError:
        return ("error",)
    return rbool(node, id_, row) is True


# ---------------------------------------------------------------------------------------------
# Differential tests against the reference


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), expressions, st.randoms(use_true_random=False))
def test_mask_and_matches_agree_with_reference(tbl, node, rnd):
    ids, rows = tbl
    node = with_pool(node, ids, rows, rnd)
    text = render(node, rnd)
    mask = engine_mask(text, ids, rows)
    assert mask == expected(node, ids, rows), text
    # matches() never raises for data; where mask() does not raise, the two agree.
    for i, (id_, row) in enumerate(zip(ids, rows)):
        want = expected_row(node, id_, row)
        assert engine_row(text, id_, row) == want, text
        if want != ("error",) and mask != ("error",):
            assert mask[i] == want


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_rows=6), st.lists(st.tuples(st.sampled_from(["append", "set", "reset"]),
                                              tables(max_rows=4)), max_size=6),
       st.lists(expressions, min_size=1, max_size=3), st.data())
def test_incremental_writes_keep_columns_right(start, writes, nodes, data):
    ids, rows = list(start[0]), list(start[1])
    cols = table(rows, ids)
    texts = [render(node) for node in nodes]
    for text in texts:  # build the columns first, so writes must update them
        engine_mask_on(cols, text)
    for name in FIELDS + ["id"]:
        cols.column(name)
    for op, (new_ids, new_rows) in writes:
        if op == "append":
            for i, r in zip(new_ids, new_rows):  # one row at a time, as some workloads do
                cols.append([i], [r])
                ids.append(i)
                rows.append(r)
        elif op == "set" and rows and new_rows:
            pos = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=len(new_rows),
                                     max_size=len(new_rows)))
            cols.set(pos, new_ids, new_rows)
            for p, i, r in zip(pos, new_ids, new_rows):
                ids[p], rows[p] = i, r
        elif op == "reset":
            cols.reset(new_ids, new_rows)
            ids, rows = list(new_ids), list(new_rows)
        assert cols.n == len(rows)
        fresh = table(rows, ids)
        for name in FIELDS + ["id"]:
            assert canonical(cols.column(name)) == canonical(fresh.column(name)), name
        for text, node in zip(texts, nodes):
            assert engine_mask_on(cols, text) == expected(node, ids, rows), text


def canonical(col):
    """A Column as plain Python: (category, value) per row and the sorted list elements, so an
    incrementally maintained column can be compared with one built from scratch."""
    def plain(arr, i):
        v = arr[i]
        v = v.as_py() if hasattr(v, "as_py") else v.item() if hasattr(v, "item") else v
        return repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    out = []
    for i, code in enumerate(col.code.tolist()):
        arr = {NUM: col.num, STR: col.strs, BOOL: col.bools}.get(code)
        out.append((code, None if arr is None else plain(arr, i)))
    elems = sorted((code, int(r), repr(plain(vals, j)))
                   for code, (rows, vals) in col.elems.items() for j, r in enumerate(rows))
    return col.n, out, elems, col.cats


def engine_mask_on(cols, text):
    try:
        return compile_where(text).mask(cols).tolist()
    except FilterTypeError:
        return ("error",)


# ---------------------------------------------------------------------------------------------
# Operators, one at a time

ROWS = [
    {"lang": "en", "n": 1, "price": 2.5, "tags": ["a", "b"], "ok": True, "title": "apple pie"},
    {"lang": "de", "n": 2, "price": 3.5, "tags": ["b"], "ok": False, "title": "Apple"},
    {"lang": "fr", "n": 3, "price": 4.5, "tags": [], "ok": True, "title": "blue apple"},
    {"lang": "de", "n": None, "tags": ["c"], "title": None},
]


@pytest.mark.parametrize("expr, want", [
    ("lang = 'en'", [0]),
    ("lang != 'en'", [1, 2, 3]),
    ("lang <> 'en'", [1, 2, 3]),  # LynseDB returns nothing for <>
    ("n < 2", [0]),
    ("n <= 2", [0, 1]),
    ("n > 2", [2]),
    ("n >= 2", [1, 2]),
    ("price = 2.5", [0]),
    ("n = 2.0", [1]),  # ints and floats compare numerically
    ("n IN (1, 3)", [0, 2]),
    ("n NOT IN (1, 3)", [1]),  # NULL n matches neither IN nor NOT IN
    ("lang IN ('en', 'de')", [0, 1, 3]),
    ("n BETWEEN 1 AND 2", [0, 1]),  # inclusive
    ("n NOT BETWEEN 2 AND 3", [0]),
    ("title LIKE '%apple%'", [0, 2]),  # case-sensitive
    ("title LIKE 'Appl_'", [1]),
    ("title LIKE 'apple'", []),  # whole string
    ("title NOT LIKE '%apple%'", [1]),
    ("n IS NULL", [3]),
    ("price IS NULL", [3]),  # missing key
    ("n IS NOT NULL", [0, 1, 2]),
    ("ok = true", [0, 2]),
    ("ok = FALSE", [1]),
    ("tags CONTAINS 'b'", [0, 1]),
    ("tags NOT CONTAINS 'b'", [2, 3]),
    ("lang CONTAINS 'e'", []),  # a string is not a list: CONTAINS is false, not a substring
    ("NOT lang CONTAINS 'e'", [0, 1, 2, 3]),
    ("n * 2 > 5", [2]),
    ("n + price >= 5.5", [1, 2]),
    ("-n < -2", [2]),
    ("n / 0 IS NULL", [0, 1, 2, 3]),  # division by zero is NULL
    ("1 = 1", [0, 1, 2, 3]),
    ("1 = 2", []),
    ("NULL = NULL", []),
    ("n = NULL", []),
    ("n != NULL", []),
])
def test_operator(expr, want):
    assert hits(expr, ROWS) == want


def test_precedence_not_binds_tighter_than_and_than_or():
    rows = [{"a": a, "b": b, "c": c} for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    got = hits("a = 1 OR b = 1 AND c = 1", rows)
    assert got == [i for i, r in enumerate(rows) if r["a"] == 1 or (r["b"] == 1 and r["c"] == 1)]
    got = hits("NOT a = 1 AND b = 1", rows)
    assert got == [i for i, r in enumerate(rows) if r["a"] != 1 and r["b"] == 1]
    got = hits("NOT a = 1 OR b = 1 AND NOT c = 1", rows)
    assert got == [i for i, r in enumerate(rows)
                   if r["a"] != 1 or (r["b"] == 1 and r["c"] != 1)]
    got = hits("(a = 1 OR b = 1) AND c = 1", rows)
    assert got == [i for i, r in enumerate(rows) if (r["a"] == 1 or r["b"] == 1) and r["c"] == 1]


def test_keywords_are_case_insensitive():
    assert hits("n in (1, 2) and not ok = True Or tags contains 'c'", ROWS) == [1, 3]
    assert hits("n Between 1 And 1", ROWS) == [0]
    assert hits("n is not null AND title like 'A%'", ROWS) == [1]


def test_like_has_no_escape_character_and_regex_characters_are_literal():
    rows = [{"t": "a\\b"}, {"t": "a%b"}, {"t": "a.b"}, {"t": "a\nb"}, {"t": "(a)*"}]
    assert hits("t LIKE 'a\\b'", rows) == [0]
    assert hits("t LIKE 'a\\%'", rows) == [0]
    assert hits("t LIKE 'a_b'", rows) == [0, 1, 2, 3]  # _ matches a newline too
    assert hits("t LIKE 'a.b'", rows) == [2]
    assert hits("t LIKE '(a)*'", rows) == [4]
    assert hits("t LIKE '%'", rows) == [0, 1, 2, 3, 4]
    assert hits("t LIKE ''", rows + [{"t": ""}]) == [5]


def test_like_with_a_backslash_at_either_end_of_a_segment():
    # pyarrow 26's prefix and suffix shortcuts miss an escaped backslash; hypothesis found
    # 'tags LIKE '%\\'' missing the string "\\".
    rows = [{"t": "\\"}, {"t": "a\\"}, {"t": "\\a"}, {"t": "a\\a"}, {"t": "x"}]
    assert hits("t LIKE '%\\'", rows) == [0, 1]
    assert hits("t LIKE '%a\\'", rows) == [1]
    assert hits("t LIKE '\\a%'", rows) == [2]
    assert hits("t LIKE '\\%'", rows) == [0, 2]
    assert hits("t LIKE '%\\%'", rows) == [0, 1, 2, 3]
    assert hits("t LIKE '_\\_'", rows) == [3]


def test_double_quotes_right_after_a_comparison_are_a_string_as_in_lynsedb():
    rows = [{"lang": "en", "en": "de"}, {"lang": "de", "en": "de"}, {"lang": "", "odd name": ""}, {}]
    assert hits('lang = "en"', rows) == [0]  # lynse_api §7.1; once a field "en": row 1
    assert hits('"lang" = "en"', rows) == hits("lang = 'en'", rows) == [0]  # left: a name
    assert hits('lang != "en"', rows) == [1, 2]
    assert hits('lang = ""', rows) == [2]
    assert hits('lang >= "e" AND lang < "f"', rows) == [0]
    assert hits('lang = ("en")', rows) == [1]  # parenthesised: a name again
    assert hits('lang = ("odd name")', rows) == [2]
    assert hits('"say ""hi""" = "it""s"', [{'say "hi"': 'it"s'}]) == [0]
    assert compile_where('lang = "en"').fields == {"lang"}
    assert hits('NOT "lang" IS NULL', rows) == [0, 1, 2]  # not after a comparison: a name
    with pytest.raises(FilterTypeError, match="arithmetic on string"):
        compile_where('n = "en" + 1')


def test_doubled_quote_escapes_a_quote_in_strings_and_names():
    rows = [{"t": "it's"}, {"t": "its"}, {'say "hi"': 1}]
    assert hits("t = 'it''s'", rows) == [0]
    assert hits("t LIKE '%''%'", rows) == [0]
    assert hits('"say ""hi""" = 1', rows) == [2]
    assert hits("t = ''''", [{"t": "'"}]) == [0]


def test_double_quoted_and_dotted_names():
    rows = [{"doc.lang": "en"}, {"doc": {"lang": "en"}}, {"doc": {"lang": "de"}},
            {"doc.lang": "en", "doc": {"lang": "de"}}, {"doc": "en"}]
    assert hits('"doc.lang" = \'en\'', rows) == [0, 1, 3]  # the literal key wins over nesting
    assert hits("doc.lang = 'en'", rows) == [0, 1, 3]
    assert hits('"odd name!" = 1', [{"odd name!": 1}]) == [0]
    assert hits("a.b.c = 1", [{"a": {"b": {"c": 1}}}, {"a": {"b.c": 1}}, {"a.b": {"c": 1}}]) \
        == [0, 1, 2]
    assert compile_where('"doc.lang" = 1').fields == {"doc.lang"}


def test_contains_inside_or_keeps_the_or_branch():
    # LynseDB 7.3: "tags CONTAINS 'b' OR lang = 'de'" drops the OR branch and returns [0, 1].
    rows = [{"tags": ["a", "b"], "lang": "en"}, {"tags": ["b"], "lang": "en"},
            {"tags": ["c"], "lang": "fr"}, {"tags": ["c"], "lang": "de"}]
    assert hits("tags CONTAINS 'b' OR lang = 'de'", rows) == [0, 1, 3]
    assert hits("lang = 'de' OR tags CONTAINS 'b'", rows) == [0, 1, 3]
    assert hits("NOT (tags CONTAINS 'b') AND lang != 'fr'", rows) == [3]


def test_contains_matches_types_like_equals():
    rows = [{"t": [1, 2.5]}, {"t": [True]}, {"t": ["1"]}, {"t": [None, [1]]}, {"t": 1}, {}]
    assert hits("t CONTAINS 1", rows) == [0]  # True is not 1, '1' is not 1
    assert hits("t CONTAINS 1.0", rows) == [0]
    assert hits("t CONTAINS 2.5", rows) == [0]
    assert hits("t CONTAINS true", rows) == [1]
    assert hits("t CONTAINS '1'", rows) == [2]
    assert hits("t NOT CONTAINS 1", rows) == [1, 2, 3, 4]  # NULL t is unknown
    assert hits("t CONTAINS NULL", rows) == []


def test_dates_compare_as_iso_strings():
    rows = [{"d": "2026-06-01"}, {"d": "2026-06-02"}, {"d": "2026-06-02T10:00:00"},
            {"d": "2026-06-30"}, {"d": dt.date(2026, 7, 1)}, {"d": dt.datetime(2026, 6, 2, 9)}]
    assert hits("d >= DATE '2026-06-02' AND d < DATE '2026-06-30'", rows) == [1, 2, 5]
    assert hits("d > TIMESTAMP '2026-06-02T09:30:00'", rows) == [2, 3, 4]
    assert hits("d = TIMESTAMP '2026-06-02 10:00:00'", rows) == [2]  # space means 'T'
    assert hits("d BETWEEN date '2026-06-01' AND date '2026-06-02'", rows) == [0, 1]
    assert hits("date = 1", [{"date": 1}]) == [0]  # DATE is a keyword only before a string
    for bad in ["d = DATE '2026-13-01'", "d = DATE 'June 2'", "d = TIMESTAMP 'x'",
                "d = DATE '2026-06-02T10:00:00'"]:
        with pytest.raises(FilterSyntaxError, match="invalid"):
            compile_where(bad)
    with pytest.raises(FilterTypeError, match="comparing number field 'n' with date"):
        compile_where("n = DATE '2026-06-02'").mask(table([{"n": 1}]))


def test_id_is_the_public_id():
    assert hits("id = 6", [{}, {}, {}], ids=[0, 3, 6]) == [2]
    assert hits("id IN ('x', 'z')", [{}, {}, {}], ids=["x", "y", "z"]) == [0, 2]
    assert hits("id >= 'y'", [{"id": "a"}, {}, {}], ids=["x", "y", "z"]) == [1, 2]
    assert hits("id LIKE 'doc-%' AND n = 1", [{"n": 1}, {"n": 1}], ids=["doc-1", "x"]) == [0]
    assert mask_hits("id = 6 OR id = 'z'", [{}, {}], ids=[6, "z"]) == [0, 1]  # mixed ids
    assert "id" in compile_where("id = 1").fields
    with pytest.raises(FilterTypeError, match="field 'id'"):
        compile_where("id = 'x'").mask(table([{}], ids=[1]))


def test_missing_fields_are_null_with_three_valued_logic():
    rows = [{"x": 1}, {"x": 2}, {}, {"x": None}]
    assert hits("x = 1", rows) == [0]
    assert hits("NOT (x = 1)", rows) == [1]  # as SQL: NOT UNKNOWN is UNKNOWN
    assert hits("x != 1", rows) == [1]
    assert hits("x IS NULL", rows) == [2, 3]
    assert hits("x = 1 OR x IS NULL", rows) == [0, 2, 3]
    assert hits("NOT (x = 1 AND y = 1)", rows) == [1]  # FALSE AND UNKNOWN is FALSE
    assert hits("nowhere = 'x'", rows) == []  # an unknown field is not an error
    assert hits("NOT nowhere = 'x'", rows) == []


def test_type_errors_on_uniform_columns():
    rows = [{"lang": "en", "n": 1, "ok": True}, {"lang": "de", "n": 2.5, "ok": False}, {}]
    cols = table(rows)
    cases = {
        "lang = 3": "comparing string field 'lang' with number 3",
        "n > 'x'": "comparing number field 'n' with string 'x'",
        "ok = 1": "comparing bool field 'ok' with number 1",
        "lang IN ('en', 3)": "comparing string field 'lang' with number 3",
        "n BETWEEN 'a' AND 'b'": "comparing number field 'n' with string 'a'",
        "n LIKE '1%'": "LIKE needs a string, got number field 'n'",
        "lang * 2 > 1": "arithmetic on string field 'lang'",
        "lang = n": "comparing string field 'lang' with number field 'n'",
    }
    for expr, message in cases.items():
        f = compile_where(expr)
        with pytest.raises(FilterTypeError) as info:
            f.mask(cols)
        assert str(info.value) == "where: " + message
        # One row has no column to judge by: matches() does not raise, the row does not match.
        assert f.matches(0, rows[0]) is (expr == "lang IN ('en', 3)")
    # Errors that need no data are raised at compile time.
    static = {
        "'a' = 1": "comparing string 'a' with number 1",
        "1 IN ('a')": "comparing number 1 with string 'a'",
        "true > 0": "comparing bool true with number 0",
        "'a' + 1 = 2": "arithmetic on string 'a'",
        "n LIKE 5": "LIKE needs a string pattern, got number 5",
        "n * 2 = 'x'": "comparing number expression 'n * 2' with string 'x'",
        "n + 1 LIKE 'x%'": "LIKE needs a string, got number expression 'n + 1'",
        "-n IN ('a')": "comparing number expression '-n' with string 'a'",
    }
    for expr, message in static.items():
        with pytest.raises(FilterTypeError) as info:
            compile_where(expr)
        assert str(info.value) == "where: " + message
    assert isinstance(FilterTypeError("x"), (InvalidArgumentError, ValueError))


def test_mixed_columns_do_not_raise():
    rows = [{"m": 1}, {"m": "1"}, {"m": True}, {"m": [1]}, {"m": 2.0}]
    assert mask_hits("m = 1", rows) == [0]
    assert mask_hits("m = '1'", rows) == [1]
    assert mask_hits("m = true", rows) == [2]
    assert mask_hits("m != 1", rows) == [4]  # other types are UNKNOWN, not "different"
    assert mask_hits("m IN (1, '1')", rows) == [0, 1]
    assert mask_hits("m NOT IN (1, '1')", rows) == []  # each row is incomparable with one item
    assert mask_hits("m > 0 OR m LIKE '%'", rows) == [0, 1, 4]
    assert mask_hits("m * 2 = 4", rows) == [4]
    assert [compile_where("m = 1").matches(1, r) for r in rows] == [1, 0, 0, 0, 0]


def test_literal_forms():
    rows = [{"x": -3}, {"x": 1.5e-3}, {"x": 250.0}, {"x": 7}]
    assert hits("x = -3", rows) == [0]
    assert hits("x = 1.5e-3", rows) == [1]
    assert hits("x = 2.5E2", rows) == [2]
    assert hits("x = .0015", rows) == [1]
    assert hits("x = 7.", rows) == [3]
    assert hits("x < - 2", rows) == [0]
    assert hits("x = +7", rows) == [3]
    with pytest.raises(FilterSyntaxError):
        compile_where("x = 2 ** 3")  # no power operator
    big = 2**62 + 1
    assert hits(f"x = {big}", [{"x": big}, {"x": float(2**62)}, {"x": 2**62}]) == [0]
    assert hits(f"x > {2**70}", [{"x": 1.0}, {"x": 2**71}]) == [1]


# Integers around the edges of float64's exact range and of int64, and float literals that
# are integral there, or not, or beyond every int64.
_EDGE_INTS = [2**53 - 1, 2**53, 2**53 + 1, -2**53 - 1, 2**63 - 1, -2**63, 0, 5, -5]
_EDGE_FLOATS = [float(2**53), float(2**53 - 1), float(2**53 + 2), -float(2**53), float(2**63),
                -float(2**63), 1e300, -1e300, -0.0, 0.0, 0.5, -0.5, 4.5, 5.0, 2.0**51 + 0.5]
_EDGE_LITERALS = _EDGE_FLOATS + [2**53 + 1, 2**63 - 1, -2**63, 2**64, 5]


@pytest.mark.parametrize("values", [
    _EDGE_INTS,                                  # an int64 column
    _EDGE_INTS + [2**70],                        # beyond int64: an object column
    [2**53, 2**53 - 1, 5, 0.5, -0.5, 1e300],     # ints within 2**53 and floats: a float64 column
    [2**53 + 1, 2**63 - 1, 0.5, -1e300],         # larger ints and floats: an object column
])
def test_numbers_compare_exactly_whatever_the_column_holds(values):
    # Exact Python comparison is the oracle, for mask() and matches() alike: numpy's float64
    # comparison of an int64 column with 9007199254740992.0 had 2**53 + 1 equal to it.
    rows = [{"n": v, "t": [v, "x"]} for v in values]
    for c in _EDGE_LITERALS:
        lit = repr(c)
        for op, fn in [("=", operator.eq), ("!=", operator.ne), ("<", operator.lt),
                       ("<=", operator.le), (">", operator.gt), (">=", operator.ge)]:
            assert hits(f"n {op} {lit}", rows) == [i for i, v in enumerate(values) if fn(v, c)], (op, lit)
        assert hits(f"n IN ({lit})", rows) == [i for i, v in enumerate(values) if v == c], lit
        assert hits(f"n IN ({lit}, 0.25)", rows) == [i for i, v in enumerate(values) if v in (c, 0.25)], lit
        assert hits(f"n NOT IN ({lit})", rows) == [i for i, v in enumerate(values) if v != c], lit
        assert hits(f"t CONTAINS {lit}", rows) == [i for i, v in enumerate(values) if v == c], lit


def test_arithmetic_precedence_and_grouping():
    rows = [{"n": 1}, {"n": 2}, {"n": 3}]
    assert hits("n + 1 * 2 = 5", rows) == [2]
    assert hits("(n + 1) * 2 = 6", rows) == [1]
    assert hits("n - 1 - 1 = 1", rows) == [2]  # left associative
    assert hits("12 / n / 2 = 2", rows) == [2]
    assert hits("((n)) = 2 AND ((n > 1))", rows) == [1]


def test_bool_columns_order_and_equality():
    rows = [{"ok": True}, {"ok": False}, {}]
    assert hits("ok = true", rows) == [0]
    assert hits("ok != TRUE", rows) == [1]
    assert hits("ok < true", rows) == [1]
    assert hits("ok IN (true)", rows) == [0]


def test_field_against_field():
    rows = [{"a": 1, "b": 2}, {"a": 2, "b": 2}, {"a": "x", "b": "x"}, {"a": 1}]
    assert hits("a = b", rows) == [1, 2]
    assert hits("a < b", rows) == [0]
    assert hits("a <= b AND NOT a = b", rows) == [0]


def test_strings_pyarrow_cannot_encode():
    rows = [{"s": "a\ud800", "t": []}, {"s": "b", "t": ["\ud800"]}]
    assert hits("s = 'a\ud800'", rows) == [0]
    assert hits("s > 'a'", rows) == [0, 1]
    assert hits("s LIKE 'a_'", rows) == [0]
    assert hits("s IN ('b', '\ud800')", rows) == [1]
    assert hits("t CONTAINS '\ud800'", rows) == [1]
    assert hits("s = '\udfff' OR s LIKE '\udfff%' OR s IN ('\udfff')", [{"s": "b"}]) == []
    cols = table(rows)
    cols.append([2], [{"s": "c"}])
    cols.set([0], [0], [{"s": "d\udc00"}])
    assert compile_where("s >= 'c'").mask(cols).tolist() == [True, False, True]


def test_numpy_and_other_value_types_are_normalised():
    rows = [{"n": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "t": ("x", "y")},
            {"n": 4, "f": 1.0, "b": False, "t": ["y"]}]
    assert hits("n = 3 AND f = 0.5 AND b = true AND t CONTAINS 'x'", rows) == [0]
    assert hits("t CONTAINS 'y'", rows) == [0, 1]


def test_nan_and_infinity_in_rows():
    rows = [{"x": math.nan}, {"x": math.inf}, {"x": -math.inf}, {"x": 0}]
    assert hits("x = 0", rows) == [3]
    assert hits("x != 0", rows) == [0, 1, 2]  # IEEE: NaN != 0
    assert hits("x > 1e308", rows) == [1]
    assert hits("x IN (0, 1)", rows) == [3]


def test_lynsedb_examples_all_work():
    # DESIGN research §7.2: every example LynseDB accepts must work here too.
    rows = [{"lang": "en", "n": 1, "rank": 1, "price": 2.5, "ok": True, "tenant": "acme",
             "published": True, "tags": ["a", "b"], "title": "apple", "note": None,
             "doc.lang": "en", "created_at": "2026-06-02"},
            {"lang": "de", "n": 3, "rank": 2, "price": 3.5, "ok": False, "tenant": "acme",
             "published": False, "tags": ["c"], "title": "blue", "doc.lang": "de",
             "created_at": "2026-07-01"}]
    examples = [
        "lang = 'en'", "tenant = 'acme' AND lang = 'en' AND published = true", "n > 2",
        "rank >= 1 AND rank <= 2", "price = 2.5", "n BETWEEN 2 AND 3", "n NOT BETWEEN 2 AND 3",
        "ok = false", "lang IN ('en','de')", "n IN (1, 3)", "lang NOT IN ('en')",
        "lang != 'en'", "lang = 'en' OR lang = 'de'", "NOT lang = 'en'", "NOT (lang = 'en')",
        "(lang = 'en' OR lang = 'de') AND n > 1", "tags CONTAINS 'b'",
        "tags CONTAINS 'b' AND lang = 'en'", "title LIKE '%apple%'",
        "title NOT LIKE '%apple%'", "note IS NULL", "note IS NOT NULL", "\"doc.lang\" = 'en'",
        "created_at >= '2026-06-02' AND created_at <= '2026-06-30'", "n * 2 > 5", "1 = 1",
    ]
    for expr in examples:
        hits(expr, rows)
    assert hits("tags CONTAINS 'b' AND lang = 'en'", rows) == [0]


# ---------------------------------------------------------------------------------------------
# Syntax errors


@pytest.mark.parametrize("expr, message", [
    ("lang = ", "where: expected a value after '=' at position 8, got end of input"),
    ("", "where: expected a condition at position 1, got end of input"),
    ("n", "where: expected a comparison operator after 'n' at position 2, got end of input"),
    ("a = 1 b = 2", "where: expected AND, OR or end of input after '1' at position 7, got 'b'"),
    ("(a = 1", "where: expected AND, OR or ')' after '1' at position 7, got end of input"),
    ("a = 1 AND", "where: expected a condition after 'AND' at position 10, got end of input"),
    ("a == 1", "where: expected a value after '=' at position 4, got '='"),
    ("a IN 1", "where: expected '(' after 'IN' at position 6, got '1'"),
    ("a IN (1 2)", "where: expected ',' or ')' after '1' at position 9, got '2'"),
    ("a IN ()", "where: expected a value after '(' at position 7, got ')'"),
    ("a IN (b)", "where: expected a constant at position 7, got 'b'"),
    ("a BETWEEN 1 OR 2", "where: expected AND after '1' at position 13, got 'OR'"),
    ("a IS 1", "where: expected NULL after 'IS' at position 6, got '1'"),
    ("a NOT = 1", "where: expected a comparison operator after 'a' at position 3, got 'NOT'"),
    ("a = 'x", "where: unterminated string starting at position 5"),
    ('"a = 1', "where: unterminated quoted name starting at position 1"),
    ("a ! 1", "where: unexpected character '!' at position 3"),
    ("a = 1abc", "where: malformed number '1abc' at position 5"),
    ("a = 1.2.3", "where: malformed number '1.2.3' at position 5"),
    ('"" = 1', "where: empty quoted name at position 1"),
    ("LENGTH(lang) = 2", "where: functions are not supported, got 'LENGTH(' at position 1"),
    ("a = 1 OR lower (b) = 'x'", "where: functions are not supported, got 'lower(' at position 10"),
    ("(a = 1) = 2", "where: expected a value at position 1, got a condition"),
    ("a = 1 = 2", "where: expected AND, OR or end of input after '1' at position 7, got '='"),
    ("a = 'x' AND 'y'", ("where: expected a comparison operator after 'y' at position 16, "
                         "got end of input")),
    ("a LIKE b", "where: expected a constant at position 8, got 'b'"),
    ("a % 2 = 0", "where: unexpected character '%' at position 3"),
    ("a = 1 AND AND", "where: expected a condition after 'AND' at position 11, got 'AND'"),
])
def test_syntax_error_messages(expr, message):
    with pytest.raises(FilterSyntaxError) as info:
        compile_where(expr)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_nesting_is_limited():
    ok = "(" * (MAX_DEPTH - 1) + "a = 1" + ")" * (MAX_DEPTH - 1)
    assert compile_where(ok).matches(1, {"a": 1})
    for deep in ["(" * 10_000 + "a = 1" + ")" * 10_000, "NOT " * 10_000 + "a = 1",
                 "a = " + "-" * 10_000 + "1", "(" * 100_000]:
        with pytest.raises(FilterSyntaxError, match="nested deeper than 64 levels"):
            compile_where(deep)
    # Long but flat expressions are fine: AND/OR and arithmetic chains are n-ary.
    flat = " AND ".join(f"a{i} IS NULL" for i in range(3000))
    assert compile_where(flat).matches(1, {})
    chain = "a" + " + 1" * 3000 + " = 3000"
    assert compile_where(chain).mask(table([{"a": 0}, {"a": 1}])).tolist() == [True, False]


def test_non_string_expression():
    with pytest.raises(FilterSyntaxError):
        compile_where(None)  # type: ignore[arg-type]
    with pytest.raises(FilterSyntaxError):
        compile_where(["a = 1"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Parser fuzzing: a Filter or one of our two errors, never anything else, never slow.

TOKENS = ["a", "b.c", '"x y"', "id", "=", "!=", "<>", "<", "<=", ">", ">=", "(", ")", ",",
          "+", "-", "*", "/", "AND", "or", "Not", "IN", "BETWEEN", "LIKE", "IS", "NULL",
          "CONTAINS", "TRUE", "false", "DATE", "TIMESTAMP", "'2026-06-02'", "'x''y'", "'%a_'",
          "1", "-2.5", "1e3", ".5", "'", '"', "!", "%", "==", "1a", "'2026-13-99'", "  "]
FUZZ_COLS = table([{"a": 1, "b.c": "x", "x y": [1, "x"]}, {"a": "s"}, {}], ids=[1, 2, 3])


def exercise(text):
    start = time.perf_counter()
    try:
        f = compile_where(text)
    except FILTER_ERRORS:
        pass
    else:
        assert isinstance(f, Filter)
        try:
            mask = f.mask(FUZZ_COLS)
            assert mask.shape == (3,)
        except FilterTypeError:
            pass
        for row in ({"a": 1}, {"a": "s", "x y": ["x"]}, {}):
            try:
                f.matches(1, row)
            except FilterTypeError:
                pass
    assert time.perf_counter() - start < 1.0, text


@pytest.mark.timeout(30)
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_random_text(text):
    exercise(text)


@pytest.mark.timeout(30)
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=14))
def test_fuzz_token_soup(tokens):
    exercise(" ".join(tokens))


@pytest.mark.timeout(30)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.lists(st.tuples(st.sampled_from(["delete", "insert", "swap", "dup"]),
                                       st.integers(0, 10_000), st.integers(0, 10_000),
                                       st.sampled_from(TOKENS)), min_size=1, max_size=4))
def test_fuzz_mutated_valid_expressions(node, mutations):
    text = render(node)
    exercise(text)
    for op, i, j, token in mutations:
        i, j = (i % (len(text) + 1)), (j % (len(text) + 1))
        i, j = min(i, j), max(i, j)
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + token + text[i:]
        elif op == "swap":
            text = text[j:] + text[:i]
        else:
            text = text[:j] + text[i:j] + text[j:]
        exercise(text)


@pytest.mark.timeout(30)
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="a%_b\\.*", max_size=12), st.text(alphabet="ab\\.*\n", max_size=300))
def test_fuzz_like_against_dp_reference(pattern, s):
    f = compile_where(f"s LIKE '{pattern}'")
    want = like_dp(s, pattern)
    assert f.matches(1, {"s": s}) == want
    assert f.mask(table([{"s": s}])).tolist() == [want]


@pytest.mark.timeout(10)
def test_like_has_no_catastrophic_backtracking():
    f = compile_where("s LIKE '%a%a%a%a%b'")
    cols = table([{"s": "a" * 200}])
    f.mask(cols)  # build the column outside the timing
    for subject in ["a" * 200, "a" * 20_000]:
        cols = table([{"s": subject}])
        cols.column("s")
        start = time.perf_counter()
        assert not f.matches(1, {"s": subject})
        assert f.mask(cols).tolist() == [False]
        elapsed = time.perf_counter() - start
        assert elapsed < (0.01 if len(subject) == 200 else 0.5), elapsed
    g = compile_where("s LIKE '%a_a%_a_%a%b'")
    start = time.perf_counter()
    assert not g.matches(1, {"s": "a" * 2000})
    assert time.perf_counter() - start < 0.05


# ---------------------------------------------------------------------------------------------
# FieldColumns and Filter plumbing


def test_append_one_row_at_a_time_after_the_columns_are_built():
    cols = FieldColumns()
    cols.reset([], [])
    f = compile_where("lang = 'en' AND n > 1 OR tags CONTAINS 'x'")
    assert f.mask(cols).tolist() == []
    rows = []
    for i in range(50):
        row = {"lang": ["en", "de"][i % 2], "n": i % 5 if i % 7 else i / 2,
               "tags": ["x"] if i % 11 == 0 else "x"}  # a list or a plain string
        if i == 30:
            row = {}
        cols.append([i], [row])
        rows.append(row)
        got = f.mask(cols).tolist()
        assert got == [f.matches(j, r) for j, r in enumerate(rows)]
        assert got == f.mask(table(rows)).tolist()
    assert cols.n == 50


def test_set_replaces_rows_in_place():
    rows = [{"n": i, "s": f"v{i}", "tags": [i]} for i in range(20)]
    cols = table(rows)
    f = compile_where("n >= 10 OR s LIKE 'new%' OR tags CONTAINS 99")
    assert f.mask(cols).sum() == 10
    cols.set([0, 15], [0, 15], [{"n": 1, "s": "new"}, {"n": "str"}])
    assert np.flatnonzero(f.mask(cols)).tolist() == [0] + [i for i in range(10, 20) if i != 15]
    cols.set([3, 3], ["x", "y"], [{"tags": [1]}, {"tags": [99]}])  # the last one wins
    assert f.mask(cols)[3]
    assert compile_where("id = 'y'").mask(cols).tolist() == [i == 3 for i in range(20)]
    cols.set(list(range(20)), list(range(20)), [{"n": 0}] * 20)  # most rows: rebuilt
    assert not f.mask(cols).any()
    with pytest.raises(InvalidArgumentError):
        cols.set([20], [1], [{}])
    with pytest.raises(InvalidArgumentError):
        cols.set([0], [1, 2], [{}, {}])
    with pytest.raises(InvalidArgumentError):
        cols.append([1], [])


def test_names_no_row_has_are_not_cached_and_the_cache_is_bounded():
    cols = table([{"n": i, "d": {"x": i % 3}} for i in range(50)])
    for i in range(200):  # typos, per-user keys: each would have kept an n-long list for good
        assert not compile_where(f"typo_{i} = 1").mask(cols).any()
        assert compile_where(f"\"e.typo_{i}\" IS NULL").mask(cols).all()
    assert not cols._cols
    rows = [{f"k{i}": i} for i in range(200)]
    cols = table(rows)
    for i in range(200):
        assert compile_where(f"k{i} = {i}").mask(cols).tolist() == [j == i for j in range(200)]
    assert len(cols._cols) == FieldColumns.CACHE_SIZE


def test_columns_follow_writes_through_evictions_and_names_that_appear_later():
    rnd = random.Random(5)
    names = [f"f{i}" for i in range(80)] + ["d.x", "late", "id"]
    rows = [{f"f{rnd.randrange(80)}": rnd.randrange(3), "d": {"x": rnd.randrange(3)}}
            for _ in range(40)]
    cols = table(rows)
    for step in range(600):
        row = {f"f{rnd.randrange(80)}": rnd.randrange(3), "d": {"x": rnd.randrange(3)}}
        if step > 300:
            row["late"] = 1  # absent until now: its shared all-NULL column must not linger
        op = rnd.random()
        if op < 0.3:
            cols.append([len(rows)], [row])
            rows.append(row)
        elif op < 0.6:
            p = rnd.randrange(len(rows))
            cols.set([p], [p], [row])
            rows[p] = row
        elif op < 0.7:  # many positions at once: the write log gets trimmed
            cols.set(list(range(len(rows))), list(range(len(rows))), [row] * len(rows))
            rows = [row] * len(rows)
        f = compile_where(f"\"{rnd.choice(names)}\" = 1")
        assert f.mask(cols).tolist() == [f.matches(j, r) for j, r in enumerate(rows)]


def test_reset_replaces_everything():
    cols = table([{"a": 1}, {"a": 2}])
    f = compile_where("a = 1")
    assert f.mask(cols).tolist() == [True, False]
    cols.reset(["x"], [{"a": 1}])
    assert f.mask(cols).tolist() == [True]
    assert cols.n == 1


def test_mask_returns_a_fresh_array():
    cols = table([{"a": None}, {"a": 1}])
    f = compile_where("a IS NULL")
    m = f.mask(cols)
    m[:] = False
    assert f.mask(cols).tolist() == [True, False]


def test_filter_attributes_and_cache():
    f = compile_where("lang = 'en' AND (n > 1 OR \"doc.lang\" IS NULL) AND id != 3")
    assert f.expression == "lang = 'en' AND (n > 1 OR \"doc.lang\" IS NULL) AND id != 3"
    assert f.fields == frozenset({"lang", "n", "doc.lang", "id"})
    assert compile_where(f.expression) is f
    assert compile_where("1 = 1").fields == frozenset()
    assert "lang" in repr(f)


def test_mask_is_vectorised_and_fast():
    rnd = random.Random(1)
    n = 100_000
    rows = [{"lang": rnd.choice(["en", "de", "fr"]), "n": rnd.randint(0, 100),
             "tags": rnd.sample("abcdefgh", 3)} for _ in range(n)]
    cols = table(rows)
    f = compile_where("lang = 'en' AND n > 50 AND tags CONTAINS 'a'")
    f.mask(cols)  # builds the columns
    start = time.perf_counter()
    for _ in range(5):
        m = f.mask(cols)
    per_call = (time.perf_counter() - start) / 5
    assert m.sum() == sum(r["lang"] == "en" and r["n"] > 50 and "a" in r["tags"] for r in rows)
    assert per_call < 0.1, per_call  # a few ms in practice; generous for slow CI machines
