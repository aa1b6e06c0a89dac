"""Typed, frozen result values shared by the local and the remote API.

Every value has ``to_dict()`` (the JSON shape the server sends) and a ``from_dict()`` twin the
remote client uses, so a result looks the same whichever transport produced it.

>>> r = SearchResult(ids=(3, 1), scores=np.array([0.9, 0.5], dtype=np.float32), fields=None, k=2)
>>> ids, scores, fields = r
>>> ids, [round(float(s), 2) for s in scores], fields
((3, 1), [0.9, 0.5], None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence, Union

import numpy as np

Id = Union[int, str]
_F32_MAX = np.finfo(np.float32).max
# What calls accept as ids: numpy integers and arrays too (ids come back as plain int / str).
IdLike = Union[int, str, np.integer]
Ids = Union[Sequence[IdLike], np.ndarray]


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so results JSON-encode as they are."""
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Hits of one query, best first.

    ``ids`` and ``scores`` line up; ``fields`` is one dict per hit when fields were asked for,
    else ``None``. Scores follow the metric: inner product (higher is better), squared L2 and
    cosine distance ``1 - cos`` (lower is better); text, sparse and hybrid scores are higher-is-better.
    ``index`` names what answered (``"FLAT-IP"``, ``"HNSW-COS"``, ``"BM25-INVERTED"``, ``"SPARSE-FLAT-IP"``,
    ``"HYBRID-RRF"``...). The result unpacks as ``ids, scores, fields``.
    """

    ids: tuple[Id, ...]
    scores: np.ndarray
    fields: tuple[dict, ...] | None
    k: int
    index: str = "FLAT"
    vector_field: str = "default"

    def __iter__(self) -> Iterator[Any]:
        return iter((self.ids, self.scores, self.fields))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        """Scores to 6 significant digits: rounding to 4 decimals printed distinct small distances
        (``1e-6``, ``4e-6``) all as ``0.0``.

        >>> SearchResult(ids=(1, 2), scores=np.array([0, 1e-6], np.float32), fields=({}, {}), k=5)
        SearchResult(ids=[1, 2], scores=[0, 1e-06], fields=[2 dicts], k=5, index='FLAT')
        """
        scores = ", ".join(f"{s:.6g}" for s in np.asarray(self.scores, dtype=np.float64).tolist())
        fields = "None" if self.fields is None else f"[{len(self.fields)} dicts]"
        return f"SearchResult(ids={list(self.ids)!r}, scores=[{scores}], fields={fields}, k={self.k}, index={self.index!r})"

    def to_dict(self) -> dict:
        """The wire shape of LynseDB's ``items``: ``{"k", "ids", "scores", "fields", ...}``. JSON
        has no infinity: a score that overflowed float32 is sent as ±3.4028235e38 (read back as
        ±inf by :meth:`from_dict`)."""
        return {
            "k": self.k,
            "ids": [_plain(i) for i in self.ids],
            "scores": np.clip(np.asarray(self.scores), -_F32_MAX, _F32_MAX).tolist(),
            "fields": list(self.fields) if self.fields is not None else [],
            "index": self.index,
            "vector_field": self.vector_field,
        }

    @classmethod
    def from_dict(cls, d: dict, *, with_fields: bool = False) -> "SearchResult":
        """The result :meth:`to_dict` sent. Its ±3.4028235e38 scores read back as ±inf: a float32
        score of exactly that value (the largest finite one) is in practice an overflow, and the
        two compare the same against every other score."""
        fields = d.get("fields")
        scores = np.asarray(d.get("scores", d.get("distances", [])), dtype=np.float32)
        over = np.abs(scores) == _F32_MAX
        if over.any():
            scores[over] = np.copysign(np.inf, scores[over])
        return cls(
            ids=tuple(d["ids"]),
            scores=scores,
            fields=tuple(fields) if (with_fields and fields is not None) else None,
            k=int(d.get("k", len(d["ids"]))),
            index=d.get("index", "FLAT"),
            vector_field=d.get("vector_field", "default"),
        )


@dataclass(frozen=True, eq=False)
class Rows:
    """Rows read back (head, tail, read_by_only_id, query_vectors).

    Unpacks as ``vectors, ids, fields`` — LynseDB's order — and ``len()`` is the row count.
    """

    vectors: np.ndarray
    ids: tuple[Id, ...]
    fields: tuple[dict, ...]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.vectors, self.ids, self.fields))

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> list:
        """LynseDB's ``[vectors, ids, fields]`` triple."""
        return [self.vectors.tolist(), [_plain(i) for i in self.ids], list(self.fields)]

    @classmethod
    def from_dict(cls, triple: list, dim: int) -> "Rows":
        n = len(triple[1])  # -1 would not do for no rows, nor dim for a dim not known yet (0)
        vectors = np.asarray(triple[0], dtype=np.float32).reshape(n, -1 if n else dim)
        return cls(vectors=vectors, ids=tuple(triple[1]), fields=tuple(triple[2]))


@dataclass(frozen=True)
class CollectionStats:
    """Counts of a collection. ``n_vectors`` includes soft-deleted rows; ``max_id`` is -1 when
    there is no integer id."""

    n_vectors: int
    n_live: int
    n_tombstoned: int
    dimension: int
    index_mode: str | None  # None: no index built (searches are exact)
    max_id: int
    version: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "CollectionStats":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class CollectionConfig:
    """What a collection was created with (persisted; reopening needs no arguments)."""

    dim: int
    metric: str
    description: str | None
    chunk_size: int = 100_000
    durability: str = "safe"
    kind: str = "collection"  # "external" (synced from Iceberg) or "view" (materialized)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "CollectionConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class VectorFieldInfo:
    """A vector field: ``default`` (the primary vector) or a named one."""

    name: str
    dimension: int
    metric: str
    index_mode: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class ProfiledSearch:
    """A search result with how it was produced: ``plan`` (``"flat_mmap"``,
    ``"flat_mmap_filtered"``, ``"ann_index"``, ``"ann_index_filtered"``), what answered, how
    many candidates were scored, how many rows the filter allowed, and microseconds per stage."""

    result: SearchResult
    profile: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"items": self.result.to_dict(), "profile": dict(self.profile)}
