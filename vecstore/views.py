"""Materialized views: collections derived from another collection by a filter, a chunker and
UDFs (embedders), refreshed incrementally by async jobs (LanceDB Geneva's model, spec/002).

A view is a read-only collection of kind ``"view"``. Its meta holds the definition
(``mv:definition``, functions pinned by name and version), the refresh state (``mv:state``:
the source version reached and the source rows still pending) and the checkpoints of computed
fragments (``mv:stage:<hash>``).

**Refresh** brings the view to source version ``X`` (``src_version``, default the current one):

1. *Plan* (one read transaction of the source): the source rows touched by commits in
   ``(last, X]`` (the source's change log) plus the rows left pending by an ``output_limit``,
   each judged by its state at ``X``: live and matching ``where`` -> compute; deleted or not
   matching -> its children leave the view (cascade); written again after ``X`` -> deferred
   (the view keeps its previous children; the next refresh takes the row). A row removed by
   ``compact()`` leaves no id behind, so its children are found by a sweep of the view.
2. *Fragments*: the touched rows, in storage order, cut into fragments of
   ``max_rows_per_fragment`` source rows. A fragment's checkpoint key hashes the definition,
   the function versions and the ``(row, row version)`` pairs it computes, so a fragment whose
   rows did not change is never computed twice: a failed, cancelled or interrupted job keeps
   the checkpoints of its finished fragments and a re-run reuses them.
3. *Compute*: fragments run on ``concurrency`` workers (threads, or Ray tasks with
   ``cluster``); inside one, the chunker runs per source row and each UDF per batch,
   ``intra_applier_concurrency`` calls at a time. Each finished fragment is checkpointed.
4. *Commit*: children of processed rows are replaced (ids from :func:`child_id`, ``"7#0"``;
   a 1:1 ``udf`` view keeps the source ids), ``output_limit`` trims, and rows, deletes and the
   new state go in ONE transaction of the view: readers see the previous view until then.

**The source is a collection, not a name.** The view stores its source's name, but a name can
be dropped and re-created, or restored from a snapshot, and the new collection's change log
has nothing to do with the version the view reached. So the source carries an identity
(``mv:sourceIdentity`` in its meta: a random id, minted when a view is first created on it or,
for older stores, at the next refresh) bound to its ``data.mdb`` file; the view keeps the
identity it was built from in its state. A re-created (or imported) source has none; a
restored one (or a store copied file by file) has one recorded with a file that is no longer
its own. Either way the source gets a new identity, and the view's next refresh rebuilds it
from scratch (``stats.mode == "full"``, ``stats.sourceChanged``) instead of reading a foreign
log. A restore of the whole database rebuilds its views once too.

>>> import tempfile, numpy as np, vecstore
>>> db = vecstore.connect(tempfile.mkdtemp()).create_database("app")
>>> docs = db.create_collection("docs", dim=2)
>>> _ = docs.add(np.ones((2, 2)), ids=[1, 2], fields=[{"body": "a b c d e"}, {"body": "f g"}])
>>> _ = vecstore.functions.register_chunker("pairs", lambda t, size: [
...     " ".join(t.split()[i:i + size]) for i in range(0, len(t.split()), size)])
>>> _ = vecstore.functions.register_udf("count", lambda xs: [[len(x), 1.0] for x in xs], dim=2)
>>> view = db.create_materialized_view("chunks", source="docs", definition={
...     "kind": "chunker", "chunker": {"name": "pairs", "input": "body", "args": {"size": 2}},
...     "udfs": [{"name": "count", "inputs": ["chunk_text"], "output": "vec"}], "vectorField": "vec"})
>>> db.wait_refresh_job(db.refresh_materialized_view("chunks")).state
'COMPLETED'
>>> sorted(view.query(return_ids_only=True))
['1#0', '1#1', '1#2', '2#0']
>>> db.client.close()
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from . import functions as fx
from . import validation as v
from .errors import InvalidArgumentError, NotFoundError, ReadOnlyError, VecstoreError
from .filters import compile_where
from .indexes.base import parse_metric

if TYPE_CHECKING:
    from .collection import Collection
    from .jobs import JobContext

log = logging.getLogger(__name__)

__all__ = ["DatabaseViews", "child_id", "parse_lance_id", "parse_manifest", "DEFAULT_MAX_ROWS_PER_FRAGMENT"]

META_DEF = "mv:definition"
META_SOURCE = "mv:source"
META_STATE = "mv:state"
META_SOURCE_ID = "mv:sourceIdentity"   # kept in the SOURCE's meta: {"id", "file"}
STAGE = "mv:stage:"
DEFAULT_MAX_ROWS_PER_FRAGMENT = 4096
JOB_KIND = "mv_refresh"
_DEF_KEYS = {"kind", "where", "select", "chunker", "udfs", "vectorField", "metric", "description"}
_RESERVED = ("src_id", "chunk_index", "id")  # "id": the row's id in reads and filters, no field
_RUNTIME_KEYS = ("env_vars", "pip", "py_modules", "working_dir", "conda")
_MANIFEST_KEYS = {"functions", "name", "version", "checksum", *_RUNTIME_KEYS}


# ---------------------------------------------------------------------------------------------
# Wire helpers (the server's Lance-style paths)


def parse_lance_id(value: str | Sequence[str], delimiter: str | None = "$") -> tuple[str | None, str]:
    """A Lance Namespace id as ``(database, view)``: ``"app$doc_chunks"`` or
    ``["app", "doc_chunks"]``; a bare ``"doc_chunks"`` gives ``(None, "doc_chunks")`` (the
    caller's default database). The root namespace (the delimiter alone) is no view: 400.

    >>> parse_lance_id("app$doc_chunks"), parse_lance_id("app#c", "#"), parse_lance_id(["c"])
    (('app', 'doc_chunks'), ('app', 'c'), (None, 'c'))
    """
    delimiter = delimiter or "$"
    if isinstance(value, str):
        if value in ("", delimiter):
            raise InvalidArgumentError("id: the root namespace is not a materialized view")
        parts = value.split(delimiter)
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        parts = list(value)
    else:
        raise InvalidArgumentError(f"id: expected a string or a list of strings, got {value!r}")
    if not parts or len(parts) > 2 or not all(parts):
        raise InvalidArgumentError(
            f"id: expected 'database{delimiter}view' or 'view', got {delimiter.join(parts)!r}")
    v.check_name(parts[-1], what="id")
    if len(parts) == 2:
        v.check_name(parts[0], what="id")
        return parts[0], parts[1]
    return None, parts[0]


def parse_manifest(manifest: str | dict | None) -> dict:
    """A per-refresh override (JSON text or dict): ``{"functions": {name: {"version",
    "batchSize"}}, "env_vars", "pip", "py_modules", ...}``; the runtime keys need a Ray
    ``cluster``. Geneva's descriptive keys (``name``, ``version``, ``checksum``) are recorded."""
    if manifest is None:
        return {}
    if isinstance(manifest, str):
        try:
            manifest = json.loads(manifest)
        except ValueError as e:
            raise InvalidArgumentError(f"manifest: expected JSON, got {manifest[:60]!r} ({e})") from None
    if not isinstance(manifest, dict):
        raise InvalidArgumentError(f"manifest: expected a JSON object, got {type(manifest).__name__}")
    unknown = set(manifest) - _MANIFEST_KEYS
    if unknown:
        raise InvalidArgumentError(f"manifest: unknown key(s) {sorted(unknown)}; expected some of {sorted(_MANIFEST_KEYS)}")
    funcs = manifest.get("functions", {})
    if not isinstance(funcs, dict):
        raise InvalidArgumentError("manifest.functions: expected an object of function name -> overrides")
    for name, over in funcs.items():
        if not isinstance(over, dict) or set(over) - {"version", "batchSize", "batch_size"}:
            raise InvalidArgumentError(
                f"manifest.functions[{name!r}]: expected an object with 'version' and/or 'batchSize', got {over!r}")
        bs = over.get("batchSize", over.get("batch_size"))
        if bs is not None:
            v.check_positive_int(bs, param=f"manifest.functions[{name!r}].batchSize")
    if "env_vars" in manifest and not (isinstance(manifest["env_vars"], dict)
                                      and all(isinstance(x, str) for x in manifest["env_vars"].values())):
        raise InvalidArgumentError("manifest.env_vars: expected an object of string values")
    return json.loads(json.dumps(manifest))  # a plain, msgpack-able copy


def _check_cluster(cluster: Any) -> str | None:
    if cluster is None:
        return None
    if not isinstance(cluster, str) or not (cluster == "local" or cluster.startswith("ray://")):
        raise InvalidArgumentError(f"cluster: expected 'local' or a 'ray://host:port' address, got {cluster!r}")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InvalidArgumentError(
            f"cluster: {cluster!r} needs Ray, which is not installed; pip install 'vecstore[ray]'") from None
    return cluster


# ---------------------------------------------------------------------------------------------
# The definition


def _fn_version(kind: str, spec: dict, param: str) -> tuple[str, fx.Function | None]:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{param}.name: expected a function name, got {name!r}")
    try:
        f = fx.get(kind, name)
    except NotFoundError:
        f = None
    version = spec.get("version")
    if version is None:
        if f is None:
            raise NotFoundError(f"{param}: {kind} {name!r} is not registered; register it first or pin a 'version'")
        version = f.version
    return str(version), f


def normalise_definition(definition: dict) -> dict:
    """Check a definition and fill in what the registry knows (versions, the vector dim)."""
    if not isinstance(definition, dict):
        raise InvalidArgumentError(f"definition: expected an object, got {type(definition).__name__}")
    unknown = set(definition) - _DEF_KEYS
    if unknown:
        raise InvalidArgumentError(f"definition: unknown key(s) {sorted(unknown)}; expected some of {sorted(_DEF_KEYS)}")
    kind = definition.get("kind", "chunker")
    if kind not in ("chunker", "udf"):
        raise InvalidArgumentError(f"definition.kind: expected 'chunker' or 'udf', got {kind!r}")
    where = definition.get("where")
    if where is not None:
        compile_where(v.check_str(where, param="definition.where"))
    select = definition.get("select", [])
    if select != "*":
        if not isinstance(select, list) or not all(isinstance(s, str) and s for s in select):
            raise InvalidArgumentError(f"definition.select: expected a list of field names or '*', got {select!r}")
        bad = [s for s in select if s in _RESERVED]
        if bad:
            raise InvalidArgumentError(f"definition.select: {bad} are names the view sets itself")
    out: dict = {"kind": kind, "where": where, "select": select, "chunker": None}
    if kind == "chunker":
        ch = definition.get("chunker")
        if not isinstance(ch, dict) or set(ch) - {"name", "version", "input", "args"}:
            raise InvalidArgumentError(f"definition.chunker: expected {{name, input, args?, version?}}, got {ch!r}")
        inp = v.check_str(ch.get("input"), param="definition.chunker.input")
        args = ch.get("args", {}) or {}
        if not isinstance(args, dict):
            raise InvalidArgumentError(f"definition.chunker.args: expected an object, got {args!r}")
        version, _ = _fn_version("chunker", ch, "definition.chunker")
        out["chunker"] = {"name": ch["name"], "version": version, "input": inp,
                          "args": json.loads(json.dumps(args))}
    elif definition.get("chunker") is not None:
        raise InvalidArgumentError("definition.chunker: only a 'chunker' view has a chunker")
    udfs = definition.get("udfs", [])
    if not isinstance(udfs, list):
        raise InvalidArgumentError(f"definition.udfs: expected a list, got {udfs!r}")
    seen: set[str] = set()
    out["udfs"] = []
    for i, u in enumerate(udfs):
        param = f"definition.udfs[{i}]"
        if not isinstance(u, dict) or set(u) - {"name", "version", "inputs", "output", "dim"}:
            raise InvalidArgumentError(f"{param}: expected {{name, inputs, output, version?, dim?}}, got {u!r}")
        inputs = u.get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) and x for x in inputs):
            raise InvalidArgumentError(f"{param}.inputs: expected a non-empty list of field names, got {inputs!r}")
        output = v.check_str(u.get("output"), param=f"{param}.output")
        if not output or output in seen or output in _RESERVED:
            raise InvalidArgumentError(f"{param}.output: {output!r} is empty, repeated or reserved")
        seen.add(output)
        version, f = _fn_version("udf", u, param)
        dim = u.get("dim", f.dim if f is not None else None)
        if dim is not None:
            dim = v.check_positive_int(dim, param=f"{param}.dim")
        out["udfs"].append({"name": u["name"], "version": version, "inputs": list(inputs), "output": output, "dim": dim})
    vf = definition.get("vectorField")
    producer = [u for u in out["udfs"] if u["output"] == vf]
    if not producer or producer[0]["dim"] is None:
        raise InvalidArgumentError(
            f"definition.vectorField: expected the output of a UDF registered with a dim, got {vf!r}")
    extra = [u["output"] for u in out["udfs"] if u["dim"] is not None and u["output"] != vf]
    if extra:
        raise InvalidArgumentError(f"definition.udfs: only the vectorField may be a vector; {extra} also are")
    out["vectorField"] = vf
    out["dim"] = producer[0]["dim"]
    out["metric"] = parse_metric(definition.get("metric", "cosine"))
    return out


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Computing one fragment (pure: no LMDB; runs in a thread or as a Ray task)

# How str() spells a non-negative int: a str id spelled the same way gets a quoted child id.
_INT_SPELLING = re.compile(r"0|[1-9][0-9]*")


def child_id(src_id: int | str, index: int) -> str:
    """The id of chunk ``index`` of source row ``src_id`` in a chunker view: ``"7#0"`` for the
    int id ``7``, ``"doc-a#0"`` for the str id ``"doc-a"``. A str id that is spelled like an int
    or starts with a quote is quoted, ``"'7'#0"`` for ``"7"``: source ids ``7`` and ``"7"`` are
    two rows, and their children must be too. The part before the last ``#`` tells the source
    id back, and no two source ids give the same child id.

    >>> child_id(7, 0), child_id("7", 0), child_id("doc-a", 2), child_id("'x", 0)
    ('7#0', "'7'#0", 'doc-a#2', "''x'#0")
    """
    # Unquoted forms stay those of earlier versions (ints and most strings), so existing views
    # keep their ids; a quoted form starts with a quote, which neither other form does.
    if type(src_id) is int or not (_INT_SPELLING.fullmatch(src_id) or src_id.startswith("'")):
        return f"{src_id}#{index}"
    return f"'{src_id}'#{index}"


def _rows_named(src_ids: Iterable[Any]) -> str:
    ids = list(dict.fromkeys(src_ids))
    shown = ", ".join(repr(i) for i in ids[:5])
    return f"source row {shown}" if len(ids) == 1 else f"source rows {shown}{', ...' if len(ids) > 5 else ''}"


def _fail(f: fx.Function, what: str, src_ids: Iterable[Any]) -> VecstoreError:
    return VecstoreError(f"function {f.ref!r} ({f.kind}) {what} on {_rows_named(src_ids)}")


def compute_fragment(rows: list, spec: dict, chunker: fx.Function | None, udfs: list, intra: int) -> dict:
    """Run the chunker and the UDFs over ``rows`` (``[(src_id, fields)]``). Returns the view
    rows (ids, fields, vectors) and, per source row, how many it produced."""
    pool = ThreadPoolExecutor(intra, thread_name_prefix="vecstore-applier") if intra > 1 else None
    try:
        return _compute(rows, spec, chunker, udfs, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _map(pool: ThreadPoolExecutor | None, fn: Any, items: list) -> list:
    return list(pool.map(fn, items)) if pool is not None and len(items) > 1 else [fn(x) for x in items]


def _compute(rows: list, spec: dict, chunker: fx.Function | None, udfs: list, pool: Any) -> dict:
    select = spec["select"]
    calls: dict[str, int] = {}
    ids: list = []
    owner: list = []      # src id of each view row
    ctxs: list[dict] = []
    counts: list[int] = []
    if chunker is not None:
        inp, args = spec["chunker"]["input"], spec["chunker"]["args"]

        def run_chunker(row: tuple) -> list:
            src_id, fields = row
            try:
                out = chunker.fn(fields.get(inp), **args)
                return list(out) if out is not None else []
            except Exception as e:
                raise _fail(chunker, f"raised {type(e).__name__}: {e}", [src_id]) from e
        chunked = _map(pool, run_chunker, rows)
        calls[f"chunker:{chunker.ref}"] = len(rows)
    else:
        chunked = [None] * len(rows)
    for (src_id, fields), chunks in zip(rows, chunked):
        base = fields if select == "*" else {k: fields[k] for k in select if k in fields}
        if chunks is None:
            ctxs.append({**fields, "id": src_id, "src_id": src_id, "_out": {**base, "src_id": src_id}})
            ids.append(src_id)
            owner.append(src_id)
            counts.append(1)
            continue
        for i, c in enumerate(chunks):
            if isinstance(c, str):
                cf = {"chunk_text": c}
            elif isinstance(c, dict):
                try:
                    cf = v.check_fields(c, param="chunk")
                except InvalidArgumentError as e:
                    raise _fail(chunker, f"yielded an unusable chunk ({e})", [src_id]) from None
            else:
                raise _fail(chunker, f"yielded {type(c).__name__}, expected str or dict", [src_id])
            out = {**base, "src_id": src_id, "chunk_index": i, **cf}
            ctxs.append({**fields, "id": src_id, "src_id": src_id, "chunk_index": i, **cf, "_out": out})
            ids.append(child_id(src_id, i))
            owner.append(src_id)
        counts.append(len(chunks))
    n = len(ids)
    dim = spec["dim"]
    vectors = np.empty((n, dim), dtype=np.float32)
    for u, f in zip(spec["udfs"], udfs):
        bs = u["batchSize"]
        batches = [(s, min(s + bs, n)) for s in range(0, n, bs)]

        def run_udf(b: tuple, u: dict = u, f: fx.Function = f) -> Any:
            s, e = b
            cols = [[ctxs[j].get(name) for j in range(s, e)] for name in u["inputs"]]
            try:
                return f.fn(*cols)
            except Exception as exc:
                raise _fail(f, f"raised {type(exc).__name__}: {exc}", owner[s:e]) from exc
        results = _map(pool, run_udf, batches)
        calls[f"udf:{f.ref}"] = len(batches)
        for (s, e), res in zip(batches, results):
            if u["dim"] is not None:
                try:
                    arr = np.asarray(res, dtype=np.float32)
                except (TypeError, ValueError) as exc:
                    raise _fail(f, f"returned no vectors ({exc})", owner[s:e]) from None
                if arr.shape != (e - s, u["dim"]):
                    raise _fail(f, f"returned shape {arr.shape} for {e - s} row(s), expected ({e - s}, {u['dim']})",
                                owner[s:e])
                bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
                if len(bad):
                    raise _fail(f, f"returned NaN or inf for view row {ids[s + int(bad[0])]!r}", [owner[s + int(bad[0])]])
                if spec["cosine"]:  # stored as returned; a zero vector has no direction
                    zero = np.flatnonzero(~arr.any(axis=1))
                    if len(zero):
                        raise _fail(f, f"returned a zero vector (no cosine direction) for view row {ids[s + int(zero[0])]!r}",
                                    [owner[s + int(zero[0])]])
                vectors[s:e] = arr
            else:
                # one value per row, in order: a str, a dict or a set would pass as "values" (its
                # letters, its keys, in no order), and a scalar is no list at all
                if isinstance(res, (str, bytes, dict, set, frozenset)) or not isinstance(res, (list, tuple, np.ndarray)):
                    raise _fail(f, f"returned {type(res).__name__}, not a list of one value per row", owner[s:e])
                vals = list(res)
                if len(vals) != e - s:
                    raise _fail(f, f"returned {len(vals)} value(s) for {e - s} row(s)", owner[s:e])
                for j, val in zip(range(s, e), vals):
                    try:
                        val = v._clean_value(val, u["output"], 0)
                    except InvalidArgumentError as exc:
                        raise _fail(f, f"returned an unusable value ({exc})", [owner[j]]) from None
                    ctxs[j][u["output"]] = val
                    ctxs[j]["_out"][u["output"]] = val
    return {"counts": counts, "ids": ids, "fields": [c["_out"] for c in ctxs], "vectors": vectors, "calls": calls}


# ---------------------------------------------------------------------------------------------
# Executors: a local thread pool, or Ray tasks


class _LocalExecutor:
    name = "local"

    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="vecstore-fragment")

    def submit(self, *args: Any) -> Future:
        return self._pool.submit(compute_fragment, *args)

    def wait_any(self, handles: list) -> list:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Future) -> dict:
        return handle.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _pickle_by_value(fns: list) -> None:
    """Ray pickles functions of importable modules by reference; a module its workers cannot
    import (a script, a test file) must travel by value."""
    import ray.cloudpickle as cp
    roots = [p for p in sys.path if "site-packages" in p or "dist-packages" in p] + [os.path.dirname(os.__file__)]
    for f in fns:
        mod = sys.modules.get(getattr(f.fn, "__module__", "") or "")
        path = getattr(mod, "__file__", None) or ""
        if mod is None or mod.__name__ == "__main__" or mod.__name__.split(".")[0] == "vecstore":
            continue
        if not any(path.startswith(r) for r in roots):
            try:
                cp.register_pickle_by_value(mod)
            except Exception:  # pragma: no cover - best effort
                pass


class _RayExecutor:
    def __init__(self, cluster: str, fns: list, manifest: dict) -> None:
        import ray
        runtime_env = {k: manifest[k] for k in _RUNTIME_KEYS if k in manifest}
        if not ray.is_initialized():
            if cluster == "local":
                ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env or None)
            else:
                ray.init(address=cluster, runtime_env=runtime_env or None)
        _pickle_by_value(fns)
        self._ray = ray
        opts = {"runtime_env": runtime_env} if runtime_env else {}
        self._fn = ray.remote(compute_fragment).options(**opts) if opts else ray.remote(compute_fragment)
        self.name = f"ray:{cluster}"

    def submit(self, *args: Any) -> Any:
        return self._fn.remote(*args)

    def wait_any(self, handles: list) -> list:
        done, _ = self._ray.wait(handles, num_returns=1)
        return done

    def result(self, handle: Any) -> dict:
        try:
            return self._ray.get(handle)
        except Exception as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, VecstoreError):
                raise VecstoreError(cause.message) from None
            raise

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# The refresh


def _children(view: "Collection", kind: str, src_id: Any) -> list:
    """Live view rows of one source row: ``child_id(src, 0), child_id(src, 1), ...`` (always a
    prefix of what was ever written), or the source id itself in a 1:1 view. Caller holds the
    view's write lock."""
    live = view._default.live
    if kind == "udf":
        p = view._id_pos.get(src_id)
        return [src_id] if p is not None and live[p] else []
    out = _prefix(view, lambda i: child_id(src_id, i), src_id)
    if child_id(src_id, 0) != f"{src_id}#0":
        # a str id spelled like an int had unquoted children before child_id quoted them:
        # those rows are this row's too (their src_id field says so) and go when it is refreshed
        out += _prefix(view, lambda i: f"{src_id}#{i}", src_id)
    return out


def _prefix(view: "Collection", name: Any, src_id: Any) -> list:
    """The live rows ``name(0), name(1), ...`` up to the first id never written, that belong
    to ``src_id`` by their ``src_id`` field (of the same type: ``"7#0"`` may be an old child of
    the str id ``"7"``, which is not the int ``7``'s to replace)."""
    live, out, i = view._default.live, [], 0
    while True:
        cid = name(i)
        p = view._id_pos.get(cid)
        if p is None:
            return out
        owner = view._fields[p].get("src_id")
        if live[p] and owner == src_id and type(owner) is type(src_id):
            out.append(cid)
        i += 1


def _file_id(col: "Collection") -> int | None:
    """Which file the collection's ``data.mdb`` is (its inode): a restore, an import or a
    re-create makes a new file (the device is left out: it may change across mounts)."""
    try:
        return os.stat(col.path / "data.mdb").st_ino
    except OSError:
        return None


def _source_identity(source: "Collection", *, mint: bool) -> str | None:
    """The identity of ``source`` as a view source: a random id in its meta, valid while the
    ``data.mdb`` it was recorded with is still the collection's file. A snapshot carries the
    meta, so a restored collection shows its original's id with another file: that is a
    different collection (its change log may have gone back and forked), and gets a new id.
    None when there is no valid one and ``mint`` is False."""
    rec = source._get_meta(META_SOURCE_ID)
    here = _file_id(source)
    if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec.get("file") == here:
        return rec["id"]
    if not mint:
        return None
    if source._read_only:
        raise ReadOnlyError(f"source: collection {source.name!r} is read-only; its view identity cannot be recorded")
    with source._wlock:
        source._check_open()
        rec = source._get_meta(META_SOURCE_ID)  # another view's refresh may have minted it meanwhile
        if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec.get("file") == here:
            return rec["id"]
        new = {"id": secrets.token_hex(16), "file": here}
        # meta only: the source's version and change log do not move, so its readers see nothing
        source._storage.write(lambda t: t.put_meta(META_SOURCE_ID, new))
    return new["id"]


def _source_changed(state: dict, identity: str | None, source_version: int) -> bool:
    """Whether the view's state was built from another collection than ``source`` is now. A
    view created before identities existed has none: it takes the source's as its own, unless
    it reached a version the source never had (then the source surely is another one)."""
    known = state.get("sourceId")
    return (known is not None and known != identity) or state.get("lastSrcVersion", 0) > source_version


class _Plan:
    def __init__(self) -> None:
        self.x = 0
        self.touched = 0
        self.deferred = 0
        self.drop: dict[Any, list] = {}                 # src id -> its children to delete
        self.orphans: list = []                         # view rows whose source row is gone
        self.fragments: list[dict] = []                 # {index, key, labels, rows, old}
        self.view_live = 0


class _Refresh:
    """One run of a view refresh (the work function of its job)."""

    def __init__(self, db: Any, name: str, params: dict) -> None:
        self.db = db
        self.name = name
        self.p = params
        self.source_changed = False   # set when the job starts: the source is another collection

    def __call__(self, ctx: "JobContext") -> dict:
        t0 = time.monotonic()
        db, p = self.db, self.p
        view = db.get_collection(self.name)
        definition = view._get_meta(META_DEF)
        source = db.get_collection(view._get_meta(META_SOURCE))
        state = view._get_meta(META_STATE) or {"lastSrcVersion": 0, "pending": []}
        identity = _source_identity(source, mint=True)
        self.source_changed = _source_changed(state, identity, source.version)
        if self.source_changed:
            # the view's rows and its lastSrcVersion belong to a collection that is gone: its
            # log would be read from a version of another history, so start from scratch
            log.warning("view %s: source %r is not the collection the view was built from (dropped and "
                        "re-created, or restored); rebuilding the view from its current version", self.name,
                        source.name)
        manifest = p["manifest"]
        chunker, udfs, versions = self._functions(definition, manifest, p["full"])
        def_hash = _hash(definition)
        spec = {"kind": definition["kind"], "select": definition["select"], "chunker": definition["chunker"],
                "dim": definition["dim"], "cosine": definition["metric"] == "cosine",
                "udfs": [{**u, "batchSize": self._batch_size(manifest, f)} for u, f in zip(definition["udfs"], udfs)]}
        # the source identity too: another collection's rows can have the same labels and row
        # versions, so a fragment checkpointed for the old source would otherwise be reused
        ckpt_salt = _hash([def_hash, versions, identity])
        plan = self._plan(view, source, definition, state, ckpt_salt)
        t_plan = time.monotonic()
        ctx.progress(5)
        ctx.check_cancelled()
        last = state["lastSrcVersion"]
        rebuild = p["full"] or self.source_changed
        mode = "full" if rebuild else "incremental" if state.get("refreshedAt") else "initial"
        stats: dict = {"mode": mode, "sourceChanged": self.source_changed,
                       "fromSrcVersion": last, "srcVersion": plan.x, "sourceRowsTouched": plan.touched,
                       "sourceRowsDeferred": plan.deferred, "fragments": len(plan.fragments),
                       "maxRowsPerFragment": p["max_rows_per_fragment"], "concurrency": p["concurrency"],
                       "intraApplierConcurrency": p["intra_applier_concurrency"], "functions": versions}
        if plan.x == last and not plan.touched and not plan.orphans and not rebuild:
            if state.get("sourceId") != identity:   # a view from before identities: adopt it now
                with view._wlock:
                    view._storage.write(lambda t: t.put_meta(META_STATE, {**state, "sourceId": identity}))
            stats.update(mode="no_op", rowsWritten=0, rowsDeleted=0, viewRows=len(view), resultVersion=view.version,
                         fragmentsComputed=0, fragmentsReused=0, pendingRemaining=0, trimmed=False, calls={},
                         seconds=round(time.monotonic() - t0, 3))
            return stats
        results, computed, reused, calls = self._run(ctx, view, plan, spec, chunker, udfs, stats)
        t_run = time.monotonic()
        ctx.progress(88)
        commit = self._merge(plan, results)
        ctx.check_cancelled()
        ctx.progress(92)
        new_state = {"lastSrcVersion": plan.x, "pending": commit["pending"], "sourceId": identity,
                     "definitionHash": def_hash, "functionVersions": versions, "lastJobId": ctx.job_id,
                     "refreshedAt": int(time.time() * 1000)}
        meta = {META_STATE: new_state}
        if p["full"]:
            definition = _with_versions(definition, versions)
            meta[META_DEF] = definition
            new_state["definitionHash"] = _hash(definition)
        used = [f["key"] for f in plan.fragments if f["index"] in commit["merged"]]
        if commit["ids"] or commit["delete"]:
            vecs = np.concatenate(commit["vectors"]) if commit["vectors"] else np.empty((0, definition["dim"]), np.float32)
            version = view._apply_changes("refresh", upsert=(commit["ids"], vecs, commit["fields"]),
                                          delete_ids=commit["delete"], meta=meta)
        else:
            version = view.version
            with view._wlock:
                view._storage.write(lambda t: [t.put_meta(k, val) for k, val in meta.items()])
        self._drop_stages(view, used)
        stats.update(rowsWritten=len(commit["ids"]), rowsDeleted=len(commit["delete"]), viewRows=len(view),
                     resultVersion=version, fragmentsComputed=computed, fragmentsReused=reused,
                     sourceRowsProcessed=commit["processed"], pendingRemaining=len(commit["pending"]),
                     trimmed=commit["trimmed"], calls=calls, seconds=round(time.monotonic() - t0, 3),
                     phaseSeconds={"plan": round(t_plan - t0, 3), "compute": round(t_run - t_plan, 3),
                                   "commit": round(time.monotonic() - t_run, 3)})
        return stats

    # -- functions --------------------------------------------------------------------------
    @staticmethod
    def _batch_size(manifest: dict, f: fx.Function) -> int:
        over = manifest.get("functions", {}).get(f.name, {})
        return int(over.get("batchSize", over.get("batch_size", f.batch_size)))

    @staticmethod
    def _functions(definition: dict, manifest: dict, full: bool) -> tuple:
        """The registered functions, checked against the versions the view was defined with
        (or a manifest override); a mismatch means stored rows are stale: refuse, unless
        ``full`` recomputes everything with what is registered now."""
        overrides = manifest.get("functions", {})

        def one(kind: str, spec: dict) -> fx.Function:
            f = fx.get(kind, spec["name"])  # NotFoundError -> the job fails naming the function
            want = str(overrides.get(spec["name"], {}).get("version", spec["version"]))
            if f.version != want and not full:
                raise VecstoreError(
                    f"function {spec['name']!r} is registered at version {f.version!r} but the view was defined "
                    f"with {want!r}; refresh with full=True to recompute the view, or re-register version {want!r}")
            if kind == "udf" and spec.get("dim") is not None and f.dim != spec["dim"]:
                raise VecstoreError(f"function {f.ref!r} returns dim {f.dim}, the view expects {spec['dim']}")
            return f
        chunker = one("chunker", definition["chunker"]) if definition["chunker"] else None
        udfs = [one("udf", u) for u in definition["udfs"]]
        versions = {f.name: f.version for f in ([chunker] if chunker else []) + udfs}
        return chunker, udfs, versions

    # -- planning ---------------------------------------------------------------------------
    def _plan(self, view: "Collection", source: "Collection", definition: dict, state: dict, salt: str) -> _Plan:
        p, plan = self.p, _Plan()
        where = compile_where(definition["where"]) if definition["where"] else None
        kind, select = definition["kind"], definition["select"]
        wanted = set() if select == "*" else set(select)
        if definition["chunker"]:
            wanted.add(definition["chunker"]["input"])
        for u in definition["udfs"]:
            wanted.update(u["inputs"])
        last = state["lastSrcVersion"]
        foreign = self.source_changed     # every view row came from another collection
        with view._wlock, source._storage.read() as t:
            current = t.get_meta("version", 0)
            x = current if p["src_version"] is None else p["src_version"]
            if foreign and x != current:
                # a rebuild reads the rows as they are now: a row written after x could only be
                # deferred, and the view holds no earlier state of it to keep meanwhile
                raise InvalidArgumentError(
                    f"src_version: the source {source.name!r} is not the collection view {view.name!r} was built "
                    f"from, so this refresh rebuilds the view from its current version {current}; got {x}")
            if not p["full"] and not foreign and not last <= x <= current:
                raise InvalidArgumentError(f"src_version: expected {last} <= src_version <= {current}, got {x}")
            plan.x = x
            swept = p["full"] and not foreign
            if p["full"] or foreign:
                labels = {lb for lb, _ in t.iter_rows()}
            elif (logged := t.touched_since(last, x)) is None:
                # The source's log was trimmed past this view's position (by a checkpoint or a
                # compact), so it no longer names every row changed since. Every commit that
                # changes a row's fields or liveness rewrites it with its version, so the rows
                # newer than `last` are exactly those (a scan, no function call for the others);
                # rows compacted away meanwhile are found by the sweep.
                labels = set(state.get("pending", ()))
                labels.update(lb for lb, rec in t.iter_rows() if rec[3] > last)
                swept = True
            else:
                labels = set(state.get("pending", ()))
                labels.update(logged)
            plan.touched = len(labels)
            order = sorted(labels)
            size = p["max_rows_per_fragment"]
            for index, start in enumerate(range(0, len(order), size)):
                frag = {"index": index, "labels": [], "versions": [], "rows": [], "old": []}
                for lb in order[start:start + size]:
                    rec = t.get_row(lb)
                    if rec is None:         # removed by compact(): no id left, sweep the view
                        swept = True
                        continue
                    src_id, fields, deleted, rv = rec
                    if rv > x:              # written again after x: the next refresh takes it
                        plan.deferred += 1
                        continue
                    old = [] if foreign else _children(view, kind, src_id)
                    if deleted or (where is not None and not where.matches(src_id, fields)):
                        if old:
                            plan.drop[src_id] = old
                        continue
                    frag["labels"].append(lb)
                    frag["versions"].append(rv)
                    frag["rows"].append((src_id, fields if select == "*" else {k: fields[k] for k in wanted if k in fields}))
                    frag["old"].append(old)
                if frag["rows"]:
                    frag["key"] = _hash([salt, frag["labels"], frag["versions"]])
                    plan.fragments.append(frag)
            if foreign:     # all of them go, and output_limit counts from an empty view
                live = np.flatnonzero(view._default.live[: view._default.n]).tolist()
                plan.orphans = [view._ids[pos] for pos in live]
            elif swept:
                plan.orphans = self._sweep(view, t, plan)
            plan.view_live = len(view)
        return plan

    @staticmethod
    def _sweep(view: "Collection", t: Any, plan: _Plan) -> list:
        """View rows whose source row no longer exists (deleted, then compacted)."""
        live = view._default.live
        by_src: dict[Any, list] = {}
        for pos in np.flatnonzero(live[: view._default.n]).tolist():
            by_src.setdefault(view._fields[pos].get("src_id"), []).append(view._ids[pos])
        out = []
        for src_id, kids in by_src.items():
            if src_id in plan.drop:
                continue
            label = t.get_label(src_id) if src_id is not None else None
            rec = t.get_row(label) if label is not None else None
            if rec is None or (rec[2] and rec[3] <= plan.x):
                out.extend(kids)
        return out

    # -- running fragments ------------------------------------------------------------------
    def _run(self, ctx: "JobContext", view: "Collection", plan: _Plan, spec: dict, chunker: Any, udfs: list,
             stats: dict) -> tuple:
        p = self.p
        results: dict[int, dict] = {}
        with view._storage.read() as t:
            for frag in plan.fragments:
                staged = t.get_meta(STAGE + frag["key"])
                if staged is not None:
                    results[frag["index"]] = _unstage(staged, spec["dim"])
        reused = len(results)
        self._gc_stages(view, {f["key"] for f in plan.fragments})
        todo = deque(f for f in plan.fragments if f["index"] not in results)
        total = max(1, len(todo))
        calls: dict[str, int] = {}
        computed = 0
        if not todo:
            return results, computed, reused, calls
        conc = p["concurrency"]
        fns = [f for f in [chunker, *udfs] if f is not None]
        executor = _RayExecutor(p["cluster"], fns, p["manifest"]) if p["cluster"] else _LocalExecutor(conc)
        stats["executor"] = executor.name
        inflight: dict[Any, dict] = {}
        error: BaseException | None = None
        def refill() -> None:
            while todo and len(inflight) < conc and error is None and self._need(plan, results, todo[0]["index"]):
                frag = todo.popleft()
                inflight[executor.submit(frag["rows"], spec, chunker, udfs, p["intra_applier_concurrency"])] = frag

        try:
            refill()
            while inflight:
                finished = []
                for h in executor.wait_any(list(inflight)):
                    frag = inflight.pop(h)
                    try:
                        finished.append((frag, executor.result(h)))
                    except BaseException as e:  # noqa: BLE001 - first failure wins; others drain
                        error = error or e
                for frag, res in finished:     # counted before refilling: output_limit needs them
                    results[frag["index"]] = res
                if error is None:
                    try:
                        ctx.check_cancelled()
                    except BaseException as e:
                        error = e
                refill()                       # the workers go on while this thread checkpoints
                for frag, res in finished:
                    self._stage(view, frag["key"], res)
                    computed += 1
                    for k, n in res["calls"].items():
                        calls[k] = calls.get(k, 0) + n
                    ctx.progress(5 + 80 * computed / total)
        finally:
            executor.close()
        if error is not None:
            raise error
        return results, computed, reused, calls

    def _need(self, plan: _Plan, results: dict, index: int) -> bool:
        """Whether fragment ``index`` can still add rows under ``output_limit`` (judged from
        the finished fragments before it; with concurrency > 1 a few extra may run, and stay
        checkpointed for the next refresh)."""
        cap = self.p["output_limit"]
        if cap is None:
            return True
        count = plan.view_live - sum(len(k) for k in plan.drop.values()) - len(plan.orphans)
        for frag in plan.fragments:
            if frag["index"] >= index:
                return count < cap
            res = results.get(frag["index"])
            if res is None:
                return True
            count += sum(res["counts"]) - sum(len(o) for o in frag["old"])
        return count < cap

    # -- checkpoints ------------------------------------------------------------------------
    @staticmethod
    def _stage(view: "Collection", key: str, res: dict) -> None:
        record = {"counts": res["counts"], "ids": res["ids"], "fields": res["fields"],
                  "vectors": np.ascontiguousarray(res["vectors"], dtype=np.float32).tobytes(), "calls": res["calls"]}
        with view._wlock:
            view._check_open()  # replaced or dropped meanwhile: ClosedError, the job's reason
            view._storage.write(lambda t: t.put_meta(STAGE + key, record))

    @staticmethod
    def _drop_stages(view: "Collection", keys: list) -> None:
        if keys:
            try:
                with view._wlock:
                    view._check_open()
                    view._storage.write(lambda t: [t.delete_meta(STAGE + k) for k in keys])
            except Exception:  # the commit is done; a stale checkpoint is only garbage
                log.warning("could not remove %d checkpoint(s) of view %s", len(keys), view.name, exc_info=True)

    @staticmethod
    def _gc_stages(view: "Collection", keep: set) -> None:
        with view._storage.read() as t:
            stale = [k[len(STAGE):] for k, _ in t.iter_meta(STAGE) if k[len(STAGE):] not in keep]
        if stale:
            _Refresh._drop_stages(view, stale)

    # -- merging ----------------------------------------------------------------------------
    def _merge(self, plan: _Plan, results: dict) -> dict:
        """The commit: upserts, deletes and what stays pending, in source order; trims at
        ``output_limit`` (drops are always applied: they only shrink the view)."""
        cap = self.p["output_limit"]
        delete = [c for kids in plan.drop.values() for c in kids] + list(plan.orphans)
        count = plan.view_live - len(delete)
        ids: list = []
        fields: list = []
        vectors: list = []
        pending: list = []
        merged: set = set()
        processed, trimmed, stop = len(plan.drop), False, False
        for frag in plan.fragments:
            res = results.get(frag["index"])
            if stop or res is None:
                pending.extend(frag["labels"])
                stop = True
                continue
            merged.add(frag["index"])
            start = 0
            take: list[tuple[int, int]] = []
            for r, (n_new, old) in enumerate(zip(res["counts"], frag["old"])):
                keep = n_new
                if cap is not None and n_new > len(old) and count - len(old) + n_new > cap:
                    keep = cap - (count - len(old))
                    stop = trimmed = True
                    if keep <= 0:       # no room at all: this row and the rest stay pending
                        pending.extend(frag["labels"][r:])
                        break
                take.append((start, start + keep))
                delete.extend(set(old) - set(res["ids"][start:start + keep]))
                count += keep - len(old)
                processed += 1
                start += n_new
                if stop:                # trimmed to fit exactly; the row counts as processed
                    pending.extend(frag["labels"][r + 1:])
                    break
            for s, e in take:
                if e > s:
                    ids.extend(res["ids"][s:e])
                    fields.extend(res["fields"][s:e])
                    vectors.append(res["vectors"][s:e])
        return {"ids": ids, "fields": fields, "vectors": vectors, "delete": delete, "pending": pending,
                "merged": merged, "processed": processed, "trimmed": trimmed}


def _unstage(record: dict, dim: int) -> dict:
    vecs = np.frombuffer(record["vectors"], dtype=np.float32).reshape(-1, dim)
    return {**record, "vectors": vecs}


def _with_versions(definition: dict, versions: dict) -> dict:
    d = json.loads(json.dumps(definition))
    if d["chunker"]:
        d["chunker"]["version"] = versions[d["chunker"]["name"]]
    for u in d["udfs"]:
        u["version"] = versions[u["name"]]
    return d


# ---------------------------------------------------------------------------------------------
# The Database mixin


class DatabaseViews:
    """Materialized views of a :class:`vecstore.Database` (mixed into it)."""

    def create_materialized_view(self, name: str, source: str, definition: dict) -> "Collection":
        """Create an empty view of collection ``source``; :meth:`refresh_materialized_view`
        fills it. ``definition``: ``kind`` (``"chunker"``: 1 source row -> N rows, or ``"udf"``:
        1 -> 1), ``where`` (a filter over source rows), ``select`` (source fields copied into
        every view row, or ``"*"``), ``chunker`` ``{name, input, args}``, ``udfs``
        ``[{name, inputs, output}]``, ``vectorField`` (the UDF output that is the row vector)
        and ``metric``. Functions are looked up in :mod:`vecstore.functions` and their versions
        pinned. View rows get ``src_id`` (and ``chunk_index``, chunk fields) besides ``select``.

        >>> db.create_materialized_view("doc_chunks", source="docs", definition={...})  # doctest: +SKIP
        <Collection app/doc_chunks dim=384 0 rows>
        """
        self._check_open()
        v.check_name(name, what="view_name")
        src = self.get_collection(v.check_name(source, what="source"))
        if source == name:
            raise InvalidArgumentError("source: a view cannot be its own source")
        d = normalise_definition(definition)
        desc = definition.get("description") if isinstance(definition, dict) else None
        identity = _source_identity(src, mint=True)
        return self._create(name, d["dim"], metric=d["metric"], description=desc, kind="view",
                            meta={META_DEF: d, META_SOURCE: src.name,
                                  META_STATE: {"lastSrcVersion": 0, "pending": [], "sourceId": identity}})

    def _view(self, name: str) -> "Collection":
        self._check_open()
        v.check_name(name, what="view_name")
        if not self.collection_exists(name):
            raise NotFoundError(f"view_name: no materialized view {name!r} in database {self.name!r}")
        col = self.get_collection(name)
        if col.kind != "view":
            raise NotFoundError(f"view_name: {name!r} is a {col.kind}, not a materialized view")
        return col

    def list_materialized_views(self) -> list[str]:
        """Names of the materialized views, sorted."""
        return [n for n in self.show_collections() if self.get_collection(n).kind == "view"]

    def describe_materialized_view(self, name: str) -> dict:
        """Definition, source, the source version reached, rows pending, checkpoints kept, and
        whether the registered functions still match the pinned versions."""
        view = self._view(name)
        d = view._get_meta(META_DEF)
        state = view._get_meta(META_STATE) or {}
        src_name = view._get_meta(META_SOURCE)
        with view._storage.read() as t:
            ckpts = sum(1 for _ in t.iter_meta(STAGE))
        stale = []
        for kind, spec in ([("chunker", d["chunker"])] if d["chunker"] else []) + [("udf", u) for u in d["udfs"]]:
            try:
                reg = fx.get(kind, spec["name"]).version
            except NotFoundError:
                reg = None
            if reg != spec["version"]:
                stale.append({"name": spec["name"], "defined": spec["version"], "registered": reg})
        src_version = self.get_collection(src_name).version if self.collection_exists(src_name) else None
        return {"name": name, "source": src_name, "definition": d, "definitionHash": _hash(d),
                "lastSrcVersion": state.get("lastSrcVersion", 0), "sourceVersion": src_version,
                "pendingSourceRows": len(state.get("pending", ())), "checkpoints": ckpts,
                "rows": len(view), "version": view.version, "staleFunctions": stale,
                "lastJobId": state.get("lastJobId"), "refreshedAt": state.get("refreshedAt")}

    def refresh_materialized_view(self, name: str, src_version: int | None = None,
                                  max_rows_per_fragment: int | None = None, concurrency: int | None = None,
                                  intra_applier_concurrency: int | None = None, output_limit: int | None = None,
                                  manifest: str | dict | None = None, cluster: str | None = None, *,
                                  full: bool = False) -> int:
        """Start an async, incremental refresh of view ``name``; returns the job id at once
        (:meth:`wait_refresh_job`, :meth:`describe_refresh_job`).

        ``src_version``: the source version to reach (default: current; between the view's
        last one and the current one). ``max_rows_per_fragment`` (default 4096): source rows
        per unit of work and checkpoint. ``concurrency`` (default 1): fragments run at once.
        ``intra_applier_concurrency`` (default 1): calls into the functions at once within a
        fragment. ``output_limit`` (chunker views only): cap on the view's row count after
        expansion. Source rows not reached stay pending and the next refresh computes them. The
        source row at which the cap falls keeps only the chunks that fit and counts as processed:
        **its other chunks are dropped for good**, and a later refresh (with or without a cap)
        does not add them unless that row is written again; ``full=True`` recomputes every row
        and brings them back. ``manifest``: per-refresh overrides
        (function versions, batch sizes, Ray runtime env); the stored definition is unchanged.
        ``cluster``: ``"local"`` (a Ray started here) or ``"ray://host:port"``; default a local
        thread pool. ``full``: recompute every row with the functions registered now and pin
        their versions. A source that is no longer the collection the view was built from
        (dropped and re-created, or restored) makes the refresh a full one too, from the
        source's current version. Errors: NotFoundError (no such view), InvalidArgumentError
        (bad parameter, ``src_version`` out of range), ConflictError (a refresh is running).
        """
        view = self._view(name)
        d = view._get_meta(META_DEF)
        params = {
            "src_version": None if src_version is None else _nonneg(src_version, "src_version"),
            "max_rows_per_fragment": v.check_positive_int(max_rows_per_fragment, param="max_rows_per_fragment",
                                                          limit=2**63 - 1) or DEFAULT_MAX_ROWS_PER_FRAGMENT,
            "concurrency": v.check_positive_int(concurrency, param="concurrency", limit=_MAX_WORKERS) or 1,
            "intra_applier_concurrency": v.check_positive_int(intra_applier_concurrency,
                                                              param="intra_applier_concurrency",
                                                              limit=_MAX_WORKERS) or 1,
            "output_limit": None if output_limit is None else _nonneg(output_limit, "output_limit"),
            "manifest": parse_manifest(manifest), "cluster": _check_cluster(cluster),
            "full": v.check_bool(full, param="full")}
        if params["output_limit"] is not None and d["kind"] != "chunker":
            raise InvalidArgumentError(f"output_limit: valid only for chunker views; {name!r} is a {d['kind']} view")
        if any(k in params["manifest"] for k in _RUNTIME_KEYS) and params["cluster"] is None:
            raise InvalidArgumentError(f"manifest: {[k for k in _RUNTIME_KEYS if k in params['manifest']]} "
                                       f"need a Ray cluster (cluster='local' or 'ray://...')")
        src_name = view._get_meta(META_SOURCE)
        if not self.collection_exists(src_name):
            raise NotFoundError(f"source: the source {src_name!r} of view {name!r} no longer exists")
        if params["src_version"] is not None and not params["full"]:
            state = view._get_meta(META_STATE) or {}
            last = state.get("lastSrcVersion", 0)
            src = self.get_collection(src_name)
            current = src.version
            if _source_changed(state, _source_identity(src, mint=False), current):
                if params["src_version"] != current:
                    raise InvalidArgumentError(
                        f"src_version: the source {src_name!r} is not the collection view {name!r} was built from "
                        f"(dropped and re-created, or restored), so the next refresh rebuilds the view from its "
                        f"current version {current}; got {params['src_version']}")
            elif not last <= params["src_version"] <= current:
                raise InvalidArgumentError(
                    f"src_version: expected {last} <= src_version <= {current} (the view's last source "
                    f"version and the source's current one), got {params['src_version']}")
        record = {k: val for k, val in params.items() if val is not None and val != {} and val is not False}
        return self._jobs().submit(JOB_KIND, name, _Refresh(self, name, params), params=record)


_MAX_WORKERS = 1024  # threads per refresh (or per fragment's applier): more only adds contention


def _nonneg(value: Any, param: str) -> int:
    # at most int64: the job's parameters are stored with msgpack (2**70 raised OverflowError)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**63:
        raise InvalidArgumentError(f"{param}: expected an int in [0, 2**63), got {value!r}")
    return int(value)
