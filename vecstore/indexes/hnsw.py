"""``HnswIndex``: the HNSW derived index, a guarded wrapper around hnswlib 0.8.

hnswlib is fast but sharp (reliability.md §2). What this wrapper does about each edge:

- **Threads.** hnswlib releases the GIL and takes no lock in search; a search during an insert or
  ``resize_index`` can crash. Searches share an :class:`~.rwlock.RWLock`; ``add`` / ``remove`` /
  the swap at the end of ``build`` are exclusive. ``save`` only excludes other writers (all
  mutators also hold one writer mutex): it reads the graph, so checkpoints do not stall searches.
  ``build`` constructs the new graph outside the lock and swaps it in, so searches keep running
  on the old one meanwhile.
- **Capacity and init.** The hnswlib index is created lazily on the first add (``add_items``
  before ``init_index`` segfaults, hnswlib#306) and grows ×2 under the exclusive lock, so "The
  number of elements exceeds the specified limit" never surfaces.
- **Dimension.** ``knn_query`` silently accepts a wrong-dimension query; every entry point checks
  the width first and raises :class:`~vecstore.errors.DimensionMismatchError`.
- **Updates and deletes.** Adding a label that is present replaces its vector; adding a label
  that was removed (``mark_deleted``) makes it live again with the new vector: hnswlib's
  ``addPoint`` unmarks and updates an existing label when ``replace_deleted`` is off. We never
  use ``replace_deleted`` (it duplicates labels, hnswlib PR #487). ``remove`` skips labels that
  are unknown or already removed (hnswlib raises on both).
- **Unchanged vectors keep their links.** That update is ``updatePoint``, which re-links the node
  and its neighbours: ~1 ms a row, so re-adding a quarter of the rows cost as much as building
  the whole graph. The collection re-adds rows whose vector did not change (a fields-only
  upsert, a restore, a replay), so ``add`` compares with the stored vector first (``get_items``,
  bit for bit) and leaves equal ones alone; a removed label is ``unmark_deleted`` first, as
  hnswlib reads no vector of a deleted label, and re-added only if its vector differs (the
  graph may hold an older one: a row changed, then deleted, after the index files were saved).
- **Search width without a shared ``ef``.** ``set_ef`` is index-global, so two concurrent
  searches with different ``breadth`` would race on it. hnswlib searches layer 0 with
  ``max(ef_, k)`` and returns the best k of that beam, so the index keeps ``ef_ = 1`` and asks
  for ``k' = max(ef, k)`` results, keeping the first k: the same search as ``ef`` with ``k``,
  with no shared state (measured: same QPS as raw hnswlib at equal ``ef``).
- **"Cannot return the results in a contiguous 2D array".** ``k'`` is clamped to the number of
  live (and allowed) labels, so the error only remains for a graph that cannot reach enough
  live nodes; then each failing row is retried alone with a doubled ``ef`` and the largest
  ``k`` that succeeds, and padded with ``-1``.
- **Files.** ``save`` checks that the written ``.bin`` has hnswlib's own expected size (a full
  disk truncates silently, §2.2) and records its sha256; ``load`` verifies size, sha256 and the
  header (dimension, ``M``) **before** ``load_index``, which can crash on crafted or damaged
  files (hnswlib#673), and raises :class:`~vecstore.errors.CorruptionError` instead.

Scores: cosine uses hnswlib space ``ip`` on unit vectors, whose distance ``1 - dot`` *is* the
cosine distance; ``ip`` returns ``1 - distance`` (the dot); ``l2`` is hnswlib's squared L2 as is.

**Small ip vectors.** hnswlib ranks ``ip`` by the float32 distance ``1 - dot``, which is 1 for every
``|dot|`` under ~6e-8: vectors of norm 1e-4 (dots ~1e-8) all tie, and the graph and the ranking
were noise. So for ``ip``, rows whose largest norm is under 1/16 are given to hnswlib multiplied by
``2**scale_exp`` (one power of two for the index, bringing that norm into [1, 2), fixed when the
graph is created, reused for later adds and saved with it; a later row it would scale past 2**60
has the graph rebuilt with a new power for all rows), and each such query by its own power of
two; scores are divided back. Powers of two scale floats exactly; larger norms rank well as they
are and are left alone (an index of them has ``scale_exp`` 0). Files saved before this have no
``scale_exp``: unscaled, which :meth:`HnswIndex.load` refuses for small rows (the caller rebuilds).

``visited`` is an **estimate** (hnswlib 0.8 does not expose its counters to Python): per query
``min(n, ef · M)`` distance computations, divided by the allowed fraction for filtered searches.

A broad filter (≥ 2 % of the live rows, with ``2k / selectivity`` ≤ 512) is first answered by
post-filtering one unfiltered search of ``2k / selectivity`` rows (:meth:`HnswIndex._post_filtered`:
exact on what it found whenever that holds k allowed rows). Otherwise, filtered searches widen
``ef`` by ``1/selectivity`` (at most ×2, :func:`filtered_ef`) and pass
hnswlib a Python ``filter`` callable (``label -> bool``). hnswlib keeps searching until its beam
holds ``ef`` allowed nodes, so k hits come back whenever k allowed rows are reachable. The
callable runs for each candidate node and re-acquires the GIL each time, so filtered searches run
one query at a time per call and serialise across threads; for selective filters an exact scan
over the allowed rows is much faster (1 % of 100k: ~4.5 ms per query here), the collection's call.

>>> import numpy as np
>>> idx = HnswIndex(4, "l2")
>>> idx.add(np.arange(3, dtype=np.uint64), np.eye(3, 4, dtype=np.float32))
>>> labels, scores, _ = idx.search(np.eye(1, 4, dtype=np.float32), 5)
>>> labels.tolist(), scores.round(3).tolist()
([[0, 1, 2, -1, -1]], [[0.0, 2.0, 2.0, inf, inf]])
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import threading
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from ..errors import (CorruptionError, DimensionMismatchError, InvalidArgumentError, StorageFullError,
                      UnsupportedFormatError, VecstoreError)
from ..fileio import fsync_path, sha256_file
from .base import Metric, Progress, VectorIndex
from .rwlock import RWLock

__all__ = ["HnswIndex"]

_ABSENT, _LIVE, _DELETED = 0, 1, 2
_FORMAT = "vecstore-hnsw"
# 2: a scaled ip index (scale_exp != 0, module docstring), which version-1 code must not read as
# is (it refuses the file and rebuilds); an unscaled index is still written as version 1
_FORMAT_VERSION = 2
# hnswlib saveIndex header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t), maxlevel (int), enterpoint_node (uint), maxM, maxM0, M
# (size_t), mult (double), ef_construction (size_t).
_HEADER = struct.Struct("<6Qii3QdQ")
_INITIAL_CAPACITY = 1024
_BUILD_STEP = 10_000  # rows per add_items call of a build, at least (see build)
_CONTIGUOUS = "contiguous 2D array"
# Post-filtering (HnswIndex._post_filtered) for filters allowing at least this fraction of the
# live rows, as long as k' = 2k / fraction stays under the cap (at k=10: 4 % and up).
_POST_FILTER_MIN_FRACTION = 0.02
_POST_FILTER_MAX_K = 512
# ip rows or queries of a smaller norm are scaled up by a power of two (module docstring)
_SMALL_NORM = 1 / 16
# A row added later whose norm times the index's power of two would exceed this gets a new power
# instead (HnswIndex._rescale): scaled further, its products with queries could overflow float32
# (2**60 leaves room for queries of norm up to ~2**67), and ldexp itself to inf past ~2**128.
_MAX_SCALED_NORM = 2.0 ** 60
_SCALE_ROWS = 1 << 16  # rows per float64 block when measuring norms


def _scale_exps(norms: np.ndarray) -> np.ndarray:
    """Per norm, the power of two that brings a norm under :data:`_SMALL_NORM` into [1, 2); 0 for
    others (and for zero).

    >>> _scale_exps(np.array([1e-4, 0.05, 0.07, 1.0, 0.0])).tolist()
    [14, 5, 0, 0, 0]
    """
    small = (norms > 0) & (norms < _SMALL_NORM)
    return np.where(small, 1 - np.frexp(norms)[1], 0).astype(np.int64)


def _scale_exp(norm: float) -> int:
    """:func:`_scale_exps` of one norm (an index's power of two, from its rows' largest)."""
    return int(_scale_exps(np.array([norm]))[0])


def _norms(vectors: np.ndarray) -> np.ndarray:
    """Row norms in float64 (float32 squares of 1e-23 underflow), a block at a time."""
    out = np.empty(len(vectors))
    for a in range(0, len(vectors), _SCALE_ROWS):
        block = vectors[a:a + _SCALE_ROWS].astype(np.float64)
        out[a:a + _SCALE_ROWS] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


# --------------------------------------------------------------------------------------------
# shared helpers (also used by ivf.py)

def check_rows(vectors: np.ndarray, dim: int, param: str = "vectors") -> np.ndarray:
    """Refuse a batch whose width is not ``dim`` before it reaches native code."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[1] if vectors.ndim == 2 else f"an array of shape {vectors.shape}"
        raise DimensionMismatchError(f"{param}: expected dimension {dim}, got {got}")
    return vectors


def check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise InvalidArgumentError(f"labels: expected {n} labels, got shape {labels.shape}")
    return labels.astype(np.uint64, copy=False)


def last_occurrence(labels: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate a batch, keeping the last vector given for a label (a sequential add's result)."""
    if len(labels) < 2:
        return labels, vectors
    uniq, first_in_reversed = np.unique(labels[::-1], return_index=True)
    if len(uniq) == len(labels):
        return labels, vectors
    keep = np.sort(len(labels) - 1 - first_in_reversed)
    return labels[keep], np.ascontiguousarray(vectors[keep])


def checked_batch(labels: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The input of ``build`` / ``add`` of every index: width and label count checked, then
    deduplicated with :func:`last_occurrence`."""
    check_rows(vectors, dim)
    return last_occurrence(check_labels(labels, len(vectors)), vectors)


def filtered_ef(ef: int, frac: float) -> int:
    """Beam width for a filtered HNSW search: ``ef / selectivity``, at most ``2·ef``.

    hnswlib keeps only allowed nodes in the beam and stops once it holds ``ef`` of them, so at
    high selectivity a filtered search settles as early as an unfiltered one while each allowed
    hit is rarer. Measured (20k×32, tight clusters, queries away from the clusters): recall@10 at
    50 % selectivity 0.89 with ``ef`` 64, 0.96 with 128; at 10 % and below it is 1.0 either way
    (the search already explores widely), so the factor is capped at 2.

    >>> filtered_ef(64, 1.0), filtered_ef(64, 0.8), filtered_ef(64, 0.01)
    (64, 80, 128)
    """
    return int(math.ceil(ef / max(frac, 0.5)))


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k: expected a positive integer, got {k!r}")
    return int(k)


def check_breadth(breadth: Any, name: str) -> int | None:
    if breadth is None:
        return None
    if isinstance(breadth, bool) or not isinstance(breadth, (int, np.integer)) or breadth < 1:
        raise InvalidArgumentError(f"breadth ({name}): expected a positive integer, got {breadth!r}")
    return int(breadth)


def check_int_param(params: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """``params[name]`` (removed from ``params``) checked to lie in ``[lo, hi]``; ``default`` when
    missing or None (None asks for the default, as everywhere in the API)."""
    value = params.pop(name, None)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidArgumentError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def refuse_unknown(kind: str, params: dict) -> None:
    if params:
        raise InvalidArgumentError(f"{kind} index: unknown parameter(s) {sorted(params)}")


def padded(m: int, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Result arrays full of padding: label -1, the worst score for the metric."""
    worst = -np.inf if metric == "ip" else np.inf
    return np.full((m, k), -1, np.int64), np.full((m, k), worst, np.float32)


def storage_error(e: OSError, what: str) -> VecstoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"{what}: disk full ({e})")
    return VecstoreError(f"{what}: {e}")


def write_meta(path: Path, meta: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def read_meta(directory: Path, files: list[str], suffix: str, fmt: str,
              version: int | tuple[int, ...]) -> tuple[dict, dict]:
    """Find the files by suffix, parse and check ``*.meta.json`` (its format version one of
    ``version``); return ``(meta, {suffix: path})``."""
    by_suffix: dict[str, Path] = {}
    for name in files:
        for sfx in (".meta.json", suffix, ".labels.npy"):
            if name.endswith(sfx):
                by_suffix[sfx] = Path(directory) / name
                break
    if ".meta.json" not in by_suffix or suffix not in by_suffix:
        raise CorruptionError(f"index files incomplete: expected *{suffix} and *.meta.json, got {files!r}")
    try:
        with open(by_suffix[".meta.json"], "rb") as f:
            meta = json.loads(f.read(1 << 20))
    except (OSError, ValueError) as e:
        raise CorruptionError(f"{by_suffix['.meta.json']}: unreadable index metadata ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CorruptionError(f"{by_suffix['.meta.json']}: not a {fmt} metadata file")
    if meta.get("version") not in (version if isinstance(version, tuple) else (version,)):
        raise CorruptionError(f"{by_suffix['.meta.json']}: unsupported format version {meta.get('version')!r}")
    return meta, by_suffix


def verify_file(path: Path, record: Any) -> None:
    """Check a side file's size and sha256 against its metadata record."""
    if not isinstance(record, dict):
        raise CorruptionError(f"{path}: no checksum recorded")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise CorruptionError(f"{path}: missing ({e})") from e
    if size != record.get("size"):
        raise CorruptionError(f"{path}: size {size} != recorded {record.get('size')} (truncated or replaced)")
    if sha256_file(path) != record.get("sha256"):
        raise CorruptionError(f"{path}: checksum mismatch")


def check_identity(meta: dict, dim: int, metric: str, path: Any) -> None:
    if meta.get("dim") != dim:
        raise CorruptionError(f"{path}: index has dimension {meta.get('dim')!r}, expected {dim}")
    if meta.get("metric") != metric:
        raise CorruptionError(f"{path}: index has metric {meta.get('metric')!r}, expected {metric!r}")


# --------------------------------------------------------------------------------------------

class _LabelStates:
    """Label -> state (absent / live / deleted) of every label in the hnswlib graph.

    Row labels are a counter, so a dense ``uint8`` array is the fast representation (filtered
    searches gather from it). It covers ``[base, base + len(dense))`` only: labels are never
    reused, and after a rolling window of writes and ``compact()``s (which rebuilds the graph)
    the graph's labels are a narrow band far above 0. A span far beyond the number of labels
    switches to a dict so a stray huge label cannot allocate gigabytes.
    """

    def __init__(self) -> None:
        self.base = 0
        self.dense: np.ndarray | None = np.zeros(0, np.uint8)
        self.sparse: dict[int, int] = {}
        self.n_known = 0

    def _fits_dense(self, span: int) -> bool:
        return span < max(1 << 24, 8 * (self.n_known + 1024))

    def get(self, labels: np.ndarray) -> np.ndarray:
        labels = labels.astype(np.uint64, copy=False)
        if self.dense is not None:
            out = np.zeros(len(labels), np.uint8)
            at = labels - np.uint64(self.base)  # a label below the base wraps around: outside
            inside = at < len(self.dense)
            out[inside] = self.dense[at[inside]]
            return out
        get = self.sparse.get
        return np.fromiter((get(x, 0) for x in labels.tolist()), np.uint8, len(labels))

    def set(self, labels: np.ndarray, state: int, previous: np.ndarray) -> None:
        """Set ``labels`` (unique) to ``state``; ``previous`` is their current states."""
        self.n_known += int(np.count_nonzero(previous == _ABSENT))
        if len(labels) == 0:
            return
        if self.dense is not None:
            lo, hi = int(labels.min()), int(labels.max())
            base, end = self.base, self.base + len(self.dense)
            if lo < base or hi >= end:
                if len(self.dense):
                    lo, hi = min(lo, base), max(hi, end - 1)
                if not self._fits_dense(hi - lo + 1):
                    self._to_sparse()
                else:  # room above for the next labels (they only grow), none below
                    grown = np.zeros(max(hi - lo + 1, 2 * len(self.dense), 1024), np.uint8)
                    if len(self.dense):
                        grown[base - lo:end - lo] = self.dense
                    self.base, self.dense = lo, grown
        if self.dense is not None:
            self.dense[labels - np.uint64(self.base)] = state
        else:
            self.sparse.update(dict.fromkeys(labels.tolist(), state))

    def _to_sparse(self) -> None:
        assert self.dense is not None
        nz = np.flatnonzero(self.dense)
        self.sparse = dict(zip((nz + self.base).tolist(), self.dense[nz].tolist()))
        self.dense = None

    def live_allowed(self, allowed: np.ndarray) -> np.ndarray:
        """The live labels among ``allowed`` (sorted, unique ``uint64``), sorted: one gather of
        their states, whatever the span of the labels (a mask over all of it cost 7 ms a search
        once 10M rows had been written)."""
        dense = self.dense
        if dense is not None and len(allowed) and self.base <= allowed[0] and allowed[-1] < self.base + len(dense):
            return allowed[dense[allowed - np.uint64(self.base) if self.base else allowed] == _LIVE]
        return allowed[self.get(allowed) == _LIVE]

    def filter(self, live: np.ndarray) -> Any:
        """hnswlib's filter callable (``label -> bool``) for the labels ``live`` (of
        :meth:`live_allowed`). hnswlib may call it with any label in the graph.

        Both forms are C-level callables, measured as fast per call (a lambda subtracting a base
        was 20 % slower at 6,000 calls a query): a mask indexed by the label while it stays
        within 64 B per allowed label (or 1 MB), else a set of the labels (~50 ns a label)."""
        top = self.base + len(self.dense) if self.dense is not None else None
        if top is not None and top < 64 * len(live) + (1 << 20):
            mask = np.zeros(top, np.bool_)
            mask[live] = True
            # ndarray.__getitem__ on a Python int returns numpy.bool_, which pybind11 accepts
            return mask.__getitem__
        return set(live.tolist()).__contains__

    def live_labels(self, allowed: np.ndarray | None = None) -> np.ndarray:
        """Sorted live labels (restricted to ``allowed`` when given)."""
        if allowed is not None:
            return self.live_allowed(allowed)
        if self.dense is not None:
            return (np.flatnonzero(self.dense == _LIVE) + self.base).astype(np.uint64)
        return np.array(sorted(x for x, state in self.sparse.items() if state == _LIVE), np.uint64)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All known labels (sorted) and their states."""
        if self.dense is not None:
            nz = np.flatnonzero(self.dense)
            return (nz + self.base).astype(np.uint64), self.dense[nz]
        labels = np.array(sorted(self.sparse), dtype=np.uint64)
        return labels, np.array([self.sparse[x] for x in labels.tolist()], np.uint8)


class HnswIndex(VectorIndex):
    """HNSW over hnswlib. Parameters (all optional, persisted by :attr:`params`):

    - ``M`` (16): graph degree (layer 0 keeps ``2·M`` links); memory ≈ ``(8·M + 4·dim)`` B/row.
    - ``ef_construction`` (200): build beam width.
    - ``ef`` (64): default search beam width; ``search(breadth=...)`` overrides it per call and
      it is raised to ``k`` when smaller. 64 gives recall@10 ≈ 0.98 on 100k×128 clustered data.
    - ``seed`` (100): hnswlib's level generator seed.
    """

    kind = "HNSW"
    #: When the graph cannot reach k live (allowed) nodes, up to this many candidates are scored
    #: exactly instead (see ``_search_rows_carefully``).
    exact_fallback_rows = 100_000
    DEFAULT_M = 16
    DEFAULT_EF_CONSTRUCTION = 200
    DEFAULT_EF = 64

    def __init__(self, dim: int, metric: Metric, **params: Any) -> None:
        super().__init__(dim, metric)
        if metric not in ("ip", "l2", "cosine"):
            raise InvalidArgumentError(f"metric: expected ip, l2 or cosine, got {metric!r}")
        params = dict(params)
        if "m" in params and "M" not in params:
            params["M"] = params.pop("m")
        self.M = check_int_param(params, "M", self.DEFAULT_M, 2, 2048)
        self.ef_construction = check_int_param(params, "ef_construction", self.DEFAULT_EF_CONSTRUCTION, 1, 1 << 20)
        self.ef = check_int_param(params, "ef", self.DEFAULT_EF, 1, 1 << 20)
        self.seed = check_int_param(params, "seed", 100, 0, (1 << 63) - 1)
        refuse_unknown("HNSW", params)
        self._space = "l2" if metric == "l2" else "ip"
        self._index: hnswlib.Index | None = None
        self._exp = 0                           # rows are in hnswlib times 2**_exp (module docstring)
        self._states = _LabelStates()
        self._live = 0
        self._lock = RWLock()                   # graph: shared for search/save, exclusive for mutation
        self._writer = threading.Lock()         # serialises mutators (build runs off the graph lock)

    # -- properties ---------------------------------------------------------------------------

    @property
    def params(self) -> dict:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef": self.ef, "seed": self.seed}

    def __len__(self) -> int:
        return self._live

    @property
    def capacity(self) -> int:
        """Current hnswlib ``max_elements`` (0 before the first add)."""
        return 0 if self._index is None else self._index.max_elements

    @property
    def deleted_count(self) -> int:
        """Graph nodes that are tombstones (removed labels); ``compact`` = rebuild when high."""
        return 0 if self._index is None else self._index.element_count - self._live

    def __repr__(self) -> str:
        return f"HnswIndex(dim={self.dim}, metric={self.metric!r}, live={self._live}, {self.params})"

    @property
    def scale_exp(self) -> int:
        """Rows are given to hnswlib multiplied by ``2**scale_exp`` (0 but for small ip vectors)."""
        return self._exp

    def _row_exp(self, vectors: np.ndarray) -> int:
        """The index's power of two, from the rows that create its graph."""
        if self.metric != "ip" or not len(vectors):
            return 0
        return _scale_exp(_norms(vectors).max())

    def _scaled_queries(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Queries as given to hnswlib, and each one's power of two (None: all 0)."""
        if self.metric != "ip" or not len(queries):
            return queries, None
        # the usual case, on the hot path: one float32 check (a tiny norm's squares underflow
        # there, so it is measured again below)
        sq = np.vdot(queries, queries) if len(queries) == 1 else np.einsum("ij,ij->i", queries, queries).min()
        if sq >= _SMALL_NORM ** 2:
            return queries, None
        exps = _scale_exps(_norms(queries))
        if not exps.any():
            return queries, None
        return np.ldexp(queries, exps[:, None].astype(np.int32)).astype(np.float32, copy=False), exps

    def _score_exps(self, q_exps: np.ndarray | None, exp: int) -> np.ndarray | None:
        """Per query, the power of two its hnswlib scores carry (None: all 0)."""
        if q_exps is None:
            return None if exp == 0 else np.full(1, exp, np.int64)
        return q_exps + exp

    # -- writes -------------------------------------------------------------------------------

    def _new_index(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space=self._space, dim=self.dim)
        index.init_index(max_elements=capacity, M=self.M, ef_construction=self.ef_construction,
                         random_seed=self.seed, allow_replace_deleted=False)
        index.set_ef(1)  # the search width is passed as k' (module docstring)
        return index

    def build(self, labels: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> None:
        """Replace the content. The new graph is built without blocking searches on the old one.
        With ``progress`` (rows) it is added in steps of ~1 % of the rows, at least 10,000: that
        costs ~10-15 % of the build time (100k × 128, alternated with one ``add_items`` call), so
        without ``progress`` it is one call."""
        labels, vectors = checked_batch(labels, vectors, self.dim)
        with self._writer:
            graph = self._graph(labels, vectors, progress)
            with self._lock.write:
                self._index, self._states, self._live, self._exp = graph

    def _graph(self, labels: np.ndarray, vectors: np.ndarray,
               progress: Progress | None = None) -> tuple[hnswlib.Index | None, _LabelStates, int, int]:
        """A new graph of these rows (unique labels) with its own power of two: ``(index, label
        states, live count, scale_exp)``."""
        states = _LabelStates()
        index = None
        exp = self._row_exp(vectors)
        if exp:
            vectors = np.ldexp(vectors, exp).astype(np.float32, copy=False)
        if len(labels):
            n = len(labels)
            index = self._new_index(max(_INITIAL_CAPACITY, n + n // 8))
            step = n if progress is None else max(_BUILD_STEP, n // 100)
            try:
                for a in range(0, n, step):
                    # each step is one parallel add_items over all cores, as one call would be
                    index.add_items(vectors[a:a + step], labels[a:a + step])
                    if progress is not None:
                        progress(min(a + step, n), n)
            except RuntimeError as e:
                raise VecstoreError(f"HNSW build failed: {e}") from e
            states.set(labels, _LIVE, np.zeros(len(labels), np.uint8))
        return index, states, len(labels), exp

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        labels, vectors = checked_batch(labels, vectors, self.dim)
        if len(labels) == 0:
            return
        with self._writer, self._lock.write:
            before = self._states.get(labels)
            n_new = int(np.count_nonzero(before == _ABSENT))
            if self._index is None:
                self._index = self._new_index(max(_INITIAL_CAPACITY, 2 * n_new))
                self._exp = self._row_exp(vectors)
            elif self._exp and _norms(vectors).max() * 2.0 ** self._exp > _MAX_SCALED_NORM:
                self._rescale(labels, vectors)
                return
            if self._exp:
                vectors = np.ldexp(vectors, self._exp).astype(np.float32, copy=False)
            index = self._index
            need = index.element_count + n_new
            if need > index.max_elements:
                index.resize_index(max(need, 2 * index.max_elements))
            try:
                put_labels, put_vectors = labels, vectors
                known = before != _ABSENT
                if known.any():  # unchanged vectors keep their links (module docstring)
                    for label in labels[before == _DELETED].tolist():
                        index.unmark_deleted(label)
                    stored = np.asarray(index.get_items(labels[known]), np.float32)
                    given = vectors[known].astype(np.float32, copy=False)
                    same = np.zeros(len(labels), bool)
                    same[known] = (stored.view(np.uint32) == given.view(np.uint32)).all(axis=1)
                    put_labels, put_vectors = labels[~same], vectors[~same]
                if len(put_labels):
                    # Existing labels are updated in place (addPoint's updatePoint).
                    index.add_items(put_vectors, put_labels)
            except RuntimeError as e:
                raise VecstoreError(f"HNSW add failed: {e}") from e
            self._states.set(labels, _LIVE, before)
            self._live += int(np.count_nonzero(before != _LIVE))

    def _rescale(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Rebuild the graph from its live rows and these (which win for a label in both) with a
        power of two for them all: the index's own would scale these past float32's range (an
        index created from rows of norm 1e-5 has 2**15; a row of 1e35 became inf). Rare: only a
        scaled ip index meeting rows ~2**45 times larger than those it was created from. Caller
        holds the writer mutex and the write lock (searches wait for the rebuild)."""
        old = self._states.live_labels()
        old = old[~np.isin(old, labels)]
        # powers of two scale exactly: the rows come back as they were given
        kept = np.ldexp(np.asarray(self._index.get_items(old), np.float32).reshape(-1, self.dim),
                        -self._exp).astype(np.float32, copy=False)
        self._index, self._states, self._live, self._exp = self._graph(
            np.concatenate([old, labels]), np.concatenate([kept, vectors]))

    def remove(self, labels: np.ndarray) -> None:
        labels = np.unique(np.asarray(labels).astype(np.uint64, copy=False))
        if len(labels) == 0:
            return
        with self._writer, self._lock.write:
            if self._index is None:
                return
            before = self._states.get(labels)
            gone = labels[before == _LIVE]
            mark = self._index.mark_deleted
            for label in gone.tolist():  # hnswlib has no batch delete; raises on non-live labels
                mark(label)
            self._states.set(gone, _DELETED, before[before == _LIVE])
            self._live -= len(gone)

    # -- search -------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, *, breadth: int | None = None,
               allowed: np.ndarray | None = None,
               defer_filter: bool = False) -> tuple[np.ndarray, np.ndarray, int] | None:
        check_rows(queries, self.dim, "queries")
        k = check_k(k)
        ef = max(check_breadth(breadth, "ef") or self.ef, k)
        m = len(queries)
        if allowed is not None:
            allowed = np.asarray(allowed).astype(np.uint64, copy=False)
        queries, q_exps = self._scaled_queries(queries)
        failed = None
        with self._lock.read:
            index, live = self._index, self._live
            exps = self._score_exps(q_exps, self._exp)
            if index is None or live == 0 or m == 0:
                return (*padded(m, k, self.metric), 0)
            if allowed is None:
                kk = min(ef, live)
                flt, frac = None, 1.0
            else:
                allowed = self._states.live_allowed(allowed)
                n_ok = len(allowed)
                if n_ok == 0:
                    return (*padded(m, k, self.metric), 0)
                frac = n_ok / live
                post = self._post_filtered(index, queries, k, ef, frac, live, allowed, exps)
                if post is not None:
                    return (*post, m * int(min(index.element_count, max(ef, k) / frac * self.M)))
                if defer_filter:  # allowed rows away from the query: the callback's walk is long
                    return None
                flt = self._states.filter(allowed)  # only now: the post-filter needs none
                ef = filtered_ef(ef, frac)
                kk = min(ef, n_ok)
            try:
                if flt is None:
                    raw_labels, raw_dist = index.knn_query(queries, k=kk)
                else:  # the callable needs the GIL per call: extra threads would only contend
                    raw_labels, raw_dist = index.knn_query(queries, k=kk, num_threads=1, filter=flt)
            except RuntimeError as e:
                if _CONTIGUOUS not in str(e):
                    raise VecstoreError(f"HNSW search failed: {e}") from e
                failed = e
        if failed is not None:
            raw_labels, raw_dist, exps = self._search_rows_carefully(queries, ef, allowed, q_exps)
        visited = m * int(min(index.element_count, ef * self.M / frac))
        return (*self._finish(raw_labels, raw_dist, k, exps), visited)

    def search_trusted(self, queries: np.ndarray, k: int, breadth: int | None) -> tuple[np.ndarray, np.ndarray]:
        # The unfiltered hot path (validated by the collection): one lock round trip and the
        # query; anything unusual (empty index, an unreachable-nodes error) takes search().
        ef = breadth or self.ef
        given = queries
        queries, q_exps = self._scaled_queries(queries)
        lock = self._lock
        lock.acquire_read()
        try:
            index, live = self._index, self._live
            exps = self._score_exps(q_exps, self._exp)
            if index is None or live < k or live < ef:
                raw_labels = None
            else:
                try:
                    raw_labels, raw_dist = index.knn_query(queries, k=ef if ef > k else k)
                except RuntimeError:
                    raw_labels = None
        finally:
            lock.release_read()
        if raw_labels is None:
            labels, scores, _ = self.search(given, k, breadth=breadth)
            return labels, scores
        return self._finish(raw_labels, raw_dist, k, exps)

    def _post_filtered(self, index: hnswlib.Index, queries: np.ndarray, k: int, ef: int, frac: float,
                       live: int, allowed: np.ndarray,
                       exps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """A broad filter without hnswlib's filter callback (called with the GIL for every node
        visited: ~1 ms per query at 10 % of 100k rows near the query, ~65 ms when they lie away
        from it, where the collection scans them exactly instead: ``defer_filter``): search all rows for the ``k'`` nearest,
        ``k' = 2·k / selectivity`` (at least the callback's beam, :func:`filtered_ef`), and keep
        the allowed ones (``allowed``: sorted labels; hnswlib never returns removed ones).
        Whenever those ``k'`` hold at least ``k`` allowed rows, the first ``k`` of them *are* the
        ``k`` nearest allowed rows of the ``k'`` found, so the answer is as good as the unfiltered
        search's recall at width ``k'``. Rows that found fewer fall back to the callback (``None``
        when any does). Caller holds the read lock."""
        kp = max(int(math.ceil(2 * k / frac)), filtered_ef(ef, frac))  # no narrower than the callback's beam
        if frac < _POST_FILTER_MIN_FRACTION or kp > _POST_FILTER_MAX_K or kp > live:
            return None
        try:
            raw_labels, raw_dist = index.knn_query(queries, k=kp)
        except RuntimeError:
            return None
        at = np.minimum(np.searchsorted(allowed, raw_labels), len(allowed) - 1)
        ok = allowed[at] == raw_labels
        if (ok.sum(axis=1) < k).any():
            return None
        rows = [np.flatnonzero(row)[:k] for row in ok]
        picked_l = np.stack([raw_labels[i, r] for i, r in enumerate(rows)])
        picked_d = np.stack([raw_dist[i, r] for i, r in enumerate(rows)])
        return self._finish(picked_l, picked_d, k, exps)

    def _finish(self, raw_labels: np.ndarray, raw_dist: np.ndarray, k: int,
                exps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Labels and public scores from hnswlib's answer; ``exps``: each query's power of two in
        the scores (:meth:`_score_exps`)."""
        got = raw_labels.shape[1]
        labels = raw_labels.view(np.int64)
        if self.metric == "ip":
            scores = np.subtract(np.float32(1.0), raw_dist[:, :k], dtype=np.float32)
            if exps is not None:
                scores = np.ldexp(scores, -exps[:, None].astype(np.int32)).astype(np.float32, copy=False)
        else:
            scores = raw_dist[:, :k]
        if got >= k:
            return np.ascontiguousarray(labels[:, :k]), np.ascontiguousarray(scores)
        out_labels, out_scores = padded(len(labels), k, self.metric)
        out_labels[:, :got] = labels
        out_scores[:, :got] = scores
        return out_labels, out_scores

    def _search_rows_carefully(self, queries: np.ndarray, ef: int, allowed: np.ndarray | None,
                               q_exps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Slow path after "contiguous 2D array": the graph reached fewer live (allowed) nodes
        than asked. That happens when deletions or in-place updates (hnswlib's ``updatePoint``)
        leave live nodes without incoming links, on tiny or heavily churned graphs. Under the
        exclusive lock (``set_ef`` is global; state is re-read, writers may have run):

        - up to ``exact_fallback_rows`` candidates: score them all exactly (``get_items``), so a
          small index never loses a live row;
        - beyond: retry each row alone with a doubled ``ef`` and keep the largest result size
          hnswlib can fill; the rest is padding. ``compact`` (a rebuild) restores the graph.

        ``queries`` are scaled already (``q_exps``); also returns the scores' powers of two.
        """
        with self._lock.write:
            index = self._index
            exps = self._score_exps(q_exps, self._exp)
            m = len(queries)
            if index is None or self._live == 0:
                return np.zeros((m, 0), np.uint64), np.zeros((m, 0), np.float32), exps
            flt = None
            n_ok = self._live
            if allowed is not None:
                allowed = self._states.live_allowed(allowed)
                n_ok = len(allowed)
            kk = min(ef, n_ok)
            if n_ok <= self.exact_fallback_rows:
                return (*self._exact_rows(index, queries, self._states.live_labels(allowed), kk), exps)
            if allowed is not None:
                flt = self._states.filter(allowed)
            labels = np.full((m, kk), np.uint64(2 ** 64 - 1), np.uint64)  # views as -1
            dist = np.full((m, kk), np.inf, np.float32)
            index.set_ef(2 * ef)
            try:
                for i in range(m):
                    q = queries[i:i + 1]
                    lo, hi, best = 0, kk, None
                    while lo < hi:  # largest j in [1, kk] that hnswlib can return
                        j = (lo + hi + 1) // 2
                        try:
                            got = index.knn_query(q, k=j, num_threads=1, filter=flt)
                            lo, best = j, got
                        except RuntimeError as e:
                            if _CONTIGUOUS not in str(e):
                                raise VecstoreError(f"HNSW search failed: {e}") from e
                            hi = j - 1
                    if best is not None:
                        labels[i, :lo], dist[i, :lo] = best[0][0], best[1][0]
            finally:
                index.set_ef(1)
        return labels, dist, exps

    def _exact_rows(self, index: hnswlib.Index, queries: np.ndarray, cand: np.ndarray,
                    kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``kk`` over ``cand`` in hnswlib's distance convention (1 - dot, or squared L2)."""
        vecs = np.asarray(index.get_items(cand), np.float32).astype(np.float64)
        dots = queries.astype(np.float64) @ vecs.T
        if self._space == "l2":
            dist = (queries.astype(np.float64) ** 2).sum(1)[:, None] - 2 * dots + (vecs ** 2).sum(1)[None, :]
        else:
            dist = 1.0 - dots
        kk = min(kk, len(cand))
        top = np.argpartition(dist, kk - 1, axis=1)[:, :kk] if kk < len(cand) else np.tile(np.arange(len(cand)), (len(queries), 1))
        order = np.argsort(np.take_along_axis(dist, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        return cand[top], np.take_along_axis(dist, top, 1).astype(np.float32)

    # -- persistence --------------------------------------------------------------------------

    def save(self, directory: Path, stem: str) -> list[str]:
        """Write ``stem.bin`` (hnswlib), ``stem.labels.npy`` (label states) and ``stem.meta.json``
        (params, counts, sizes and sha256 of the other two), each fsynced, then the directory."""
        directory = Path(directory)
        bin_path = directory / f"{stem}.bin"
        labels_path = directory / f"{stem}.labels.npy"
        meta_path = directory / f"{stem}.meta.json"
        with self._writer:  # no writer can start; searches continue (save only reads the graph)
            try:
                index = self._index
                if index is None:  # an empty index still gets a loadable file set
                    index = self._new_index(1)
                index.save_index(str(bin_path))
                expected = index.index_file_size()
                count = index.element_count
                known, states = self._states.arrays()
                with open(labels_path, "wb") as f:
                    np.save(f, np.stack([known, states.astype(np.uint64)]), allow_pickle=False)
                live, exp = self._live, self._exp
            except OSError as e:
                raise storage_error(e, f"saving {bin_path}") from e
            except RuntimeError as e:
                raise VecstoreError(f"saving {bin_path}: {e}") from e
        try:
            size = os.path.getsize(bin_path)
            if size != expected:  # hnswlib does not report write errors (full disk: §2.2)
                raise StorageFullError(f"{bin_path}: wrote {size} of {expected} bytes (disk full?)")
            fsync_path(bin_path)
            fsync_path(labels_path)
            meta = {
                "format": _FORMAT, "version": _FORMAT_VERSION if exp else 1, "kind": self.kind,
                "dim": self.dim, "metric": self.metric, "space": self._space,
                "params": self.params, "count": count, "live": live, "scale_exp": exp,
                "bin": {"name": bin_path.name, "size": size, "sha256": sha256_file(bin_path)},
                "labels": {"name": labels_path.name, "size": os.path.getsize(labels_path),
                           "sha256": sha256_file(labels_path)},
            }
            write_meta(meta_path, meta)
            fsync_path(directory)
        except OSError as e:
            raise storage_error(e, f"saving {bin_path}") from e
        return [bin_path.name, labels_path.name, meta_path.name]

    @classmethod
    def load(cls, directory: Path, files: list[str], dim: int, metric: Metric,
             params: dict) -> HnswIndex:
        meta, paths = read_meta(Path(directory), files, ".bin", _FORMAT, (1, _FORMAT_VERSION))
        bin_path, labels_path = paths[".bin"], paths.get(".labels.npy")
        check_identity(meta, dim, metric, bin_path)
        stored = meta.get("params") if isinstance(meta.get("params"), dict) else {}
        merged = {**stored, **{k: v for k, v in (params or {}).items() if k in ("ef",)}}
        for key in ("M", "ef_construction"):
            if params and key in params and params[key] != stored.get(key):
                raise CorruptionError(f"{bin_path}: built with {key}={stored.get(key)!r}, expected {params[key]!r}")
        try:
            self = cls(dim, metric, **merged)
        except InvalidArgumentError as e:
            raise CorruptionError(f"{bin_path}: bad parameters in metadata ({e})") from e
        if labels_path is None:
            raise CorruptionError(f"{bin_path}: label file missing from {files!r}")
        exp = meta.get("scale_exp", 0)  # saved before scaling existed: unscaled
        if type(exp) is not int or not 0 <= exp <= 160 or (exp and metric != "ip"):
            raise CorruptionError(f"{bin_path}: bad scale_exp {exp!r} for metric {metric!r}")
        self._exp = exp
        verify_file(bin_path, meta.get("bin"))
        verify_file(labels_path, meta.get("labels"))
        count = meta.get("count")
        self._check_header(bin_path, count)
        try:
            table = np.load(labels_path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CorruptionError(f"{labels_path}: unreadable ({e})") from e
        if table.dtype != np.uint64 or table.ndim != 2 or table.shape[0] != 2 or table.shape[1] != count:
            raise CorruptionError(f"{labels_path}: expected a 2x{count} uint64 table, got {table.dtype} {table.shape}")
        known, states = table[0], table[1].astype(np.uint8)
        if not np.isin(states, (_LIVE, _DELETED)).all() or int(np.count_nonzero(states == _LIVE)) != meta.get("live"):
            raise CorruptionError(f"{labels_path}: label states do not match the metadata")
        if count:
            index = hnswlib.Index(space=self._space, dim=dim)
            try:
                index.load_index(str(bin_path), max_elements=count + max(count // 4, _INITIAL_CAPACITY))
            except (RuntimeError, MemoryError) as e:
                raise CorruptionError(f"{bin_path}: hnswlib refused the file ({e})") from e
            index.set_ef(1)
            ids = np.sort(np.asarray(index.get_ids_list(), dtype=np.uint64))
            if index.element_count != count or not np.array_equal(ids, np.sort(known)):
                raise CorruptionError(f"{bin_path}: graph labels do not match {labels_path.name}")
            self._index = index
            self._states.set(known, _LIVE, np.zeros(len(known), np.uint8))
            self._states.set(known[states == _DELETED], _DELETED,
                             np.full(int(np.count_nonzero(states == _DELETED)), _LIVE, np.uint8))
            self._live = int(meta["live"])
            if "scale_exp" not in meta and metric == "ip" and _scale_exp(self._max_live_norm()):
                # Saved before small ip rows were scaled: hnswlib built this graph from distances
                # 1 - dot that all rounded to 1, so it ranks noise (recall@10 ~0.06 at norms
                # ~1e-4), and every later save would keep it unscaled. The caller rebuilds it.
                raise UnsupportedFormatError(f"{bin_path}: an ip graph of small rows saved before such rows "
                                             f"were scaled (it ranks them at random)")
        return self

    def _max_live_norm(self) -> float:
        """The largest norm of the live rows as hnswlib holds them, read a block at a time."""
        live = self._states.live_labels()
        return max((_norms(np.asarray(self._index.get_items(live[a:a + _SCALE_ROWS]), np.float32)).max()
                    for a in range(0, len(live), _SCALE_ROWS)), default=0.0)

    def _check_header(self, path: Path, count: Any) -> None:
        """Validate hnswlib's header against what we expect before hnswlib parses it (#673)."""
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
        if len(head) != _HEADER.size:
            raise CorruptionError(f"{path}: too short for an hnswlib index ({size} bytes)")
        (off0, max_el, cur, per_el, label_off, data_off, maxlevel, _enter,
         max_m, max_m0, m, _mult, _efc) = _HEADER.unpack(head)
        links0 = max_m0 * 4 + 4
        ok = (isinstance(count, int) and cur == count and off0 == 0 and cur <= max_el
              and m == self.M and max_m == m and max_m0 == 2 * m and data_off == links0
              and label_off == links0 + 4 * self.dim and per_el == label_off + 8
              and -1 <= maxlevel < 64 and size >= _HEADER.size + cur * (per_el + 4))
        if not ok:
            raise CorruptionError(f"{path}: hnswlib header does not match dim={self.dim}, M={self.M}, count={count!r}")
