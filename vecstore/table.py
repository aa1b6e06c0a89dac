"""The in-memory mirror of a collection: rows by position, and one vector space per field.

Rebuilt from LMDB on open, then kept in step by the collection after every commit. A
*position* is a row's place in storage order (0..n-1, stable until ``compact()``); a *label* is
its internal u64 key in LMDB and in the derived indexes (never reused).

Exact search lives here, what the FLAT mode is: a numpy matrix product over a contiguous
float32 matrix picks the candidates, and float64 scores from the vectors themselves rank them.

The matrix holds the vectors as written, for every metric: a cosine field scores the unit
vectors of its rows (:func:`~vecstore.validation.unit_rows`), estimated by scaling the products
with each row's 1/|x| and computed exactly from the normalised candidates, and its ANN index
is built from and fed with unit vectors (:meth:`VectorSpace.for_index`). One copy in memory,
reads return what was written, and a field re-targeted to another metric and back scores as
before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .indexes.base import IndexMode, VectorIndex, higher_is_better
from .validation import row_norms, unit_rows

_GROW = 1.5
_SCORE_BUDGET = 16 << 20  # float32 scores per block of an exact batch search (64 MB)
_U = 2.0 ** -24  # the unit roundoff of float32
_DIRECT_ROWS = 1024  # rows per chunk of exact float64 scoring
_NONE = np.empty(0, dtype=np.int64)  # an unused part of the label -> position map
# |x|² of the rows whose cosine term is 1/sqrt of their float32 |x|² (see _row_terms): |x| in
# [2**-60, 2**60]; other rows' norms are measured in float64, and bounded in [2**-100, 2**125]
_COS_SQ_MIN, _COS_SQ_MAX = np.float32(2.0 ** -120), np.float32(2.0 ** 120)
_COS_NORM_MIN, _COS_NORM_MAX = 2.0 ** -100, 2.0 ** 125


def _dense_fits(span: int, rows: int) -> bool:
    """Whether a dense label -> position table over ``span`` labels suits ``rows`` rows: at most
    4 labels a row (32 B a row against 16 for the sorted form, and one gather per lookup)."""
    return span <= 4 * rows + 4096


def _base_for(lo: int, hi: int, rows: int) -> int:
    """The first label of a dense table over ``[lo, hi]``: 0 while a table from 0 fits, since
    subtracting a base costs ~0.5 µs a search (numpy's call overhead), else ``lo``."""
    return 0 if _dense_fits(hi + 1, rows) else lo


def _error_factor(dim: int) -> float:
    """``c`` of the bounds on the float32 error of an estimated score (see :func:`_estimate`).

    Any float32 dot product of length ``dim``, summed in any order (BLAS blocks, FMA), is off by
    at most γ·Σ|x_j·q_j| ≤ γ·|x|·|q|, with γ = dim·u / (1 - dim·u) (Higham, *Accuracy and
    Stability of Numerical Algorithms*, §3.1). l2's expansion |x|² - 2x·q + |q|² has three such
    products and two more roundings: at most (2γ + u·(1 + γ)·(5 + 2u))·(|x|² + |q|²); ``c`` rounds
    that up to (2γ + 8u) and divides by 1 - γ because |x|² and |q|² are themselves known only
    as float32 estimates. The same ``c`` is more than ip and cosine need.
    """
    g = dim * _U / (1 - dim * _U)
    return (2 * g + 8 * _U) / (1 - g)


_OVERFLOW_EXPECTED = np.errstate(over="ignore", invalid="ignore")


def _row_terms(metric: str, rows: np.ndarray) -> np.ndarray:
    """The per-row term of :func:`_estimate`: |x|² (float32), or for cosine 1/|x|. A row whose
    float32 |x|² under- or overflows (|x| outside [2**-60, 2**60]) has its norm measured in
    float64 (:func:`~vecstore.validation.row_norms`) instead: with it, the estimate is bounded for
    any |x| in [2**-100, 2**125] (see :func:`_estimate`). Beyond that the float32 product x·q could
    overflow or lose to underflow more than the bound allows: NaN, and a NaN estimate always has
    the row scored exactly. (Before, every row outside [2**-60, 2**60] was NaN, and a collection
    of them re-scored every row on every query, 17-40x slower.)"""
    sq = np.einsum("ij,ij->i", rows, rows)
    if metric != "cosine":
        return sq
    with np.errstate(divide="ignore", over="ignore"):
        terms = np.float32(1) / np.sqrt(sq)
    odd = np.flatnonzero(~((sq >= _COS_SQ_MIN) & (sq <= _COS_SQ_MAX)))
    if len(odd):
        norms = row_norms(rows[odd]).astype(np.float64)
        with np.errstate(divide="ignore"):
            terms[odd] = np.where((norms >= _COS_NORM_MIN) & (norms <= _COS_NORM_MAX), 1 / norms, np.nan)
    return terms


def _estimate(metric: str, queries: np.ndarray, matrix: np.ndarray,
              sq: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None, np.ndarray]:
    """BLAS's float32 scores of every row for every query, as keys (lower is better), and bounds
    on their error: ``(key (m, n), a, w, b)`` with ``|key[i, j] - exact| <= a·w[j] + b[i]``;
    ``sq`` holds the rows' :func:`_row_terms`.

    l2 bounds each row by its own norm (``w`` = the rows' |x|², ``sq``), so that one row far
    from the rest does not widen every row's bound; for ip ``w`` is None and ``b`` alone bounds
    every row, from the largest norm. ``b`` also holds ``dim·2**-146``, more than any underflow
    to float32's subnormals can lose.

    Cosine scales the product with each row's 1/|x| (``sq``) towards the exact ``1 - u·q`` of the
    row's unit vector ``u`` (what :func:`_direct` scores). Against that, the product is off by
    γ·|x|·|q| and its underflow, 1/|x| by γ/2 + 2u relative, ``u`` itself by γ/2 + 3u, and
    ``1 - x`` rounds by 2u: all within ``2c·|q| + 2u`` (``c`` >= 2γ + 8u), with dim·2**-48 for
    the underflow (at most dim·2**-149 in the product, and 2**-150 in its scaling, times 1/|x| <=
    2**100). The product cannot overflow: |x| <= 2**125 and the queries are unit vectors.
    """
    dim = queries.shape[1]
    c = _error_factor(dim)
    qn = np.einsum("ij,ij->i", queries, queries)
    key = queries @ matrix.T
    tiny = dim * 2.0 ** -146
    if metric == "l2":
        key *= -2.0
        key += sq[None, :]
        key += qn[:, None]
        return key, c, sq, c * qn.astype(np.float64) + tiny
    if metric == "cosine":
        with np.errstate(invalid="ignore", over="ignore"):  # NaN rows (see _row_terms) stay NaN
            key *= sq[None, :]
        np.subtract(1.0, key, out=key)
        return key, 0.0, None, 2 * c * np.sqrt(qn.astype(np.float64)) + 2 * _U + dim * 2.0 ** -48
    with np.errstate(invalid="ignore"):  # a norm that overflowed float32 (inf) times a zero query
        b = c * np.sqrt(float(sq.max()) * qn.astype(np.float64))
    b = np.where(qn > 0, b, 0.0) + tiny  # a zero query scores every row exactly 0
    np.negative(key, out=key)
    return key, 0.0, None, b


def _maybe_within(key: np.ndarray, a: float, w: np.ndarray | None, b: np.ndarray,
                  limit: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Flat indices into ``key`` (bounded as :func:`_estimate` returns it) of every entry whose
    exact value may be ``<= limit`` of its row, i.e. ``key - (a·w + b) <= limit``; ``mag`` bounds
    the magnitudes ``limit`` was computed from (their float64 rounding is allowed for).

    With a per-row bound the test is ``key - 2a·w <= limit + 2b`` in float64: twice the bound,
    the second half a margin far above the rounding of the test. One float32 comparison with the
    largest bound, the limit rounded up, first screens out all but a few entries. NaN (overflow)
    and non-finite limits let entries through: more to score exactly, never a row lost.
    """
    slack = b if w is None else 2 * b
    limit = limit + slack + 2.0 ** -48 * (mag + slack)
    wide = limit if w is None else limit + 2 * a * float(w.max())
    out = key > np.nextafter(wide.astype(np.float32), np.float32(np.inf))[:, None]
    np.logical_not(out, out=out)
    flat = np.flatnonzero(out)
    if w is not None and len(flat) > 4 * len(key) + 64:  # else re-scoring them costs less than this test
        rows, cols = np.divmod(flat, key.shape[1])
        flat = flat[~(key[rows, cols] - 2 * a * w[cols].astype(np.float64) > limit[rows])]
    return flat


def _direct(metric: str, queries: np.ndarray, which: np.ndarray, matrix: np.ndarray,
            pos: np.ndarray) -> np.ndarray:
    """Exact scores (float64) of ``matrix[pos[i]]`` against ``queries[which[i]]``, from the vectors
    themselves (l2 by direct differences: no cancellation). Identical vectors score identically
    wherever they are stored, which BLAS's float32 scores do not promise (their rounding depends
    on the position). In chunks whose float64 copies stay in cache: 4x faster when every row of
    a large collection has to be scored this way. Cosine scores the rows' unit vectors."""
    q64 = queries.astype(np.float64)
    out = np.empty(len(pos))
    for i in range(0, len(pos), _DIRECT_ROWS):
        rows = matrix[pos[i:i + _DIRECT_ROWS]]
        x = (unit_rows(rows) if metric == "cosine" else rows).astype(np.float64)
        w = which[i:i + _DIRECT_ROWS]
        q = q64[w[0]] if w[0] == w[-1] else q64[w]  # ``which`` is sorted: often one query
        if metric == "l2":
            x -= q
            np.multiply(x, x, out=x)
        else:
            np.multiply(x, q, out=x)
        out[i:i + _DIRECT_ROWS] = x.sum(axis=1)
    return 1.0 - out if metric == "cosine" else out


class VectorSpace:
    """The vectors of one field (``default`` or a named one), keyed by label.

    ``live`` says which positions may be returned (the row exists, is not soft-deleted, and has
    a vector in this field). The optional ``index`` is a derived ANN index over the live vectors.
    """

    def __init__(self, name: str, dim: int, metric: str) -> None:
        self.name = name
        self.dim = dim
        self.metric = metric
        self.n = 0
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.labels = np.empty(16, dtype=np.uint64)
        self.live = np.zeros(16, dtype=bool)
        # each row's term of exact search's estimates (_row_terms): |x|², l2's expansion and the
        # error bound of ip; 1/|x| for cosine
        self.terms = np.empty(16, dtype=np.float32)
        # label -> position (-1: none), see _map_labels. Dense (``_base >= 0``):
        # ``_lut[label - _base]``, so the per-hit mapping of a search is one numpy take. Sorted
        # (``_base == -1``): the labels sorted (``_keys``) and their positions (``_vals``).
        self._base = 0
        self._lut = np.full(16, -1, dtype=np.int64)
        self._keys = self._vals = _NONE
        self._range: tuple[int, int] | None = None  # smallest and largest label here (None: none)
        self.n_live = 0
        self._dead: np.ndarray | None = None  # cached positions of non-live rows
        # values derived from which rows are live (the collection's max_id), dropped with _dead
        self.memo: dict[str, Any] = {}
        self.index: VectorIndex | None = None
        self.mode: IndexMode | None = None     # None: no index built (exact search)
        self.saved_version = -1                # the collection version of the index files on disk (-1: none)

    # -- mutation (called by the collection after the LMDB commit) ---------------------------
    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self.labels):
            return
        cap = max(need, int(len(self.labels) * _GROW) + 16)
        m = np.empty((cap, self.dim), dtype=np.float32)
        m[: self.n] = self.matrix[: self.n]
        # Assign, never resize in place: a search in another thread keeps its old arrays.
        self.matrix = m
        self.labels = np.concatenate([self.labels[: self.n], np.empty(cap - self.n, np.uint64)])
        self.live = np.concatenate([self.live[: self.n], np.zeros(cap - self.n, bool)])
        self.terms = np.concatenate([self.terms[: self.n], np.empty(cap - self.n, np.float32)])

    def set_dim(self, dim: int) -> None:
        """Fix the dimension of a space created with ``dim=0`` (unknown), before its first vectors.

        >>> space = VectorSpace("default", 0, "ip"); space.set_dim(3); space.matrix.shape[1]
        3
        """
        assert self.n == 0 and self.index is None, "only an empty space without an index takes a dim"
        self.dim = dim
        # Assigned, not resized: a search in another thread keeps its old (empty) matrix.
        self.matrix = np.empty((len(self.labels), dim), dtype=np.float32)

    def fill(self, labels: np.ndarray, matrix: np.ndarray, live: np.ndarray) -> None:
        """Load an empty space on open: adopt ``matrix`` (C-contiguous float32, no copy) and its
        ``labels`` (unique) and ``live`` flags. The bulk form of :meth:`put`, which at a million
        rows spent seconds copying the matrix twice."""
        assert self.n == 0 and matrix.flags.c_contiguous and matrix.dtype == np.float32
        n = len(labels)
        self.matrix, self.labels, self.live = matrix, labels.astype(np.uint64), live.astype(bool)
        self.n, self.n_live = n, int(np.count_nonzero(self.live))
        self._map_labels()
        self.terms = _row_terms(self.metric, matrix)
        self._dead, self.memo = None, {}

    def put(self, labels: np.ndarray, vectors: np.ndarray, live: np.ndarray | bool = True) -> None:
        """Insert or replace vectors; new labels go to the end in the given order."""
        labels = np.asarray(labels, dtype=np.uint64)
        live_arr = np.broadcast_to(np.asarray(live, dtype=bool), labels.shape)
        pos = self.lookup(labels)
        new = pos < 0
        n_new = int(new.sum())
        if n_new:
            self._reserve(n_new)
            start = self.n
            new_pos = np.arange(start, start + n_new)
            pos[new] = new_pos
            self.labels[start:start + n_new] = labels[new]
            self.live[start:start + n_new] = False
            self.n += n_new
            self._map_new(labels[new].astype(np.int64), new_pos)
        stored = np.asarray(vectors, dtype=np.float32)  # the rows as stored: the error bounds are about them
        self.matrix[pos] = stored
        self.terms[pos] = _row_terms(self.metric, stored)
        self.set_live(pos, live_arr)

    # -- label -> position -------------------------------------------------------------------
    # Labels are a counter that is never reused, so a dense table indexed by the label itself grows
    # with every row ever written: after a rolling window of adds, deletes and compact()s, 20k rows
    # held labels near 10M and the table took 80 MB per field. The table covers only the span of
    # the labels held; when even that span is far wider than the rows (an old row kept beside
    # recent ones), sorted arrays and searchsorted take its place (16 B a row, ~1 µs a search).

    def _map_labels(self) -> None:
        """Build the map from ``labels[:n]``, dense when the span fits, else sorted."""
        n = self.n
        lab = self.labels[:n].astype(np.int64)
        self._keys = self._vals = _NONE
        if n == 0:
            self._base, self._lut, self._range = 0, np.full(16, -1, dtype=np.int64), None
            return
        lo, hi = int(lab.min()), int(lab.max())
        self._range = (lo, hi)
        if _dense_fits(hi - lo + 1, n):
            base = _base_for(lo, hi, n)
            lut = np.full(hi - base + 1, -1, dtype=np.int64)
            lut[lab - base] = np.arange(n)
            self._base, self._lut = base, lut
        else:
            order = np.argsort(lab, kind="stable")  # timsort: linear on the usual sorted labels
            self._base, self._lut, self._keys, self._vals = -1, _NONE, lab[order], order

    def _map_new(self, lab: np.ndarray, pos: np.ndarray) -> None:
        """Map new labels ``lab`` (int64, none mapped yet) to ``pos``; ``n`` already counts them."""
        had = self._range
        lo, hi = int(lab.min()), int(lab.max())
        if had is not None:
            lo, hi = min(lo, had[0]), max(hi, had[1])
        self._range = (lo, hi)
        lut, base = self._lut, self._base
        fits = _dense_fits(hi - lo + 1, self.n)
        if base < 0 and not fits and lab[0] > self._keys[-1] and (len(lab) == 1 or bool((lab[1:] > lab[:-1]).all())):
            self._append_sorted(lab, pos)  # the usual write: labels above every other, in order
            return
        if base < 0 or not fits:
            self._map_labels()
            return
        if had is None or lo < base or hi >= base + len(lut):
            # grow: room above for the next writes (labels only grow), none below
            new_base = _base_for(lo, hi, self.n)
            size = max(hi - new_base + 1, int((base + len(lut) - new_base) * _GROW) + 16)
            grown = np.full(size, -1, dtype=np.int64)
            if had is not None:  # every mapped label is in [had[0], had[1]]: copy that part
                grown[had[0] - new_base:had[1] - new_base + 1] = lut[had[0] - base:had[1] - base + 1]
            self._base, self._lut = new_base, grown  # assigned: a search in another thread keeps its table
            lut, base = grown, new_base
        lut[lab - base] = pos

    def _append_sorted(self, lab: np.ndarray, pos: np.ndarray) -> None:
        """Append labels above every mapped one to the sorted form, in spare room of its buffers
        (the views are assigned, never resized in place: a search in another thread keeps them)."""
        keys, vals = self._keys, self._vals
        m, j = len(keys), len(lab)
        kbuf, vbuf = keys.base, vals.base
        if kbuf is None or vbuf is None or m + j > min(len(kbuf), len(vbuf)):
            cap = max(m + j, int(m * _GROW) + 16)
            kbuf, vbuf = np.empty(cap, np.int64), np.empty(cap, np.int64)
            kbuf[:m], vbuf[:m] = keys, vals
        kbuf[m:m + j], vbuf[m:m + j] = lab, pos
        self._keys, self._vals = kbuf[:m + j], vbuf[:m + j]

    def set_live(self, pos: np.ndarray, live: np.ndarray | bool) -> None:
        pos = np.asarray(pos, dtype=np.int64)
        before = int(self.live[pos].sum())
        self.live[pos] = live
        self.n_live += int(self.live[pos].sum()) - before
        self._dead, self.memo = None, {}

    def lookup(self, labels: Any) -> np.ndarray:
        """The position of each label here; -1 for a label without a vector here. Labels are a
        counter, below 2**63: a uint64 label beyond that may be taken as a negative index.

        >>> space = VectorSpace("v", 1, "l2"); space.put(np.array([7, 9], np.uint64), np.ones((2, 1)))
        >>> space.lookup([9, 7, 8, 6, 10, -1]).tolist()
        [1, 0, -1, -1, -1, -1]
        """
        base = self._base
        if base >= 0 and isinstance(labels, np.ndarray) and labels.dtype == np.uint64 and labels.ndim == 1:
            # the usual case (labels from an index): one checked gather
            if not base:
                try:
                    return self._lut[labels]
                except IndexError:
                    pass
            else:  # a label below the base wraps around to a huge one (numpy would take it as
                shifted = labels - np.uint64(base)  # negative, from the end, if it were gathered)
                if len(shifted) and shifted.max() < len(self._lut):
                    return self._lut[shifted]
        lab = np.asarray(labels, dtype=np.int64).ravel()
        if base >= 0:
            lut = self._lut
            at = lab - base if base else lab
            if len(at) and 0 <= at.min() and at.max() < len(lut):  # the usual case: one gather
                return lut[at]
            out = np.full(len(lab), -1, dtype=np.int64)
            known = np.flatnonzero((at >= 0) & (at < len(lut)))
            out[known] = lut[at[known]]
            return out
        keys = self._keys
        i = np.searchsorted(keys, lab)
        i[i == len(keys)] = 0
        return np.where(keys[i] == lab, self._vals[i], -1)

    def positions(self, labels: Any) -> np.ndarray:
        """Positions of labels that have a vector here (others dropped)."""
        pos = self.lookup(labels)
        return pos[pos >= 0]

    def live_at(self, pos: np.ndarray) -> np.ndarray:
        """For each position of :meth:`lookup` (-1: none), whether it holds a live vector."""
        known = pos >= 0
        if known.all():
            return self.live[pos]
        out = np.zeros(len(pos), dtype=bool)
        out[known] = self.live[pos[known]]
        return out

    def index_positions(self, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One row of an index result (labels padded with -1) as ``(positions, scores)``. Every
        label an index returns was put here, so the table lookup needs no other check."""
        if len(labels) and labels[-1] < 0:
            keep = labels >= 0
            labels, scores = labels[keep], scores[keep]
        base = self._base
        if not base:
            return self._lut[labels], scores
        if base > 0:
            return self._lut[labels - base], scores
        return self._vals[np.searchsorted(self._keys, labels)], scores

    def dead_positions(self) -> np.ndarray:
        if self._dead is None:
            self._dead = np.flatnonzero(~self.live[: self.n])
        return self._dead

    # -- exact search --------------------------------------------------------------------------
    def exact_search(self, queries: np.ndarray, k: int,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN over live vectors (or over the live positions in ``allowed``).

        Returns ``(positions int64 (m, k'), scores float32 (m, k'))``, ``k' = min(k, candidates)``.
        Queries are scored in blocks so the score matrix stays under ~64 MB (a batch of a
        thousand queries against a million rows would otherwise need 4 GB).
        """
        if k == 0:  # no hits asked for (LynseDB answers an empty result): nothing to score
            return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
        rows = self.n if allowed is None else len(allowed)
        block = max(1, _SCORE_BUDGET // max(rows, 1))
        if len(queries) > block:
            parts = [self._exact_block(queries[i:i + block], k, allowed) for i in range(0, len(queries), block)]
            return np.vstack([p for p, _ in parts]), np.vstack([s for _, s in parts])
        return self._exact_block(queries, k, allowed)

    # Vectors near float32's limits overflow the estimates to inf (and inf - inf to NaN): the
    # error bounds and the float64 re-score are made for that, so numpy's warnings would only
    # reach the user's console for a correct answer.
    @_OVERFLOW_EXPECTED
    def _exact_block(self, queries: np.ndarray, k: int,
                     allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """BLAS's float32 scores pick the candidates, float64 direct scores rank them: see
        :func:`_estimate` and :func:`_maybe_within`. Only rows whose estimate is within twice its
        error bound of the k-th best can be among the k nearest; on ordinary data that is about
        k rows, on data with a large common offset (where l2's expansion cancels) it is more,
        all scored exactly. Ties keep storage order."""
        n = self.n
        if allowed is not None and len(allowed) * 4 > n:
            # A broad filter: scoring every row and masking the rest beats gathering the
            # allowed rows into a new matrix (a copy of most of it).
            ok = np.zeros(n, dtype=bool)  # the columns that may be returned
            ok[allowed] = True
            dead = np.flatnonzero(~ok)
            allowed = None
        else:
            ok, dead = self.live[:n], self.dead_positions()
        if allowed is None:
            cand = None
            matrix, sq = self.matrix[:n], self.terms[:n]
            n_cand = n - len(dead)
        else:
            cand, ok, dead = allowed, None, None
            matrix, sq = self.matrix[cand], self.terms[cand]
            n_cand = len(cand)
        m = queries.shape[0]
        kk = min(k, n_cand)
        if kk <= 0:
            return np.empty((m, 0), np.int64), np.empty((m, 0), np.float32)
        key, a, w, b = _estimate(self.metric, queries, matrix, sq)
        if dead is not None and len(dead):
            key[:, dead] = np.inf
        # The kk best estimates bound the kk-th exact score from above: T = max(key + bound).
        best = np.argpartition(key, kk - 1, axis=1)[:, :kk]
        kb = key[np.arange(m)[:, None], best].astype(np.float64)
        eb = b[:, None] if w is None else a * w[best] + b[:, None]
        flat = _maybe_within(key, a, w, b, (kb + eb).max(axis=1), (np.abs(kb) + eb).max(axis=1))
        rows, cols = np.divmod(flat, key.shape[1])
        if ok is not None:
            live = ok[cols]
            rows, cols = rows[live], cols[live]
        pos = cols if cand is None else cand[cols]
        exact = _direct(self.metric, queries, rows, self.matrix, pos)
        key = -exact if higher_is_better(self.metric) else exact
        counts = np.bincount(rows, minlength=m)
        if len(rows) > 4 * m * kk:
            # Many candidates (data far from the origin): keep those up to each query's kk-th
            # exact score, ties included, before the sort; a partition per query is linear.
            ends = np.cumsum(counts)
            kth = np.array([np.partition(key[e - c:e], kk - 1)[kk - 1] for e, c in zip(ends, counts)])
            near = key <= kth[rows]
            rows, pos, key, exact = rows[near], pos[near], key[near], exact[near]
            counts = np.bincount(rows, minlength=m)
        # Best first, ties in storage order; every query has at least kk candidates (its kk
        # best estimates among them), so its first kk are its answer.
        order = np.lexsort((pos, key, rows))
        take = order[None, :kk] if m == 1 else order[(np.cumsum(counts) - counts)[:, None] + np.arange(kk)]
        return pos[take], exact[take].astype(np.float32)  # beyond float32's range: inf, ranked already

    @_OVERFLOW_EXPECTED
    def range_scores(self, query: np.ndarray, allowed: np.ndarray | None = None,
                     threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the live candidates for one query: ``(positions, float64 scores)``,
        unsorted. The scores stay float64 so that a comparison with a threshold is exact too.

        With ``threshold`` (score >= threshold for ip, <= otherwise), only the rows within it:
        BLAS's estimates rule out the rows certainly beyond it, as in :meth:`exact_search`, and
        only the others are scored exactly. Without it every candidate is scored exactly.
        """
        n = self.n
        cand = np.flatnonzero(self.live[:n]) if allowed is None else allowed
        if not len(cand):  # also: no dim yet, where (0, 0) @ query would not even multiply
            return cand, np.empty(0)
        higher = higher_is_better(self.metric)
        if threshold is not None:
            q = query[None, :]
            if allowed is None:  # score every row rather than copy the live ones out
                key, a, w, b = _estimate(self.metric, q, self.matrix[:n], self.terms[:n])
            else:
                key, a, w, b = _estimate(self.metric, q, self.matrix[cand], self.terms[cand])
            limit = np.array([-threshold if higher else threshold])
            cols = _maybe_within(key, a, w, b, limit, np.abs(limit))
            cand = cols[self.live[cols]] if allowed is None else cand[cols]
        s = _direct(self.metric, query[None, :], np.zeros(len(cand), np.intp), self.matrix, cand)
        if threshold is not None:
            keep = s >= threshold if higher else s <= threshold
            cand, s = cand[keep], s[keep]
        return cand, s

    def live_labels(self) -> np.ndarray:
        return self.labels[: self.n][self.live[: self.n]]

    def for_index(self, vectors: np.ndarray) -> np.ndarray:
        """Rows of this field as its ANN index takes them: unit vectors for cosine (hnswlib's
        ``ip`` space and IVF score those), else as they are."""
        return unit_rows(vectors) if self.metric == "cosine" else np.ascontiguousarray(vectors, dtype=np.float32)

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels and vectors (:meth:`for_index`) of the live rows, for an index build. When
        every row is live the vectors of ip and l2 are a view of the mirror, not a copy (1M ×
        128: 512 MB less at the peak); the builds copy what they keep and run under the
        collection's write lock."""
        mask = self.live[: self.n]
        if mask.all():  # for_index of a contiguous float32 slice is the slice itself
            return self.labels[: self.n].copy(), self.for_index(self.matrix[: self.n])
        return self.labels[: self.n][mask], self.for_index(self.matrix[: self.n][mask])
