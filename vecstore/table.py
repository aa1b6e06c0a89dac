"""The in-memory mirror of a collection: rows by position, and one vector space per field.

Rebuilt from LMDB on open, then kept in step by the collection after every commit. A
*position* is a row's place in storage order (0..n-1, stable until ``compact()``); a *label* is
its internal u64 key in LMDB and in the derived indexes (never reused).

Exact search lives here: a numpy matrix product over a contiguous float32 matrix, which is
what the FLAT mode is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .indexes.base import IndexMode, VectorIndex, higher_is_better

_GROW = 1.5
_SCORE_BUDGET = 16 << 20  # float32 scores per block of an exact batch search (64 MB)


def topk(scores: np.ndarray, k: int, higher: bool) -> np.ndarray:
    """Indices of the k best entries of each row of ``scores`` (2-D), best first.

    Ties keep storage order (a stable sort on the partitioned candidates).
    """
    m, n = scores.shape
    if k >= n:
        order = np.argsort(-scores if higher else scores, axis=1, kind="stable")
        return order
    key = -scores if higher else scores
    part = np.argpartition(key, k - 1, axis=1)[:, :k]
    # Re-sort the k candidates; sort by (key, position) so ties go in storage order.
    sub = np.take_along_axis(key, part, axis=1)
    order = np.lexsort((part, sub), axis=1)
    return np.take_along_axis(part, order, axis=1)


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
        self.sqnorms = np.empty(16, dtype=np.float32) if metric == "l2" else None
        # label -> position (-1: none) as an array: the per-hit mapping of a search is one numpy
        # take, and a lookup of many labels one fancy index (see lookup)
        self._lut = np.full(16, -1, dtype=np.int64)
        self.n_live = 0
        self._dead: np.ndarray | None = None  # cached positions of non-live rows
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
        if self.sqnorms is not None:
            self.sqnorms = np.concatenate([self.sqnorms[: self.n], np.empty(cap - self.n, np.float32)])

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
        self._lut = np.full(int(self.labels.max()) + 1 if n else 16, -1, dtype=np.int64)
        self._lut[self.labels.astype(np.int64)] = np.arange(n)
        if self.sqnorms is not None:
            self.sqnorms = np.einsum("ij,ij->i", matrix, matrix)
        self._dead = None

    def put(self, labels: np.ndarray, vectors: np.ndarray, live: np.ndarray | bool = True) -> None:
        """Insert or replace vectors; new labels go to the end in the given order."""
        labels = np.asarray(labels, dtype=np.uint64)
        live_arr = np.broadcast_to(np.asarray(live, dtype=bool), labels.shape)
        if len(labels) and int(labels.max()) >= len(self._lut):
            grown = np.full(max(int(labels.max()) + 1, int(len(self._lut) * _GROW) + 16), -1, dtype=np.int64)
            grown[: len(self._lut)] = self._lut
            self._lut = grown
        pos = self._lut[labels.astype(np.int64)]
        new = pos < 0
        n_new = int(new.sum())
        if n_new:
            self._reserve(n_new)
            start = self.n
            new_pos = np.arange(start, start + n_new)
            pos[new] = new_pos
            self._lut[labels[new].astype(np.int64)] = new_pos
            self.labels[start:start + n_new] = labels[new]
            self.live[start:start + n_new] = False
            self.n += n_new
        self.matrix[pos] = vectors
        if self.sqnorms is not None:
            self.sqnorms[pos] = np.einsum("ij,ij->i", vectors, vectors)
        self.set_live(pos, live_arr)

    def set_live(self, pos: np.ndarray, live: np.ndarray | bool) -> None:
        pos = np.asarray(pos, dtype=np.int64)
        before = int(self.live[pos].sum())
        self.live[pos] = live
        self.n_live += int(self.live[pos].sum()) - before
        self._dead = None

    def lookup(self, labels: Any) -> np.ndarray:
        """The position of each label here; -1 for a label without a vector here."""
        lab = np.asarray(labels, dtype=np.int64).ravel()
        out = np.full(len(lab), -1, dtype=np.int64)
        known = np.flatnonzero((lab >= 0) & (lab < len(self._lut)))
        out[known] = self._lut[lab[known]]
        return out

    def positions(self, labels: Any) -> np.ndarray:
        """Positions of labels that have a vector here (others dropped)."""
        pos = self.lookup(labels)
        return pos[pos >= 0]

    def live_at(self, pos: np.ndarray) -> np.ndarray:
        """For each position of :meth:`lookup` (-1: none), whether it holds a live vector."""
        out = np.zeros(len(pos), dtype=bool)
        out[pos >= 0] = self.live[pos[pos >= 0]]
        return out

    def index_positions(self, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One row of an index result (labels padded with -1) as ``(positions, scores)``. Every
        label an index returns was put here, so the table lookup needs no other check."""
        if len(labels) and labels[-1] < 0:
            keep = labels >= 0
            labels, scores = labels[keep], scores[keep]
        return self._lut[labels], scores

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
        rows = self.n if allowed is None else len(allowed)
        block = max(1, _SCORE_BUDGET // max(rows, 1))
        if len(queries) > block:
            parts = [self._exact_block(queries[i:i + block], k, allowed) for i in range(0, len(queries), block)]
            return np.vstack([p for p, _ in parts]), np.vstack([s for _, s in parts])
        return self._exact_block(queries, k, allowed)

    def _exact_block(self, queries: np.ndarray, k: int,
                     allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        higher = higher_is_better(self.metric)
        n = self.n
        excluded = None
        if allowed is not None and len(allowed) * 4 > n:
            # A broad filter: scoring every row and masking the rest beats gathering the
            # allowed rows into a new matrix (a copy of most of it).
            keep = np.zeros(n, dtype=bool)
            keep[allowed] = True
            excluded = np.flatnonzero(~keep)
            allowed = None
        if allowed is None:
            matrix = self.matrix[:n]
            sq = self.sqnorms[:n] if self.sqnorms is not None else None
            dead = self.dead_positions() if excluded is None else excluded  # dead rows are never allowed
            cand = None
            n_cand = self.n_live if excluded is None else n - len(excluded)
        else:
            cand = allowed
            matrix = self.matrix[cand]
            sq = self.sqnorms[cand] if self.sqnorms is not None else None
            dead = None
            n_cand = len(cand)
        m = queries.shape[0]
        kk = min(k, n_cand)
        if kk <= 0:
            return np.empty((m, 0), np.int64), np.empty((m, 0), np.float32)
        scores = queries @ matrix.T
        if self.metric == "l2":
            qn = np.einsum("ij,ij->i", queries, queries)[:, None]
            scores *= -2.0
            scores += sq[None, :]
            scores += qn
            np.maximum(scores, 0.0, out=scores)
        elif self.metric == "cosine":
            np.subtract(1.0, scores, out=scores)
        if dead is not None and len(dead):
            scores[:, dead] = -np.inf if higher else np.inf
        idx = topk(scores, kk, higher)[:, :kk]
        out_scores = np.take_along_axis(scores, idx, axis=1).astype(np.float32, copy=False)
        pos = idx if cand is None else cand[idx]
        return pos.astype(np.int64, copy=False), out_scores

    def range_scores(self, query: np.ndarray, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every live candidate for one query: ``(positions, scores)``, unsorted."""
        cand = np.flatnonzero(self.live[: self.n]) if allowed is None else allowed
        if not len(cand):  # also: no dim yet, where (0, 0) @ query would not even multiply
            return cand, np.empty(0, np.float32)
        matrix = self.matrix[cand]
        s = matrix @ query
        if self.metric == "l2":
            s = np.maximum(self.sqnorms[cand] - 2.0 * s + float(query @ query), 0.0)
        elif self.metric == "cosine":
            s = 1.0 - s
        return cand, s.astype(np.float32, copy=False)

    def live_labels(self) -> np.ndarray:
        return self.labels[: self.n][self.live[: self.n]]

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels and vectors of the live rows, for an index build. When every row is live the
        vectors are a view of the mirror, not a copy (1M × 128: 512 MB less at the peak); the
        builds copy what they keep and run under the collection's write lock."""
        mask = self.live[: self.n]
        if mask.all():
            return self.labels[: self.n].copy(), self.matrix[: self.n]
        return self.labels[: self.n][mask], np.ascontiguousarray(self.matrix[: self.n][mask])
