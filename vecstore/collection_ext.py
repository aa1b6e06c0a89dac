"""The derived side of a Collection: ANN indexes, named vector fields, sparse vectors, BM25
text and hybrid search. A mixin of :class:`vecstore.Collection`; split out only to keep each
module readable.

Every structure here is *derived* (DESIGN §4): rebuilt or caught up from LMDB. Index files
are written under a new generation name, then the LMDB record pointing at them commits, then
the superseded files are removed; files no record points at are removed on open.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from . import validation as v
from .errors import (ConflictError, CorruptionError, InvalidArgumentError,
                     InvalidNameError, NotFoundError, UnavailableError, out_of_descriptors)
from .indexes.base import IndexMode, Progress, VectorIndex, lynse_build_params, parse_index_mode, parse_metric
from .table import VectorSpace
from .types import Id, Ids, SearchResult, VectorFieldInfo

if TYPE_CHECKING:
    from .collection import Collection

log = logging.getLogger(__name__)
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INDEX_CHUNK = 2048  # rows per index add between which searches may run
_GEN_KEY = "index_gen"  # the last generation number given to index files (any field)
# Index files no record names any more, by field: removed at the field's next index commit (of
# any field, for a field whose index was removed). A list in stores from before: all of them.
_DROPPED_KEY = "index_dropped"
# Replaying a commit re-adds each row it touched: for HNSW an in-place update (hnswlib's
# updatePoint repairs the neighbours), far dearer per row than a build's insert. Above this
# fraction of the index's rows, rebuilding is cheaper. Measured (benchmark: updating a random
# fraction of an index in one add vs building it; default params, 2 busy cores): HNSW 20k x 32
# build 2.0 s, updates of 5/10/20 % cost 0.42/0.85/1.64 builds; 50k x 128 build 13.2 s, updates
# of 5/10/20 % cost 0.21/0.38/0.77 builds: the crossover lies at 12-25 %. IVF re-files a row in
# its list for next to nothing (20 % of 50k x 128: 0.06 of a build, which retrains k-means), so
# it replays until the log names more rows than the index holds.
_REPLAY_MAX_FRACTION = {"HNSW": 0.15, "IVF": 1.0}


def _changes_index_of(field: str) -> Callable[[str], bool]:
    """Whether a logged commit (by its op) can change the index of vector ``field``: row commits
    (adds, deletes, restores, compacts) change every field's, ``named:<f>`` only field f's,
    ``sparse`` none. Counting the others made a crash after 4,000 named vectors rebuild the
    untouched default index as if 4,000 of its rows had changed."""
    own = f"named:{field}"
    return lambda op: op == own or not (op.startswith("named:") or op == "sparse")


def _index_class(kind: str) -> type[VectorIndex]:
    if kind == "HNSW":
        from .indexes.hnsw import HnswIndex
        return HnswIndex
    from .indexes.ivf import IvfIndex
    return IvfIndex


@contextmanager
def _progress_callback(enabled: bool, desc: str) -> Iterator[Progress | None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar (off when stderr is not a
    terminal), or None when not ``enabled``."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm
    bar = tqdm(desc=desc, disable=None)

    def step(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    try:
        yield step
    finally:
        bar.close()


class DerivedIndexes:
    """Mixin: methods of Collection that manage derived structures."""

    # ----------------------------------------------------------------- index plumbing -------
    def _index_dir(self: "Collection") -> Path:
        d = self.path / "indexes"
        try:
            d.mkdir(exist_ok=True)
        except FileExistsError:  # not vecstore's: no index can be saved until it is moved away
            raise CorruptionError(f"{self.path}: 'indexes' is not a folder (a file is in the way of the "
                                  f"index files): move it away") from None
        return d

    def _index_record_key(self: "Collection", space: VectorSpace) -> str:
        return f"index:{space.name}"

    def _space_by_name(self: "Collection", name: str) -> VectorSpace:
        return self._default if name == "default" else self._named[name]

    def _open_index(self: "Collection", field: str, rec: dict, opening: bool = False) -> None:
        """At open: load the index files of ``field`` and replay the commits made after them, or
        rebuild from the mirror when the files are missing or do not check. Out of file
        descriptors at the first open is UnavailableError: the files are fine, and a rebuild of a
        large index costs minutes (a reload after a commit cannot stop half-way: it rebuilds)."""
        space = self._space_by_name(field) if (field == "default" or field in self._named) else None
        if space is None:
            return
        mode = parse_index_mode(rec["mode"], default_metric=space.metric)
        space.mode = mode
        if mode.kind == "FLAT":
            return
        cls = _index_class(mode.kind)
        index = None
        if rec.get("files") and rec.get("metric", space.metric) == space.metric:
            try:
                index = cls.load(self._index_dir(), rec["files"], space.dim, space.metric, rec.get("params", {}))
            except (CorruptionError, OSError, ValueError, RuntimeError) as e:
                if opening and out_of_descriptors(e):
                    raise UnavailableError(f"{self.path}: out of file descriptors opening the index of "
                                           f"{field!r} ({e}); retry later") from e
                log.warning("%s: index of %r unusable (%s); rebuilding from the rows", self.path, field, e)
        if index is None:
            self._rebuild_index(space, params=rec.get("params", {}))
            return
        space.index = index
        space.saved_version = rec["version"]
        self._replay(space, rec["version"])
        self._remove_orphans()

    def _replay(self: "Collection", space: VectorSpace, since: int) -> None:
        """Apply the commits after ``since`` to ``space.index`` (labels are re-synced from the
        mirror, so replay is idempotent), or rebuild the index when that is cheaper or the log
        no longer reaches back to ``since`` (trimmed by a checkpoint since those files were
        written: a reader in another process loading the files a save superseded)."""
        with self._storage.read() as t:
            touched = t.touched_since(since, ops=_changes_index_of(space.name))
        if touched is not None and not touched:
            return
        size = max(len(space.index), space.n_live, 1)
        if touched is None or len(touched) > _REPLAY_MAX_FRACTION[space.mode.kind] * size:
            self._rebuild_index(space)
            log.info("%s: rebuilt the %s index of %r (%s)", self.path, space.mode.name, space.name,
                     "the change log was trimmed past it" if touched is None else f"{len(touched)} rows changed")
            return
        lab = np.fromiter(touched, dtype=np.uint64, count=len(touched))
        pos = space.lookup(lab)
        live = space.live_at(pos)
        if (~live).any():
            space.index.remove(lab[~live])
        if live.any():
            space.index.add(lab[live], space.for_index(space.matrix[pos[live]]))
        log.info("%s: replayed %d rows into the %s index of %r", self.path, len(lab), space.mode.name, space.name)

    def _rebuild_index(self: "Collection", space: VectorSpace, params: dict | None = None) -> None:
        """Rebuild ``space``'s index from the mirror and install it (the caller excludes searches)."""
        space.index = self._built_index(space, space.mode, params if params is not None else
                                        (space.index.params if space.index is not None else {}))
        space.saved_version = -1

    def _built_index(self: "Collection", space: VectorSpace, mode: IndexMode, params: dict,
                     progress: bool = False) -> VectorIndex:
        """A new ``mode`` index of ``space``'s live vectors, built but not installed."""
        return self._fill(space, mode, _index_class(mode.kind)(space.dim, space.metric, **params), progress)

    def _fill(self: "Collection", space: VectorSpace, mode: IndexMode, index: VectorIndex,
              progress: bool = False) -> VectorIndex:
        """``index`` (new and empty) built from ``space``'s live vectors."""
        labels, vectors = space.live_vectors()
        with _progress_callback(progress, f"{mode.name} {self.name}/{space.name}") as step:
            index.build(labels, vectors, step)
        return index

    def _save_index(self: "Collection", space: VectorSpace) -> None:
        """Write ``space``'s index files so that the next open replays nothing (checkpoints)."""
        self._commit_index(space, space.mode, space.index)
        space.saved_version = self._version

    def _commit_index(self: "Collection", space: VectorSpace, mode: IndexMode | None, index: VectorIndex | None,
                      also: Callable[[Any], None] | None = None) -> None:
        """Commit the index record of ``space``: ``mode`` with ``index``'s files (written and
        checked first, under a new generation name), ``mode`` alone for FLAT, none for
        ``mode=None``. ``also(t)`` writes in the same transaction. The files this commit
        supersedes or drops stay until this field's next index commit (the store lists them): a
        reader in another process may be loading them right now, and without them it would
        rebuild the index from the rows. Kept per field, since a checkpoint commits the fields one
        after another: the second one's commit removed the files the first had just superseded,
        which a reader that read the records before the checkpoint was about to load."""
        key = self._index_record_key(space)
        with self._storage.read() as t:
            old = t.get_meta(key) or {}
            last = t.get_meta(_GEN_KEY, 0)
            dropped = _dropped_files(t)
            indexed = {k[len("index:"):] for k, r in t.iter_meta("index:") if r.get("files")}
        # this field's earlier files, and those of fields without index files now (FLAT, removed:
        # none of their saves will come to remove them)
        stale = [f for name, files in dropped.items() if name == space.name or name not in indexed for f in files]
        keep = {name: files for name, files in dropped.items() if name != space.name and name in indexed}
        if mode is None:
            rec = None
        elif index is None:
            rec = {"mode": mode.name, "version": self._version, "gen": 0}
        else:
            # Never a name used before, not even after remove_index(): a reader in another
            # process may still be checking, then loading, the files of that earlier name.
            gen = max(old.get("gen", 0), last) + 1
            rec = {"mode": mode.name, "metric": index.metric, "params": index.params,
                   "files": index.save(self._index_dir(), f"{space.name}.{gen}"),
                   "version": self._version, "gen": gen}

        def tx(t):
            if also is not None:
                also(t)
            if rec is not None:
                t.put_meta(key, rec)
                if rec["gen"]:
                    t.put_meta(_GEN_KEY, rec["gen"])
            elif t.get_meta(key) is not None:
                t.delete_meta(key)
            t.put_meta(_DROPPED_KEY, {**keep, space.name: old.get("files", [])})
        self._storage.write(tx)
        for name in stale:
            (self._index_dir() / name).unlink(missing_ok=True)

    def _remove_orphans(self: "Collection") -> None:
        d = self.path / "indexes"
        if not d.exists() or self._read_only:
            return
        with self._storage.read() as t:
            keep = {f for _, rec in t.iter_meta("index:") for f in rec.get("files", [])}
            keep.update(f for files in _dropped_files(t).values() for f in files)
        for f in d.iterdir():
            if f.name not in keep:
                f.unlink(missing_ok=True)

    def _index_apply(self: "Collection", space: VectorSpace, labels: np.ndarray, vectors: np.ndarray) -> None:
        # In chunks: an index add holds the index's write lock, and searches queue behind it; a
        # refresh adding 10k rows at once stalled searches for seconds.
        if space.index is not None and len(labels):
            for start in range(0, len(labels), _INDEX_CHUNK):
                end = start + _INDEX_CHUNK
                space.index.add(labels[start:end], space.for_index(vectors[start:end]))

    def _index_apply_named(self: "Collection", labels: np.ndarray) -> None:
        """(Re)add the named vectors of live rows ``labels`` to their fields' indexes."""
        for space in self._named.values():
            sp = space.positions(labels)
            if len(sp):
                self._index_apply(space, space.labels[sp], space.matrix[sp])

    def _index_remove(self: "Collection", labels: np.ndarray) -> None:
        for space in [self._default, *self._named.values()]:
            if space.index is not None:
                space.index.remove(labels)

    def _set_mode(self: "Collection", space: VectorSpace, mode: IndexMode | None, index: VectorIndex | None,
                  progress: bool = False, new_space: tuple[VectorSpace, Callable[[Any], None]] | None = None) -> None:
        """Switch ``space`` to ``mode`` with ``index`` (new and empty; None for FLAT or no index).
        Callers hold ``_wlock``, so the mirror cannot change: the new index is built outside the
        read/write lock, searches meanwhile go to the old index (or scan), and only the swap
        excludes them.

        ``new_space`` replaces ``space`` as well: a field re-targeted to another metric (from
        :meth:`_retarget`) or a new field, with the write that stores it. That write commits in
        the transaction of the index record, so a crash leaves the old metric, vectors and index,
        or the new ones, never a mix."""
        target, also = new_space if new_space is not None else (space, None)
        if new_space is not None and target.metric == "cosine":
            self._mark_raw_cosine()
        old_index = space.index
        if index is not None:
            self._fill(target, mode, index, progress)
        self._commit_index(target, mode, index, also)
        with self._rw.write:
            target.mode, target.index, target.saved_version = mode, index, self._version
            if new_space is not None:
                if target.name == "default":
                    self._config = {**self._config, "metric": target.metric}
                    self._default = target
                else:
                    self._named[target.name] = target
        if old_index is not None or mode is None:
            self._remove_orphans()

    def _retarget(self: "Collection", space: VectorSpace, metric: str) -> tuple[VectorSpace, Callable[[Any], None]]:
        """``space`` under another ``metric`` (LynseDB names the metric in the index mode), not
        installed yet, and the write that stores it: the metric only. The vectors stay as
        written (cosine normalises in memory), so a field switched back scores as before."""
        labels, matrix = space.labels[: space.n], space.matrix[: space.n]  # put() copies them
        # deleted rows too: a restore would bring them back
        if metric == "cosine" and space.n and (v.row_norms(matrix) == 0).any():
            raise InvalidArgumentError(f"index_mode: cannot switch field {space.name!r} to cosine: it holds zero vectors")
        name = space.name

        def tx(t):
            if name == "default":
                t.put_meta("config", {**self._config, "metric": metric})
            else:
                t.put_meta(f"vfield:{name}", {**t.get_meta(f"vfield:{name}"), "metric": metric})
        fresh = VectorSpace(name, space.dim, metric)
        if space.n:
            fresh.put(labels, matrix, space.live[: space.n].copy())
        return fresh, tx

    def _new_index(self: "Collection", dim: int, mode: IndexMode, params: dict) -> VectorIndex | None:
        """An empty ``mode`` index with ``params`` (None for FLAT, which takes none): constructing
        it checks every parameter, before anything is written."""
        if mode.kind == "FLAT":
            from .indexes.hnsw import refuse_unknown
            refuse_unknown("FLAT", params)
            return None
        return _index_class(mode.kind)(dim, mode.metric, **params)

    def _build(self: "Collection", space_of: Callable[[], VectorSpace], index_mode: str, n_clusters: Any,
               params: dict, progress: bool = False) -> dict:
        with self._wlock:
            # The field's space as of now, under the lock: a compact() or another build may
            # have replaced the one there was when the call began.
            space = space_of()
            mode = parse_index_mode(index_mode, default_metric=space.metric)
            params = lynse_build_params(mode.kind, params)
            if n_clusters is not None:
                if mode.kind != "IVF":
                    raise InvalidArgumentError(
                        f"n_clusters: only IVF indexes take n_clusters, got {n_clusters!r} for {index_mode!r}")
                params = {**params, "n_clusters": v.check_positive_int(n_clusters, param="n_clusters")}
            if space.dim == 0 and mode.kind != "FLAT":
                raise ConflictError(f"dim: collection {self.name!r} has no dimension until its first vectors "
                                    f"are added; build the {mode.kind} index after adding them")
            # Everything that can refuse the call runs before anything is written: a rejected
            # build leaves the metric, the stored vectors and the index as they were.
            index = self._new_index(space.dim, mode, params)
            new_space = self._retarget(space, mode.metric) if mode.metric != space.metric else None
            self._set_mode(space, mode, index, progress, new_space)
        return {"index_mode": mode.name, "n_clusters": params.get("n_clusters")}

    # ----------------------------------------------------------------- public: indexes ------
    def build_index(self: "Collection", index_mode: str = "FLAT", n_clusters: int | None = None, *,
                    progress: bool = False, **params: Any) -> dict:
        """Build the index of the default vector: ``FLAT`` (exact), ``HNSW`` or ``IVF``, with an
        optional metric suffix (``HNSW-COS``, ``IVF-L2``, ``FLAT-IP``). A bare kind keeps the
        collection's metric; a suffix with another metric re-targets the collection to it.
        HNSW takes ``M``, ``ef_construction``, ``ef``; IVF takes ``n_clusters`` and ``nprobe``.
        On a collection created without a dim, before its first vectors, only FLAT can be built:
        HNSW and IVF raise :class:`ConflictError` (their structures need the dim).

        Searches keep running during the build, on the previous index (or exact); writes wait.
        ``progress=True`` shows a progress bar (tqdm, when stderr is a terminal); an HNSW build
        then adds its rows in steps, which measured ~10-15 % slower than one call.

        >>> col.build_index("HNSW-COS", M=16, ef_construction=200)  # doctest: +SKIP
        {'index_mode': 'HNSW-COS', 'n_clusters': None}
        """
        self._check_writable(rows=False)
        return self._build(lambda: self._default, index_mode, n_clusters, params, progress)

    def remove_index(self: "Collection") -> None:
        """Drop the default vector's index; searches become exact."""
        self._check_writable(rows=False)
        with self._wlock:
            self._set_mode(self._default, None, None)

    # ----------------------------------------------------------------- named vector fields --
    def create_vector_field(self: "Collection", field_name: str, dim: int, metric: str = "ip",
                            index_mode: str | None = None) -> VectorFieldInfo:
        """Add a named vector field with its own dimension, metric and index.

        Asked again for a field that exists with the same dimension, metric and index mode
        (not compared when ``index_mode`` is None), it returns that field, as LynseDB does, so
        a script may declare its schema at every start; another configuration is a
        ConflictError naming what differs.

        >>> col.create_vector_field("title_vec", dim=384, metric="cosine", index_mode="HNSW")  # doctest: +SKIP
        VectorFieldInfo(name='title_vec', dimension=384, metric='cosine', index_mode='HNSW')
        """
        self._check_writable(rows=False)
        if not isinstance(field_name, str) or not _FIELD_NAME.match(field_name) or field_name == "default":
            raise InvalidNameError(f"field_name: expected 1-64 characters of [A-Za-z0-9_-], not 'default', got {field_name!r}")
        dim = v.check_positive_int(dim, param="dim", allow_none=False)
        if dim > v.MAX_DIM:  # as for a collection: 10**9 was a MemoryError, 2**64 a ValueError
            raise InvalidArgumentError(f"dim: expected at most {v.MAX_DIM}, got {dim}")
        metric = parse_metric(metric)
        mode = None if index_mode is None else parse_index_mode(index_mode, default_metric=metric)
        with self._wlock:
            if field_name in self._named:
                return self._same_field(self._named[field_name], dim, metric if mode is None else mode.metric, mode)
            # The field and its index record commit together, after the mode was checked: a
            # rejected call creates nothing.
            space = VectorSpace(field_name, dim, metric if mode is None else mode.metric)
            spec = {"dim": dim, "metric": space.metric, "order": len(self._named) + 1}
            index = None if mode is None else self._new_index(dim, mode, {})
            self._set_mode(space, mode, index, new_space=(space, lambda t: t.put_meta(f"vfield:{field_name}", spec)))
        return self._field_info(self._named[field_name])

    def _same_field(self: "Collection", space: VectorSpace, dim: int, metric: str,
                    mode: IndexMode | None) -> VectorFieldInfo:
        have = self._field_info(space)
        now = (space.mode or IndexMode("FLAT", space.metric, "FLAT")).canonical  # type: ignore[arg-type]
        diff = [f"{what} {a!r} (asked {b!r})" for what, a, b, differs in (
            ("dim", space.dim, dim, space.dim != dim), ("metric", space.metric, metric, space.metric != metric),
            ("index_mode", have.index_mode, getattr(mode, "name", None), mode is not None and mode.canonical != now))
            if differs]
        if diff:
            raise ConflictError(f"field_name: vector field {space.name!r} already exists with {', '.join(diff)}")
        return have

    def _field_info(self: "Collection", space: VectorSpace) -> VectorFieldInfo:
        return VectorFieldInfo(name=space.name, dimension=space.dim, metric=space.metric,
                               index_mode=space.mode.name if space.mode else self._mode_label(space))

    def list_vector_fields(self: "Collection") -> list[VectorFieldInfo]:
        """``default`` first, then the named fields."""
        self._check_open()
        return [self._field_info(s) for s in [self._default, *self._named.values()]]

    def _named_space(self: "Collection", field_name: str) -> VectorSpace:
        if not isinstance(field_name, str):  # a list is unhashable: TypeError below
            raise InvalidArgumentError(f"field_name: expected the name of a vector field, got {v._brief(field_name)}")
        if field_name not in self._named:
            raise NotFoundError(f"field_name: no vector field {field_name!r}; have {sorted(self._named)}")
        return self._named[field_name]

    def _live_labels_for(self: "Collection", ids: list) -> np.ndarray:
        missing = [i for i in ids if i not in self._id_pos or not self._default.live[self._id_pos[i]]]
        if missing:
            raise NotFoundError(f"ids: {len(missing)} unknown or deleted: {v._sample(missing)}")
        return self._default.labels[[self._id_pos[i] for i in ids]].astype(np.uint64)

    def add_named_vectors(self: "Collection", field_name: str, vectors: Any, ids: Ids) -> list[Id]:
        """Attach vectors of a named field to existing rows (replacing earlier ones).

        >>> col.add_named_vectors("title_vec", np.random.rand(2, 384), ids=[1, 2])  # doctest: +SKIP
        [1, 2]
        """
        self._check_writable()
        space = self._named_space(field_name)
        metric = space.metric
        vecs = v.check_vectors(vectors, space.dim, param="vectors", nonzero=metric == "cosine")
        id_list = v.check_ids(ids, param="ids")
        v.check_unique(id_list)
        if len(id_list) != len(vecs):
            raise InvalidArgumentError(f"ids: expected {len(vecs)} ids to match vectors, got {len(id_list)}")
        with self._wlock:
            self._check_writable()
            space = self._named_space(field_name)  # again: a compact() meanwhile replaced it
            self._same_metric(metric, space)
            labels = self._live_labels_for(id_list)
            version = self._version + 1
            blobs = [(int(lb), row.tobytes()) for lb, row in zip(labels, vecs)]

            def tx(t):
                for lb, blob in blobs:
                    t.put_named(field_name, lb, blob)
                t.append_log(version, f"named:{field_name}", [lb for lb, _ in blobs])
                t.put_meta("version", version)
            self._storage.write(tx)
            self._version = version
            with self._rw.write:
                space.put(labels, vecs, True)
            self._index_apply(space, labels, vecs)
            self._maybe_checkpoint()
        return id_list

    def build_vector_field_index(self: "Collection", field_name: str, index_mode: str = "FLAT",
                                 n_clusters: int | None = None, *, progress: bool = False, **params: Any) -> dict:
        """:meth:`build_index` for a named vector field.

        >>> col.build_vector_field_index("title_vec", "IVF-COS", n_clusters=64)  # doctest: +SKIP
        {'field_name': 'title_vec', 'index_mode': 'IVF-COS', 'n_clusters': 64}
        """
        self._check_writable(rows=False)
        out = self._build(lambda: self._named_space(field_name), index_mode, n_clusters, params, progress)
        return {"field_name": field_name, **out}

    def remove_vector_field_index(self: "Collection", field_name: str) -> None:
        """Drop a named field's index; its searches become exact."""
        self._check_writable(rows=False)
        with self._wlock:
            self._set_mode(self._named_space(field_name), None, None)

    # ----------------------------------------------------------------- sparse ---------------
    def _sparse_index(self: "Collection"):
        if self._sparse is None:
            from .indexes.sparse import SparseIndex
            self._sparse = SparseIndex()
        return self._sparse

    def _reload_sparse(self: "Collection", labels: np.ndarray) -> None:
        with self._storage.read() as t:
            found = [(int(lb), t.get_sparse(int(lb))) for lb in labels]
        self._upsert_sparse([(lb, s) for lb, s in found if s is not None])

    def _upsert_sparse(self: "Collection", records: list) -> None:
        """Stored sparse records ``[(label, (indices bytes, values bytes)), ...]`` into the index."""
        if records:
            self._sparse_index().upsert(np.asarray([lb for lb, _ in records], dtype=np.uint64),
                                        [(np.frombuffer(i, np.uint32), np.frombuffer(x, np.float32))
                                         for _, (i, x) in records])

    def add_sparse_vectors(self: "Collection", vectors: Sequence[Any], ids: Ids) -> list[Id]:
        """Attach sparse vectors (``{"indices": [...], "values": [...]}``, ``{index: weight}`` or
        ``[(index, weight), ...]``) to existing rows, replacing earlier ones.

        >>> col.add_sparse_vectors([{3: 0.5, 17: 1.2}], ids=[1])  # doctest: +SKIP
        [1]
        """
        from .indexes.sparse import parse_sparse
        self._check_writable()
        id_list = v.check_ids(ids, param="ids")
        v.check_unique(id_list)
        if isinstance(vectors, dict) or not hasattr(vectors, "__len__") or len(vectors) != len(id_list):
            raise InvalidArgumentError(f"vectors: expected a list of {len(id_list)} sparse vectors to match ids")
        parsed = [parse_sparse(x, param=f"vectors[{i}]") for i, x in enumerate(vectors)]
        with self._wlock:
            labels = self._live_labels_for(id_list)
            version = self._version + 1
            recs = [(int(lb), i.astype(np.uint32).tobytes(), x.astype(np.float32).tobytes())
                    for lb, (i, x) in zip(labels, parsed)]

            def tx(t):
                for lb, ib, xb in recs:
                    t.put_sparse(lb, ib, xb)
                t.append_log(version, "sparse", [r[0] for r in recs])
                t.put_meta("version", version)
            self._storage.write(tx)
            self._version = version
            with self._rw.write:
                self._sparse_index().upsert(labels, parsed)
            self._maybe_checkpoint()
        return id_list

    def _allowed_labels(self: "Collection", where: str | None) -> np.ndarray | None:
        if where is None:
            return None
        mask = self._where_mask(where) & self._default.live[: self._default.n]
        return np.sort(self._default.labels[np.flatnonzero(mask)])

    def _label_result(self: "Collection", labels: np.ndarray, scores: np.ndarray, k: int,
                      return_fields: bool, index: str, vector_field: str | None = None) -> SearchResult:
        """Hits by row label as a result (callers hold the read lock); ``vector_field`` names the
        field a hybrid search's vector leg searched. The sparse and text
        indexes follow a write just after the mirror does, so a hit that is no live row of the
        mirror (deleted meanwhile) is dropped, with its score."""
        space = self._default
        pos = space.lookup(labels)
        keep = (pos >= 0) & space.live[pos]  # (live[-1] is read for a -1, and masked)
        if not keep.all():
            pos, scores = pos[keep], np.asarray(scores)[keep]
        return self._result(space, pos, scores, k, return_fields, index=index, vector_field=vector_field)

    def sparse_search(self: "Collection", vector: Any, k: int = 10, where: str | None = None,
                      return_fields: bool = False) -> SearchResult:
        """Exact sparse inner product: rows sharing at least one index with ``vector``, best first.

        >>> col.sparse_search({3: 1.0}, k=5).index  # doctest: +SKIP
        'SPARSE-FLAT-IP'
        """
        from .indexes.sparse import parse_sparse
        self._check_open()
        k = v.check_k(k)
        v.check_search_flags(return_fields)
        idx, val = parse_sparse(vector, param="vector")
        with self._rw.read:
            if self._sparse is None:
                return self._label_result(np.empty(0, np.uint64), np.empty(0, np.float32), k, return_fields, "SPARSE-FLAT-IP")
            labels, scores = self._sparse.search(idx, val, k, allowed=self._allowed_labels(where))
            return self._label_result(labels, scores, k, return_fields, "SPARSE-FLAT-IP")

    # ----------------------------------------------------------------- text (BM25) ----------
    def _text_dirty(self: "Collection", labels: np.ndarray) -> None:
        # The tantivy index is caught up lazily (at the next text search, flush or checkpoint):
        # a tantivy commit per write call would dominate small writes.
        if self._text is not None:
            self._text_pending.update(int(x) for x in labels)

    def _text_catch_up(self: "Collection") -> None:
        if self._text is None or not self._text_pending:
            return
        lab = np.fromiter(self._text_pending, dtype=np.uint64, count=len(self._text_pending))
        pos = self._default.lookup(lab)
        live = self._default.live_at(pos)
        if (~live).any():
            self._text.delete(lab[~live])
        if live.any():
            self._text.upsert(lab[live], [self._fields[p] for p in pos[live].tolist()])
        self._text.commit()
        self._text_pending.clear()
        if not self._read_only:
            # the document count lets the next open tell a damaged or emptied index from a good one
            rec = {"version": self._version, "docs": len(self._text)}
            self._storage.write(lambda t: t.put_meta("text", rec))

    def _ensure_text(self: "Collection") -> None:
        """Open (catching up from the log) or build the tantivy index on first use.

        A read-only process builds a private one in a temporary folder: the writer's index
        moves on with the writer (its commits are visible at once), while a read-only handle
        answers for the version it holds until :meth:`refresh`."""
        if self._text is not None:
            return
        from .text import TextIndex
        directory = self.path / "text"
        rec = self._get_meta("text")
        self._text_pending: set[int] = set()
        pending = None
        if rec is not None and not self._read_only and TextIndex.exists(directory):
            with self._storage.read() as t:
                pending = t.touched_since(rec["version"])  # None: trimmed past it, rebuilt below
            if pending is None:
                log.info("%s: the change log was trimmed past the text index; rebuilding it", self.path)
        if pending is not None:
            try:
                text = TextIndex.open(directory)
                if len(text) != rec.get("docs", len(text)):
                    text.close()
                    raise CorruptionError(f"{len(text)} documents, {rec['docs']} recorded")
                self._text, self._text_pending = text, pending
                return
            except UnavailableError:  # out of file descriptors: not damage; the next call opens it
                raise
            except Exception as e:  # a damaged derived index is rebuilt, never trusted
                log.warning("%s: text index unusable (%s); rebuilding", self.path, e)
                self._text = None
        if self._read_only:
            directory = Path(tempfile.mkdtemp(prefix="vecstore-text-"))
            self._text_private = directory
        else:
            shutil.rmtree(directory, ignore_errors=True)
        self._text = TextIndex.open(directory)
        self._text_pending = {int(x) for x in self._default.live_labels()}

    def _with_text(self: "Collection", run: Callable[[], SearchResult]) -> SearchResult:
        """``run()`` under the read lock, with the text index caught up with the mirror."""
        with self._rw.read:
            self._check_open()
            if self._text is not None and not self._text_pending:  # the common case needs no write lock
                return run()
        # Caught up, then searched, under the writer mutex: no write comes between, in particular
        # no compact(), whose reload replaces the text index (tests/test_retrieval.py).
        with self._wlock:
            self._check_open()
            self._ensure_text()
            self._text_catch_up()
            with self._rw.read:
                return run()

    def text_search(self: "Collection", text: str, text_fields: Sequence[str] | None = None, k: int = 10,
                    where: str | None = None, return_fields: bool = False) -> SearchResult:
        """BM25 (tantivy) over the string fields of live rows; ``text_fields`` picks the fields
        (default: all). Only rows with a positive score come back.

        >>> col.text_search("vector database", text_fields=["title"], k=5).ids  # doctest: +SKIP
        (12, 3)
        """
        self._check_open()
        text = v.check_str(text, param="text")
        k = v.check_k(k)
        v.check_search_flags(return_fields)
        text_fields = v.check_text_fields(text_fields)

        def run() -> SearchResult:
            labels, scores = self._text.search(text, k, text_fields=text_fields, allowed=self._allowed_labels(where))
            # LynseDB's label for BM25 from an index (lynse_api §8.4); clients may check it.
            return self._label_result(labels, scores, k, return_fields, "BM25-INVERTED")
        return self._with_text(run)

    bm25_search = text_search

    # ----------------------------------------------------------------- hybrid ---------------
    def hybrid_search(self: "Collection", vector: Any = None, text: str | None = None,
                      text_fields: Sequence[str] | None = None, k: int = 10, where: str | None = None,
                      fusion: str = "rrf", vector_weight: float = 1.0, text_weight: float = 1.0,
                      rrf_k: float = 60.0, candidate_limit: int | None = None, return_fields: bool = False,
                      nprobe: int | None = None, vector_field: str = "default", *,
                      field_name: str | None = None) -> SearchResult:
        """Fuse a vector search and a BM25 search: reciprocal rank fusion (``fusion="rrf"``) or
        weighted min-max-normalised scores (``"weighted"``). Either side may be omitted.
        ``field_name`` is an alias of ``vector_field``, as in :meth:`search`.

        >>> col.hybrid_search(vector=q, text="vector database", k=10, fusion="rrf").index  # doctest: +SKIP
        'HYBRID-RRF'
        """
        from .fusion import fuse
        from .indexes.base import higher_is_better
        self._check_open()
        if vector is None and text is None:
            raise InvalidArgumentError("hybrid_search: expected a vector, a text, or both; got neither")
        fusion, vector_weight, text_weight, rrf_k = v.check_fusion_params(fusion, vector_weight, text_weight, rrf_k)
        k = v.check_k(k)
        v.check_search_flags(return_fields)
        limit = max(v.check_positive_int(candidate_limit, param="candidate_limit") or 4 * k, k)
        nprobe = v.check_nprobe(nprobe)
        if vector is not None:
            space = self._space(vector_field, field_name)
            q = v.check_vector(vector, space.dim, normalise=space.metric == "cosine")
        if text is not None:
            text = v.check_str(text, param="text")
            text_fields = v.check_text_fields(text_fields)

        def run() -> SearchResult:
            # Both legs and the fusion under one read lock, by row label: a compact() between
            # them would remove rows a leg found (their ids then name nothing, or other rows).
            legs, searched = [], None
            if vector is not None:
                sp = self._space(vector_field, field_name)  # compact() may have replaced the space
                searched = sp.name
                ((pos, scores),), _ = self._run_search(sp, q, limit, where, nprobe)
                legs.append((sp.labels[pos], scores, vector_weight, higher_is_better(sp.metric)))
            if text is not None:
                labels, scores = self._text.search(text, limit, text_fields=text_fields,
                                                   allowed=self._allowed_labels(where))
                legs.append((labels, scores, text_weight, True))
            labels, scores = fuse(legs, k, fusion=fusion, rrf_k=rrf_k)
            return self._label_result(np.asarray(labels, dtype=np.uint64), scores, k, return_fields,
                                      "HYBRID-RRF" if fusion == "rrf" else "HYBRID-WEIGHTED", searched)
        if text is not None:
            return self._with_text(run)
        with self._rw.read:
            self._check_open()  # closed meanwhile: the mirror is gone
            return run()


def _dropped_files(t: Any) -> dict[str, list[str]]:
    """The superseded index files the store lists, by field (``""``: a list from before)."""
    dropped = t.get_meta(_DROPPED_KEY, {})
    return dropped if isinstance(dropped, dict) else {"": list(dropped)}
