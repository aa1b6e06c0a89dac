"""Score fusion for hybrid search: reciprocal rank fusion and weighted min-max scores.

Pure functions over *result legs* (LynseDB §8.5). A leg is ``(ids, scores, weight,
higher_is_better)``: the hits of one search, best first. Per id, the contributions of the legs
are summed:

- ``rrf``: ``weight / (max(rrf_k, 1) + rank + 1)``, ``rank`` the 0-based position in the leg
  (scores are not used);
- ``weighted``: ``minmax_normalise(scores) * max(weight, 0)``.

Then ids are sorted by fused score, descending, and truncated to ``k``. **Ties** are broken by
the best (smallest) rank the id has in any leg, then by first appearance (legs in the order
given, positions within a leg), so equal inputs always give equal outputs. An id repeated
within one leg counts once, at its first (best) position. Sums are float64, added leg by leg.

>>> ids, scores = fuse([(np.array([0, 1, 2, 3]), np.array([4., 3., 2., 1.]), 1.0, True),
...                     (np.array([3, 1, 0]), np.array([.3813, .3492, .3220]), 1.0, True)], 3)
>>> ids.tolist(), np.round(scores, 6).tolist()
([0, 1, 3], [0.032266, 0.032258, 0.032018])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

__all__ = ["FUSIONS", "fuse", "minmax_normalise"]

FUSIONS = ("rrf", "weighted")

Leg = tuple[Any, Any, float, bool]
_F64_MAX = np.finfo(np.float64).max


def minmax_normalise(scores: np.ndarray, *, higher_is_better: bool) -> np.ndarray:
    """Scale scores to [0, 1] so that 1 is the best hit of the leg.

    ``(s - min) / (max - min)``, inverted (``1 - x``) when lower is better (distances); when
    all scores are equal (one hit included) every value is 1.0.

    >>> minmax_normalise(np.array([0.5, 1.0, 2.0]), higher_is_better=False).tolist()
    [1.0, 0.6666666666666667, 0.0]
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        return s
    if np.isnan(s).any():
        raise InvalidArgumentError("scores: expected scores to normalise, got NaN")
    # a score that overflowed float32 (a distance between huge vectors) ranks at its end
    s = np.clip(s, -_F64_MAX, _F64_MAX)
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.ones_like(s)
    with np.errstate(over="ignore"):
        span = hi - lo
    if np.isinf(span):
        # ends over F64_MAX apart (+inf and -inf in one leg): halved, every difference is finite
        # (halving is exact but for subnormals, which do not matter beside such a span); else
        # (s - lo) / inf gave 0 for every hit and inf / inf NaN for the best one
        x = (s / 2 - lo / 2) / (hi / 2 - lo / 2)
    else:
        x = (s - lo) / span
    return x if higher_is_better else 1.0 - x


def _check_fusion(fusion: Any) -> str:
    name = fusion.strip().lower() if isinstance(fusion, str) else None
    if name not in FUSIONS:
        raise InvalidArgumentError(f"fusion: expected 'rrf' or 'weighted', got {fusion!r}")
    return name


def fuse(legs: Sequence[Leg | None], k: int, *, fusion: str = "rrf",
         rrf_k: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Fuse result legs into one ranking of at most ``k`` ids: ``(ids, scores float64)``.

    ``legs`` holds ``(ids, scores, weight, higher_is_better)`` tuples with ids best first; a leg
    may be ``None`` or empty. ``ids`` keep their dtype when every leg has the same one (uint64
    labels stay uint64), else they come back as an object array. Raises
    ``InvalidArgumentError`` for an unknown ``fusion`` (naming it), a bad ``k``, or a leg whose
    ids and scores differ in length.
    """
    fusion = _check_fusion(fusion)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidArgumentError(f"k: expected a non-negative integer, got {k!r}")
    base = max(float(rrf_k), 1.0)
    id_parts, contrib_parts, rank_parts = [], [], []
    for n, leg in enumerate(legs):
        if leg is None:
            continue
        ids, scores, weight, hib = leg
        ids = np.asarray(ids).ravel()
        if ids.size == 0:
            continue
        rank = np.arange(ids.size, dtype=np.int64)
        if fusion == "rrf":
            contrib = float(weight) / (base + rank + 1.0)
        else:
            scores = np.asarray(scores).ravel()
            if scores.size != ids.size:
                raise InvalidArgumentError(
                    f"legs[{n}]: expected one score per id, got {scores.size} scores for {ids.size} ids")
            contrib = minmax_normalise(scores, higher_is_better=bool(hib)) * max(float(weight), 0.0)
        id_parts.append(ids)
        contrib_parts.append(contrib)
        rank_parts.append(rank)
    if not id_parts:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float64)
    dtypes = {p.dtype for p in id_parts}
    all_ids = np.concatenate(id_parts if len(dtypes) == 1 else [p.astype(object) for p in id_parts])
    codes, uniq = _codes(all_ids)
    leg_of = np.repeat(np.arange(len(id_parts)), [p.size for p in id_parts])
    # Keep the first occurrence of each (id, leg) pair.
    _, first_in_leg = np.unique(codes * len(id_parts) + leg_of, return_index=True)
    keep = np.zeros(all_ids.size, dtype=bool)
    keep[first_in_leg] = True
    codes = codes[keep]
    contrib = np.concatenate(contrib_parts)[keep]
    rank = np.concatenate(rank_parts)[keep]
    appear = np.flatnonzero(keep)
    n_ids = len(uniq)
    # Sum leg by leg (np.add.at adds in array order), so a sum never depends on the sort above.
    total = np.zeros(n_ids, dtype=np.float64)
    np.add.at(total, codes, contrib)
    best_rank = np.full(n_ids, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best_rank, codes, rank)
    first = np.full(n_ids, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, codes, appear)
    order = np.lexsort((first, best_rank, -total))[:k]
    return uniq[order], total[order]


def _codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense integer codes for ids, and the id of each code."""
    if ids.dtype != object:
        uniq, codes = np.unique(ids, return_inverse=True)
        return codes.ravel().astype(np.int64), uniq
    table: dict[Any, int] = {}
    codes = np.fromiter((table.setdefault(x, len(table)) for x in ids.tolist()), dtype=np.int64,
                        count=ids.size)
    uniq = np.empty(len(table), dtype=object)
    uniq[:] = list(table)
    return codes, uniq
