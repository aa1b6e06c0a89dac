"""Metrics, index-mode names and the interface every derived vector index implements.

Vectors reach an index already validated (float32, C-contiguous, finite, right dimension) and,
for the cosine metric, normalised to unit length (the field stores them as written and
normalises what it hands its index, ``VectorSpace.for_index``), so every index computes cosine
as ``1 - dot``. Scores leave an index in the public convention (LynseDB §8.2):

- ``ip``: the dot product, higher is better;
- ``l2``: the squared Euclidean distance, lower is better;
- ``cosine``: the cosine distance ``1 - cos``, lower is better.

>>> parse_index_mode("hnsw-cos", default_metric="ip")
IndexMode(kind='HNSW', metric='cosine', name='hnsw-cos')
>>> parse_index_mode("IVF", default_metric="l2").canonical
'IVF-L2'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np

from ..errors import InvalidArgumentError

Metric = Literal["ip", "l2", "cosine"]
Progress = Callable[[int, int], None]  # (done, total) of a long build
METRICS: tuple[str, ...] = ("ip", "l2", "cosine")
_METRIC_ALIASES = {
    "ip": "ip", "inner_product": "ip", "inner": "ip", "dot": "ip",
    "l2": "l2", "l2sq": "l2", "l2_squared": "l2", "euclidean": "l2",
    "cosine": "cosine", "cos": "cosine", "cosine_distance": "cosine",
}
_METRIC_TOKEN = {"ip": "IP", "l2": "L2", "cosine": "COS"}
KINDS: tuple[str, ...] = ("FLAT", "HNSW", "IVF")


def parse_metric(value: Any, *, param: str = "metric") -> Metric:
    """Normalise a metric name (``"IP"``, ``"dot"``, ``"cos"``, ``"euclidean"`` ...).

    >>> parse_metric("COS")
    'cosine'
    """
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key not in _METRIC_ALIASES:
        raise InvalidArgumentError(
            f"{param}: expected one of ip, l2, cosine (or an alias such as dot, euclidean, cos), got {value!r}")
    return _METRIC_ALIASES[key]  # type: ignore[return-value]


def higher_is_better(metric: str) -> bool:
    """True for inner product, whose score is a similarity; distances sort ascending."""
    return metric == "ip"


@dataclass(frozen=True)
class IndexMode:
    """A parsed index mode: ``kind`` (FLAT, HNSW, IVF), ``metric`` and the ``name`` as given."""

    kind: str
    metric: Metric
    name: str

    @property
    def canonical(self) -> str:
        return f"{self.kind}-{_METRIC_TOKEN[self.metric]}"


#: The build parameters LynseDB's client knows, by index family (lynse_api §4.3). Its
#: ``build_index(**kwargs)`` sends whatever it is given, and LynseDB ignores the keys of another
#: family (one kwargs dict may serve every mode); vecstore does the same for these keys only,
#: and maps LynseDB's names of its own parameters. Any other unknown key is still an error.
_LYNSE_BUILD_KEYS = {
    "FLAT": frozenset(),
    "HNSW": frozenset({"m", "ef_construction", "ef_search", "max_level"}),
    "IVF": frozenset({"n_clusters", "n_centroids", "nprobe"}),
}
_LYNSE_FOREIGN_KEYS = frozenset({"r", "l", "alpha", "max_degree", "replica_count"}).union(*_LYNSE_BUILD_KEYS.values())
_LYNSE_ALIASES = {"ef_search": "ef", "n_centroids": "n_clusters"}


def lynse_build_params(kind: str, params: dict) -> dict:
    """``params`` for an index of ``kind`` (``FLAT``/``HNSW``/``IVF``): LynseDB's parameters of
    other index families dropped, its names of ours renamed.

    >>> lynse_build_params("HNSW", {"ef_search": 64, "n_clusters": 8, "M": 16})
    {'ef': 64, 'M': 16}
    """
    own = _LYNSE_BUILD_KEYS.get(kind, frozenset())
    return {_LYNSE_ALIASES.get(k, k): x for k, x in params.items() if k not in _LYNSE_FOREIGN_KEYS or k in own}


def parse_index_mode(mode: Any, *, default_metric: str, param: str = "index_mode") -> IndexMode:
    """Parse ``FLAT``, ``HNSW-COS``, ``IVF-L2``, ``FLAT-COSINE`` ... (case-insensitive).

    A bare kind takes the collection's metric. Quantised variants (``-SQ8``, ``-PQ``) and other
    kinds are refused with a clear error rather than silently treated as something else.
    """
    if not isinstance(mode, str) or not mode.strip():
        raise InvalidArgumentError(f"{param}: expected an index mode such as 'HNSW-COS', got {mode!r}")
    tokens = mode.strip().upper().replace("_", "-").split("-")
    kind = tokens[0]
    if kind not in KINDS:
        raise InvalidArgumentError(
            f"{param}: unknown index type {mode!r}; expected FLAT, HNSW or IVF with an optional "
            f"metric suffix (-IP, -L2, -COS)")
    rest = tokens[1:]
    if len(rest) > 1 or (rest and rest[0].lower() not in _METRIC_ALIASES):
        raise InvalidArgumentError(
            f"{param}: unsupported index mode {mode!r}; expected {kind}, {kind}-IP, {kind}-L2 or {kind}-COS")
    metric = parse_metric(rest[0]) if rest else parse_metric(default_metric)
    return IndexMode(kind=kind, metric=metric, name=mode.strip())


class VectorIndex(ABC):
    """An approximate index over ``(label, vector)`` pairs of one vector field.

    Labels are the collection's internal ``uint64`` row labels. The index never decides what is
    live: the collection tells it (``add`` / ``remove``). Implementations are thread-safe: any
    number of concurrent ``search`` calls, and ``add`` / ``remove`` / ``save`` serialised against
    searches (hnswlib must not see a search during an insert).
    """

    kind: ClassVar[str]

    def __init__(self, dim: int, metric: Metric, **params: Any) -> None:
        self.dim = dim
        self.metric = metric

    @property
    @abstractmethod
    def params(self) -> dict:
        """The build parameters, persisted with the index (e.g. ``{"M": 16, ...}``)."""

    @abstractmethod
    def build(self, labels: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> None:
        """Replace the content with these rows (bulk path; may be faster than ``add``).
        ``progress(done, total)`` is called as the build advances (units are the index's own:
        rows for HNSW, k-means rounds for IVF), last with ``done == total``."""

    @abstractmethod
    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert rows, or replace the vector of labels already present. A label that holds
        exactly this vector already (bit for bit) keeps its place, made live again if it was
        removed: the collection re-adds unchanged rows (a fields-only upsert, a restore, a
        replay) and leaves the comparison to the index, which knows what it stores."""

    @abstractmethod
    def remove(self, labels: np.ndarray) -> None:
        """Drop labels from search results; unknown labels are ignored."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, *, breadth: int | None = None,
               allowed: np.ndarray | None = None,
               defer_filter: bool = False) -> tuple[np.ndarray, np.ndarray, int] | None:
        """k nearest labels for each query row.

        ``breadth`` is the search width (HNSW ``ef``, IVF ``nprobe``); ``allowed`` is a sorted
        ``uint64`` array of the labels that may be returned (``None``: all). Returns
        ``(labels int64 (m, k), scores float32 (m, k), visited)`` with ``-1`` labels padding rows
        that found fewer than k, scores in the public convention, and ``visited`` the number of
        candidates scored (for ``search_profile``). ``defer_filter``: ``None`` instead where the
        filter would take a walk far costlier than an exact scan of the allowed rows, which the
        caller then does (HNSW's per-node filter callback); indexes without one ignore it.
        """

    def search_trusted(self, queries: np.ndarray, k: int, breadth: int | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` without a filter, for callers that validated ``queries`` (a C-contiguous
        float32 ``(m, dim)`` matrix), ``k`` and ``breadth`` already: the collection's hot path.
        Returns ``(labels, scores)``; indexes override it where re-checking costs measurably."""
        labels, scores, _ = self.search(queries, k, breadth=breadth)  # type: ignore[misc]
        return labels, scores

    @abstractmethod
    def __len__(self) -> int:
        """Number of live labels."""

    @abstractmethod
    def save(self, directory: Path, stem: str) -> list[str]:
        """Write the index as files named ``stem*`` in ``directory``; return their names.
        Files are fsynced; the caller commits the LMDB record pointing at them afterwards."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, files: list[str], dim: int, metric: Metric,
             params: dict) -> "VectorIndex":
        """Read an index written by ``save``; raise ``CorruptionError`` if it does not check."""
