"""``IvfIndex``: an inverted-file index in numpy (k-means partitions, exact scoring inside them).

Build trains k-means (random initial centres from a sample, a few Lloyd iterations, fixed
seed; all distance work is matrix products) on at most ``train_size`` rows, then assigns every
row to the list of its best centre. A search scores the centres, takes the ``nprobe`` best lists
and scores their members; the best ``k`` (and a few spare) are re-scored exactly (in float64, as
FLAT does). Nothing loops over vectors in Python.

- **Layout.** All lists live in one matrix, list after list, each row carrying its bias in an extra
  column, so scoring a list is one matvec on a slice (see :class:`_Lists`). Lists are stored in
  :func:`scan_order`, which puts near centres next to each other: the lists one query probes are
  mostly neighbours and are scored a few slices at a time, not one numpy call per list.
- **Batches** of at least ``_BATCH_MIN`` queries are grouped by list: each probed list is scored
  against all the queries probing it in one matrix product. Same results as one query at a time,
  bit for bit (tests/test_ivf_layout.py), but for exact ties running past the k + 8 rows
  re-scored: which of them make the cut can differ between the two products (their rounding
  differs), as in any ANN index. Taking every tied row measured ~15 µs a query (20 %).
- **Centres and metrics.** k-means is Euclidean. Rows are assigned, and lists probed, by the
  same rule: nearest centre for ``l2``, largest dot product with the centre for ``ip`` and
  ``cosine`` (rows are unit vectors for cosine, so that is the nearest direction).
- **Updates.** An add after build goes to the list of its best centre (a list without room moves
  to the free end of the matrix; the matrix is re-packed once a third of it is abandoned space).
  Re-adding a label tombstones its old entry; ``remove`` tombstones. A label re-added with the
  vector it has (a fields-only upsert, a restore) keeps its entry, or gets its tombstone back
  while that is still there: no new entry to scan. A list whose tombstones outnumber its live
  entries is compacted on the spot. Tombstones carry an infinite bias, so they never rank.
- **Growth.** With ``n_clusters`` left automatic, an index first trained on few rows is
  retrained from its own vectors once it holds 4× as many (and at least 4096) rows, so adding
  row by row does not leave a handful of huge lists.
- **Overflow.** Rows and queries far from the origin (|x|·|q| beyond ~3.4e38) overflow the
  float32 products: +inf, or NaN where the terms' signs mix. One comparison per query, of |q|²
  against a bound from the largest norm the index holds (:meth:`IvfIndex._safe_limit`), tells
  whether that can happen; only then are the centres ranked in float64 and every row whose value
  overflowed re-scored besides the usual candidates (:func:`_overflow_rank`). Ordinary queries
  pay the comparison and nothing else.
- **Filtered search** restricts scoring to allowed labels and keeps probing further lists, best
  first, until it holds ``3·k`` allowed hits (or every list has been probed); an unfiltered search
  whose ``nprobe`` lists hold fewer than ``k`` live rows probes on the same way.
- **Threads.** Searches share an :class:`~.rwlock.RWLock`; mutation is exclusive; ``build``
  trains without blocking searches and swaps under the exclusive side.

``visited`` is exact: the number of list entries scored (tombstones included; not the spare rows
a slice may run across).

>>> import numpy as np
>>> idx = IvfIndex(2, "l2")
>>> idx.build(np.arange(4, dtype=np.uint64), np.array([[0, 0], [1, 0], [0, 1], [5, 5]], np.float32))
>>> labels, scores, visited = idx.search(np.zeros((1, 2), np.float32), 2)
>>> labels.tolist(), scores.tolist()
([[0, 1]], [[0.0, 1.0]])
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CorruptionError, InvalidArgumentError
from ..fileio import fsync_path, sha256_file
from .base import Metric, Progress, VectorIndex
from .hnsw import (
    check_breadth,
    checked_batch,
    check_identity,
    check_int_param,
    check_k,
    check_rows,
    padded,
    read_meta,
    refuse_unknown,
    storage_error,
    verify_file,
    write_meta,
)
from .rwlock import RWLock

__all__ = ["IvfIndex", "default_n_clusters", "default_nprobe", "kmeans", "scan_order"]

_FORMAT = "vecstore-ivf"
# 2: centres stored in scan order (version 1 files are rebuilt); 3: the list rows stored widened
# (vector, bias, zero padding), so a load adopts them without another copy (version 2 still loads)
_FORMAT_VERSION = 3
_RETRAIN_FACTOR = 4
_RETRAIN_MIN = 4096
_CHUNK = 1 << 24  # floats per distance block in k-means (64 MiB)
# A filtered search probes on until it holds this many times k allowed hits: the first k hits
# found are rarely the k best (measured on 20k x 64 clustered: stopping at k gave recall 0.89 at
# 1 % selectivity, stopping at 3k gives >= 0.995 at 0.1-50 %).
_FILTER_HITS = 3
# Candidates re-scored exactly beyond k: the ranking value (a float32 matrix product) rounds
# differently depending on how rows were grouped, so a few spare candidates keep the result the
# same for one query and a batch, and before and after a reload.
_RESCORE_EXTRA = 8
_F32_MAX = np.float32(np.finfo(np.float32).max)
# No partial sum of a ranking value (a float32 product, see _Lists) reaches this bound for a query
# within IvfIndex._safe_qq, so none overflows: float32's maximum is ~2**128, and the factor 4 left
# covers the float32 rounding of every term and of the norms the bound is checked with.
_SAFE_REACH = 2.0 ** 126
# Two probed lists whose regions touch are scored as one slice if the first one's spare rows (bias
# +inf) number at most this: one numpy call costs about as much as scoring ~50 rows of 128 floats.
_GAP_ROWS = 32
# A search of at least _BATCH_MIN queries scores each probed list against all the queries probing
# it at once, in chunks of at most _BATCH_QUERIES queries whose ranking-value matrix should hold
# about _BATCH_FLOATS values (16 MiB). Large chunks matter: a chunk streams most lists from memory
# once; too large a matrix costs page faults.
_BATCH_MIN = 8
_BATCH_QUERIES = 2048
_BATCH_FLOATS = 1 << 22


def default_n_clusters(n: int) -> int:
    """``4·sqrt(n)``, at most ``n / 16`` (lists of ≥ 16 rows), clamped to [1, 65536].

    >>> [default_n_clusters(n) for n in (10, 1_000, 20_000, 100_000, 10_000_000)]
    [1, 62, 566, 1265, 12649]
    """
    return int(max(1, min(round(4 * math.sqrt(max(n, 1))), n // 16, 65536)))


def default_nprobe(n_clusters: int) -> int:
    """Lists probed by default: ``n_clusters / 16``, at least 8 (recall@10 ≥ 0.95 measured on
    clustered 20k×64 and 100k×128 data with the default ``n_clusters``).

    >>> [default_nprobe(c) for c in (1, 62, 566, 1265)]
    [1, 8, 35, 79]
    """
    return int(min(n_clusters, max(8, round(n_clusters / 16))))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _assign(x: np.ndarray, centroids: np.ndarray, by_dot: bool, c_norms: np.ndarray | None = None) -> np.ndarray:
    """Index of the best centre per row (nearest, or largest dot product), in blocks."""
    if c_norms is None:
        c_norms = _sq_norms(centroids)
    out = np.empty(len(x), np.int64)
    step = max(1, _CHUNK // max(1, len(centroids)))
    for s in range(0, len(x), step):
        with np.errstate(over="ignore", invalid="ignore"):  # |x| near float32's limit: inf, not a warning
            dots = x[s:s + step] @ centroids.T
        if by_dot:
            out[s:s + step] = np.argmax(dots, axis=1)
        else:  # ||x||² is constant per row
            with np.errstate(over="ignore", invalid="ignore"):
                out[s:s + step] = np.argmin(c_norms - 2 * dots, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, *, iters: int = 10, seed: int = 0,
           progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Lloyd's k-means from ``k`` distinct random rows; empty clusters are re-seeded from the rows
    farthest from their centre. Returns ``(k, dim)`` float32 centres. ``progress(i)`` is called
    after round ``i`` (1..iters).

    >>> x = np.array([[0, 0], [0, 1], [10, 10], [10, 11]], np.float32)
    >>> sorted(kmeans(x, 2).tolist())
    [[0.0, 0.5], [10.0, 10.5]]
    """
    n = len(x)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(n, k, replace=False)].astype(np.float32, copy=True)
    x_norms = _sq_norms(x)
    for it in range(iters):
        c_norms = _sq_norms(centroids)
        assign = _assign(x, centroids, False, c_norms)
        counts = np.bincount(assign, minlength=k)
        order = np.argsort(assign, kind="stable")
        nonempty = np.flatnonzero(counts)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
        sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
        centroids[nonempty] = (sums / counts[nonempty, None]).astype(np.float32)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            with np.errstate(over="ignore", invalid="ignore"):  # |x| near float32's limit, as in _assign
                d = x_norms - 2 * np.einsum("ij,ij->i", x, centroids[assign]) + c_norms[assign]
            far = np.argsort(d)[::-1][:len(empty)]
            centroids[empty[:len(far)]] = x[far]
        if progress is not None:
            progress(it + 1)
    return centroids


def scan_order(centroids: np.ndarray) -> np.ndarray:
    """A permutation of the centres that puts near centres next to each other (recursive 2-means
    bisection). Lists are stored in this order, so the lists one query probes (its nearest centres)
    are mostly neighbours in memory and are scored by a few large matrix products instead of one
    small product per list (on 100k × 128 clustered data, nprobe 16 probes ~3.3 runs instead of 16).

    >>> c = np.array([[0, 0], [9, 9], [0, 1], [9, 8]], np.float32)
    >>> order = scan_order(c).tolist()
    >>> sorted(order) == [0, 1, 2, 3] and {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({0, 2}), frozenset({1, 3})}
    True
    """
    n = len(centroids)
    c = centroids.astype(np.float32, copy=False)
    out: list[int] = []
    stack = [np.arange(n)]
    while stack:
        idx = stack.pop()
        if len(idx) <= 2:
            out.extend(idx.tolist())
            continue
        sub = c[idx]
        # seeds: the centre farthest from the mean, then the centre farthest from that one
        a = sub[np.argmax(_sq_norms(sub - sub.mean(0)))]
        b = sub[np.argmax(_sq_norms(sub - a))]
        side = np.zeros(len(idx), bool)
        for _ in range(6):
            side = _sq_norms(sub - a) > _sq_norms(sub - b)
            if side.all() or not side.any():
                break
            a, b = sub[~side].mean(0), sub[side].mean(0)
        if side.all() or not side.any():  # identical centres: split by position
            side = np.arange(len(idx)) >= len(idx) // 2
        stack.append(idx[side])
        stack.append(idx[~side])
    return np.asarray(out, np.int64)


def _distinct(labels: np.ndarray) -> bool:
    """No label twice: a bitmap when the labels are dense enough (1M labels: ~10 ms instead of
    np.unique's ~0.7 s sort), np.unique otherwise (a damaged file may hold any u64)."""
    if len(labels) == 0:
        return True
    top = int(labels.max())
    if top < 4 * len(labels) + (1 << 20):
        seen = np.zeros(top + 1, bool)
        seen[labels] = True
        return int(np.count_nonzero(seen)) == len(labels)
    return len(np.unique(labels)) == len(labels)


def _overflow_rank(bias: np.ndarray) -> np.ndarray:
    """The ranking value for rows whose product overflowed float32 (±inf, or NaN where the signs
    of the terms mixed; |x|·|q| > ~3.4e38) or whose l2 bias is clamped (|x|² > ~3.4e38), given
    their bias: +inf (never ranks) for a tombstone or unused row, else -inf. Such a value says
    nothing of where a live row ranks, so it is taken first, and the search re-scores every one
    of them exactly besides its usual candidates (ranked last, as before, a row with x·q = 2e40
    was never among them). The bias, not the product, says which rows are live."""
    return np.where(np.isfinite(bias), np.float32(-np.inf), np.float32(np.inf))


def _width(dim: int) -> int:
    """Row width of the list matrix: the vector, one bias column, zeros up to a multiple of 4
    floats (16-byte rows; 129 columns measured ~8 % slower than 132 in a matvec)."""
    return (dim + 4) // 4 * 4


class _Lists:
    """Every inverted list in one row-major matrix ``x`` of width :func:`_width`: columns
    ``[0, dim)`` hold the vector, column ``dim`` its bias (see :meth:`IvfIndex._bias`; a tombstone
    or an unused row has +inf), the rest zeros. So the ranking value of every row of a slice is one
    matvec with the extended query ``[-2q or -q, 1, 0…]``.

    List ``c`` owns rows ``[start[c], start[c] + cap[c])`` and uses the first ``size[c]``; ``where``
    maps a live label to ``(list, position in the list)``, ``gone`` a removed one to its tombstone
    until the list is compacted (so it can be revived). A build or :meth:`repack` stores the
    lists back to back in list order with no spare rows, so adjacent lists form one slice. A list
    that outgrows its region moves to the free tail with twice the room; the abandoned region is
    garbage, and once garbage is a third of the rows in use everything is re-packed (amortised
    O(1) per appended row). Invariant: a row outside every list's used part has bias +inf, so a scan may run
    across a list's spare rows into the next list's region and the spare rows never rank.

    The per-list numbers are Python lists, not arrays: a search reads a few dozen of them one by
    one, which is several times faster on lists (measured 14 µs → 4 µs per query for 16 lists)."""

    __slots__ = ("cap", "dead", "dim", "garbage", "gone", "join", "labels", "size", "start", "top", "where", "x")

    def __init__(self, dim: int, x: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> None:
        """Packed lists from rows already grouped by list (``counts`` rows per list) and widened."""
        self.dim = dim
        self.x, self.labels = x, labels
        k = len(counts)
        size = np.asarray(counts, np.int64)
        start = np.concatenate(([0], np.cumsum(size)[:-1])).astype(np.int64)
        self.top = int(size.sum())
        self.garbage = 0
        which = np.repeat(np.arange(k), size)
        pos = np.arange(self.top) - np.repeat(start, size)
        live = np.isfinite(x[:self.top, dim])
        self.start, self.size, self.cap = start.tolist(), size.tolist(), size.tolist()
        self.dead = np.bincount(which[~live], minlength=k).tolist()
        self.join: list[bool] = [False] * k
        self._rejoin_all()
        self.where: dict[int, tuple[int, int]] = dict(zip(labels[:self.top][live].tolist(),
                                                          zip(which[live].tolist(), pos[live].tolist())))
        self.gone: dict[int, tuple[int, int]] = {}

    @staticmethod
    def widen(vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
        d = vectors.shape[1]
        out = np.empty((len(vectors), _width(d)), np.float32)  # each byte written once, not zeroed first
        out[:, :d] = vectors
        out[:, d] = bias
        out[:, d + 1:] = 0
        return out

    def _rejoin(self, c: int) -> None:
        """``join[c]``: list ``c + 1``'s region starts where ``c``'s ends and ``c`` has at most
        :data:`_GAP_ROWS` spare rows, so a scan of ``c`` may run on into ``c + 1``."""
        if 0 <= c < len(self.start) - 1:
            self.join[c] = (self.start[c + 1] == self.start[c] + self.cap[c]
                            and self.cap[c] - self.size[c] <= _GAP_ROWS)

    def _rejoin_all(self) -> None:
        for c in range(len(self.start) - 1):
            self._rejoin(c)

    def used_rows(self) -> np.ndarray:
        """Row numbers of every used entry (tombstones included), list by list."""
        size = np.asarray(self.size, np.int64)
        start = np.asarray(self.start, np.int64)
        return np.arange(int(size.sum())) + np.repeat(start - (np.cumsum(size) - size), size)

    def live(self, wide: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels, vectors, counts per list)`` of the live entries, list by list; ``wide``:
        the widened rows (vector, bias, padding) rather than the vectors."""
        rows = self.used_rows()
        alive = np.isfinite(self.x[rows, self.dim])
        which = np.repeat(np.arange(len(self.size)), self.size)[alive]
        rows = rows[alive]
        vectors = self.x[rows] if wide else self.x[rows, :self.dim]
        return self.labels[rows], vectors, np.bincount(which, minlength=len(self.size))

    # -- writes (the caller holds the index's write lock) --------------------------------------

    def _reserve(self, n: int) -> None:
        """Make room for ``n`` rows at the free tail: re-pack when garbage is a third of the rows
        in use, else grow by a quarter."""
        if self.top + n <= len(self.x):
            return
        if 3 * self.garbage >= self.top:
            self.repack(n)
            if self.top + n <= len(self.x):
                return
        rows = max(self.top + n, len(self.x) + len(self.x) // 4 + 64)
        x = np.zeros((rows, self.x.shape[1]), np.float32)
        x[:, self.dim] = np.inf
        x[:self.top] = self.x[:self.top]
        labels = np.zeros(rows, np.uint64)
        labels[:self.top] = self.labels[:self.top]
        self.x, self.labels = x, labels

    def repack(self, extra: int = 0) -> None:
        """Store the lists back to back in list order (tombstones kept: positions do not change),
        with room for ``extra`` rows after them."""
        rows = self.used_rows()
        n = len(rows)
        total = n + extra + (n + extra) // 4 + 64
        x = np.zeros((total, self.x.shape[1]), np.float32)
        x[:, self.dim] = np.inf
        x[:n] = self.x[rows]
        labels = np.zeros(total, np.uint64)
        labels[:n] = self.labels[rows]
        self.x, self.labels = x, labels
        self.start = np.concatenate(([0], np.cumsum(self.size)[:-1])).astype(np.int64).tolist()
        self.cap = list(self.size)
        self.top, self.garbage = n, 0
        self._rejoin_all()

    def append(self, c: int, vecs: np.ndarray, labels: np.ndarray) -> int:
        """Append widened rows to list ``c``; return the position of the first."""
        n = len(vecs)
        if self.size[c] + n > self.cap[c]:
            s, size, cap = self.start[c], self.size[c], self.cap[c]
            if s + cap == self.top and self.top + (size + n - cap) <= len(self.x):
                self.top += size + n - cap     # last region before the free tail: extend in place
                self.cap[c] = size + n
            else:
                new_cap = max(2 * (size + n), 8)
                self._reserve(new_cap)         # may re-pack, which moves every list
                s, size, cap = self.start[c], self.size[c], self.cap[c]
                t = self.top
                self.x[t:t + size] = self.x[s:s + size]
                self.labels[t:t + size] = self.labels[s:s + size]
                self.x[s:s + size, self.dim] = np.inf
                self.start[c], self.cap[c] = t, new_cap
                self.top += new_cap
                self.garbage += cap
        s, pos = self.start[c] + self.size[c], self.size[c]
        self.x[s:s + n] = vecs
        self.labels[s:s + n] = labels
        self.size[c] += n
        self._rejoin(c - 1)
        self._rejoin(c)
        self.where.update(zip(labels.tolist(), ((c, p) for p in range(pos, pos + n))))
        for label in labels.tolist():
            self.gone.pop(label, None)
        return pos

    def keep(self, labels: np.ndarray, vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Which labels hold exactly this vector here already (bit for bit), live or as a
        tombstone still in place; those tombstones are made live again (with ``bias``)."""
        live, gone, start = self.where.get, self.gone.get, self.start
        hits = [live(x) or gone(x) for x in labels.tolist()]
        rows = np.fromiter((-1 if h is None else start[h[0]] + h[1] for h in hits), np.int64, len(hits))
        same = rows >= 0
        if same.any():
            given = vectors[same].astype(np.float32, copy=False)
            same[same] = (self.x[rows[same], :self.dim].view(np.uint32) == given.view(np.uint32)).all(axis=1)
        for i in np.flatnonzero(same).tolist():
            label = int(labels[i])
            if label in self.gone:
                c, p = self.gone.pop(label)
                self.x[rows[i], self.dim] = bias[i]
                self.dead[c] -= 1
                self.where[label] = (c, p)
        return same

    def drop(self, labels: np.ndarray) -> None:
        """Tombstone the entries of these labels; compact a list that is mostly tombstones."""
        touched: set[int] = set()
        pop = self.where.pop
        for label in labels.tolist():
            hit = pop(label, None)
            if hit is None:
                continue
            c, p = hit
            self.x[self.start[c] + p, self.dim] = np.inf
            self.gone[label] = hit
            self.dead[c] += 1
            touched.add(c)
        for c in sorted(touched):
            if self.dead[c] > max(16, self.size[c] - self.dead[c]):
                self._compact(c)

    def _compact(self, c: int) -> None:
        s, size = self.start[c], self.size[c]
        for label in self.labels[s:s + size][np.isinf(self.x[s:s + size, self.dim])].tolist():
            if self.gone.get(label, (-1,))[0] == c:  # its tombstone goes now
                del self.gone[label]
        alive = np.flatnonzero(np.isfinite(self.x[s:s + size, self.dim]))
        n = len(alive)
        self.x[s:s + n] = self.x[s + alive]
        self.labels[s:s + n] = self.labels[s + alive]
        self.x[s + n:s + size, self.dim] = np.inf   # freed rows stay in the region, never ranked
        self.size[c], self.dead[c] = n, 0
        self._rejoin(c)
        self.where.update(zip(self.labels[s:s + n].tolist(), ((c, p) for p in range(n))))

    # -- reads --------------------------------------------------------------------------------

    def runs(self, lists: list[int]) -> tuple[list[int], list[int], int, int]:
        """Row slices ``(starts, ends)`` covering the used rows of ``lists``, in list order: a list
        joined to the previous one (see :meth:`_rejoin`) extends its slice. Also the number of
        entries in those lists and how many of them are live."""
        start, size, dead, join = self.start, self.size, self.dead, self.join
        starts: list[int] = []
        ends: list[int] = []
        visited = live = 0
        prev = -2
        for c in sorted(lists):
            n = size[c]
            visited += n
            live += n - dead[c]
            if c == prev + 1 and join[prev]:
                ends[-1] = start[c] + n
            elif n:
                starts.append(start[c])
                ends.append(start[c] + n)
            else:
                c = -2   # an empty list starts no slice
            prev = c
        return starts, ends, visited, live

    def check(self) -> None:
        """Assert the layout invariants (for tests and post-mortems)."""
        k = len(self.size)
        start, size, cap, dead = (np.asarray(a, np.int64) for a in (self.start, self.size, self.cap, self.dead))
        assert (size >= 0).all() and (size <= cap).all() and (dead >= 0).all() and (dead <= size).all()
        assert (start + cap <= self.top).all() and self.top <= len(self.x)
        owned = np.zeros(self.top, np.int64)
        for c in range(k):
            owned[start[c]:start[c] + cap[c]] += 1
        assert (owned <= 1).all(), "list regions overlap"
        assert self.garbage == self.top - int(cap.sum())
        used = np.zeros(len(self.x), bool)
        used[self.used_rows()] = True
        assert np.isinf(self.x[~used, self.dim]).all(), "an unused row could rank"
        assert (self.x[:, self.dim + 1:] == 0).all()
        for c in range(k):
            s, n = start[c], size[c]
            assert int(np.isinf(self.x[s:s + n, self.dim]).sum()) == dead[c]
            if c < k - 1:
                assert self.join[c] == (start[c + 1] == s + cap[c] and cap[c] - n <= _GAP_ROWS)
        assert len(self.where) == int((size - dead).sum())
        for label, (c, p) in self.where.items():
            assert p < size[c] and self.labels[start[c] + p] == label
            assert np.isfinite(self.x[start[c] + p, self.dim])
        for label, (c, p) in self.gone.items():
            assert label not in self.where and p < size[c] and self.labels[start[c] + p] == label
            assert np.isinf(self.x[start[c] + p, self.dim])




class IvfIndex(VectorIndex):
    """IVF-Flat in numpy. Parameters (all optional, persisted by :attr:`params`):

    - ``n_clusters`` (auto: :func:`default_n_clusters` of the row count at build).
    - ``nprobe`` (auto: :func:`default_nprobe` of the actual ``n_clusters``);
      ``search(breadth=...)`` overrides it per call.
    - ``train_size`` (auto: ``32·n_clusters`` clamped to [10 000, 100 000]): rows k-means trains
      on (a fixed-seed sample). Training on 40k or 81k of 100k rows gave the same recall.
    - ``iters`` (8): Lloyd iterations. ``seed`` (0): sampling and initialisation seed.
    """

    kind = "IVF"

    def __init__(self, dim: int, metric: Metric, **params: Any) -> None:
        super().__init__(dim, metric)
        if metric not in ("ip", "l2", "cosine"):
            raise InvalidArgumentError(f"metric: expected ip, l2 or cosine, got {metric!r}")
        params = dict(params)
        self.n_clusters_param = check_int_param(params, "n_clusters", None, 1, 1 << 20)
        self.nprobe_param = check_int_param(params, "nprobe", None, 1, 1 << 20)
        self.train_size = check_int_param(params, "train_size", None, 1, 1 << 40)
        self.iters = check_int_param(params, "iters", 8, 0, 1000)
        self.seed = check_int_param(params, "seed", 0, 0, (1 << 63) - 1)
        refuse_unknown("IVF", params)
        self._by_dot = metric != "l2"
        self._centroids: np.ndarray | None = None   # (k, dim), in scan order
        self._c_ext: np.ndarray | None = None       # (k, width): [centre, bias, 0…]
        self._lists: _Lists | None = None
        self._trained_n = 0
        self._max_sq = 0.0      # at least the largest |x|² of every row and centre held
        self._safe_qq = 0.0     # queries with |q|² up to this cannot overflow (_safe_limit)
        self._lock = RWLock()
        self._writer = threading.Lock()

    # -- properties ---------------------------------------------------------------------------

    @property
    def params(self) -> dict:
        return {"n_clusters": self.n_clusters_param, "nprobe": self.nprobe_param,
                "train_size": self.train_size, "iters": self.iters, "seed": self.seed}

    @property
    def n_clusters(self) -> int:
        """Number of lists actually in use (0 before any row was added)."""
        return 0 if self._centroids is None else len(self._centroids)

    @property
    def nprobe(self) -> int:
        """Lists probed by default."""
        if self.nprobe_param is not None:
            return self.nprobe_param
        return default_nprobe(max(1, self.n_clusters))

    def __len__(self) -> int:
        return 0 if self._lists is None else len(self._lists.where)

    def __repr__(self) -> str:
        return (f"IvfIndex(dim={self.dim}, metric={self.metric!r}, live={len(self)}, "
                f"n_clusters={self.n_clusters}, nprobe={self.nprobe})")

    def check(self) -> None:
        """Raise ``AssertionError`` if the list layout is inconsistent (for tests and
        post-mortems; takes the write lock)."""
        with self._writer, self._lock.write:
            if self._lists is not None:
                self._lists.check()
                assert len(self._lists.size) == len(self._centroids)

    # -- building -----------------------------------------------------------------------------

    def _bias(self, vecs: np.ndarray) -> np.ndarray:
        # Ranking value r = bias - 2·dot (l2: bias = ||x||², so r + ||q||² = squared distance)
        # or r = bias - dot (ip/cosine: bias = 0). Tombstones get +inf.
        if self._by_dot:
            return np.zeros(len(vecs), np.float32)
        # +inf marks a tombstone: a finite vector whose squared norm overflows float32 (|x| >
        # ~1.8e19) must keep a finite bias, or it would be dropped as deleted
        with np.errstate(over="ignore"):
            return np.minimum(_sq_norms(vecs).astype(np.float32), _F32_MAX)

    def _train(self, vectors: np.ndarray, progress: Progress | None = None) -> tuple[np.ndarray, int]:
        n = len(vectors)
        k = self.n_clusters_param or default_n_clusters(n)
        k = min(k, n)
        limit = self.train_size or min(max(32 * k, 10_000), 100_000)
        sample = vectors
        if n > limit:
            rng = np.random.default_rng(self.seed)
            sample = vectors[np.sort(rng.choice(n, limit, replace=False))]
        step = None if progress is None else (lambda i: progress(i, self.iters + 1))
        centroids = kmeans(sample, k, iters=self.iters, seed=self.seed, progress=step)
        return np.ascontiguousarray(centroids[scan_order(centroids)]), n

    def _fill(self, centroids: np.ndarray, labels: np.ndarray, vectors: np.ndarray) -> _Lists:
        assign = _assign(vectors, centroids, self._by_dot)
        order = np.argsort(assign, kind="stable")
        # grouped by list straight into the widened matrix, a block at a time: no sorted copy
        # of the whole input on the way (1M × 128: 512 MB less at the peak)
        x = np.zeros((len(order), _width(self.dim)), np.float32)
        step = max(1, _CHUNK // x.shape[1])
        for s in range(0, len(order), step):
            block = vectors[order[s:s + step]]
            x[s:s + len(block), :self.dim] = block
            x[s:s + len(block), self.dim] = self._bias(block)
        return _Lists(self.dim, x, labels[order].copy(), np.bincount(assign, minlength=len(centroids)))

    def build(self, labels: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> None:
        """Replace the content: train k-means, fill the lists; searches continue meanwhile.
        ``progress`` counts the k-means rounds, and filling the lists as one more."""
        labels, vectors = checked_batch(labels, vectors, self.dim)
        with self._writer:
            state = self._make(labels, vectors, progress)
            with self._lock.write:
                self._install(*state)
        if progress is not None:
            progress(self.iters + 1, self.iters + 1)

    def _make(self, labels: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> tuple:
        if len(labels) == 0:
            return None, None, 0
        centroids, trained_n = self._train(vectors, progress)
        return centroids, self._fill(centroids, labels, vectors), trained_n

    def _install(self, centroids, lists, trained_n) -> None:
        self._centroids, self._lists, self._trained_n = centroids, lists, trained_n
        self._c_ext = None if centroids is None else _Lists.widen(centroids, self._bias(centroids))
        self._max_sq, self._safe_qq = 0.0, self._safe_limit(0.0)
        if lists is not None:
            self._reach(centroids)
            self._reach(lists.x[:lists.top, :self.dim])

    def _reach(self, vectors: np.ndarray) -> None:
        """Raise the largest squared norm held to cover ``vectors``, and the queries' safe bound
        with it (:meth:`_safe_limit`). It never falls on a removal: the bound stays safe."""
        if len(vectors):
            with np.errstate(over="ignore"):  # inf: no query is safe, the careful path is taken
                self._max_sq = max(self._max_sq, float(np.einsum("ij,ij->i", vectors, vectors).max()))
        self._safe_qq = self._safe_limit(self._max_sq)

    def _safe_limit(self, max_sq: float) -> float:
        """The largest |q|² for which no ranking value against rows and centres of squared norm up
        to ``max_sq`` overflows float32, so a search can skip looking for ±inf and NaN. Every
        partial sum of ``-x·q`` (ip, cosine) is at most |x|·|q| in magnitude, of ``|x|² - 2x·q``
        (l2) at most |x|² + 2|x|·|q|; both must stay under :data:`_SAFE_REACH`. A |q|² that
        overflowed float32 itself is never safe.

        >>> IvfIndex(2, "ip")._safe_limit(2.0 ** 200) == 2.0 ** 52, IvfIndex(2, "l2")._safe_limit(2.0 ** 126)
        (True, -1.0)
        """
        if not self._by_dot and max_sq >= _SAFE_REACH:
            return -1.0
        if max_sq == 0:
            limit = math.inf
        elif self._by_dot:
            limit = _SAFE_REACH ** 2 / max_sq
        else:
            limit = ((_SAFE_REACH - max_sq) / 2) ** 2 / max_sq
        return min(limit, float(_F32_MAX))

    # -- writes -------------------------------------------------------------------------------

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        labels, vectors = checked_batch(labels, vectors, self.dim)
        if len(labels) == 0:
            return
        with self._writer:
            if self._lists is not None:
                # A row re-added with the vector it has here (a fields-only upsert, a restore, a
                # replay) keeps its entry, or has its tombstone revived: appending it again
                # would leave one more tombstone for every search to scan.
                with self._lock.write:
                    changed = ~self._lists.keep(labels, vectors, self._bias(vectors))
                if not changed.all():
                    labels, vectors = labels[changed], vectors[changed]
                    if not len(labels):
                        return
            grown = len(self) + len(labels)
            if self._centroids is None or (
                    grown >= _RETRAIN_MIN and grown > _RETRAIN_FACTOR * self._trained_n
                    and (self.n_clusters_param is None or self.n_clusters < self.n_clusters_param)):
                self._retrain_with(labels, vectors)
                return
            assign = _assign(vectors, self._centroids, self._by_dot)
            wide = _Lists.widen(vectors, self._bias(vectors))
            with self._lock.write:
                self._reach(vectors)
                lists = self._lists
                lists.drop(labels)
                order = np.argsort(assign, kind="stable")
                cuts = np.flatnonzero(np.diff(assign[order])) + 1
                for idx in np.split(order, cuts):
                    lists.append(int(assign[idx[0]]), wide[idx], labels[idx])

    def _retrain_with(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """(Re)train on current live rows plus this batch (the batch wins for repeated labels)."""
        if self._lists is None:
            old_labels, old_vecs = np.empty(0, np.uint64), np.empty((0, self.dim), np.float32)
        else:
            old_labels, old_vecs, _ = self._lists.live()
        keep = ~np.isin(old_labels, labels)
        all_labels = np.concatenate([old_labels[keep], labels])
        all_vecs = np.concatenate([old_vecs[keep], vectors])
        state = self._make(all_labels, all_vecs)
        with self._lock.write:
            self._install(*state)

    def remove(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels).astype(np.uint64, copy=False).ravel()
        if len(labels) == 0:
            return
        with self._writer, self._lock.write:
            if self._lists is not None:
                self._lists.drop(labels)

    # -- search -------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, *, breadth: int | None = None,
               allowed: np.ndarray | None = None, defer_filter: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        check_rows(queries, self.dim, "queries")
        k = check_k(k)
        nprobe = check_breadth(breadth, "nprobe")
        m = len(queries)
        out_labels, out_scores = padded(m, k, self.metric)
        if allowed is not None:
            allowed = np.asarray(allowed).astype(np.uint64, copy=False)
            if len(allowed) == 0:
                return out_labels, out_scores, 0
        visited = 0
        # errstate: a tombstone's +inf bias times the query's 1 is +inf, but BLAS kernels also
        # multiply it by the zero padding of partial tiles and raise "invalid value" (the NaN lands
        # in discarded lanes); a live row's product may overflow (see _overflow_rank)
        with self._lock.read, np.errstate(invalid="ignore", over="ignore"):
            lists = self._lists
            if lists is None or not lists.where or m == 0:
                return out_labels, out_scores, 0
            n_lists = len(self._centroids)
            nprobe = min(nprobe or self.nprobe, n_lists)
            # extended queries: one matvec gives bias - 2·x·q (l2) or bias - x·q for a row of x
            # and for a centre alike
            qx = np.zeros((m, lists.x.shape[1]), np.float32)
            np.multiply(queries, np.float32(-1.0 if self._by_dot else -2.0), out=qx[:, :self.dim])
            qx[:, self.dim] = 1.0
            # one comparison per query (index-wide bound, _safe_limit) tells whether any of its
            # float32 ranking values may overflow: on ordinary data none may, and nothing else
            # is done for them
            if m == 1:
                if np.vdot(queries, queries) <= self._safe_qq:  # the hot path: straight on
                    rank = self._c_ext @ qx[0]  # a matvec: measured ~20 % faster than (1, w) @ (w, k)
                    return out_labels, out_scores, self._search_one(lists, queries[0], qx[0], rank, nprobe, k,
                                                                    allowed, out_labels[0], out_scores[0])
                safe = np.zeros(1, bool)
            else:
                rank = qx @ self._c_ext.T
                safe = np.einsum("ij,ij->i", queries, queries) <= self._safe_qq
                if safe.all():
                    return out_labels, out_scores, self._search_safe(lists, queries, qx, rank, nprobe, k, allowed,
                                                                     out_labels, out_scores)
            ok = np.flatnonzero(safe)
            if len(ok):
                labels_, scores_ = out_labels[ok], out_scores[ok]
                visited = self._search_safe(lists, queries[ok], qx[ok], rank[ok], nprobe, k, allowed,
                                            labels_, scores_)
                out_labels[ok], out_scores[ok] = labels_, scores_
            for i in np.flatnonzero(~safe).tolist():
                visited += self._search_one(lists, queries[i], qx[i], self._exact_rank(queries[i]), nprobe, k,
                                            allowed, out_labels[i], out_scores[i], careful=True)
        return out_labels, out_scores, visited

    def _search_safe(self, lists: _Lists, queries: np.ndarray, qx: np.ndarray, rank: np.ndarray, nprobe: int,
                     k: int, allowed: np.ndarray | None, out_labels: np.ndarray, out_scores: np.ndarray) -> int:
        """Queries whose ranking values cannot overflow: one at a time, or grouped by list."""
        m = len(queries)
        visited = 0
        if m < _BATCH_MIN:
            for i in range(m):
                visited += self._search_one(lists, queries[i], qx[i], rank[i], nprobe, k, allowed,
                                            out_labels[i], out_scores[i])
            return visited
        # a query's row of ranking values spans its probed lists: about nprobe mean lists
        # (twice that, for lists of uneven size)
        width = 2 * nprobe * (sum(lists.size) // len(rank[0]) + 1)
        step = max(_BATCH_MIN, min(_BATCH_QUERIES, _BATCH_FLOATS // width))
        for a in range(0, m, step):
            b = min(m, a + step)
            visited += self._search_batch(lists, queries[a:b], qx[a:b], rank[a:b], nprobe, k, allowed,
                                          out_labels[a:b], out_scores[a:b])
        return visited

    def _exact_rank(self, q: np.ndarray) -> np.ndarray:
        """The centres' ranking values for a query whose float32 ones may overflow, in float64:
        never NaN, and the same alone and in a batch (float32 products of the two shapes overflowed
        differently: NaN in one, -inf in the other, and the batch probed other lists)."""
        c = self._centroids.astype(np.float64)
        d = c @ q.astype(np.float64)
        return -d if self._by_dot else _sq_norms(c) - 2 * d

    def _search_one(self, lists: _Lists, q: np.ndarray, qx: np.ndarray, rank: np.ndarray, nprobe: int,
                    k: int, allowed: np.ndarray | None, out_labels: np.ndarray, out_scores: np.ndarray,
                    careful: bool = False) -> int:
        """One query; ``careful``: its ranking values may overflow (:meth:`_safe_limit`), and every
        row whose value did is re-scored (:func:`_overflow_rank`)."""
        n_lists = len(rank)
        first = rank.argpartition(nprobe - 1)[:nprobe] if nprobe < n_lists else np.arange(n_lists)
        starts, ends, visited, live = lists.runs(first.tolist())
        bounds: list[int] = []   # end of each slice in r
        delta: list[int] = []    # row of an entry of r = its position + delta of its slice
        r = self._rank(lists, qx, starts, ends, allowed, bounds, delta, careful)
        found = live if allowed is None else int(np.count_nonzero(r < np.inf))
        need = k * _FILTER_HITS if allowed is not None else k
        if found < need and nprobe < n_lists:
            # Too few hits in the nprobe best lists (a selective filter, or tiny lists): probe
            # on, best first, nprobe lists at a time, until enough hits or no lists are left.
            probed = np.zeros(n_lists, bool)
            probed[first] = True
            order = np.argsort(rank, kind="stable")
            rest = order[~probed[order]]
            r_parts = [r]
            for a in range(0, len(rest), nprobe):
                if found >= need:
                    break
                s_, e_, v_, live_ = lists.runs(rest[a:a + nprobe].tolist())
                r_ = self._rank(lists, qx, s_, e_, allowed, bounds, delta, careful)
                r_parts.append(r_)
                visited += v_
                found += live_ if allowed is None else int(np.count_nonzero(r_ < np.inf))
            r = np.concatenate(r_parts)
        if found == 0:
            return visited
        # candidates: the k best by ranking value and a few more, re-scored exactly below (the
        # ranking value's rounding depends on how rows were grouped into matrix products), and
        # every row whose value overflowed (-inf)
        kk = min(k + _RESCORE_EXTRA + (int(np.count_nonzero(r == -np.inf)) if careful else 0), found, len(r))
        top = r.argpartition(kk - 1)[:kk] if kk < len(r) else np.arange(len(r))
        top = top[r[top] < np.inf]
        if len(delta) == 1:
            rows = top + delta[0]
        else:
            rows = top + np.array(delta)[np.searchsorted(np.array(bounds), top, side="right")]
        labels, scores = self._exact(lists, q, rows)
        n = min(k, len(rows))
        out_labels[:n] = labels[:n]
        out_scores[:n] = scores[:n]
        return visited

    def _search_batch(self, lists: _Lists, queries: np.ndarray, qx: np.ndarray, rank: np.ndarray, nprobe: int,
                      k: int, allowed: np.ndarray | None, out_labels: np.ndarray, out_scores: np.ndarray) -> int:
        """Several queries at once, grouped by list: each probed list is scored against every query
        that probes it in one matrix product (the single-query path makes one product per query
        and slice). The same candidates and exact scores as :meth:`_search_one`."""
        m = len(queries)
        n_lists = len(rank[0])
        first = np.argpartition(rank, nprobe - 1, axis=1)[:, :nprobe] if nprobe < n_lists \
            else np.broadcast_to(np.arange(n_lists), (m, n_lists))
        start = np.asarray(lists.start, np.int64)
        size = np.asarray(lists.size, np.int64)
        sizes = size[first]                                   # (m, nprobe)
        col_end = np.cumsum(sizes, axis=1)
        col_start = col_end - sizes
        width = int(col_end[:, -1].max())
        visited = int(col_end[:, -1].sum())
        if allowed is None:
            found = col_end[:, -1] - np.asarray(lists.dead, np.int64)[first].sum(1)
        r = np.full((m, max(width, 1)), np.inf, np.float32)
        flat = first.ravel()
        order = np.argsort(flat, kind="stable")
        cuts = np.flatnonzero(np.diff(flat[order])) + 1
        pair_query = order // nprobe
        pair_base = pair_query * r.shape[1] + col_start.ravel()[order]   # flat position in r
        r_flat = r.reshape(-1)
        x, labels = lists.x, lists.labels
        span = np.arange(int(size.max()) if len(size) else 0)
        for a, b in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [len(order)])).tolist()):
            c = int(flat[order[a]])
            n = lists.size[c]
            if n == 0:
                continue
            s = lists.start[c]
            qs = pair_query[a:b]
            block = qx[qs] @ x[s:s + n].T                        # (queries, n)
            if allowed is not None:
                labs = labels[s:s + n]
                pos = np.searchsorted(allowed, labs)
                pos[pos == len(allowed)] = 0
                block[:, allowed[pos] != labs] = np.inf
            r_flat[pair_base[a:b, None] + span[:n]] = block
        if allowed is not None:
            found = np.count_nonzero(r < np.inf, axis=1)
        need = k * _FILTER_HITS if allowed is not None else k
        kk = min(k + _RESCORE_EXTRA, r.shape[1])
        top = np.argpartition(r, kk - 1, axis=1)[:, :kk] if kk < r.shape[1] else \
            np.broadcast_to(np.arange(kk), (m, kk))
        ok = np.take_along_axis(r, top, 1) < np.inf
        # winners back to rows: the pair (query, probed list) a column falls in, then its row
        g = (np.arange(m)[:, None] * r.shape[1] + top).ravel()
        pair_end = (np.arange(m)[:, None] * r.shape[1] + col_end).ravel()
        pair = np.minimum(np.searchsorted(pair_end, g, side="right"), len(pair_end) - 1)
        rows = start[flat[pair]] + g - (pair_end[pair] - sizes.ravel()[pair])
        rows = np.where(ok.ravel(), rows, 0)
        scores = self._scores(np.take(x, rows, axis=0)[:, :self.dim], queries[np.repeat(np.arange(m), kk)])
        key = (-scores if self.metric == "ip" else scores).reshape(m, kk)
        labs = labels[rows].reshape(m, kk)
        # best first, ties by label (as np.lexsort in _exact); the padding after every candidate,
        # even one whose score overflowed to the worst value
        best = np.lexsort((labs, key, ~ok), axis=1)[:, :k]
        take = np.arange(best.shape[1])[None, :] < np.minimum(ok.sum(1), k)[:, None]
        out_labels[:, :best.shape[1]] = np.where(take, np.take_along_axis(labs, best, 1).astype(np.int64), -1)
        worst = -np.inf if self.metric == "ip" else np.inf
        out_scores[:, :best.shape[1]] = np.where(take, np.take_along_axis(scores.reshape(m, kk), best, 1), worst)
        # queries whose probed lists held too few hits probe on, one at a time
        if nprobe < n_lists:
            for i in np.flatnonzero(found < need).tolist():
                out_labels[i], out_scores[i] = -1, worst
                visited += self._search_one(lists, queries[i], qx[i], rank[i], nprobe, k, allowed,
                                            out_labels[i], out_scores[i]) - int(col_end[i, -1])
        return visited

    def _exact(self, lists: _Lists, q: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and exact scores of ``rows``, best first (ties: smaller label first). Computed row
        by row (einsum: no BLAS blocking), so they do not depend on the layout or the batch."""
        scores = self._scores(np.take(lists.x, rows, axis=0)[:, :self.dim], q)
        labels = lists.labels[rows]
        best = np.lexsort((labels, -scores if self.metric == "ip" else scores))
        return labels[best].astype(np.int64), scores[best].astype(np.float32)

    def _scores(self, winners: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Exact scores (float64) of row ``i`` of ``winners`` against row ``i`` of ``queries`` (or
        against the one query ``queries``), ranked as they are and then rounded to float32 as FLAT's
        (``table._direct``): in float32, a row whose products overflow with mixed signs scored
        inf - inf = NaN and was dropped. One code path for one query and a batch, so both give the
        same floats: each row's products are summed alone (numpy's pairwise sum along a contiguous
        row), as in ``table._direct``."""
        q = queries.astype(np.float64)
        if self.metric == "l2":
            x = np.subtract(winners, q)   # float64: the float32 rows are widened exactly first
            np.multiply(x, x, out=x)
        else:
            x = np.multiply(winners, q)
        s = x.sum(axis=1)
        return 1.0 - s if self.metric == "cosine" else s

    @staticmethod
    def _rank(lists: _Lists, qx: np.ndarray, starts: list[int], ends: list[int], allowed: np.ndarray | None,
              bounds: list[int], delta: list[int], careful: bool) -> np.ndarray:
        """Ranking values of the rows of the slices, concatenated (+inf: tombstone, unused row or
        not allowed; finite for every other row, but when ``careful``: then -inf for a live row
        whose value overflowed or came from a clamped bias, see :func:`_overflow_rank`; never NaN).
        Appends each slice's end and row offset (relative to the values already in ``bounds``) to
        ``bounds`` and ``delta``."""
        x = lists.x
        base = bounds[-1] if bounds else 0
        a = 0
        for s, e in zip(starts, ends):
            delta.append(s - base - a)
            a += e - s
            bounds.append(base + a)
        if len(starts) == 1:
            r = x[starts[0]:ends[0]] @ qx
        else:
            r = np.empty(a, np.float32)
            a = 0
            for s, e in zip(starts, ends):
                np.matmul(x[s:e], qx, out=r[a:a + e - s])
                a += e - s
        if careful and len(r):
            bias = x[starts[0]:ends[0], lists.dim] if len(starts) == 1 else \
                np.concatenate([x[s:e, lists.dim] for s, e in zip(starts, ends)])
            # l2's bias of a row with |x|² beyond float32 is clamped (_bias): its value is unknown too
            bad = ~np.isfinite(r) | (bias == _F32_MAX)
            r[bad] = _overflow_rank(bias[bad])
        if allowed is not None and len(r):
            labs = (lists.labels[starts[0]:ends[0]] if len(starts) == 1
                    else np.concatenate([lists.labels[s:e] for s, e in zip(starts, ends)]))
            pos = np.searchsorted(allowed, labs)
            pos[pos == len(allowed)] = 0
            r[allowed[pos] != labs] = np.inf
        return r

    # -- persistence --------------------------------------------------------------------------

    def save(self, directory: Path, stem: str) -> list[str]:
        """Write ``stem.npz`` (centres in scan order, live widened rows grouped by list, list offsets) and
        ``stem.meta.json`` (params, counts, size and sha256 of the npz), fsynced."""
        directory = Path(directory)
        npz_path = directory / f"{stem}.npz"
        meta_path = directory / f"{stem}.meta.json"
        with self._writer:
            centroids = self._centroids if self._centroids is not None else np.empty((0, self.dim), np.float32)
            if self._lists is None:
                labels, rows, counts = np.empty(0, np.uint64), np.empty((0, _width(self.dim)), np.float32), []
            else:
                labels, rows, counts = self._lists.live(wide=True)
            offsets = np.concatenate(([0], np.cumsum(counts, dtype=np.int64))).astype(np.int64)
            trained_n = self._trained_n
        try:
            with open(npz_path, "wb") as f:
                np.savez(f, centroids=centroids, labels=labels, rows=rows, offsets=offsets)
            fsync_path(npz_path)
            meta = {
                "format": _FORMAT, "version": _FORMAT_VERSION, "kind": self.kind,
                "dim": self.dim, "metric": self.metric, "params": self.params,
                "n_clusters": len(centroids), "live": len(labels), "trained_n": trained_n,
                "npz": {"name": npz_path.name, "size": os.path.getsize(npz_path), "sha256": sha256_file(npz_path)},
            }
            write_meta(meta_path, meta)
            fsync_path(directory)
        except OSError as e:
            raise storage_error(e, f"saving {npz_path}") from e
        return [npz_path.name, meta_path.name]

    @classmethod
    def load(cls, directory: Path, files: list[str], dim: int, metric: Metric, params: dict) -> IvfIndex:
        # Version 1 stored the centres in k-means order; it raises CorruptionError here, and the
        # collection rebuilds the index (lists in scan order) from its rows.
        meta, paths = read_meta(Path(directory), files, ".npz", _FORMAT, (2, _FORMAT_VERSION))
        path = paths[".npz"]
        check_identity(meta, dim, metric, path)
        stored = meta.get("params") if isinstance(meta.get("params"), dict) else {}
        given = dict(params or {})
        if given.get("n_clusters") is not None and given["n_clusters"] != stored.get("n_clusters"):
            raise CorruptionError(f"{path}: built with n_clusters={stored.get('n_clusters')!r}, "
                                  f"expected {given['n_clusters']!r}")
        try:
            self = cls(dim, metric, **{**stored, **{k: v for k, v in given.items() if k == "nprobe"}})
        except InvalidArgumentError as e:
            raise CorruptionError(f"{path}: bad parameters in metadata ({e})") from e
        verify_file(path, meta.get("npz"))
        try:
            with np.load(path, allow_pickle=False) as z:
                centroids, labels, offsets = z["centroids"], z["labels"], z["offsets"]
                rows = z["rows"] if meta["version"] >= 3 else z["vectors"]
        except Exception as e:  # zipfile/format errors come in many classes; the checksum passed
            raise CorruptionError(f"{path}: unreadable ({e})") from e
        k = len(centroids)
        width = _width(dim) if meta["version"] >= 3 else dim
        ok = (centroids.dtype == np.float32 and centroids.ndim == 2 and centroids.shape[1] == dim
              and k == meta.get("n_clusters") and labels.dtype == np.uint64 and labels.ndim == 1
              and rows.dtype == np.float32 and rows.shape == (len(labels), width) and rows.flags.c_contiguous
              and offsets.dtype == np.int64 and offsets.shape == (k + 1,) and len(labels) == meta.get("live")
              and (k == 0 or (offsets[0] == 0 and offsets[-1] == len(labels) and (np.diff(offsets) >= 0).all()))
              and _distinct(labels)
              # stored rows are live: a finite bias, and zero padding (a search multiplies it by 0)
              and (width == dim or (np.isfinite(rows[:, dim]).all() and not rows[:, dim + 1:].any())))
        if not ok:
            raise CorruptionError(f"{path}: arrays do not form a {dim}-d IVF index")
        if k:
            x = rows if width > dim else _Lists.widen(rows, self._bias(rows))
            lists = _Lists(dim, x, labels.copy(), np.diff(offsets))
            trained = meta.get("trained_n")
            self._install(np.ascontiguousarray(centroids), lists, trained if isinstance(trained, int) else len(labels))
        return self
