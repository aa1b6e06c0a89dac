"""BM25 text search over the string fields of rows, with tantivy.

The text index is *derived* (DESIGN §4): LMDB holds the rows; :class:`TextIndex` holds one
tantivy document per row, keyed by the row's internal ``uint64`` label. The collection records
which LMDB version the index reflects and replays later changes on open, so :meth:`upsert` and
:meth:`delete` are idempotent, and nothing is durable or searchable before :meth:`commit`.

What is indexed: the *string* values of a row's fields — strings, and strings inside lists (or
dict values), recursively — with tantivy's ``default`` analyzer: split on every character that
is not alphanumeric (Unicode), drop tokens longer than 40 bytes, lowercase. No stemming, no
accent folding, no stop words.

**Schema.** A tantivy schema is fixed when the index is created, but field names are the user's.
So the schema has a ``label`` u64 field (indexed + fast) and ``MAX_FIELD_SLOTS`` text fields
``s0 … s15``; the first 16 distinct string-field names seen get a slot each, recorded
append-only in ``vecstore_fields.json`` beside the segments (written and fsynced before every
tantivy commit that needs it, so a committed document never refers to an unrecorded slot). Any
further names share one text field, ``rest``, which is searched by the default (all fields)
query but cannot be selected by name. A slot is an ordinary tantivy text field, so per field
BM25 is tantivy's standard BM25 with real document lengths. We do *not* use a tantivy JSON field
(``f.title``, ``f.body``): tantivy records no field norms for JSON fields (measured with
``Query.explain`` on 0.27: ``dl`` is 1.0 for every document and ``avgdl`` is the token count of
*all* paths divided by N), which removes length normalisation altogether.

**Scoring** (tantivy 0.27, checked against a hand-written oracle in ``tests/test_text.py``), per
field ``f`` and query term ``t``::

    idf   = ln(1 + (N - df + 0.5) / (df + 0.5))
    score = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)),   k1 = 1.2, b = 0.75

- ``N`` is the number of documents in the whole index (rows without a string in ``f`` included),
  ``df`` the number containing ``t`` in ``f``; both still count deleted or replaced documents
  until tantivy merges their segment away (Lucene does the same).
- ``dl`` is the token count of ``f`` in the document (all list items together), stored in one
  byte: exact up to 40 tokens, bucketed (lossy) above; ``avgdl`` = tokens of ``f`` / ``N``.
- A multi-field query sums the per-field scores. A term repeated in the query counts once.
  ``allowed`` does not change ``N``.
- So scores and ties differ from LynseDB's (lynse_api §8.4), which scores the concatenation of
  the chosen fields with ``N`` = the candidate rows that have text (live, passing the filter):
  even for one field they differ as soon as some rows lack it, since ``N`` and ``avgdl`` here
  count those rows too.

**Query text** uses tantivy's query language: ``vector database`` is an OR of terms (a BM25
sum), ``"vector database"`` a phrase, ``+must -mustnot``, ``AND``/``OR``, parentheses and
``term^2`` boosts work. It goes to tantivy's strict parser first (its flat query is ~2x faster
to run than the lenient parser's nested one) and, if that refuses, to the lenient parser, so
natural text such as ``don't stop`` or ``what's new?`` still works. A query the lenient parser
reports an error for (unbalanced quotes or parentheses, only negative terms, regex, range)
raises :class:`~vecstore.errors.QuerySyntaxError` naming the text; so does a field-qualified
term (``title:x``): choose fields with ``text_fields`` instead (a literal colon can be escaped
``\\:`` or quoted). An empty or blank query returns no hits.

**Filtering** by ``allowed`` labels is exact, and k hits come back whenever k allowed rows
match: by over-fetching when the allowed set is broad, else by a MUST clause on ``label``
scoring 0 (term queries for a few labels, a term set for many), whichever a measured cost model
says is cheaper (:meth:`TextIndex._search_allowed`).

>>> import tempfile
>>> ti = TextIndex.open(Path(tempfile.mkdtemp()))
>>> ti.upsert(np.array([1, 2], dtype=np.uint64),
...           [{"title": "Vector databases"}, {"title": "Cooking", "body": "vector soup"}])
>>> ti.commit()
>>> labels, scores = ti.search("vector database", 10)
>>> labels.tolist()
[1, 2]
>>> ti.search("vector", 10, text_fields=["body"])[0].tolist()
[2]
>>> ti.close()
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import tantivy

from .errors import (
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    LockedError,
    QuerySyntaxError,
    StorageFullError,
    UnavailableError,
    UnsupportedFormatError,
    VecstoreError,
    out_of_descriptors,
)
from .fileio import fsync_path

__all__ = ["MAX_FIELD_SLOTS", "TextIndex"]

log = logging.getLogger(__name__)

MAX_FIELD_SLOTS = 16
"""Field names with their own tantivy field. Each costs one byte per document (field norms),
whether or not the document has that field."""

_FIELDS_FILE = "vecstore_fields.json"
_FORMAT = 1
_LABEL = "label"
_REST = "rest"
_SLOT_NAMES = tuple(f"s{i}" for i in range(MAX_FIELD_SLOTS))
_EMPTY = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32))
_MAX_QUERY_CHARS = 16_384
# Cost model of the exact `allowed` filter, in microseconds, fitted on benchmarks/text.py's
# corpus (20k docs) and a 200k-doc synthetic one: over-fetching costs ~0.2 per hit fetched; a
# MUST clause of one term query per label ~1.5 per label; a term-set clause (an automaton over
# the label term dictionary) ~0.008 per indexed doc + 0.8 per label. See _search_allowed.
_FETCH_PER_HIT = 0.2
_TERMS_PER_LABEL, _TERMS_MAX = 1.5, 256
_TERMSET_PER_DOC, _TERMSET_PER_LABEL = 0.008, 0.8


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field(_LABEL, indexed=True, fast=True)
    for name in _SLOT_NAMES:
        sb.add_text_field(name, tokenizer_name="default", index_option="position")
    sb.add_text_field(_REST, tokenizer_name="default", index_option="position")
    return sb.build()


_SCHEMA = _schema()


def _strings(value: Any, out: list[str]) -> None:
    """Append the non-empty strings of a JSON-like value (lists and dict values recursively)."""
    if isinstance(value, str):
        if value:
            out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)


def _has_field_qualifier(node: Any) -> bool:
    """True if a parsed query AST names a field anywhere (``title:x``, ``label:[1 TO 2]``)."""
    if isinstance(node, dict):
        if node.get("field_name") is not None or node.get("field") is not None:
            return True
        return any(_has_field_qualifier(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_has_field_qualifier(v) for v in node)
    return False


class TextIndex:
    """A tantivy index of the string fields of rows, keyed by internal ``uint64`` labels.

    Thread-safe: searches run concurrently with each other and with writes (a search sees the
    last commit); writes are serialised. Only one process may write an index directory (tantivy's
    lock file): the writer is created at the first write, so read-only openers never take it.
    Use :meth:`open`, not the constructor.
    """

    def __init__(self, directory: Path, index: tantivy.Index, slots: list[str], *,
                 heap_bytes: int, threads: int) -> None:
        self._dir = directory
        self._index: tantivy.Index | None = index
        self._writer: tantivy.IndexWriter | None = None
        self._lock = threading.Lock()
        self._slots: dict[str, str] = {n: _SLOT_NAMES[i] for i, n in enumerate(slots)}
        self._slots_dirty = False
        self._heap_bytes = heap_bytes
        self._threads = threads
        self._slots_stamp: int | None = None
        self._max_label = self._committed_max_label()
        self._rest_used = self._has_docs_in(_REST)

    # -- lifecycle --------------------------------------------------------------------------

    @staticmethod
    def exists(directory: Path) -> bool:
        """True when ``directory`` holds a tantivy index (its ``meta.json``)."""
        return Path(directory).is_dir() and tantivy.Index.exists(str(directory))

    @classmethod
    def open(cls, directory: Path, *, heap_bytes: int = 64_000_000, threads: int = 1) -> TextIndex:
        """Create the index in ``directory`` (made if missing), or open the one there.

        ``heap_bytes`` is the indexing buffer per writer thread before tantivy flushes a segment
        (tantivy's minimum is 15 MB per thread). Raises ``CorruptionError`` when the files there
        are not a vecstore text index that tantivy can read (the caller rebuilds: ``clear()`` or
        remove the directory), ``UnsupportedFormatError`` for a newer field-map format,
        ``UnavailableError`` when the process is out of file descriptors (the files are fine).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if heap_bytes < 15_000_000 * max(threads, 1):
            raise InvalidArgumentError(
                f"heap_bytes: tantivy needs at least 15 MB per writer thread, got {heap_bytes}")
        try:
            existed = tantivy.Index.exists(str(directory))
            index = tantivy.Index(_SCHEMA, path=str(directory), reuse=True)
        except ValueError as e:
            if out_of_descriptors(e):  # the files are fine, the process is full
                raise UnavailableError(f"text index {directory}: out of file descriptors ({e}); retry later") from e
            raise CorruptionError(f"text index {directory}: tantivy cannot open it: {e}") from e
        slots = cls._read_slots(directory, must_exist=existed and index.searcher().num_docs > 0)
        text_index = cls(directory, index, slots, heap_bytes=heap_bytes, threads=threads)
        # Written at the first commit even when no slot is used, so that "documents but no
        # field map" always means damage.
        text_index._slots_dirty = not (directory / _FIELDS_FILE).exists()
        return text_index

    @staticmethod
    def _read_slots(directory: Path, *, must_exist: bool) -> list[str]:
        path = directory / _FIELDS_FILE
        try:
            raw = path.read_text("utf-8")
        except FileNotFoundError:
            if must_exist:
                raise CorruptionError(
                    f"text index {directory}: {_FIELDS_FILE} is missing but the index has documents") from None
            return []
        try:
            meta = json.loads(raw)
            fmt, slots = meta["format"], meta["slots"]
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptionError(f"text index {directory}: {_FIELDS_FILE} does not parse: {e}") from e
        if fmt != _FORMAT:
            raise UnsupportedFormatError(
                f"text index {directory}: {_FIELDS_FILE} has format {fmt!r}, this version reads {_FORMAT}")
        if (not isinstance(slots, list) or len(slots) > MAX_FIELD_SLOTS
                or not all(isinstance(s, str) for s in slots) or len(set(slots)) != len(slots)):
            raise CorruptionError(f"text index {directory}: {_FIELDS_FILE} has a bad slot list")
        return slots

    def close(self) -> None:
        """Release the writer (and its lock). Writes not committed are discarded. Idempotent."""
        with self._lock:
            writer, self._writer, self._index = self._writer, None, None
            if writer is not None:
                try:
                    writer.rollback()
                    writer.wait_merging_threads()
                except ValueError as e:  # a writer tantivy already killed; nothing to save
                    log.warning("text index %s: closing the writer failed: %s", self._dir, e)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live_index(self) -> tantivy.Index:
        index = self._index
        if index is None:
            raise ClosedError(f"text index {self._dir} is closed")
        return index

    def _get_writer(self) -> tantivy.IndexWriter:
        # Call with self._lock held.
        if self._writer is None:
            try:
                self._writer = self._live_index().writer(heap_size=self._heap_bytes,
                                                         num_threads=self._threads)
            except ValueError as e:
                if "LockBusy" in str(e):
                    raise LockedError(f"text index {self._dir}: another writer holds it ({e})") from e
                raise _writer_error(self._dir, e) from e
        return self._writer

    @contextmanager
    def _writing(self) -> Iterator[tantivy.IndexWriter]:
        """The writer (call with self._lock held). A tantivy error leaves a writer dead for good:
        later adds and commits 'succeed' and index nothing. So it is dropped, with the writes not
        committed (the caller still holds them as pending), and the next call opens a fresh one."""
        writer = self._get_writer()
        try:
            yield writer
        except ValueError as e:
            self._writer = None
            try:
                writer.rollback()
            except ValueError:
                pass
            self._max_label = self._committed_max_label()
            raise _writer_error(self._dir, e) from e

    # -- writes -----------------------------------------------------------------------------

    def upsert(self, labels: np.ndarray, fields: list[dict]) -> None:
        """Add rows, or replace the document of labels already present (idempotent).

        ``fields[i]`` is the field dict of row ``labels[i]``; a row with no string value still
        gets a document (it counts in ``len()`` and in BM25's ``N``).
        """
        labels = np.asarray(labels, dtype=np.uint64).ravel()
        if len(labels) != len(fields):
            raise InvalidArgumentError(
                f"fields: expected one dict per label ({len(labels)}), got {len(fields)}")
        rows = dict(zip(labels.tolist(), fields))  # a label repeated in the batch: last wins
        with self._lock, self._writing() as writer:
            max_label = self._max_label
            if max_label is not None:
                # Labels above every label ever added cannot be present: no delete needed.
                stale = [label for label in rows if label <= max_label]
                if stale:
                    writer.delete_documents_by_query(self._label_query(stale))
            slot_for, Document = self._slot_for, tantivy.Document
            for label, row in rows.items():
                doc = Document()
                doc.add_unsigned(_LABEL, label)
                if row:
                    for name, value in row.items():
                        if type(value) is str:  # the common case, kept cheap
                            if value:
                                doc.add_text(self._slots.get(name) or slot_for(str(name)), value)
                        elif isinstance(value, (str, list, tuple, dict)):
                            texts: list[str] = []
                            _strings(value, texts)
                            if texts:
                                target = slot_for(str(name))
                                for text in texts:
                                    doc.add_text(target, text)
                writer.add_document(doc)
            if rows:
                top = max(rows)
                self._max_label = top if max_label is None else max(top, max_label)

    @staticmethod
    def _label_query(labels: list[int]) -> tantivy.Query:
        # Not IndexWriter.delete_documents_by_term: on tantivy-py 0.27 a Python int becomes an
        # i64 term, which never matches a u64 field (measured: the delete is a silent no-op).
        return tantivy.Query.term_set_query(_SCHEMA, _LABEL, labels)

    def _slot_for(self, name: str) -> str:
        # Call with self._lock held. Copy-on-write so concurrent searches see a consistent map.
        slot = self._slots.get(name)
        if slot is None:
            if len(self._slots) < MAX_FIELD_SLOTS:
                slot = _SLOT_NAMES[len(self._slots)]
                self._slots = {**self._slots, name: slot}
                self._slots_dirty = True
            else:
                slot = _REST
                self._rest_used = True
        return slot

    def delete(self, labels: np.ndarray) -> None:
        """Remove the documents of these labels; unknown labels are ignored."""
        labels = np.asarray(labels, dtype=np.uint64).ravel()
        if labels.size:
            with self._lock, self._writing() as writer:
                writer.delete_documents_by_query(self._label_query(labels.tolist()))

    def clear(self) -> None:
        """Drop every document (the rebuild path); takes effect at the next :meth:`commit`.

        The field-name slots are kept (they are append-only, see the module docstring); to
        start from a blank schema, close the index and remove its directory.
        """
        with self._lock, self._writing() as writer:
            writer.delete_all_documents()

    def commit(self) -> None:
        """Make all writes so far durable and visible to searches."""
        with self._lock:
            if self._writer is None:
                return
            if self._slots_dirty:
                self._write_slots()
            with self._writing() as writer:
                writer.commit()
            self._live_index().reload()

    def _write_slots(self) -> None:
        path = self._dir / _FIELDS_FILE
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"format": _FORMAT, "slots": list(self._slots)}, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_path(self._dir)
        self._slots_dirty = False

    # -- reads ------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of committed documents."""
        return int(self._live_index().searcher().num_docs)

    @property
    def field_names(self) -> list[str]:
        """Field names that can be chosen with ``text_fields`` (in slot order)."""
        return list(self._slots)

    def _committed_max_label(self) -> int | None:
        searcher = self._live_index().searcher()
        if searcher.num_docs == 0:
            return None
        hits = searcher.search(tantivy.Query.all_query(), 1, count=False,
                               order_by_field=_LABEL, order=tantivy.Order.Desc).hits
        return int(hits[0][0]) if hits else None

    def _has_docs_in(self, field: str) -> bool:
        return bool(self._live_index().searcher().terms_with_prefix(field, "", limit=1))

    def _refresh_slots(self) -> None:
        """An instance that does not write (say, a read-only process next to the writer) picks
        up field names the writer added since: the tantivy reader follows commits by itself,
        the field map is re-read when its file changes."""
        try:
            stamp = (self._dir / _FIELDS_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            return
        if stamp != self._slots_stamp:
            with self._lock:
                if self._writer is None:
                    slots = self._read_slots(self._dir, must_exist=False)
                    self._slots = {n: _SLOT_NAMES[i] for i, n in enumerate(slots)}
                    self._rest_used = self._has_docs_in(_REST)
                self._slots_stamp = stamp

    def _resolve_fields(self, text_fields: Iterable[str] | None) -> list[str]:
        if self._writer is None:
            self._refresh_slots()
        slots = self._slots
        if text_fields is None:
            names = list(slots.values())
            if self._rest_used:
                names.append(_REST)
            return names
        if isinstance(text_fields, str) or not all(isinstance(f, str) for f in text_fields):
            raise InvalidArgumentError(
                f"text_fields: expected a list of field names, got {text_fields!r}")
        wanted = list(dict.fromkeys(text_fields))
        if not wanted:
            raise InvalidArgumentError("text_fields: expected at least one field name, got []")
        out = []
        for name in wanted:
            slot = slots.get(name)
            if slot is not None:
                out.append(slot)
            elif len(slots) >= MAX_FIELD_SLOTS:
                raise InvalidArgumentError(
                    f"text_fields: {name!r} is not one of the {MAX_FIELD_SLOTS} string fields "
                    f"indexed by name ({', '.join(map(repr, slots))}); text of further fields is "
                    f"searched only with text_fields=None")
            # else: no row has had a string in this field yet; it matches nothing.
        return out

    def _parse(self, text: str, fields: list[str]) -> tantivy.Query:
        if ":" in text:
            ast, _ = tantivy.parse_query_lenient(text)
            if _has_field_qualifier(ast):
                raise QuerySyntaxError(
                    f"text: field-qualified terms are not supported in {text!r}; choose fields "
                    f"with text_fields=[...] (escape a literal colon as '\\:' or quote the phrase)")
        index = self._live_index()
        try:
            # The strict parser first: it flattens "a b" into one boolean query over (field,
            # term) pairs, which tantivy scores about 2x faster than the nested query the
            # lenient parser builds (measured on benchmarks/text.py's corpus).
            return index.parse_query(text, fields)
        except ValueError:
            pass
        query, errors = index.parse_query_lenient(text, fields)
        if errors:
            detail = "; ".join(str(e) for e in errors[:3])
            raise QuerySyntaxError(f"text: cannot parse the query {text!r}: {detail}")
        return query

    def search(self, text: str, k: int, *, text_fields: list[str] | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows for ``text`` by BM25: ``(labels uint64, scores float32)``.

        Best first, only scores > 0; ties by ascending label (tantivy's own order among equal
        scores depends on its segments, whose ids are random: the same writes would not give
        the same result).
        ``text_fields`` restricts the fields searched (default: all string fields);
        ``allowed`` is a sorted ``uint64`` array of the labels that may be returned, applied
        exactly (k hits are returned whenever k allowed rows match).

        Raises ``QuerySyntaxError`` for a query that does not parse, ``InvalidArgumentError``
        for a bad ``k``, ``text_fields`` or ``allowed``.
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text: expected a string, got {type(text).__name__}")
        if len(text) > _MAX_QUERY_CHARS:
            raise InvalidArgumentError(
                f"text: the query is {len(text)} characters, the limit is {_MAX_QUERY_CHARS}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidArgumentError(f"k: expected a non-negative integer, got {k!r}")
        index = self._live_index()
        fields = self._resolve_fields(text_fields)
        if not text.strip():
            return _EMPTY
        query = self._parse(text, fields or [_REST])  # parse even when nothing can match
        if not fields or k == 0:
            return _EMPTY
        searcher = index.searcher()
        n_docs = searcher.num_docs
        if n_docs == 0:
            return _EMPTY
        k = int(k)
        if allowed is not None:
            allowed = np.asarray(allowed)
            if allowed.ndim != 1 or (allowed.size and allowed.dtype.kind not in "ui"):
                raise InvalidArgumentError(
                    f"allowed: expected a 1-d array of uint64 labels, got {allowed.dtype} {allowed.shape}")
            if allowed.size == 0:
                return _EMPTY
            allowed = allowed.astype(np.uint64, copy=False)

        def fetch(limit: int) -> tuple[np.ndarray, np.ndarray]:
            limit = min(limit, n_docs)
            return (self._run(searcher, query, limit) if allowed is None
                    else self._search_allowed(searcher, query, limit, n_docs, allowed))
        # Ties by label: tantivy orders equal scores by segment, and segment ids are random, so
        # the same writes would not give the same result. The hits beyond k show whether a tie
        # crosses the k-th place: 8 of them settle most ties in the one search (on docstrings a
        # tie crossed it in 1 query of 6 and outlasted k + 8 in 1 of 100) for ~2 µs; otherwise
        # the fetch widens once, to 4k + 16. A longer run (a one-word field such as a language
        # code, where thousands of rows score alike) is cut where tantivy cuts it: fetching it
        # all cost 8x the search (60 -> 500 µs).
        labels, scores = fetch(k + 8)
        seen = scores.tolist()
        if len(set(seen)) < len(seen):  # a tie somewhere (a set of <= k + 8 floats: ~0.5 µs)
            if len(labels) == min(k + 8, n_docs) < n_docs and scores[-1] == scores[k - 1]:
                labels, scores = fetch(4 * k + 16)
            order = np.lexsort((labels, -scores))
            labels, scores = labels[order], scores[order]
        labels, scores = labels[:k], scores[:k]
        if len(scores) and scores[-1] <= 0:  # best first: only the tail can be <= 0
            keep = scores > 0
            labels, scores = labels[keep], scores[keep]
        return labels, scores

    @staticmethod
    def _run(searcher: tantivy.Searcher, query: tantivy.Query,
             limit: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            hits = searcher.search(query, limit, count=False).hits
            if not hits:
                return _EMPTY
            scores, addresses = zip(*hits)
            labels = np.array(searcher.fast_field_values(_LABEL, list(addresses)), dtype=np.uint64)
            scores = np.array(scores, dtype=np.float32)
        except ValueError as e:  # tantivy reports I/O and corruption as ValueError
            raise CorruptionError(f"text index: search failed: {e}") from e
        return labels, scores

    def _search_allowed(self, searcher: tantivy.Searcher, query: tantivy.Query, k: int,
                        n_docs: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact filtered search, by the cheapest of (see the cost model at the top):

        - over-fetching ~k / selectivity hits and keeping the allowed ones, widening 4x until k
          are found, every match was fetched, or a filter clause became cheaper;
        - a MUST clause on ``label`` scoring 0: a disjunction of term queries for a few labels,
          a term set for more.
        """
        n_allowed = len(allowed)
        if n_allowed <= _TERMS_MAX:
            clause_cost = _TERMS_PER_LABEL * n_allowed
        else:
            clause_cost = _TERMSET_PER_DOC * n_docs + _TERMSET_PER_LABEL * n_allowed
        limit = min(n_docs, math.ceil(2.0 * k * n_docs / n_allowed) + 16)
        while _FETCH_PER_HIT * limit < clause_cost:
            labels, scores = self._run(searcher, query, limit)
            pos = np.searchsorted(allowed, labels)
            pos[pos == n_allowed] = 0
            ok = allowed[pos] == labels
            if int(ok.sum()) >= k or len(labels) < limit or limit >= n_docs:
                return labels[ok][:k], scores[ok][:k]
            limit = min(n_docs, limit * 4)
        values = allowed.tolist()
        if n_allowed <= _TERMS_MAX:
            clause = tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, tantivy.Query.term_query(_SCHEMA, _LABEL, v)) for v in values])
        else:
            clause = self._label_query(values)
        both = tantivy.Query.boolean_query([
            (tantivy.Occur.Must, query),
            (tantivy.Occur.Must, tantivy.Query.const_score_query(clause, 0.0))])
        return self._run(searcher, both, min(k, n_allowed, n_docs))


def _writer_error(directory: Path, e: ValueError) -> VecstoreError:
    """A failed tantivy write as a vecstore error; nothing of it was committed."""
    text = str(e)
    if out_of_descriptors(e):
        return UnavailableError(f"text index {directory}: out of file descriptors ({text}); retry later")
    if "No space left" in text or "Disk quota" in text:
        return StorageFullError(f"text index {directory}: the disk is full ({text}); nothing committed was lost")
    return VecstoreError(f"text index {directory}: write failed, not committed: {text}")
