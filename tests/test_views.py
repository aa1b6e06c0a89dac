"""Materialized views: definition, incremental refresh (insert / update / delete / where),
output_limit, checkpoints and re-runs, src_version, chains, restart recovery, Ray."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import vecstore
from vecstore import functions
from vecstore.errors import (ConflictError, InvalidArgumentError, NotFoundError, ReadOnlyError,
                             VecstoreError)
from vecstore import views
from vecstore.views import child_id, parse_lance_id

DIM = 8
ROOT = Path(__file__).resolve().parents[1]


def words(text, size=3, overlap=0):
    w = (text or "").split()
    step = max(1, size - overlap)
    return [" ".join(w[i:i + size]) for i in range(0, len(w), step) if i == 0 or i + overlap < len(w)]


def embed_text(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class Spy:
    """A counting chunker and embedder; ``fail_on`` makes the embedder raise on a text."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chunked: list[str] = []
        self.embedded: list[str] = []
        self.batches = 0
        self.fail_on: str | None = None

    def chunker(self, text, size=3, overlap=0):
        with self.lock:
            self.chunked.append(text)
        return words(text, size, overlap)

    def embed(self, texts):
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise RuntimeError(f"model crashed on {self.fail_on!r}")
        with self.lock:
            self.embedded.extend(texts)
            self.batches += 1
        return np.stack([embed_text(t) for t in texts])

    def reset(self) -> None:
        self.chunked.clear()
        self.embedded.clear()
        self.batches = 0


@pytest.fixture
def spy():
    s = Spy()
    functions.register_chunker("words", s.chunker, version="1")
    functions.register_udf("embed", s.embed, version="1", dim=DIM)
    yield s
    functions.unregister("words")
    functions.unregister("embed")


@pytest.fixture
def db(tmp_path):
    client = vecstore.connect(tmp_path / "store")
    yield client.create_database("app")
    client.close()


def body(i: int, n_words: int) -> str:
    return " ".join(f"w{i}_{j}" for j in range(n_words))


def make_docs(db, n=6, *, n_words=7, lang=lambda i: "en" if i % 3 else "de"):
    docs = db.create_collection("docs", dim=4)
    docs.add(np.ones((n, 4), np.float32), ids=list(range(n)),
             fields=[{"title": f"Intro {i}" if i % 2 else f"Chapter {i}", "body": body(i, n_words), "lang": lang(i)}
                     for i in range(n)])
    return docs


DEFINITION = {"kind": "chunker", "where": "lang = 'en'", "select": ["title"],
              "chunker": {"name": "words", "input": "body", "args": {"size": 3}},
              "udfs": [{"name": "embed", "inputs": ["chunk_text"], "output": "embedding"}],
              "vectorField": "embedding", "metric": "cosine"}


def refresh(db, name="doc_chunks", **kw):
    job = db.wait_refresh_job(db.refresh_materialized_view(name, **kw), timeout=60)
    return job


def expected_ids(docs, where=lambda f: f["lang"] == "en", size=3):
    out = set()
    for row in docs.query():
        if where(row):
            out.update(f"{row['id']}#{k}" for k in range(len(words(row["body"], size))))
    return out


def view_ids(view) -> set:
    return set(view.query(return_ids_only=True))


# ------------------------------------------------------------------------------------------------


def test_first_refresh_builds_the_view_and_searches(db, spy):
    docs = make_docs(db)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    assert view.kind == "view" and len(view) == 0 and view.dim == DIM and view.metric == "cosine"
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    en = [i for i in range(6) if i % 3]
    assert sorted(spy.chunked) == sorted(body(i, 7) for i in en)            # chunker once per matching row
    assert len(spy.embedded) == len(view) == 3 * len(en)                      # 7 words / 3 -> 3 chunks
    assert view_ids(view) == expected_ids(docs)
    row = view.read_by_only_id("1#2")
    assert row.fields[0] == {"title": "Intro 1", "src_id": 1, "chunk_index": 2, "chunk_text": "w1_6"}
    np.testing.assert_array_equal(row.vectors[0], embed_text("w1_6"))  # as the UDF returned it (cosine too)
    hits = view.search(embed_text("w1_6"), k=5, where="title LIKE 'Intro%'")
    assert hits.ids[0] == "1#2" and all(str(i).split("#")[0] in {"1", "5"} for i in hits.ids)
    assert job.stats["mode"] == "initial" and job.stats["srcVersion"] == docs.version
    assert job.stats["rowsWritten"] == 12 and job.to_geneva()["status"] == "DONE"
    info = db.describe_materialized_view("doc_chunks")
    assert info["lastSrcVersion"] == docs.version and info["rows"] == 12 and info["checkpoints"] == 0
    assert info["staleFunctions"] == [] and db.list_materialized_views() == ["doc_chunks"]
    with pytest.raises(ReadOnlyError):
        view.add_item(np.ones(DIM), id="x")


def test_incremental_insert_update_delete_exact_calls(db, spy):
    docs = make_docs(db)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    refresh(db)
    spy.reset()
    # insert 3 matching rows: the chunker runs exactly 3 times, the embedder on their 9 chunks only
    docs.add(np.ones((3, 4)), ids=[10, 11, 12], fields=[{"title": "Intro new", "body": body(i, 9), "lang": "en"}
                                                         for i in (10, 11, 12)])
    job = refresh(db)
    assert len(spy.chunked) == 3 and len(spy.embedded) == 9 and spy.batches == 1
    assert job.stats["mode"] == "incremental" and job.stats["sourceRowsProcessed"] == 3
    assert view_ids(view) == expected_ids(docs)
    # update: 10 shrinks to one chunk -> its old children #1, #2 leave (cascade)
    spy.reset()
    docs.upsert(np.ones((1, 4)), ids=[10], fields=[{"title": "Intro new", "body": "short text", "lang": "en"}])
    refresh(db)
    assert spy.chunked == ["short text"] and spy.embedded == ["short text"]
    assert view.read_by_only_id("10#0").fields[0]["chunk_text"] == "short text"
    assert "10#1" not in view_ids(view) and view_ids(view) == expected_ids(docs)
    # delete: children of 11 go, nothing is computed
    spy.reset()
    docs.delete_items([11])
    job = refresh(db)
    assert spy.chunked == [] and spy.embedded == [] and job.stats["rowsDeleted"] == 3
    assert not any(i.startswith("11#") for i in view_ids(view)) and view_ids(view) == expected_ids(docs)
    # nothing new: a no-op
    job = refresh(db)
    assert job.stats["mode"] == "no_op" and spy.chunked == []


def test_where_transitions(db, spy):
    docs = make_docs(db)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    refresh(db)
    spy.reset()
    docs.upsert(np.ones((2, 4)), ids=[1, 3],                      # 1: en -> de (leaves); 3: de -> en (enters)
                fields=[{"title": "Intro 1", "body": body(1, 7), "lang": "de"},
                        {"title": "Chapter 3", "body": body(3, 4), "lang": "en"}])
    docs.add(np.ones((1, 4)), ids=[20], fields=[{"title": "x", "body": "never chunked", "lang": "fr"}])
    job = refresh(db)
    assert spy.chunked == [body(3, 4)]                            # only the row that now matches
    assert not any(i.startswith("1#") for i in view_ids(view)) and {"3#0", "3#1"} <= view_ids(view)
    assert view_ids(view) == expected_ids(docs) and job.stats["rowsDeleted"] == 3


def test_output_limit_then_follow_up(db, spy):
    docs = make_docs(db, n=9, lang=lambda i: "en")
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    job = refresh(db, output_limit=7, max_rows_per_fragment=2)
    assert job.state == "COMPLETED", job.reason
    assert len(view) == 7 and job.stats["trimmed"] is True
    # rows 0, 1 fully (6 rows) + row 2 trimmed to 1 chunk; rows 3.. stay pending
    assert view_ids(view) == {"0#0", "0#1", "0#2", "1#0", "1#1", "1#2", "2#0"}
    assert job.stats["pendingRemaining"] == 6 and db.describe_materialized_view("doc_chunks")["pendingSourceRows"] == 6
    # fragments beyond the cap were not computed (concurrency 1)
    assert len(spy.chunked) == 4 and job.stats["fragmentsComputed"] == 2
    spy.reset()
    job = refresh(db)                                              # no cap: the pending rows complete
    assert sorted(spy.chunked) == sorted(body(i, 7) for i in range(3, 9))
    assert len(view) == 25 and view_ids(view) == expected_ids(docs) - {"2#1", "2#2"}   # 2 was trimmed for good
    assert job.stats["pendingRemaining"] == 0 and job.stats["trimmed"] is False
    assert db.describe_materialized_view("doc_chunks")["pendingSourceRows"] == 0
    # ... as its docstring says: full=True recomputes every row and brings them back
    job = refresh(db, full=True)
    assert job.state == "COMPLETED" and view_ids(view) == expected_ids(docs) and len(view) == 27
    # output_limit is for chunker views only
    db.create_materialized_view("one2one", source="docs", definition={
        "kind": "udf", "select": ["title"], "udfs": [{"name": "embed", "inputs": ["body"], "output": "v"}],
        "vectorField": "v"})
    with pytest.raises(InvalidArgumentError, match="output_limit"):
        db.refresh_materialized_view("one2one", output_limit=3)
    job = refresh(db, "one2one")
    assert sorted(db.get_collection("one2one").query(return_ids_only=True)) == list(range(9))


def test_failure_on_fragment_then_rerun_computes_only_the_rest(db, spy):
    docs = make_docs(db, n=10, lang=lambda i: "en")
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    spy.fail_on = "w5_"                                            # row 5 is in fragment 3 of 5 (2 rows each)
    job = refresh(db, max_rows_per_fragment=2)
    assert job.state == "FAILED"
    assert "'embed@1'" in job.reason and "source rows 4, 5" in job.reason and "model crashed" in job.reason
    assert len(view) == 0 and view.version == 0                    # nothing visible changed
    assert db.describe_materialized_view("doc_chunks")["checkpoints"] == 2
    spy.reset()
    spy.fail_on = None
    job = refresh(db, max_rows_per_fragment=2)
    assert job.state == "COMPLETED", job.reason
    assert sorted(spy.chunked) == sorted(body(i, 7) for i in range(4, 10))   # fragments >= 3 only
    assert job.stats["fragmentsReused"] == 2 and job.stats["fragmentsComputed"] == 3
    assert view_ids(view) == expected_ids(docs)
    assert db.describe_materialized_view("doc_chunks")["checkpoints"] == 0


def test_function_errors_fail_the_job_naming_function_and_row(db, spy):
    make_docs(db)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    functions.register_udf("embed", lambda texts: np.ones((len(texts), DIM + 1)), version="1", dim=DIM)
    job = refresh(db)
    assert job.state == "FAILED" and "'embed@1'" in job.reason and f"expected (12, {DIM})" in job.reason

    def nan_embed(texts):
        out = np.stack([embed_text(t) for t in texts])
        out[[i for i, t in enumerate(texts) if t.startswith("w4_")], 0] = np.nan
        return out
    functions.register_udf("embed", nan_embed, version="1", dim=DIM)
    job = refresh(db)
    assert job.state == "FAILED" and "NaN" in job.reason and "'4#0'" in job.reason and "source row 4" in job.reason

    def bad_chunker(text, size):
        if text.startswith("w2_"):
            raise ValueError("cannot split")
        return [text]
    functions.register_chunker("words", bad_chunker, version="1")
    job = refresh(db)
    assert job.state == "FAILED" and "'words@1' (chunker)" in job.reason and "source row 2" in job.reason
    functions.unregister("words")
    job = refresh(db)
    assert job.state == "FAILED" and "'words' is not registered" in job.reason
    functions.register_chunker("words", spy.chunker, version="2")
    functions.register_udf("embed", spy.embed, version="1", dim=DIM)
    job = refresh(db)
    assert job.state == "FAILED" and "version '2'" in job.reason and len(view) == 0
    assert db.describe_materialized_view("doc_chunks")["staleFunctions"][0]["registered"] == "2"
    # a manifest override runs this refresh with version 2 without touching the definition
    job = refresh(db, manifest=json.dumps({"functions": {"words": {"version": "2"}}}))
    assert job.state == "COMPLETED" and len(view) == 12, job.reason
    assert db.describe_materialized_view("doc_chunks")["definition"]["chunker"]["version"] == "1"
    # full=True recomputes everything and pins the registered versions
    spy.reset()
    job = refresh(db, full=True)
    assert job.state == "COMPLETED" and len(spy.chunked) == 4 and len(view) == 12
    assert db.describe_materialized_view("doc_chunks")["definition"]["chunker"]["version"] == "2"


def test_src_version_range_and_deferral(db, spy):
    docs = make_docs(db)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    v1 = docs.version
    docs.add(np.ones((1, 4)), ids=[7], fields=[{"title": "t", "body": body(7, 3), "lang": "en"}])
    docs.upsert(np.ones((1, 4)), ids=[1], fields=[{"title": "Intro 1", "body": "changed later", "lang": "en"}])
    with pytest.raises(InvalidArgumentError, match="src_version"):
        db.refresh_materialized_view("doc_chunks", src_version=docs.version + 1)
    job = refresh(db, src_version=v1)
    assert job.stats["srcVersion"] == v1 and job.stats["sourceRowsDeferred"] == 1
    assert "7#0" not in view_ids(view) and "1#0" not in view_ids(view)   # 1 was rewritten after v1: deferred
    with pytest.raises(InvalidArgumentError, match="src_version"):
        db.refresh_materialized_view("doc_chunks", src_version=v1 - 1)
    refresh(db)
    assert view_ids(view) == expected_ids(docs) and view.read_by_only_id("1#0").fields[0]["chunk_text"] == "changed later"


def test_chain_of_views_and_source_compaction(db, spy):
    docs = make_docs(db)
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    firsts = db.create_materialized_view("firsts", source="doc_chunks", definition={
        "kind": "udf", "where": "chunk_index = 0", "select": ["title", "chunk_text"],
        "udfs": [{"name": "embed", "inputs": ["chunk_text"], "output": "e"}], "vectorField": "e"})
    refresh(db)
    refresh(db, "firsts")
    assert set(firsts.query(return_ids_only=True)) == {f"{i}#0" for i in (1, 2, 4, 5)}
    assert firsts.read_by_only_id("2#0").fields[0] == {"title": "Chapter 2", "chunk_text": "w2_0 w2_1 w2_2",
                                                       "src_id": "2#0"}
    docs.delete_items([2])
    docs.compact()                                                  # the source row leaves no id behind
    refresh(db)
    refresh(db, "firsts")
    assert set(firsts.query(return_ids_only=True)) == {f"{i}#0" for i in (1, 4, 5)}
    assert view_ids(db.get_collection("doc_chunks")) == expected_ids(docs)


def view_rows(view) -> dict:
    rows = view.query_vectors()
    return {i: (f, v.tolist()) for i, f, v in zip(rows.ids, rows.fields, rows.vectors)}


@pytest.mark.parametrize("trim", ["checkpoints", "compact"])
def test_a_view_behind_the_trimmed_log_of_its_source_refreshes_right(db, spy, trim):
    """The source's log trimmed past the view's position (two checkpoints, or a compact): the
    refresh finds the changed rows by their versions instead, calls the functions on those
    only, and gives the view a from-scratch refresh gives."""
    docs = make_docs(db, n=12)
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    refresh(db)
    docs.upsert_items([{"id": 1, "vector": [1, 0, 0, 0], "field": {"title": "T", "body": body(50, 4), "lang": "en"}},
                       {"id": 3, "vector": [1, 0, 0, 0], "field": {"title": "T", "body": body(51, 5), "lang": "de"}}])
    docs.add(np.ones((1, 4), np.float32), ids=[20], fields=[{"title": "N", "body": body(52, 6), "lang": "en"}])
    docs.delete_items([2, 4])
    docs.restore_items([4])
    docs.delete_items([5])
    if trim == "compact":
        docs.compact()                          # 5 leaves no id behind
    else:
        docs.checkpoint()
        docs.checkpoint()                       # trims up to the first: the changes above are gone
    with docs._storage.read() as t:
        assert t.log_start() > db.describe_materialized_view("doc_chunks")["lastSrcVersion"]
    spy.reset()
    refresh(db)
    assert sorted(spy.chunked) == sorted([body(50, 4), body(52, 6), body(4, 7)])   # the changed rows only
    db.create_materialized_view("oracle", source="docs", definition=DEFINITION)
    refresh(db, "oracle")
    assert view_rows(db.get_collection("doc_chunks")) == view_rows(db.get_collection("oracle"))
    assert view_ids(db.get_collection("doc_chunks")) == expected_ids(docs)


def test_int_and_str_source_ids_get_distinct_children(db, spy):
    # ids 7 and "7" are two rows of the source (ids never collide across types); their children
    # were both "7#0", the refresh wrote one id twice and the view's reads then failed
    ids = [7, "7", "'7", "doc#7", "07"]
    docs = db.create_collection("docs", dim=4)
    docs.add(np.ones((len(ids), 4)), ids=ids,
             fields=[{"title": repr(i), "body": body(k, 5), "lang": "en"} for k, i in enumerate(ids)])
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    job = refresh(db)
    assert job.state == "COMPLETED", job.reason
    assert view_ids(view) == {"7#0", "7#1", "'7'#0", "'7'#1", "''7'#0", "''7'#1", "doc#7#0", "doc#7#1",
                              "07#0", "07#1"}
    owners = {row["id"]: row["src_id"] for row in view.query()}
    assert all(child_id(src, int(cid.rsplit("#", 1)[1])) == cid for cid, src in owners.items())
    assert [owners["7#0"], owners["'7'#0"]] == [7, "7"] and len(view.query_vectors().ids) == 10
    # each row's refresh replaces its own children only
    docs.upsert(np.ones((1, 4)), ids=["7"], fields=[{"title": "'7'", "body": "short", "lang": "en"}])
    docs.delete_items([7])
    job = refresh(db)
    assert job.state == "COMPLETED" and job.stats["rowsDeleted"] == 3, job.reason
    assert view_ids(view) == {"'7'#0", "''7'#0", "''7'#1", "doc#7#0", "doc#7#1", "07#0", "07#1"}
    assert view.read_by_only_id("'7'#0").fields[0]["chunk_text"] == "short"
    # no two source ids give one child id
    srcs = [*range(12), *map(str, range(12)), *(f"'{i}" for i in range(12)), *(f"'{i}'" for i in range(12)), "'", "''"]
    assert len({child_id(s, 0) for s in srcs}) == len(srcs)


def test_a_refresh_writing_one_id_twice_fails_and_changes_nothing(db, spy, monkeypatch):
    # the view's commit refuses duplicate ids as add/upsert do: with the ambiguous child ids
    # of before (simulated here) the job must fail, not report COMPLETED over a broken view
    monkeypatch.setattr(views, "child_id", lambda src_id, i: f"{src_id}#{i}")
    docs = db.create_collection("docs", dim=4)
    docs.add(np.ones((2, 4)), ids=[1, "1"], fields=[{"title": "t", "body": "a b", "lang": "en"}] * 2)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    job = refresh(db)
    assert job.state == "FAILED" and "ids: expected unique ids" in job.reason and "'1#0'" in job.reason
    assert len(view) == 0 and view.version == 0 and view.query() == []


def test_source_dropped_and_recreated_rebuilds_the_view(db, spy):
    docs = make_docs(db)
    for i in (10, 11):                                             # the old source reaches version 3
        docs.add(np.ones((1, 4)), ids=[i], fields=[{"title": "t", "body": body(i, 4), "lang": "en"}])
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    refresh(db)
    db.drop_collection("docs")
    docs = db.create_collection("docs", dim=4)
    for i in range(100, 105):                                      # the new one: versions 1..5
        docs.add(np.ones((1, 4)), ids=[i], fields=[{"title": "t", "body": body(i, 4), "lang": "en"}])
    job = refresh(db)                                              # not the new log from version 3
    assert job.state == "COMPLETED" and job.stats["mode"] == "full" and job.stats["sourceChanged"], job.reason
    assert view_ids(view) == expected_ids(docs) and job.stats["srcVersion"] == 5
    job = refresh(db)
    assert job.stats["mode"] == "no_op" and job.stats["sourceChanged"] is False
    # a new source behind the version the view reached: rebuilt from its current version only
    db.drop_collection("docs")
    docs = db.create_collection("docs", dim=4)
    docs.add(np.ones((1, 4)), ids=[7], fields=[{"title": "t", "body": body(7, 2), "lang": "en"}])
    with pytest.raises(InvalidArgumentError, match="src_version: the source 'docs' is not the collection"):
        db.refresh_materialized_view("doc_chunks", src_version=0)
    job = refresh(db, src_version=1)
    assert job.state == "COMPLETED" and job.stats["sourceChanged"], job.reason
    assert view_ids(view) == {"7#0"} and db.describe_materialized_view("doc_chunks")["lastSrcVersion"] == 1
    docs.add(np.ones((1, 4)), ids=[8], fields=[{"title": "t", "body": body(8, 2), "lang": "en"}])
    job = refresh(db)
    assert job.stats["mode"] == "incremental" and view_ids(view) == {"7#0", "8#0"}


def test_checkpoints_of_a_dropped_source_are_not_reused(db, spy):
    # the new source's rows have the old one's labels and row versions: only the source
    # identity in the checkpoint key tells the old fragments from the new ones
    make_docs(db, n=6, lang=lambda i: "en")
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    spy.fail_on = "w4_"
    assert refresh(db, max_rows_per_fragment=2).state == "FAILED"
    assert db.describe_materialized_view("doc_chunks")["checkpoints"] == 2
    spy.fail_on = None
    db.drop_collection("docs")
    docs = db.create_collection("docs", dim=4)
    docs.add(np.ones((6, 4)), ids=list(range(6)),
             fields=[{"title": "new", "body": f"new {body(i, 2)}", "lang": "en"} for i in range(6)])
    job = refresh(db, max_rows_per_fragment=2)
    assert job.state == "COMPLETED" and job.stats["fragmentsReused"] == 0, job.reason
    view = db.get_collection("doc_chunks")
    assert {r["chunk_text"] for r in view.query()} == {f"new w{i}_0 w{i}_1" for i in range(6)}
    assert view_ids(view) == expected_ids(docs) and db.describe_materialized_view("doc_chunks")["checkpoints"] == 0


def test_restored_source_is_another_collection(db, spy, tmp_path):
    # a snapshot carries the source's identity; the restored collection went back to the
    # snapshot's version and forked from there, so the view must not go on from its own
    docs = make_docs(db)
    view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    snap = db.snapshot_collection("docs", tmp_path / "docs.snap")
    docs.add(np.ones((1, 4)), ids=[10], fields=[{"title": "t", "body": body(10, 4), "lang": "en"}])
    refresh(db)                                                    # the view reaches version 2
    docs = db.restore_collection("docs", snap, overwrite=True)     # back to version 1, no row 10
    for i in (11, 12):
        docs.add(np.ones((1, 4)), ids=[i], fields=[{"title": "t", "body": body(i, 4), "lang": "en"}])
    job = refresh(db)
    assert job.state == "COMPLETED" and job.stats["sourceChanged"] and job.stats["mode"] == "full", job.reason
    assert view_ids(view) == expected_ids(docs) and not any(i.startswith("10#") for i in view_ids(view))
    assert refresh(db).stats["mode"] == "no_op"


def test_errors_conflict_cancel_and_ids(db, spy):
    make_docs(db)
    with pytest.raises(NotFoundError):
        db.refresh_materialized_view("nope")
    with pytest.raises(NotFoundError):
        db.refresh_materialized_view("docs")                       # a collection, not a view
    with pytest.raises(NotFoundError):
        db.create_materialized_view("v", source="missing", definition=DEFINITION)
    with pytest.raises(InvalidArgumentError, match="vectorField"):
        db.create_materialized_view("v", source="docs", definition={**DEFINITION, "vectorField": "nope"})
    with pytest.raises(InvalidArgumentError, match="where"):
        db.create_materialized_view("v", source="docs", definition={**DEFINITION, "where": "lang ="})
    # a UDF output named id: the row's id in reads and filters, so the field could be neither
    # read nor filtered, and the view's own export did not import
    tag = {"name": "embed", "inputs": ["chunk_text"], "output": "id"}
    with pytest.raises(InvalidArgumentError, match=r"output: 'id' is empty, repeated or reserved"):
        db.create_materialized_view("v", source="docs", definition={**DEFINITION, "udfs": [*DEFINITION["udfs"], tag]})
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    for bad in ({"manifest": "{not json"}, {"manifest": {"bogus": 1}}, {"concurrency": 0}, {"concurrency": 2**70},
                {"intra_applier_concurrency": 10**6}, {"max_rows_per_fragment": 2**64}, {"src_version": 2**64},
                {"cluster": "yarn://x"}, {"manifest": {"env_vars": {"A": "1"}}}):
        with pytest.raises(InvalidArgumentError):
            db.refresh_materialized_view("doc_chunks", **bad)
    gate, entered = threading.Event(), threading.Event()

    def slow(texts):
        entered.set()
        gate.wait(10)
        return np.stack([embed_text(t) for t in texts])
    functions.register_udf("embed", slow, version="1", dim=DIM)
    job_id = db.refresh_materialized_view("doc_chunks")
    assert entered.wait(10)
    with pytest.raises(ConflictError):
        db.refresh_materialized_view("doc_chunks")
    db.cancel_refresh_job(job_id)
    gate.set()
    job = db.wait_refresh_job(job_id, timeout=30)
    assert job.state == "FAILED" and job.cancelled and len(db.get_collection("doc_chunks")) == 0
    assert parse_lance_id("app$doc_chunks") == ("app", "doc_chunks")
    assert parse_lance_id("app/doc_chunks", "/") == ("app", "doc_chunks")
    with pytest.raises(InvalidArgumentError):
        parse_lance_id("$")
    assert isinstance(InvalidArgumentError("x"), VecstoreError) and ConflictError.http_status == 409


def test_concurrency_and_intra_applier_give_the_same_view(tmp_path, spy):
    views = []
    for conc, intra in ((1, 1), (2, 3)):
        client = vecstore.connect(tmp_path / f"s{conc}")
        db = client.create_database("app")
        make_docs(db, n=30, lang=lambda i: "en")
        functions.register_udf("embed", spy.embed, version="1", dim=DIM, batch_size=4)
        view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
        job = refresh(db, concurrency=conc, intra_applier_concurrency=intra, max_rows_per_fragment=4)
        assert job.state == "COMPLETED" and job.stats["fragmentsComputed"] == 8
        rows = view.query_vectors()
        views.append(dict(zip(rows.ids, map(tuple, rows.vectors))))
        client.close()
    assert views[0] == views[1] and len(views[0]) == 90


CRASHER = textwrap.dedent("""
    import os, sys, numpy as np, vecstore
    from vecstore import functions
    sys.path.insert(0, {tests!r})
    from test_views import make_docs, words, embed_text, DEFINITION
    functions.register_chunker("words", words, version="1")
    def embed(texts):
        if any(t.startswith("w6_") for t in texts):
            os._exit(3)                       # the process dies mid-refresh
        return np.stack([embed_text(t) for t in texts])
    functions.register_udf("embed", embed, version="1", dim=8)
    db = vecstore.connect({root!r}).create_database("app")
    make_docs(db, n=10, lang=lambda i: "en")
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    db.wait_refresh_job(db.refresh_materialized_view("doc_chunks", max_rows_per_fragment=2), timeout=60)
""")


def test_restart_recovery_resumes_from_checkpoints(tmp_path, spy):
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", CRASHER.format(tests=str(ROOT / "tests"), root=str(root))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    client = vecstore.connect(root)
    try:
        db = client.get_database("app")
        [job] = db.list_refresh_jobs("doc_chunks")
        assert job.state == "FAILED" and "interrupted" in job.reason
        assert len(db.get_collection("doc_chunks")) == 0
        # fragments 1-3 finished; the 3rd checkpoint is written while the 4th runs, so the
        # crash in the 4th may come first
        done = db.describe_materialized_view("doc_chunks")["checkpoints"]
        assert done in (2, 3)
        job = refresh(db, max_rows_per_fragment=2)
        assert job.state == "COMPLETED" and job.stats["fragmentsReused"] == done
        assert sorted(spy.chunked) == sorted(body(i, 7) for i in range(2 * done, 10))
        assert view_ids(db.get_collection("doc_chunks")) == expected_ids(db.get_collection("docs"))
    finally:
        client.close()


KILLED_AFTER_COMMIT = textwrap.dedent("""
    import os, signal, sys, numpy as np, vecstore
    from vecstore import functions
    from vecstore.collection import Collection
    sys.path.insert(0, {tests!r})
    from test_views import make_docs, words, embed_text, DEFINITION
    functions.register_chunker("words", words, version="1")
    functions.register_udf("embed", lambda texts: np.stack([embed_text(t) for t in texts]), version="1", dim=8)
    db = vecstore.connect({root!r}).create_database("app")
    make_docs(db, n=10, lang=lambda i: "en")
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    real = Collection._apply_changes
    def commit_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        print("job", self.database.list_refresh_jobs("doc_chunks")[-1].job_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the view's rows are committed, the job not yet ended
    Collection._apply_changes = commit_then_die
    db.wait_refresh_job(db.refresh_materialized_view("doc_chunks"), timeout=60)
""")


def test_a_refresh_killed_after_its_commit_is_completed(tmp_path, spy):
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", KILLED_AFTER_COMMIT.format(tests=str(ROOT / "tests"), root=str(root))],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == -9 and proc.stdout.startswith("job "), proc.stderr[-2000:]
    job_id = int(proc.stdout.split()[1])
    client = vecstore.connect(root)
    try:
        db = client.get_database("app")
        job = db.describe_refresh_job(job_id)
        assert (job.state, job.progress, job.reason) == ("COMPLETED", 100, "") and job.end_time > 0
        assert "after the job's commit" in job.stats["warnings"][0]
        assert db.describe_materialized_view("doc_chunks")["lastJobId"] == job_id
        view = db.get_collection("doc_chunks")
        assert view_ids(view) == expected_ids(db.get_collection("docs"))
        job = refresh(db)  # the lock was released, and nothing is left to do
        assert job.state == "COMPLETED" and job.stats["mode"] == "no_op"
    finally:
        client.close()


def test_ray_cluster_runs_fragments_as_tasks(tmp_path, spy):
    ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'vecstore[ray]'); not installed here")
    client = vecstore.connect(tmp_path / "store")
    try:
        db = client.create_database("app")
        docs = make_docs(db, n=12, lang=lambda i: "en")
        functions.register_chunker("words", words, version="1")      # module-level: pickled by value for Ray
        functions.register_udf("embed", _plain_embed, version="1", dim=DIM)
        view = db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
        job = refresh(db, cluster="local", concurrency=2, max_rows_per_fragment=4)
        assert job.state == "COMPLETED", job.reason
        assert job.stats["executor"] == "ray:local" and job.stats["fragmentsComputed"] == 3
        assert view_ids(view) == expected_ids(docs)
        row = view.read_by_only_id("3#1")
        np.testing.assert_array_equal(row.vectors[0], embed_text("w3_3 w3_4 w3_5"))
        docs.delete_items([3])
        job = refresh(db, cluster="local")
        assert job.state == "COMPLETED" and not any(i.startswith("3#") for i in view_ids(view))
        docs.add(np.ones((1, 4)), ids=[99], fields=[{"title": "t", "body": "poison pill", "lang": "en"}])
        functions.register_udf("embed", _poisoned_embed, version="1", dim=DIM)
        job = refresh(db, cluster="local")                              # a task's error names function and row
        assert job.state == "FAILED" and "'embed@1'" in job.reason and "source row 99" in job.reason, job.reason
    finally:
        client.close()
        if ray.is_initialized():
            ray.shutdown()


def _plain_embed(texts):
    return np.stack([embed_text(t) for t in texts])


def _poisoned_embed(texts):
    if any("poison" in t for t in texts):
        raise ValueError("poisoned input")
    return _plain_embed(texts)


def test_a_view_is_not_dropped_or_replaced_under_its_running_refresh(db, spy, tmp_path):
    """A drop, restore or import of a view whose refresh runs is ConflictError (the job used to
    die writing through the discarded handle); replacing the whole database cancels the job
    cleanly instead, without a deadlock."""
    make_docs(db)
    db.create_materialized_view("doc_chunks", source="docs", definition=DEFINITION)
    refresh(db)
    view = db.get_collection("doc_chunks")
    snap = view.snapshot_to(tmp_path / "v.snap")
    exported = view.export_to(tmp_path / "v.export")
    db_snap = db.client.snapshot_database("app", tmp_path / "app.snap")
    gate, inside = threading.Event(), threading.Event()
    def slow(texts):
        inside.set()
        gate.wait(30)
        return spy.embed(texts)
    functions.register_udf("embed", slow, version="1", dim=DIM)  # the same function, slowed
    db.get_collection("docs").upsert(np.ones((1, 4)), ids=[1], fields=[{"body": "new words here", "lang": "en"}])
    job = db.refresh_materialized_view("doc_chunks")
    assert inside.wait(30)
    for call in (lambda: db.drop_collection("doc_chunks"),
                 lambda: db.restore_collection("doc_chunks", snap, overwrite=True),
                 lambda: db.import_collection("doc_chunks", exported, overwrite=True)):
        with pytest.raises(ConflictError, match="refresh of 'doc_chunks' is running"):
            call()
    assert db.describe_refresh_job(job).state == "RUNNING"
    gate.set()
    assert db.wait_refresh_job(job, timeout=60).state == "COMPLETED"
    db.restore_collection("doc_chunks", snap, overwrite=True)  # free again

    gate.clear()
    inside.clear()
    db.get_collection("docs").upsert(np.ones((1, 4)), ids=[1], fields=[{"body": "other words", "lang": "en"}])
    job = db.refresh_materialized_view("doc_chunks")
    assert inside.wait(30)
    client = db.client
    releaser = threading.Timer(1.0, gate.set)  # the cancelled job's UDF call still has to return
    releaser.start()
    again = client.restore_database("app", db_snap, overwrite=True)
    releaser.cancel()
    gate.set()
    ended = again.describe_refresh_job(job) if again.list_refresh_jobs() else None
    assert ended is None or ended.state == "FAILED"  # the old job store went with the old database
    assert set(again.show_collections()) == {"docs", "doc_chunks"}


@pytest.mark.parametrize("returned", ["xyz", {"p": 1, "q": 2, "r": 3}, 5])
def test_a_udf_must_return_one_value_per_row(db, returned):
    """A str, a dict or a scalar is not a list of per-row values (a str of the right length used
    to give each row one letter): the job fails naming the function, and the view is untouched."""
    src = db.create_collection("src", dim=2)
    src.add(np.ones((3, 2)), ids=[1, 2, 3], fields=[{"b": "x"}, {"b": "y"}, {"b": "z"}])
    functions.register_udf("shape", lambda xs: returned, version="1")
    functions.register_udf("vec", lambda xs: [[1.0, 0.0] for _ in xs], version="1", dim=2)
    try:
        db.create_materialized_view("v", source="src", definition={"kind": "udf", "udfs": [
            {"name": "shape", "inputs": ["b"], "output": "n"}, {"name": "vec", "inputs": ["b"], "output": "e"}],
            "vectorField": "e"})
        job = db.wait_refresh_job(db.refresh_materialized_view("v"), timeout=60)
        assert job.state == "FAILED" and "function 'shape@1' (udf) returned" in job.reason, job.reason
        assert db.get_collection("v").shape[0] == 0
    finally:
        functions.unregister("shape")
        functions.unregister("vec")
