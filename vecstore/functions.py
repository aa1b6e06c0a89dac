"""The function registry of materialized views: chunkers and UDFs, by name and version.

Python functions cannot be stored in LMDB, so a view's definition names its functions and
pins their versions (``views.py``); a refresh looks them up here, in the running process.

* A **chunker** turns one source value into chunks: ``fn(value, **args) -> Iterable`` whose
  items are strings (each becomes ``{"chunk_text": s}``) or dicts of fields.
* A **UDF** is batched: ``fn(list_a, list_b, ...) -> result`` with one list per input and one
  result per row. With ``dim`` it returns vectors (an ``(n, dim)`` array or ``n`` vectors of
  ``dim`` numbers); without ``dim`` it returns ``n`` JSON-like scalars.

Registering a name again replaces it (a new ``version`` is how a view learns that its stored
outputs are stale).

>>> def words(text, size=3, overlap=0):
...     w = text.split()
...     return [" ".join(w[i:i + size]) for i in range(0, len(w), size - overlap)]
>>> register_chunker("doc-words", words, version="1")
Function(kind='chunker', name='doc-words', version='1')
>>> get_chunker("doc-words").fn("a b c d")
['a b c', 'd']
>>> get_udf("doc-words")
Traceback (most recent call last):
  ...
vecstore.errors.NotFoundError: function 'doc-words' is not registered as a udf (registered udfs: ...
>>> unregister("doc-words")
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from .errors import InvalidArgumentError, NotFoundError

__all__ = ["Function", "register_chunker", "register_udf", "get_chunker", "get_udf", "get",
           "unregister", "list_functions"]

DEFAULT_BATCH_SIZE = 256

_LOCK = threading.Lock()
_REGISTRY: dict[tuple[str, str], "Function"] = {}   # (kind, name) -> Function


@dataclass(frozen=True)
class Function:
    """One registered function. ``dim`` is set for UDFs that return vectors."""

    kind: str                    # "chunker" | "udf"
    name: str
    version: str
    fn: Callable[..., Any]
    dim: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def ref(self) -> str:
        """``name@version``, as reasons and stats name a function."""
        return f"{self.name}@{self.version}"

    def __repr__(self) -> str:
        return f"Function(kind={self.kind!r}, name={self.name!r}, version={self.version!r})"

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "name": self.name, "version": self.version}
        if self.kind == "udf":
            out.update(dim=self.dim, batchSize=self.batch_size)
        return out


def _check_common(name: Any, fn: Any, version: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not name or len(name) > 128:
        raise InvalidArgumentError(f"name: expected a non-empty string of at most 128 characters, got {name!r}")
    if not callable(fn):
        raise InvalidArgumentError(f"fn: expected a callable for function {name!r}, got {type(fn).__name__}")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version:
        raise InvalidArgumentError(f"version: expected a non-empty string for function {name!r}, got {version!r}")
    return name, version


def register_chunker(name: str, fn: Callable[..., Any], *, version: str = "1") -> Function:
    """Register ``fn(value, **args) -> Iterable[str | dict]`` as chunker ``name``.

    The chunker is called once per source row; it may yield no chunk (the row is then
    processed and leaves no rows in the view).
    """
    name, version = _check_common(name, fn, version)
    f = Function("chunker", name, version, fn)
    with _LOCK:
        _REGISTRY[("chunker", name)] = f
    return f


def register_udf(name: str, fn: Callable[..., Any], *, version: str = "1", dim: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> Function:
    """Register a batched UDF ``fn(*input_lists) -> results`` as ``name``.

    ``dim``: the function returns one float vector of ``dim`` numbers per row (an embedder);
    without it, one JSON-like scalar per row. ``batch_size``: at most this many rows per call.
    """
    name, version = _check_common(name, fn, version)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 65536):
        raise InvalidArgumentError(f"dim: expected an int in [1, 65536] for udf {name!r}, got {dim!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size: expected a positive int for udf {name!r}, got {batch_size!r}")
    f = Function("udf", name, version, fn, dim=dim, batch_size=batch_size)
    with _LOCK:
        _REGISTRY[("udf", name)] = f
    return f


def get(kind: str, name: str) -> Function:
    """The function registered as ``kind`` (``"chunker"`` or ``"udf"``) ``name``; NotFoundError
    (naming what is registered) otherwise."""
    with _LOCK:
        f = _REGISTRY.get((kind, name))
        if f is None:
            known = sorted(n for k, n in _REGISTRY if k == kind)
    if f is None:
        raise NotFoundError(f"function {name!r} is not registered as a {kind} "
                            f"(registered {kind}s: {', '.join(known) if known else 'none'}); "
                            f"call vecstore.functions.register_{kind}({name!r}, fn, version=...) first")
    return f


def get_chunker(name: str) -> Function:
    return get("chunker", name)


def get_udf(name: str) -> Function:
    return get("udf", name)


def unregister(name: str, kind: str | None = None) -> None:
    """Forget ``name`` (of one kind, or of both). Unknown names are ignored."""
    with _LOCK:
        for k in (kind,) if kind else ("chunker", "udf"):
            _REGISTRY.pop((k, name), None)


def list_functions() -> list[dict]:
    """What is registered: ``[{"kind", "name", "version", ...}]`` sorted by kind and name."""
    with _LOCK:
        return [f.to_dict() for _, f in sorted(_REGISTRY.items())]
