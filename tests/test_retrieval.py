"""Text (BM25), sparse and hybrid search through the collection, locally and remotely: ranking
against oracles, `where` in every mode, deleted rows never returned, persistence across a
killed process, and a read-only reader."""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vecstore
from conftest import Beside

DOCS = [
    {"title": "apple pie recipe", "body": "bake the apple pie slowly", "lang": "en"},
    {"title": "apple", "body": "a fruit", "lang": "en"},
    {"title": "vector database", "body": "store vectors and search them fast", "lang": "en"},
    {"title": "apple apple apple", "body": "", "lang": "de"},
    {"title": "banana bread", "body": "no apple here at all, just banana", "lang": "en"},
    {"title": "database tuning", "body": "vector indexes and filters", "lang": "de"},
]


@pytest.fixture
def col(db):
    c = db.require_collection("docs", dim=4, metric="l2")
    rng = np.random.default_rng(3)
    c.add(rng.standard_normal((len(DOCS), 4)), ids=list(range(len(DOCS))), fields=DOCS)
    c.add_sparse_vectors([{1: 1.0, 3: 0.5}, {3: 2.0}, {7: 1.0}, [(1, 0.25), (2, 4.0)], {"9": 1.0}, {3: 1.0, 7: 1.0}],
                         ids=list(range(len(DOCS))))
    return c


def bm25_title(query_terms, docs, k1=1.2, b=0.75):
    """Textbook BM25 over the `title` field (tantivy's formula; lengths exact below 40 tokens)."""
    toks = [d["title"].split() for d in docs]
    n = len(toks)
    avgdl = sum(len(t) for t in toks) / n
    out = {}
    for i, t in enumerate(toks):
        s = 0.0
        for term in set(query_terms):
            tf = t.count(term)
            if not tf:
                continue
            df = sum(term in x for x in toks)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(t) / avgdl))
        if s > 0:
            out[i] = s
    return out


def test_text_search_matches_bm25(col):
    r = col.text_search("apple", text_fields=["title"], k=10)
    oracle = bm25_title(["apple"], DOCS)
    assert list(r.ids) == sorted(oracle, key=lambda i: (-oracle[i], i))
    np.testing.assert_allclose(r.scores, [oracle[i] for i in r.ids], rtol=1e-4)
    assert r.index == "BM25-INVERTED"  # LynseDB's label (lynse_api §8.4)
    assert col.bm25_search("apple", text_fields=["title"], k=10).ids == r.ids
    # every string field by default; `where` applies; deleted rows never appear
    assert 4 in col.text_search("apple", k=10).ids
    assert set(col.text_search("apple", k=10, where="lang = 'en'").ids) == {0, 1, 4}
    col.delete_items([1])
    assert 1 not in col.text_search("apple", k=10).ids
    col.upsert_items([{"vector": [0, 0, 0, 0], "id": 2, "field": {"title": "apple tart"}}])
    assert 2 in col.text_search("tart", k=10).ids
    assert col.text_search("zzz-nothing", k=10).ids == ()
    with pytest.raises(vecstore.QuerySyntaxError):
        col.text_search('"unbalanced', k=5)


def test_sparse_search_matches_dense_oracle(col):
    dense = np.zeros((len(DOCS), 10), dtype=np.float32)
    for i, d in enumerate([{1: 1.0, 3: 0.5}, {3: 2.0}, {7: 1.0}, {1: 0.25, 2: 4.0}, {9: 1.0}, {3: 1.0, 7: 1.0}]):
        for j, w in d.items():
            dense[i, j] = w
    q = np.zeros(10, dtype=np.float32)
    q[[1, 3, 7]] = [1.0, 1.0, 0.5]
    s = dense @ q
    expect = [i for i in np.argsort(-s, kind="stable") if s[i] != 0]
    r = col.sparse_search({"indices": [1, 3, 7], "values": [1.0, 1.0, 0.5]}, k=10)
    assert list(r.ids) == expect and r.index == "SPARSE-FLAT-IP"
    np.testing.assert_allclose(r.scores, s[expect], rtol=1e-6)
    assert set(col.sparse_search({3: 1.0}, k=10, where="lang = 'de'").ids) == {5}
    col.delete_items([1])
    assert 1 not in col.sparse_search({3: 1.0}, k=10).ids
    col.restore_items([1])
    assert col.sparse_search({3: 1.0}, k=1).ids == (1,)
    with pytest.raises(vecstore.InvalidArgumentError):
        col.sparse_search({"indices": [1, 2], "values": [1.0]}, k=3)


def plain_rrf(legs, k, rrf_k=60.0):
    scores: dict = {}
    for ids, weight in legs:
        for rank, i in enumerate(ids):
            scores[i] = scores.get(i, 0.0) + weight / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


def test_text_fields_and_fusion_parameters_are_checked_alike(col):
    """The remote client sent ``list("title")`` (five one-letter fields) and dropped a None
    weight or fusion (the server then used its default); ``text_fields=5`` raised TypeError."""
    bad = [dict(text_fields="title"), dict(text_fields=5), dict(text_fields=["title", 3])]
    for kw in bad:
        with pytest.raises(vecstore.InvalidArgumentError, match="text_fields"):
            col.text_search("apple", **kw)
        with pytest.raises(vecstore.InvalidArgumentError, match="text_fields"):
            col.hybrid_search(text="apple", **kw)
    for kw in (dict(fusion=None), dict(vector_weight=None), dict(text_weight=None), dict(rrf_k=None),
               dict(text_weight=1e300), dict(fusion="weighted", vector_weight=-1e31)):
        with pytest.raises(vecstore.InvalidArgumentError, match=next(iter(kw)) if len(kw) == 1 else "vector_weight"):
            col.hybrid_search(vector=[1, 0, 0, 0], text="apple", **kw)
    names = (f for f in ["title"])
    assert col.text_search("apple", text_fields=names).ids == col.text_search("apple", text_fields=["title"]).ids


def test_text_ties_are_broken_by_insertion_order_not_by_segment(tmp_path):
    """Three rows tie exactly; each add lands in its own tantivy segment, whose ids are random,
    and tantivy orders ties by segment: identical histories gave different orders, and k=1 a
    different row. Ties now go by label (insertion order), filtered or not."""
    for trial in range(6):
        client = vecstore.connect(tmp_path / str(trial))
        col = client.create_database("d").require_collection("c", dim=2)
        for i in (1, 2, 3):
            col.add([[1, 0]], ids=[i], fields=[{"t": "apple pie", "n": i}])
            col.text_search("apple")   # commits this row's segment
        r = col.text_search("apple", k=10)
        assert r.ids == (1, 2, 3) and len(set(r.scores.tolist())) == 1
        assert col.text_search("apple", k=1).ids == (1,)
        assert col.text_search("apple", k=2).ids == (1, 2)
        assert col.text_search("apple", k=1, where="n >= 2").ids == (2,)
        assert col.hybrid_search(text="apple", k=1).ids == (1,)
        client.close()


def test_hybrid_search_rrf_and_weighted(col):
    q = np.asarray(col.read_by_only_id(2).vectors[0])
    vec = col.search(q, k=24)
    txt = col.text_search("apple", k=24)
    r = col.hybrid_search(vector=q, text="apple", k=4, fusion="rrf")
    expect = plain_rrf([(vec.ids, 1.0), (txt.ids, 1.0)], 4)
    np.testing.assert_allclose(r.scores, [s for _, s in expect], rtol=1e-6)
    assert set(r.ids) == {i for i, _ in expect} and r.index == "HYBRID-RRF"
    w = col.hybrid_search(vector=q, text="apple", k=3, fusion="weighted", vector_weight=0.7, text_weight=0.3)
    assert w.index == "HYBRID-WEIGHTED" and len(w) == 3 and w.scores[0] <= 1.0 + 1e-6
    assert col.hybrid_search(text="apple", k=3).ids == col.hybrid_search(text="apple", k=3, vector=None).ids
    assert all(DOCS[i]["lang"] == "de" for i in col.hybrid_search(vector=q, text="apple", k=5, where="lang = 'de'").ids)
    with pytest.raises(vecstore.InvalidArgumentError):
        col.hybrid_search(k=3)
    with pytest.raises(vecstore.InvalidArgumentError, match="fusion"):
        col.hybrid_search(text="apple", fusion="max")


def test_text_and_sparse_survive_a_killed_process(tmp_path):
    path = tmp_path / "store"
    child = textwrap.dedent(f"""
        import os, signal, vecstore
        col = vecstore.connect({str(path)!r}).create_database("app").require_collection("docs", dim=2)
        col.add([[1, 0], [0, 1]], ids=[1, 2], fields=[{{"t": "alpha beta"}}, {{"t": "gamma"}}])
        col.text_search("alpha", k=1)                # the text index exists and is committed
        col.add([[1, 1]], ids=[3], fields=[{{"t": "alpha delta"}}])   # only in LMDB's log
        col.add_sparse_vectors([{{5: 1.0}}], ids=[3])
        col.delete_items([1])
        print("done", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "done" in proc.stdout, proc.stderr
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("docs")
        assert col.text_search("alpha", k=5).ids == (3,)
        assert col.sparse_search({5: 2.0}, k=5).ids == (3,)


def test_read_only_reader_searches_text_while_a_writer_holds_the_store(tmp_path):
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("docs", dim=2)
        col.add([[1, 0], [0, 1]], ids=[1, 2], fields=[{"t": "alpha"}, {"t": "beta"}])
        col.text_search("alpha", k=1)
        col.add([[1, 1]], ids=[3], fields=[{"t": "alpha again"}])  # the on-disk text index is behind
        reader = textwrap.dedent(f"""
            import vecstore
            c = vecstore.connect({str(path)!r}, read_only=True).get_database("app").get_collection("docs")
            print(sorted(c.text_search("alpha", k=5).ids))
        """)
        proc = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "[1, 3]", proc.stderr


@pytest.mark.parametrize("loss", ["emptied", "meta.json"])
def test_lost_text_index_files_are_rebuilt_not_trusted(tmp_path, loss):
    """tantivy creates an empty index where its files were lost; the recorded document count
    tells that from a good index, so the open rebuilds instead of answering from nothing."""
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        col = client.create_database("app").require_collection("docs", dim=2)
        col.add([[1, 0], [0, 1], [1, 1]], ids=[1, 2, 3], fields=[{"t": "apple pie"}, {"t": "banana"}, {"t": "apple tart"}])
        assert col.text_search("apple", k=5).ids == (1, 3)
    text = path / "app" / "docs" / "text"
    for f in (list(text.iterdir()) if loss == "emptied" else [text / "meta.json"]):
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("docs")
        col.add([[2, 1]], ids=[4], fields=[{"t": "apple crumble"}])
        assert sorted(col.text_search("apple", k=5).ids) == [1, 3, 4]


def test_a_read_only_handle_searches_text_as_of_its_version(tmp_path):
    """The writer's on-disk text index moves on with the writer; a read-only handle answers
    text searches for the rows it holds (ids and scores in step) until refresh()."""
    path = tmp_path / "store"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, vecstore
        col = vecstore.connect({str(path)!r}).create_database("app").require_collection("docs", dim=2)
        col.add([[1, 0], [0, 1]], ids=[1, 2], fields=[{{"t": "apple"}}, {{"t": "apple apple"}}])
        col.text_search("apple", k=5)
        print("ready", flush=True)
        sys.stdin.readline()
        col.add([[1, 1]], ids=[3], fields=[{{"t": "apple apple apple"}}])
        col.delete_items([1])
        col.text_search("apple", k=5)  # the on-disk index now has 3 and not 1
        print("moved", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        reader = vecstore.connect(path, read_only=True)
        col = reader.get_database("app").get_collection("docs")
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "moved"
        hits = col.text_search("apple", k=5)
        assert sorted(hits.ids) == [1, 2] and len(hits.scores) == 2
        assert col.refresh()
        assert sorted(col.text_search("apple", k=5).ids) == [2, 3]
        reader.close()
    finally:
        writer.stdin.close()
        writer.wait(30)


def test_text_search_beside_a_compact_keeps_its_index(local_client, monkeypatch):
    """text_search caught the text index up under the writer mutex, then searched it under the
    read lock: a compact() in between replaced the index (AttributeError: 'NoneType' object has
    no attribute 'search'). The catch-up and the search are one step now."""
    from vecstore.text import TextIndex
    col = local_client.create_database("app").require_collection("docs", dim=2)
    col.add(np.ones((20, 2)), ids=list(range(20)), fields=[{"t": "hello world"}] * 20)
    col.text_search("hello")
    col.add([[1, 1]], ids=[20], fields=[{"t": "hello again"}])   # the next search catches up first
    beside, armed, read = Beside(col, [0]), [], col._rw.read

    class ReadLock:  # the collection's read lock, running `beside` when first taken after a catch-up
        def __enter__(self):
            if armed:
                armed.clear()
                beside()
            read.__enter__()

        def __exit__(self, *exc):
            read.__exit__(*exc)
    commit = TextIndex.commit
    monkeypatch.setattr(TextIndex, "commit", lambda self: (commit(self), armed.append(1))[0])
    monkeypatch.setattr(col._rw, "read", ReadLock())
    r = col.text_search("hello", k=30)
    beside.join()
    assert sorted(r.ids) == list(range(21)) and len(r.scores) == 21   # as of before the delete
    assert sorted(col.text_search("hello", k=30).ids) == list(range(1, 21))


@pytest.mark.parametrize("text", ["apple", None])
def test_hybrid_search_beside_a_compact_keeps_ids_and_scores_in_step(local_client, monkeypatch, text):
    """hybrid_search ran its legs and mapped their ids back to rows under separate read locks: a
    compact() in between raised KeyError, or dropped a removed row's id but not its score, so
    later ids got the scores of others. Legs, fusion and mapping are one read now."""
    import vecstore.fusion
    col = local_client.create_database("app").require_collection("docs", dim=2, metric="l2")
    col.add([[0, 0], [1, 0], [2, 0], [3, 0]], ids=[10, 11, 12, 13],
            fields=[{"t": "apple"}, {"t": "apple apple"}, {"t": "pear"}, {"t": "pear"}])
    before = col.hybrid_search(vector=[0, 0], text=text, k=4)   # the text index is current
    beside, fuse = Beside(col, [10]), vecstore.fusion.fuse

    def fuse_beside(*args, **kwargs):
        beside()
        return fuse(*args, **kwargs)
    monkeypatch.setattr(vecstore.fusion, "fuse", fuse_beside)
    r = col.hybrid_search(vector=[0, 0], text=text, k=4)
    beside.join()
    assert len(r.ids) == len(r.scores)
    assert r.ids == before.ids and r.scores.tolist() == before.scores.tolist()   # as of before the delete
    monkeypatch.undo()
    after = col.hybrid_search(vector=[0, 0], text=text, k=4)
    assert 10 not in after.ids and len(after.ids) == len(after.scores) == 3


def test_a_search_during_a_delete_never_returns_the_deleted_row(local_client, monkeypatch):
    """A delete marks the row deleted in the mirror, then removes it from the sparse index: a
    sparse search in between found it there, and returned it although it was deleted."""
    from vecstore.indexes.sparse import SparseIndex
    col = local_client.create_database("app").require_collection("docs", dim=2)
    col.add(np.eye(2), ids=[1, 2])
    col.add_sparse_vectors([{5: 1.0}, {5: 2.0}], ids=[1, 2])
    seen, remove = [], SparseIndex.remove

    def search_then_remove(self, labels):
        seen.append(col.sparse_search({5: 1.0}))
        remove(self, labels)
    monkeypatch.setattr(SparseIndex, "remove", search_then_remove)
    col.delete_items([2])
    assert seen[0].ids == (1,) and seen[0].scores.tolist() == [1.0]
