"""Collection: the one public surface of a collection.

It validates input once, commits every write call as one LMDB transaction (``storage``), then
brings the in-memory mirror (``table``) and the derived indexes (``indexes/``, ``text``) up to
the committed version. Reads never touch LMDB: they run on the mirror.

>>> import tempfile, vecstore
>>> db = vecstore.connect(tempfile.mkdtemp()).create_database("app")
>>> col = db.require_collection("items", dim=2, metric="l2")
>>> col.add_item([0.0, 1.0], id=7, field={"lang": "en"})
7
>>> col.search([0.0, 0.9], k=1).ids
(7,)
>>> col.close()
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from . import validation as v
from .errors import (AlreadyExistsError, ClosedError, ConflictError, CorruptionError, DimensionMismatchError,
                     InvalidArgumentError, NotFoundError, ReadOnlyError, VecstoreError)
from .blobs import CollectionBlobs
from .collection_ext import DerivedIndexes
from .portability import CollectionPortability
from .filters import FieldColumns, compile_where
from .indexes.base import IndexMode, higher_is_better
from .indexes.rwlock import RWLock
from .storage import RAW_COSINE_FORMAT, STORE_FORMAT, Storage
from .table import VectorSpace
from .types import (CollectionConfig, CollectionStats, Id, IdLike, Ids, ProfiledSearch, Rows, SearchResult)

if TYPE_CHECKING:
    from .client import Database

log = logging.getLogger(__name__)

DEFAULT = "default"
# Below this many allowed rows a filtered search is exact over just those rows: cheaper than
# steering an ANN index through a selective filter, and recall is perfect.
EXACT_FILTER_ROWS = 4096
EXACT_FILTER_FRACTION = 0.05
# A broader filter whose allowed rows lie away from the query leaves HNSW to hnswlib's filter
# callback (the GIL taken per node visited: 30-60x an exact scan of the allowed rows at 5k-20k
# of them). Up to this many allowed floats per query (20k rows of dim 16: ~1.5 ms) the exact scan
# answers then instead.
EXACT_FALLBACK_FLOATS = 1 << 22
_ROW_CHUNK = 50_000
# A write that brings the rows logged since the last checkpoint above this many (a fraction of
# the stored rows, at least the floor) checkpoints: the next open after a crash replays at most
# about that many rows into each index (well under the HNSW replay/rebuild crossover, see
# collection_ext._REPLAY_MAX_FRACTION), and the change log stays bounded. A checkpoint writes
# every index whole, so its cost per row written is a constant: saving a 50k x 64 HNSW index
# took 65-86 ms, what ~200 single-row adds (0.4 ms each) take, against 5,000+ rows between two
# checkpoints; single-row writes measured the same before and after (median 48 us FLAT add,
# 0.4-0.7 ms HNSW add, 1.8-2.0 ms HNSW upsert).
CHECKPOINT_FRACTION = 0.1
CHECKPOINT_MIN_ROWS = 10_000


_NESTED = (list, dict)


def _own(fields: dict) -> dict:
    """A caller's copy of a row's fields. Nested lists and dicts are copied too: a caller who
    edits a result must not edit the mirror (which a later upsert with ``fields=None`` would
    then write to disk). Field values are JSON-like (validated), so no ``copy.deepcopy``
    (10x slower here: its memo table and dispatch)."""
    out = dict(fields)
    for key, value in out.items():
        if type(value) in _NESTED:
            out[key] = _copy_nested(value)
    return out


def _copy_nested(x: list | dict) -> list | dict:
    if type(x) is list:
        return [_copy_nested(i) if type(i) in _NESTED else i for i in x]
    return {k: _copy_nested(i) if type(i) in _NESTED else i for k, i in x.items()}


def _sorted(a: np.ndarray) -> np.ndarray:
    # Labels grow with positions unless rows were replaced, so this is usually sorted already:
    # a linear check instead of an O(n log n) sort (200 µs for 50k labels).
    return a if len(a) < 2 or bool((a[1:] >= a[:-1]).all()) else np.sort(a)


def _named_defs(t) -> dict:
    """The stored vector-field definitions by ``vfield:`` key, in creation order (which
    list_vector_fields() reports; LMDB would give name order)."""
    return dict(sorted(t.iter_meta("vfield:"), key=lambda kv: (kv[1].get("order", 0), kv[0])))


def _check_counters(path: Path, cfg: Any, version: Any, next_label: Any, labels: np.ndarray) -> None:
    """The records every later write builds on: a config naming a known metric and a dimension,
    and counters that only grow (a ``next_label`` at or below a stored label would make the next
    add overwrite rows). A store failing this was damaged, or crafted (a restored snapshot)."""
    def count(x: Any) -> bool:
        return type(x) is int and x >= 0
    if not (isinstance(cfg, dict) and cfg.get("metric") in ("l2", "ip", "cosine")
            and count(cfg.get("dim")) and cfg["dim"] <= v.MAX_DIM):
        raise CorruptionError(f"{path}: bad collection config {str(cfg)[:200]}")
    if not (count(version) and count(next_label) and (len(labels) == 0 or next_label > int(labels.max()))):
        raise CorruptionError(f"{path}: bad counters (version {version!r}, next_label {next_label!r}, "
                              f"largest label {int(labels.max()) if len(labels) else None})")


def _structure(config: dict, named_defs: dict, index_records: dict) -> tuple:
    """What a handle cannot follow row by row: the config, the named fields and which indexes
    exist. ``refresh()`` reloads the whole handle when this changed. An index record's files,
    generation and version are left out: the writer saving its index (at every checkpoint) is
    not a change a reader needs to reload for."""
    indexes = {k: (r.get("mode"), r.get("metric"), r.get("params")) for k, r in index_records.items()}
    return (config, named_defs, indexes)


def _progress(iterable: Iterable, total: int | None, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    # disable=None: tqdm switches itself off when stderr is not a terminal.
    return tqdm(iterable, total=total, desc=desc, unit="rows", disable=None)


class Collection(DerivedIndexes, CollectionPortability, CollectionBlobs):
    """Rows with a public id, a dense ``default`` vector, optional named and sparse vectors and
    metadata ``fields``; searchable by k-NN, filters, BM25, sparse and hybrid queries.

    Obtain one from :meth:`vecstore.Database.require_collection`. A handle is a context
    manager; ``close()`` is idempotent and a closed handle raises :class:`ClosedError`.
    """

    def __init__(self, db: "Database", name: str, path: Path, *, create: dict | None,
                 read_only: bool = False, durability: str | None = None) -> None:
        self.name = name
        self.database = db
        self.path = Path(path)
        self._closed = False
        self._wlock = threading.RLock()   # one write call at a time (LMDB has one writer anyway)
        self._rw = RWLock()               # reads shared; mirror swaps (compact) exclusive
        self._read_only = read_only
        if create is not None:
            durability = durability or create.get("durability", "safe")
        self._storage = Storage(self.path, read_only=read_only, durability=durability or "safe",
                                create=create is not None)
        try:
            if create is not None:
                self._init_new(create)
            self._load(opening=True)
        except BaseException:
            # A create that failed before its config was committed (EMFILE: "retry later")
            # leaves no store behind: it would be listed, and taken, but unreadable.
            self._storage.close(remove=create is not None and not self._configured())
            raise

    # ------------------------------------------------------------------ lifecycle / loading --
    def _init_new(self, create: dict) -> None:
        extra = create.pop("meta", None) or {}

        def tx(t):
            # Under the store's lock: another process may have created it since the caller
            # looked (it only takes over a store whose creator died before this commit).
            if t.get_meta("config") is not None:
                raise AlreadyExistsError(f"collection_name: collection {self.name!r} already exists")
            t.put_meta("config", {"format": RAW_COSINE_FORMAT if create["metric"] == "cosine" else 1, **create})
            t.put_meta("version", 0)
            t.put_meta("next_label", 0)
            for key, value in extra.items():
                t.put_meta(key, value)
        self._storage.write(tx)

    def _configured(self) -> bool:
        """Whether the store holds a config (True when that cannot be read: keep it)."""
        try:
            with self._storage.read() as t:
                return t.get_meta("config") is not None
        except Exception:  # noqa: BLE001 - whatever the failure, a store not known empty is kept
            return True

    def _load(self, *, opening: bool = False) -> None:
        """Rebuild the mirror from LMDB, then load or rebuild the derived indexes (``opening``:
        the first load of this handle, which may still fail without leaving a half-built mirror)."""
        with self._storage.read() as t:
            cfg = t.get_meta("config")
            if cfg is None and self._read_only:  # the writer is still creating it
                raise NotFoundError(f"{self.path}: the collection is being created")
            if cfg is None:
                raise CorruptionError(f"{self.path}: no collection config in the store (its create was "
                                      "interrupted: create it again)")
            if cfg.get("format", 1) > STORE_FORMAT:
                from .errors import UnsupportedFormatError
                raise UnsupportedFormatError(f"{self.path}: store format {cfg['format']} is newer than this vecstore")
            self._config = cfg
            self._version = t.get_meta("version", 0)
            self._next_label = t.get_meta("next_label", 0)
            labels, rows = t.load_rows()
            vec_labels, matrix = t.load_vecs(cfg["dim"])
            named_defs = _named_defs(t)
            named_data = {key[len("vfield:"):]: t.load_named(key[len("vfield:"):], spec["dim"])
                          for key, spec in named_defs.items()}
            index_records = dict(t.iter_meta("index:"))
            sparse_rows = list(t.iter_sparse())
            # rows logged since the last checkpoint: what a crash now would replay
            unsaved = 0 if self._read_only else sum(
                len(lbs) for _, _, lbs in t.iter_log(max(t.get_meta("log_mark", 0), t.log_start())))
            self._stamp, self._structure = t.id, _structure(cfg, named_defs, index_records)
        if not np.array_equal(labels, vec_labels):
            raise CorruptionError(f"{self.path}: {len(labels)} rows but {len(vec_labels)} vectors, "
                                  "or not for the same labels")
        _check_counters(self.path, cfg, self._version, self._next_label, labels)
        if not self._read_only and "cosine" in {cfg["metric"], *(spec["metric"] for spec in named_defs.values())}:
            self._mark_raw_cosine()  # a store of before: this handle writes cosine vectors as given
        dim, metric = cfg["dim"], cfg["metric"]
        n = len(rows)
        self._ids: list[Id] = [r[0] for r in rows]
        self._fields: list[dict] = [r[1] for r in rows]
        alive = np.fromiter((not r[2] for r in rows), dtype=bool, count=n)
        del rows
        self._id_pos: dict[Id, int] = dict(zip(self._ids, range(n)))
        if len(self._id_pos) != n:
            raise CorruptionError(f"{self.path}: {n - len(self._id_pos)} rows repeat another row's id")
        ints = [i for i in self._ids if type(i) is int]
        self._max_int_all = max(ints) if ints else -1
        self._default = VectorSpace(DEFAULT, dim, metric)
        if n:
            self._default.fill(labels, matrix, alive)
        self._named: dict[str, VectorSpace] = {}
        for key, spec in named_defs.items():
            fname = key[len("vfield:"):]
            space = VectorSpace(fname, spec["dim"], spec["metric"])
            lbs, mat = named_data[fname]
            if len(lbs):
                space.fill(lbs, mat, self._default.live_at(self._default.lookup(lbs)))
            self._named[fname] = space
        self._columns = FieldColumns()
        self._columns.reset(self._ids, self._fields)
        self._fields_gen = 0  # counts writes of fields: list_fields() is kept per (liveness, this)
        self._sparse = None
        if sparse_rows:
            self._upsert_sparse([(lb, (i, x)) for lb, i, x in sparse_rows])
            dead = self._default.labels[: self._default.n][~self._default.live[: self._default.n]]
            if len(dead):
                self._sparse.remove(dead)
        self._text = None
        self._saved_at = self._storage.logged_rows - unsaved
        for key, rec in index_records.items():
            self._open_index(key[len("index:"):], rec, opening)

    def _mark_raw_cosine(self) -> None:
        """Record that a cosine field may hold vectors as written (``RAW_COSINE_FORMAT``), in a
        transaction of its own before any is: an older vecstore refuses the store rather than
        read them as unit vectors."""
        if self._config.get("format", 1) < RAW_COSINE_FORMAT:
            cfg = {**self._config, "format": RAW_COSINE_FORMAT}
            self._storage.write(lambda t: t.put_meta("config", cfg))
            self._config = cfg

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"collection {self.name!r} is closed")

    def _check_writable(self, *, rows: bool = True) -> None:
        """``rows=False`` for structural changes (indexes, description) that external
        collections and materialized views still allow; their rows change only by refresh."""
        self._check_open()
        if self._read_only:
            raise ReadOnlyError(f"collection {self.name!r} is read-only")
        kind = self._config.get("kind", "collection")
        if rows and kind != "collection":
            raise ReadOnlyError(
                f"collection {self.name!r} is {'an external collection' if kind == 'external' else 'a materialized view'}; "
                f"its rows change only by refresh")

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or a drop of the collection) released the handle."""
        return self._closed

    def _get_meta(self, key: str, default: Any = None) -> Any:
        """A value stored with the collection (sync state of external collections and views)."""
        self._check_open()  # a handle discarded by a drop or a restore has no store any more
        with self._storage.read() as t:
            return t.get_meta(key, default)

    @property
    def version(self) -> int:
        """The commit counter: every write call that changed something increments it."""
        return self._version

    @property
    def kind(self) -> str:
        """``"collection"``, ``"external"`` (synced from Iceberg) or ``"view"`` (materialized)."""
        return self._config.get("kind", "collection")

    def close(self) -> None:
        """Write derived index files (so the next open replays nothing) and release the store.
        Closing twice is harmless. The handle is the one every client of this process opening
        the collection gets: this closes it for all of them (``get_collection`` then opens it
        afresh). To let go of only your share, close your client (or database) instead."""
        if self._closed:
            return
        try:
            if not self._read_only:
                with self._wlock:
                    if self._closed:  # closed by another thread while this one waited
                        return
                    self.checkpoint()
        finally:
            self._discard()

    def _discard(self) -> None:
        """Release the store without writing anything (the collection is being dropped)."""
        if self._closed:
            return
        with self._wlock:
            if self._closed:  # discarded by another thread while this one waited
                return
            self._closed = True
            if self._text is not None:
                self._text.close()
            if getattr(self, "_text_private", None) is not None:  # a read-only process's own index
                shutil.rmtree(self._text_private, ignore_errors=True)
            self._storage.close()
            # Release the mirror and the indexes now rather than with the last reference: a
            # notebook or an app that keeps the handle would otherwise hold every vector.
            # Searches running finish first; one that checked the handle before the close
            # finds it closed under the lock (ClosedError).
            with self._rw.write:
                self._default = VectorSpace(DEFAULT, self._default.dim, self._default.metric)
                self._named, self._ids, self._fields, self._id_pos = {}, [], [], {}
                self._columns, self._sparse, self._text = FieldColumns(), None, None
        self.database._forget(self)

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._default.n_live} rows"
        return f"<Collection {self.database.name}/{self.name} dim={self._config['dim']} {state}>"

    # ------------------------------------------------------------------ config and stats ----
    @property
    def dim(self) -> int:
        """The dimension of the default vector; 0 while a collection created without one has
        had no vectors yet (the first write that brings vectors fixes it).

        >>> col.dim  # doctest: +SKIP
        4
        """
        return self._config["dim"]

    def _set_dim(self, dim: int) -> None:
        """Fix the dimension of a collection created without one, with no vectors yet (the
        ``dim`` of ``require_collection`` on it). The same dim again is a no-op."""
        self._check_writable(rows=False)
        with self._wlock:
            if self.dim == 0:
                cfg = {**self._config, "dim": dim}
                self._storage.write(lambda t: t.put_meta("config", cfg))
                self._adopt_dim(cfg)
            elif dim != self.dim:
                raise DimensionMismatchError(f"dim: collection {self.name!r} has dimension {self.dim}, got {dim}")

    def _adopt_dim(self, cfg: dict) -> None:
        """After the commit that stored ``cfg`` with a first dim: the mirror takes it."""
        with self._rw.write:
            self._config = cfg
            self._default.set_dim(cfg["dim"])

    @property
    def metric(self) -> str:
        """The metric searches score with: ``"ip"``, ``"l2"`` or ``"cosine"`` (as created, or as
        the last index mode with a metric suffix set it)."""
        return self._config["metric"]

    @property
    def shape(self) -> tuple[int, int]:
        """``(live rows, dim)``; soft-deleted rows are not counted.

        >>> col.shape  # doctest: +SKIP
        (1000, 128)
        """
        self._check_open()
        with self._rw.read:  # a write or compact() swaps the mirror's pieces one by one
            return (self._default.n_live, self.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def stats(self) -> CollectionStats:
        """Counts: stored rows, live rows, soft-deleted rows, dimension, index mode (``None``
        when no index was built, as :meth:`index_mode` says), max id."""
        self._check_open()
        with self._rw.read:
            n = self._default.n
            return CollectionStats(
                n_vectors=n, n_live=self._default.n_live, n_tombstoned=n - self._default.n_live,
                dimension=self.dim, index_mode=self.index_mode(), max_id=self._max_id(),
                version=self._version)

    def get_collection_config(self) -> CollectionConfig:
        """The persisted configuration: ``dim``, ``metric``, ``description`` ..."""
        self._check_open()
        return CollectionConfig.from_dict(self._config)

    def update_description(self, description: str) -> str:
        """Replace the free-text description.

        >>> col.update_description("product embeddings")  # doctest: +SKIP
        'product embeddings'
        """
        self._check_writable(rows=False)
        description = v.check_str(description, param="description")
        with self._wlock:
            cfg = {**self._config, "description": description}
            self._storage.write(lambda t: t.put_meta("config", cfg))
            self._config = cfg
        return description

    def get_collection_path(self) -> str:
        """The collection's folder (its LMDB store and derived index files).

        >>> col.get_collection_path()  # doctest: +SKIP
        'data/app/items'
        """
        return str(self.path)

    def index_mode(self) -> str | None:
        """The index mode of the default vector as given to ``build_index``; ``None`` when
        searches are exact because no index was built."""
        self._check_open()
        mode = self._default.mode
        return mode.name if mode is not None else None

    # ------------------------------------------------------------------ writes --------------
    def add_item(self, vector: Any, id: IdLike | None = None, field: dict | None = None) -> Id:
        """Add one row; without ``id`` the next integer id is assigned (max id + 1).

        >>> col.add_item([0.1, 0.2, 0.3, 0.4], id=1, field={"lang": "en"})  # doctest: +SKIP
        1
        """
        return self.bulk_add_items([{"vector": vector, "id": id, "field": field}])[0]

    def bulk_add_items(self, items: Iterable[dict], *, progress: bool = False) -> list[Id]:
        """Add rows given as dicts ``{"vector", "id"?, "field"?}``; returns their ids in order.

        A list is validated whole before anything is written; the rows are then committed in
        chunks of 50,000, **each chunk its own transaction**, so a crash mid-way keeps the
        chunks already acknowledged by the progress bar (``progress=True``).

        Rows without an id get the next ones after the largest stored int id (0 in an empty
        collection), skipping ids taken: the ids given in the same call do not move that start
        (as in LynseDB).

        >>> col.bulk_add_items([{"vector": [1, 0, 0, 0], "id": 5}, {"vector": [0, 1, 0, 0]}])  # doctest: +SKIP
        [5, 0]
        """
        self._check_writable()
        items = v.check_items(items, need_id=False)
        metric = self.metric
        vectors = v.check_vectors([it["vector"] for it in items], self.dim, param="items[].vector",
                                  nonzero=metric == "cosine")
        ids = [None if it.get("id") is None else v.check_id(it["id"], param=f"items[{i}].id")
               for i, it in enumerate(items)]
        fields = [v.check_fields(it.get("field"), param=f"items[{i}].field") for i, it in enumerate(items)]
        return self._insert(ids, vectors, fields, progress=progress, metric=metric)

    def add(self, vectors: Any, ids: Ids | None = None, fields: Sequence[dict | None] | None = None,
            *, progress: bool = False) -> list[Id]:
        """Columnar add: ``vectors`` is an ``(n, dim)`` array; ``ids`` and ``fields`` line up.

        >>> col.add(np.eye(4), ids=["a", "b", "c", "d"])  # doctest: +SKIP
        ['a', 'b', 'c', 'd']
        """
        self._check_writable()
        metric = self.metric
        vecs, id_list, field_list = v.check_add_columns(vectors, ids, fields, self.dim, nonzero=metric == "cosine")
        if field_list is None:
            field_list = [{} for _ in id_list]
        return self._insert(id_list, vecs, field_list, progress=progress, metric=metric)

    def _same_metric(self, metric: str, space: VectorSpace | None = None) -> None:
        """Under the writer mutex: the vectors were validated for ``metric`` (cosine refuses zero
        vectors, which have no direction); a build_index that changed the metric of ``space``
        (default: the collection's) since would let a zero vector into a cosine field."""
        space = space or self._default
        if metric != space.metric:
            what = "the collection" if space is self._default else f"field {space.name!r}"
            raise ConflictError(f"metric: {what} changed from {metric!r} to {space.metric!r} "
                                "while this call was being validated (a build_index); retry it")

    def _insert(self, ids: list, vectors: np.ndarray, fields: list[dict], *, progress: bool,
                metric: str) -> list[Id]:
        explicit = [i for i in ids if i is not None]
        v.check_unique(explicit, param="ids")
        with self._wlock:
            self._check_writable()
            self._same_metric(metric)
            clash = [i for i in explicit if i in self._id_pos]
            if clash:
                deleted = [i for i in clash if not self._default.live[self._id_pos[i]]]
                hint = " (soft-deleted: restore_items() or upsert them)" if deleted else "; use upsert to replace"
                raise AlreadyExistsError(f"ids: {len(clash)} already exist{hint}: {v._sample(clash)}")
            taken = set(explicit)
            nxt = self._max_int_all + 1
            out: list[Id] = []
            for i in ids:
                if i is None:
                    while nxt in self._id_pos or nxt in taken:
                        nxt += 1
                    if nxt > v.MAX_INT_ID:  # an id nothing could address afterwards
                        raise InvalidArgumentError(
                            f"ids: no integer id is left above the largest one ({self._max_int_all}) "
                            "to assign; pass explicit ids")
                    i = nxt
                    nxt += 1
                out.append(i)
            n = len(out)
            chunks = range(0, n, _ROW_CHUNK)
            for start in _progress(chunks, len(chunks), progress and n > _ROW_CHUNK, "adding"):
                end = min(start + _ROW_CHUNK, n)
                self._commit_rows("add", out[start:end], vectors[start:end], fields[start:end],
                                  [None] * (end - start))
        return out

    def _commit_rows(self, op: str, ids: list, vectors: np.ndarray, fields: list, labels: list) -> None:
        """Write rows in one transaction, then mirror them. ``labels[i]`` is None for a new row."""
        self._commit(op, rows=(ids, vectors, fields, labels))

    def _commit(self, op: str, *, rows: tuple | None = None, delete_pos: np.ndarray | None = None,
                meta: dict | None = None) -> int:
        """The one write path: rows to insert or replace, positions to soft-delete and meta keys
        to set, all in ONE LMDB transaction; then the mirror and the derived indexes follow.
        Returns the new version. Callers hold ``_wlock``."""
        version = self._version + 1
        first = self._next_label
        assigned: list[int] = []
        blobs: list[bytes] = []
        if rows is not None:
            ids, vectors, fields, labels = rows
            nl = first
            for lb in labels:
                if lb is None:
                    assigned.append(nl)
                    nl += 1
                else:
                    assigned.append(lb)
            blobs = [row.tobytes() for row in vectors]
        new_count = sum(1 for lb in (rows[3] if rows is not None else ()) if lb is None)
        new_cfg = None
        if rows is not None and rows[1].shape[1] != self.dim:
            if self.dim:  # validated against dim 0, then another writer's first vectors fixed it
                raise DimensionMismatchError(f"vectors: expected dimension {self.dim}, got {rows[1].shape[1]}")
            # The first vectors of a collection created without a dim fix it, in the rows'
            # transaction: no crash can leave rows without a dim, or a dim without its rows.
            new_cfg = {**self._config, "dim": int(rows[1].shape[1])}
        dead: list[tuple] = []
        if delete_pos is not None and len(delete_pos):
            dead = [(int(self._default.labels[p]), self._ids[p], self._fields[p]) for p in delete_pos.tolist()]

        def tx(t):
            if rows is not None:
                t.put_rows(assigned, rows[0], rows[2], False, version, blobs)
            if dead:
                t.put_rows([d[0] for d in dead], [d[1] for d in dead], [d[2] for d in dead], True, version, None)
            for key, value in (meta or {}).items():
                if value is None:  # None removes the key (sync state of a removed file, say)
                    t.delete_meta(key)
                else:
                    t.put_meta(key, value)
            t.append_log(version, op, assigned + [d[0] for d in dead])
            t.put_meta("version", version)
            if new_count:
                t.put_meta("next_label", first + new_count)
            if new_cfg is not None:
                t.put_meta("config", new_cfg)
        self._storage.write(tx)
        # Committed: now the mirror and the derived indexes.
        self._version = version
        self._next_label = first + new_count
        if new_cfg is not None:
            self._adopt_dim(new_cfg)
        if rows is not None:
            self._mirror_rows(rows[0], rows[1], rows[2], np.asarray(assigned, dtype=np.uint64))
        if dead:
            self._mirror_deleted(np.asarray(delete_pos, dtype=np.int64), True)
        self._maybe_checkpoint()
        return version

    def _mirror_rows(self, ids: list, vectors: np.ndarray, fields: list, lab: np.ndarray) -> None:
        with self._rw.write:
            existed = self._mirror_ids(ids, fields)
            # soft-deleted rows an upsert revives: as after restore_items(), their named and
            # sparse vectors come back, in the mirror and in the indexes
            pos = self._default.lookup(lab) if existed else lab[:0]
            revived = lab[(pos >= 0) & ~self._default.live_at(pos)] if existed else lab[:0]
            self._default.put(lab, vectors, True)
            if len(revived):
                self._set_named_live(revived, True)
        self._index_apply(self._default, lab, vectors)
        if len(revived):
            self._index_apply_named(revived)
            if self._sparse is not None:
                self._reload_sparse(revived)
        self._text_dirty(lab)

    def _mirror_ids(self, ids: list, fields: list) -> bool:
        """The ids and fields of written rows, new ones appended in order (callers hold the
        write side of ``_rw``). Returns whether any of the rows existed already."""
        new_ids, new_fields, old_pos, old_ids, old_fields = [], [], [], [], []
        for i, f in zip(ids, fields):
            pos = self._id_pos.get(i)
            if pos is None:
                self._id_pos[i] = len(self._ids)
                self._ids.append(i)
                self._fields.append(f)
                new_ids.append(i)
                new_fields.append(f)
                if type(i) is int and i > self._max_int_all:
                    self._max_int_all = i
            else:
                self._fields[pos] = f
                old_pos.append(pos)
                old_ids.append(i)
                old_fields.append(f)
        if new_ids:
            self._columns.append(new_ids, new_fields)
        if old_pos:
            self._columns.set(old_pos, old_ids, old_fields)
        self._fields_gen += 1
        return bool(old_pos)

    def _apply_changes(self, op: str, *, upsert: tuple[list, np.ndarray, list] | None = None,
                       delete_ids: Iterable[Id] = (), meta: dict | None = None) -> int:
        """Apply a refresh (external collections, materialized views) atomically: upsert rows
        ``(ids, vectors, fields)`` (vectors already validated: finite, and for cosine not zero),
        soft-delete ``delete_ids`` (unknown ids ignored) and set ``meta`` keys (a ``None`` value
        deletes the key), in one transaction. Readers see the previous version until it
        commits. Returns the version."""
        if upsert is not None:
            # as in _insert/_upsert: one id twice in one commit makes two rows share an id,
            # which the mirror cannot hold (reads fail, a reopen shows both)
            v.check_unique(upsert[0], param="ids")
        with self._wlock:
            self._check_open()
            rows = None
            if upsert is not None and len(upsert[0]):
                ids, vectors, fields = upsert
                labels = [None if (p := self._id_pos.get(i)) is None else int(self._default.labels[p]) for i in ids]
                rows = (list(ids), vectors, list(fields), labels)
            up = set(upsert[0]) if upsert is not None else set()
            pos = [self._id_pos[i] for i in delete_ids if i in self._id_pos and i not in up]
            pos_arr = np.asarray(sorted(pos), dtype=np.int64)
            pos_arr = pos_arr[self._default.live[pos_arr]] if len(pos_arr) else pos_arr
            return self._commit(op, rows=rows, delete_pos=pos_arr, meta=meta)

    def upsert_items(self, items: Iterable[dict], *, progress: bool = False) -> list[Id]:
        """Insert or replace rows given as ``{"vector", "id", "field"?}`` (every item needs an id).

        An existing row gets the new vector; its fields are replaced when ``field`` is given and
        kept when the key is absent. Upserting a soft-deleted id writes it and makes it live.
        """
        self._check_writable()
        items = v.check_items(items, need_id=True)
        ids = [v.check_id(it["id"], param=f"items[{i}].id") for i, it in enumerate(items)]
        metric = self.metric
        vecs = v.check_vectors([it["vector"] for it in items], self.dim, param="items[].vector",
                               nonzero=metric == "cosine")
        fields = [v.check_fields(it["field"], param=f"items[{i}].field") if "field" in it and it["field"] is not None else None
                  for i, it in enumerate(items)]
        return self._upsert(ids, vecs, fields, progress=progress, metric=metric)

    def upsert(self, vectors: Any, ids: Ids, fields: Sequence[dict | None] | None = None,
               *, progress: bool = False) -> list[Id]:
        """Columnar upsert; ``fields=None`` keeps the fields of existing rows.

        >>> col.upsert(np.ones((1, 4)), ids=["a"], fields=[{"lang": "de"}])  # doctest: +SKIP
        ['a']
        """
        self._check_writable()
        metric = self.metric
        vecs, id_list, field_list = v.check_upsert_columns(vectors, ids, fields, self.dim, nonzero=metric == "cosine")
        return self._upsert(id_list, vecs, field_list or [None] * len(id_list), progress=progress, metric=metric)

    def _upsert(self, ids: list, vectors: np.ndarray, fields: list, *, progress: bool, metric: str) -> list[Id]:
        v.check_unique(ids, param="ids")
        with self._wlock:
            self._check_writable()
            self._same_metric(metric)
            n = len(ids)
            chunks = range(0, n, _ROW_CHUNK)
            for start in _progress(chunks, len(chunks), progress and n > _ROW_CHUNK, "upserting"):
                end = min(start + _ROW_CHUNK, n)
                c_ids = ids[start:end]
                labels, c_fields = [], []
                for i, f in zip(c_ids, fields[start:end]):
                    pos = self._id_pos.get(i)
                    labels.append(None if pos is None else int(self._default.labels[pos]))
                    c_fields.append(f if f is not None else (dict(self._fields[pos]) if pos is not None else {}))
                self._commit_rows("upsert", c_ids, vectors[start:end], c_fields, labels)
        return list(ids)

    def delete_items(self, ids: Ids | None = None, where: str | None = None, *, missing_ok: bool = False) -> int:
        """Soft-delete rows by id, or every live row matching ``where``; returns how many rows
        went from live to deleted. Deleted rows vanish from every read until restored;
        ``compact()`` removes them for good. An id that does not exist raises NotFoundError
        (nothing deleted), unless ``missing_ok``: then it is skipped, as LynseDB does.

        >>> col.delete_items([1, 2])  # doctest: +SKIP
        2
        """
        self._check_writable()
        missing_ok = v.check_bool(missing_ok, param="missing_ok")
        if ids is None and where is None:
            raise InvalidArgumentError("delete_items: expected ids or where, got neither")
        with self._wlock:
            self._check_writable()  # again: a close() meanwhile emptied the mirror
            pos = self._positions_for(ids, where, missing_ok=missing_ok)
            pos = pos[self._default.live[pos]]
            if len(pos):
                self._set_deleted(pos, True, "delete")
            return int(len(pos))

    delete = delete_items

    def restore_items(self, ids: Ids, *, missing_ok: bool = False) -> int:
        """Undo soft deletes; returns how many rows became live again. An id that does not
        exist raises NotFoundError (nothing restored), unless ``missing_ok``: then it is skipped.

        >>> col.restore_items([1])  # doctest: +SKIP
        1
        """
        self._check_writable()
        id_list = v.check_ids(ids, param="ids", allow_empty=True)
        missing_ok = v.check_bool(missing_ok, param="missing_ok")
        with self._wlock:
            self._check_writable()
            pos = self._positions_for(id_list, None, include_deleted=True, missing_ok=missing_ok)
            pos = pos[~self._default.live[pos]]
            if len(pos):
                self._set_deleted(pos, False, "restore")
            return int(len(pos))

    restore = restore_items

    def _positions_for(self, ids: Ids | None, where: str | None, *, include_deleted: bool = False,
                       missing_ok: bool = False) -> np.ndarray:
        out = None
        if ids is not None:
            id_list = v.check_ids(ids, param="ids", allow_empty=True)
            found = [self._id_pos.get(i) for i in id_list]
            if not missing_ok and None in found:
                missing = [i for i, p in zip(id_list, found) if p is None]
                raise NotFoundError(f"ids: {len(missing)} unknown: {v._sample(missing)}")
            out = np.unique(np.array([p for p in found if p is not None], dtype=np.int64))
        if where is not None:
            mask = self._where_mask(where)
            if not include_deleted:
                mask &= self._default.live[: self._default.n]
            wpos = np.flatnonzero(mask)
            out = wpos if out is None else np.intersect1d(out, wpos)
        return out if out is not None else np.empty(0, np.int64)

    def _set_deleted(self, pos: np.ndarray, deleted: bool, op: str) -> None:
        if deleted:
            self._commit(op, delete_pos=pos)
            return
        version = self._version + 1
        labels = self._default.labels[pos].tolist()
        records = [(lb, self._ids[p], self._fields[p]) for lb, p in zip(labels, pos.tolist())]

        def tx(t):
            for lb, i, f in records:
                t.put_row(lb, i, f, False, version)
            t.append_log(version, op, labels)
            t.put_meta("version", version)
        self._storage.write(tx)
        self._version = version
        self._mirror_deleted(pos, False)
        self._maybe_checkpoint()

    def _mirror_deleted(self, pos: np.ndarray, deleted: bool) -> None:
        lab = self._default.labels[pos].astype(np.uint64)
        with self._rw.write:
            self._default.set_live(pos, not deleted)
            self._set_named_live(lab, not deleted)
        if deleted:
            self._index_remove(lab)
        else:
            self._index_apply(self._default, lab, self._default.matrix[pos])
            self._index_apply_named(lab)
        if self._sparse is not None:
            if deleted:
                self._sparse.remove(lab)
            else:
                self._reload_sparse(lab)
        self._text_dirty(lab)

    def _set_named_live(self, labels: np.ndarray, live: bool) -> None:
        for space in self._named.values():
            sp = space.positions(labels)
            if len(sp):
                space.set_live(sp, live)

    def list_deleted_ids(self) -> list[Id]:
        """Ids of soft-deleted rows, in storage order."""
        self._check_open()
        with self._rw.read:
            return [self._ids[p] for p in self._default.dead_positions().tolist()]

    def compact(self) -> int:
        """Remove soft-deleted rows for good and rebuild what indexes them; returns how many rows
        were removed. Their ids become free for new rows."""
        self._check_writable(rows=False)
        with self._wlock:
            dead = self._default.dead_positions().copy()
            if not len(dead):
                return 0
            version = self._version + 1
            labels = self._default.labels[dead].tolist()
            gone = [(lb, self._ids[p]) for lb, p in zip(labels, dead.tolist())]
            named = list(self._named)

            def tx(t):
                for lb, i in gone:
                    t.delete_row(lb)
                    t.delete_label(i)
                    for fname in named:
                        t.delete_named(fname, lb)
                t.append_log(version, "compact", labels)
                t.put_meta("version", version)
            self._storage.write(tx)
            self._reload()            # the mirror without the removed rows; indexes caught up
            # The indexes answer correctly already (the log's compact record removed the rows);
            # rebuilt to drop the removed rows' nodes, outside the read lock as in build_index.
            for space in [self._default, *self._named.values()]:
                if space.index is not None:
                    index = self._built_index(space, space.mode, space.index.params)
                    with self._rw.write:
                        space.index, space.saved_version = index, -1
            # Saved (else the next open replays the compact into the files from before it), and
            # the whole log trimmed: a reader behind the compact reloads in full either way.
            self._checkpoint(keep_history=False)
            return len(gone)

    def refresh(self) -> bool:
        """Catch up with commits made by another process: a handle, read-only ones especially,
        shows the store as it was when it was opened (or last refreshed) until this is called.
        Returns True when something changed, False otherwise (no transaction is opened then;
        always False for a writable handle, the folder's only writer).

        Row changes (adds, upserts, deletes, restores, named and sparse vectors) are applied
        from the change log, in time proportional to the rows changed. A change of structure
        (an index built or removed, a vector field created, a metric changed, ``compact()``)
        reloads the whole handle; searches wait meanwhile.

        >>> reader = vecstore.connect("./data", read_only=True).get_database("app").get_collection("items")  # doctest: +SKIP
        >>> reader.refresh()  # doctest: +SKIP
        True
        """
        self._check_open()
        if not self._read_only or self._storage.stamp() == self._stamp:
            return False  # a writable handle is the folder's only writer: nothing to catch up
        with self._wlock:
            self._check_open()
            with self._storage.read() as t:
                stamp, version = t.id, t.get_meta("version", 0)
                same_structure = self._structure == self._stored_structure(t)
                if version == self._version and same_structure:
                    self._stamp = stamp  # a commit that changed nothing mirrored (a blob, a checkpoint)
                    return False
                # a log trimmed past this handle's version no longer names every change
                complete = t.log_start() <= self._version
                entries = list(t.iter_log(self._version)) if complete else []
                incremental = complete and same_structure and all(op != "compact" for _, op, _ in entries)
                if incremental:
                    changes = self._read_changes(t, entries)
                    next_label = t.get_meta("next_label", 0)
            if not incremental or changes is None:
                self._reload()
                return True
            self._apply_catch_up(changes)
            self._version, self._next_label, self._stamp = version, next_label, stamp
        return True

    def _stored_structure(self, t) -> tuple:
        return _structure(t.get_meta("config"), _named_defs(t), dict(t.iter_meta("index:")))

    def _read_changes(self, t, entries: list) -> dict | None:
        """The current records of the rows the log ``entries`` touched, from one snapshot; None
        when one is missing (only ``compact()`` removes rows, and it forces a full reload)."""
        touched = sorted({lb for _, _, labels in entries for lb in labels})
        named: dict[str, set] = {}
        for _, op, labels in entries:
            if op.startswith("named:"):
                named.setdefault(op[len("named:"):], set()).update(labels)
        rows = [t.get_row(lb) for lb in touched]
        vecs = [t.get_vec(lb) for lb in touched]
        if any(r is None for r in rows) or any(x is None for x in vecs):
            return None
        dim = self.dim
        named_vecs = {}
        for fname, lbs in named.items():
            if fname not in self._named:
                return None
            got = [(lb, t.get_named(fname, lb)) for lb in sorted(lbs)]
            got = [(lb, x) for lb, x in got if x is not None]
            named_vecs[fname] = (np.asarray([lb for lb, _ in got], dtype=np.uint64),
                                 np.frombuffer(b"".join(x for _, x in got), dtype=np.float32)
                                 .reshape(len(got), self._named[fname].dim))
        return {"labels": np.asarray(touched, dtype=np.uint64), "rows": rows,
                "vectors": np.frombuffer(b"".join(vecs), dtype=np.float32).reshape(len(touched), dim),
                "named": named_vecs, "sparse": [t.get_sparse(lb) for lb in touched]}

    def _apply_catch_up(self, changes: dict) -> None:
        """Bring the mirror and the indexes to the records of ``_read_changes``, as the writer's
        own write calls did (callers hold ``_wlock``)."""
        lab, rows, vectors = changes["labels"], changes["rows"], changes["vectors"]
        live = np.fromiter((not r[2] for r in rows), dtype=bool, count=len(rows))
        with self._rw.write:
            self._mirror_ids([r[0] for r in rows], [r[1] for r in rows])
            self._default.put(lab, vectors, live)
            for fname, (nl, nv) in changes["named"].items():
                self._named[fname].put(nl, nv, True)
            self._set_named_live(lab[live], True)
            self._set_named_live(lab[~live], False)
            if self._sparse is not None and (~live).any():
                self._sparse.remove(lab[~live])
            self._upsert_sparse([(lb, s) for lb, s, ok in zip(lab.tolist(), changes["sparse"], live) if ok and s is not None])
        if (~live).any():
            self._index_remove(lab[~live])
        self._index_apply(self._default, lab[live], vectors[live])
        self._index_apply_named(lab[live])
        self._text_dirty(lab)

    def _reload(self) -> None:
        """Rebuild the mirror and load the indexes again from LMDB, searches excluded (callers
        hold ``_wlock``)."""
        with self._rw.write:
            text, private = self._text, getattr(self, "_text_private", None)
            self._text, self._text_private = None, None
            self._load()
            if text is not None:
                text.close()
            if private is not None:  # a read-only process's own text index: built again on use
                shutil.rmtree(private, ignore_errors=True)

    def commit(self, items: Iterable[dict] | None = None) -> None:
        """Add pending ``items`` (if given), then make everything durable on disk (the barrier of
        ``durability="fast"``; cheap in the default mode, where every write is already durable)."""
        self._check_writable(rows=False)
        if items:
            self.bulk_add_items(items)
        self._storage.sync()

    def flush(self) -> None:
        """Bring every derived index up to the committed version (text index included)."""
        self._check_writable(rows=False)
        with self._wlock:
            self._text_catch_up()
        self._storage.sync()

    def checkpoint(self) -> None:
        """``flush()``, then write the derived index files so the next open replays nothing.
        Writes do this themselves once enough rows changed (``CHECKPOINT_FRACTION``)."""
        self._check_writable(rows=False)
        with self._wlock:
            self._checkpoint()
        self._storage.sync()

    def _maybe_checkpoint(self) -> None:
        """After a write (callers hold ``_wlock``): checkpoint once the rows logged since the
        last one pass the threshold, so a crash never leaves more than that to replay."""
        if self._storage.logged_rows - self._saved_at > max(CHECKPOINT_MIN_ROWS, CHECKPOINT_FRACTION * self._default.n):
            try:
                self._checkpoint()
            except Exception as e:  # noqa: BLE001 - the write committed: raising now would report it as failed
                # Tried again a threshold later (a full disk, out of file descriptors; a raw
                # OSError or hnswlib's RuntimeError from writing index files too).
                log.warning("%s: checkpoint after a write failed (%s); the write is kept", self.path, e,
                            exc_info=not isinstance(e, VecstoreError))
                self._saved_at = self._storage.logged_rows

    def _checkpoint(self, *, keep_history: bool = True) -> None:
        """Bring every derived index of this store up to the committed version and save it
        (each save commits its record after its files, ARCHITECTURE "Durability"), then trim
        the change log, which none of them needs any more. Callers hold ``_wlock``.

        The log is trimmed up to the previous checkpoint (``log_mark``) only: a reader in
        another process (``refresh()``) or a materialized view less than one checkpoint behind
        still catches up from it; one further behind takes its full path (a reload, a scan of
        the rows). ``keep_history=False`` (compact) trims everything."""
        if self._text is None and self._get_meta("text") is not None:
            self._ensure_text()  # an index on disk that this process has not opened yet
        self._text_catch_up()
        for space in [self._default, *self._named.values()]:
            if space.index is not None and space.saved_version != self._version:
                self._save_index(space)
        version = self._version
        text = None if self._text is None else {"version": version, "docs": len(self._text)}

        def tx(t):
            if text is not None:  # caught up, even when the last writes touched no text
                t.put_meta("text", text)
            t.trim_log(t.get_meta("log_mark", 0) if keep_history else version)
            t.put_meta("log_mark", version)
        self._storage.write(tx)
        self._saved_at = self._storage.logged_rows

    # ------------------------------------------------------------------ reads ---------------
    def _where_mask(self, where: str) -> np.ndarray:
        where = v.check_str(where, param="where")
        return compile_where(where).mask(self._columns)

    def _live_positions(self, where: str | None, filter_ids: Ids | None) -> np.ndarray:
        n = self._default.n
        mask = self._default.live[:n].copy()
        if where is not None:
            mask &= self._where_mask(where)
        if filter_ids is not None:
            ids = v.check_ids(filter_ids, param="filter_ids", allow_empty=True)
            keep = np.zeros(n, dtype=bool)
            keep[[self._id_pos[i] for i in ids if i in self._id_pos]] = True
            mask &= keep
        return np.flatnonzero(mask)

    def _rows(self, pos: np.ndarray) -> Rows:
        plist = pos.tolist()
        return Rows(vectors=self._default.matrix[pos].copy(), ids=tuple(self._ids[p] for p in plist),
                    fields=tuple(_own(self._fields[p]) for p in plist))

    def head(self, n: int = 5) -> Rows:
        """The first ``n`` live rows in storage order, as ``vectors, ids, fields``.

        >>> vectors, ids, fields = col.head(2)  # doctest: +SKIP
        """
        self._check_open()
        n = v.check_k(n, param="n")
        with self._rw.read:
            live = np.flatnonzero(self._default.live[: self._default.n])
            return self._rows(live[:n])

    def tail(self, n: int = 5) -> Rows:
        """The last ``n`` live rows in storage order."""
        self._check_open()
        n = v.check_k(n, param="n")
        with self._rw.read:
            live = np.flatnonzero(self._default.live[: self._default.n])
            return self._rows(live[max(len(live) - n, 0):])  # not live[-n:]: n=0 is no rows

    def read_by_only_id(self, id: IdLike | Ids) -> Rows:
        """Rows by id (one id or a list), in the order asked; an unknown or deleted id raises
        NotFoundError.

        >>> col.read_by_only_id([1, 2]).ids  # doctest: +SKIP
        (1, 2)
        """
        self._check_open()
        ids = v.check_id_or_ids(id)
        with self._rw.read:
            missing = [i for i in ids if i not in self._id_pos or not self._default.live[self._id_pos[i]]]
            if missing:
                raise NotFoundError(f"id: {len(missing)} unknown or deleted: {v._sample(missing)}")
            return self._rows(np.asarray([self._id_pos[i] for i in ids], dtype=np.int64))

    def query(self, where: str | None = None, filter_ids: Ids | None = None,
              return_ids_only: bool = False) -> list:
        """Live rows matching ``where`` and (if given) among ``filter_ids``, in storage order:
        ``[{"id": ..., **fields}, ...]``, or just the ids.

        >>> col.query(where="lang = 'en'", return_ids_only=True)  # doctest: +SKIP
        [1, 3]
        """
        self._check_open()
        return_ids_only = v.check_bool(return_ids_only, param="return_ids_only")
        with self._rw.read:
            pos = self._live_positions(where, filter_ids).tolist()
            if return_ids_only:
                return [self._ids[p] for p in pos]
            return [{**_own(self._fields[p]), "id": self._ids[p]} for p in pos]

    def query_vectors(self, where: str | None = None, filter_ids: Ids | None = None) -> Rows:
        """Like :meth:`query`, with the vectors: ``vectors, ids, fields``."""
        self._check_open()
        with self._rw.read:
            return self._rows(self._live_positions(where, filter_ids))

    def list_fields(self) -> list[str]:
        """Metadata field names used by live rows, sorted."""
        self._check_open()
        with self._rw.read:
            memo = self._default.memo
            hit = memo.get("fields")
            if hit is None or hit[0] != self._fields_gen:
                names: set[str] = set()
                live = self._default.live
                for p, f in enumerate(self._fields):
                    if f and live[p]:
                        names.update(f)
                hit = memo["fields"] = (self._fields_gen, sorted(names))
            return list(hit[1])

    def is_id_exists(self, id: IdLike) -> bool:
        """True when ``id`` is a live row (soft-deleted ids are not)."""
        self._check_open()
        i = v.check_id(id)
        with self._rw.read:
            pos = self._id_pos.get(i)
            return pos is not None and bool(self._default.live[pos])

    def __contains__(self, id: IdLike) -> bool:
        return self.is_id_exists(id)

    def max_id(self) -> int:
        """The largest integer id among live rows; -1 when there is none."""
        self._check_open()
        with self._rw.read:
            return self._max_id()

    def _max_id(self) -> int:
        """The caller holds the read lock. Usually the largest int id ever stored; once that row
        is deleted, a scan of every row, kept until liveness changes again (``stats()`` calls
        this, and was a full scan on every call)."""
        if self._max_int_all < 0:
            return -1
        pos = self._id_pos.get(self._max_int_all)
        if pos is not None and self._default.live[pos]:
            return self._max_int_all
        memo = self._default.memo
        if "max_id" not in memo:
            live = self._default.live
            ints = [i for p, i in enumerate(self._ids) if type(i) is int and live[p]]
            memo["max_id"] = max(ints) if ints else -1
        return memo["max_id"]

    # ------------------------------------------------------------------ vector search -------
    def _space(self, vector_field: str | None, field_name: str | None = None) -> VectorSpace:
        name = v.check_vector_field(vector_field, field_name)
        if name == DEFAULT:
            return self._default
        space = self._named.get(name)
        if space is None:
            raise NotFoundError(f"vector_field: no vector field {name!r}; have {['default', *self._named]}")
        return space

    def _space_positions_from_rows(self, space: VectorSpace, row_pos: np.ndarray) -> np.ndarray:
        if space is self._default:
            return row_pos
        return space.positions(self._default.labels[row_pos])

    def _run_search(self, space: VectorSpace, queries: np.ndarray, k: int, where: str | None,
                    nprobe: int | None, profile: dict | None = None) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
        """The plan: no filter → the index (or exact); a selective filter → exact over just the
        allowed rows; a broad filter → the index steered by the allowed labels. Returns the
        ``(positions, scores)`` of each query and what answered them (``SearchResult.index``):
        the index's mode, or ``FLAT-<metric>`` when an index was passed over for an exact scan."""
        if where is None and profile is None and space.index is not None and k:
            # The hot path of an unfiltered ANN search: every microsecond here is ~1% of QPS.
            labels, scores = space.index.search_trusted(queries, k, nprobe)
            return [space.index_positions(row_l, row_s) for row_l, row_s in zip(labels, scores)], space.mode.name
        if space.dim and queries.shape[1] != space.dim:  # validated while the dim was still unknown
            raise DimensionMismatchError(f"vector: expected dimension {space.dim}, got {queries.shape[1]}")
        t0 = time.perf_counter()
        allowed = None
        if where is not None:
            mask = self._where_mask(where)
            allowed = self._space_positions_from_rows(space, np.flatnonzero(mask & self._default.live[: self._default.n]))
            allowed = allowed[space.live[allowed]]
        t1 = time.perf_counter()
        n_allowed = space.n_live if allowed is None else len(allowed)
        use_index = space.index is not None and n_allowed > max(
            EXACT_FILTER_ROWS, EXACT_FILTER_FRACTION * space.n_live) if allowed is not None else space.index is not None
        found = None
        if use_index and k:  # k=0: the exact path, which scores nothing (the indexes need k >= 1)
            lab_allowed = None if allowed is None else _sorted(space.labels[allowed])
            found = space.index.search(queries, k, breadth=nprobe, allowed=lab_allowed, defer_filter=(
                allowed is not None and n_allowed * space.dim <= EXACT_FALLBACK_FLOATS))
            use_index = found is not None  # deferred: the exact scan below answers
        if found is not None:
            labels, scores, visited = found
            out = [space.index_positions(row_l, row_s) for row_l, row_s in zip(labels, scores)]
            path = "ann_index" if allowed is None else "ann_index_filtered"
        else:
            pos, scores = space.exact_search(queries, k, allowed)
            out = list(zip(pos, scores))
            visited = n_allowed * len(queries)
            path = "flat_mmap" if allowed is None else "flat_mmap_filtered"
        answered = self._mode_label(space) if use_index or space.index is None else \
            IndexMode("FLAT", space.metric, "FLAT").canonical  # type: ignore[arg-type]
        if profile is not None:
            t2 = time.perf_counter()
            profile.update({
                "plan": path, "index_path": path, "index": answered,
                "filter_expression": where, "filter_matches": None if allowed is None else int(n_allowed),
                "filter_us": int((t1 - t0) * 1e6), "search_us": int((t2 - t1) * 1e6),
                "scanned_vectors": int(visited), "total_vectors": int(space.n_live),
                "vector_field": space.name, "query_kind": "vector"})
        return out, answered

    def _mode_label(self, space: VectorSpace) -> str:
        if space.mode is not None:
            return space.mode.name
        return IndexMode("FLAT", space.metric, "FLAT").canonical  # type: ignore[arg-type]

    def _result(self, space: VectorSpace, pos: np.ndarray, scores: np.ndarray, k: int,
                return_fields: bool, index: str | None = None,
                vector_field: str | None = None) -> SearchResult:
        scores = np.asarray(scores)
        if scores.dtype != np.float32:
            with np.errstate(over="ignore"):  # an exact score beyond float32 is reported as ±inf
                scores = scores.astype(np.float32)
        if space is self._default:
            rows = pos
        else:
            # By label: the rows of a named field, or of a default space that a compact() or a
            # refresh() replaced after the search picked it up. A row gone since then is dropped
            # with its score, so ids and scores stay in step.
            rows = self._default.lookup(space.labels[pos])
            if (rows < 0).any():
                keep = rows >= 0
                rows, scores = rows[keep], scores[keep]
        plist = rows.tolist()
        ids = self._ids
        if index is None:
            index = space.mode.name if space.mode is not None else self._mode_label(space)
        return SearchResult(
            ids=tuple([ids[p] for p in plist]),
            scores=scores,
            fields=tuple([_own(self._fields[p]) for p in plist]) if return_fields else None,
            k=k, index=index, vector_field=vector_field or space.name)

    def search(self, vector: Any, k: int = 10, where: str | None = None, return_fields: bool = False,
               nprobe: int | None = None, vector_field: str = DEFAULT, *, field_name: str | None = None,
               approx: bool = False, eps: float = 1e-4) -> SearchResult:
        """The k nearest live rows to ``vector``, best first, optionally filtered by ``where``.

        Scores: inner product (higher is better), squared L2 or cosine distance (lower is
        better). ``nprobe`` is the search breadth of the index (IVF lists probed, HNSW ``ef``);
        exact search ignores it. ``approx`` and ``eps`` are accepted for LynseDB compatibility
        and ignored: FLAT is always exact and the ANN indexes are approximate by nature.
        ``field_name`` is an alias of ``vector_field`` (the seed document's name). Before a
        collection created without a dim has vectors, any query finds nothing (an empty result,
        as in any empty collection).

        >>> ids, scores, fields = col.search([0.1, 0.2, 0.3, 0.4], k=3, where="lang = 'en'")  # doctest: +SKIP
        """
        self._check_open()
        k = v.check_k(k)
        v.check_search_flags(return_fields, approx, eps)
        space = self._space(vector_field, field_name)
        q = v.check_vector(vector, space.dim, normalise=space.metric == "cosine")
        nprobe = v.check_nprobe(nprobe)
        with self._rw.read:
            self._check_open()  # closed meanwhile: the mirror is gone
            index = space.index
            if where is None and index is not None and k:  # the hot path, inlined (~1 µs)
                labels, scores = index.search_trusted(q, k, nprobe)
                pos, scores = space.index_positions(labels[0], scores[0])
            else:
                ((pos, scores),), answered = self._run_search(space, q, k, where, nprobe)
                return self._result(space, pos, scores, k, return_fields, index=answered)
            return self._result(space, pos, scores, k, return_fields)

    def batch_search(self, vectors: Any, k: int = 10, where: str | None = None, return_fields: bool = False,
                     nprobe: int | None = None, vector_field: str = DEFAULT, *,
                     field_name: str | None = None) -> list[SearchResult]:
        """:meth:`search` for each row of ``vectors`` (one matrix product for exact search).

        >>> [r.ids for r in col.batch_search(np.eye(4), k=1)]  # doctest: +SKIP
        [(0,), (1,), (2,), (3,)]
        """
        self._check_open()
        k = v.check_k(k)
        v.check_search_flags(return_fields)
        space = self._space(vector_field, field_name)
        qs = v.check_vectors(vectors, space.dim, normalise=space.metric == "cosine")
        nprobe = v.check_nprobe(nprobe)
        with self._rw.read:
            hits, answered = self._run_search(space, qs, k, where, nprobe)
            return [self._result(space, pos, scores, k, return_fields, index=answered) for pos, scores in hits]

    def search_range(self, vector: Any, threshold: float, max_results: int = 1000, where: str | None = None,
                     vector_field: str = DEFAULT, return_fields: bool = False) -> SearchResult:
        """Every live row within ``threshold`` of ``vector`` (score ≥ threshold for inner
        product, distance ≤ threshold otherwise), best first, at most ``max_results``. Always
        exact.

        >>> col.search_range([1, 0, 0, 0], threshold=0.5).ids  # doctest: +SKIP
        (3, 9)
        """
        self._check_open()
        space = self._space(vector_field)
        q = v.check_vector(vector, space.dim, normalise=space.metric == "cosine")[0]
        threshold = v.check_number(threshold, param="threshold")
        if abs(threshold) > float(np.finfo(np.float32).max):
            raise InvalidArgumentError(f"threshold: expected a float32-representable number, got {threshold!r}")
        max_results = v.check_k(max_results, param="max_results")
        v.check_search_flags(return_fields)
        with self._rw.read:
            if space.dim and len(q) != space.dim:  # validated while the dim was still unknown
                raise DimensionMismatchError(f"vector: expected dimension {space.dim}, got {len(q)}")
            allowed = None
            if where is not None:
                allowed = self._space_positions_from_rows(
                    space, np.flatnonzero(self._where_mask(where) & self._default.live[: self._default.n]))
                allowed = allowed[space.live[allowed]]
            pos, s = space.range_scores(q, allowed, threshold=threshold)
            higher = higher_is_better(space.metric)
            keep = s >= threshold if higher else s <= threshold
            pos, s = pos[keep], s[keep]
            order = np.lexsort((pos, -s if higher else s))[:max_results]
            return self._result(space, pos[order], s[order], max_results, return_fields)

    def search_profile(self, vector: Any, k: int = 10, where: str | None = None, nprobe: int | None = None,
                       return_fields: bool = False, vector_field: str = DEFAULT, *, field_name: str | None = None,
                       approx: bool = False, eps: float = 1e-4) -> ProfiledSearch:
        """:meth:`search` plus how it ran: the plan chosen (``flat_mmap``, ``flat_mmap_filtered``,
        ``ann_index``, ``ann_index_filtered``), rows the filter allowed, candidates scored and
        microseconds per stage. ``index`` names what answered, as in :meth:`search`: the index, or
        ``FLAT-<metric>`` when a selective filter ran exactly. ``field_name`` is an alias of
        ``vector_field``.

        >>> col.search_profile([1, 0, 0, 0], k=2).profile["index_path"]  # doctest: +SKIP
        'flat_mmap'
        """
        self._check_open()
        t0 = time.perf_counter()
        k = v.check_k(k)
        v.check_search_flags(return_fields, approx, eps)
        space = self._space(vector_field, field_name)
        q = v.check_vector(vector, space.dim, normalise=space.metric == "cosine")
        nprobe = v.check_nprobe(nprobe)
        profile: dict = {}
        with self._rw.read:
            ((pos, scores),), answered = self._run_search(space, q, k, where, nprobe, profile)
            t1 = time.perf_counter()
            result = self._result(space, pos, scores, k, return_fields, index=answered)
        t2 = time.perf_counter()
        profile.update({"rerank_us": int((t2 - t1) * 1e6), "total_us": int((t2 - t0) * 1e6),
                        "result_count": len(result)})
        return ProfiledSearch(result=result, profile=profile)
