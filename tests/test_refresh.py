"""A handle shows the store as it was at open until ``refresh()``: a read-only reader in this
process against a writer in another (one writer per folder, any number of readers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import vecstore

WRITER = textwrap.dedent("""
    import sys, numpy as np, vecstore
    col = vecstore.connect(sys.argv[1]).get_database("app").get_collection("c")
    step = sys.argv[2]
    if step == "grow":
        x = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
        col.add(x, ids=list(range(1000, 1300)), fields=[{"lang": "de"}] * 300)
        col.delete_items(list(range(0, 50)))
        col.build_index("HNSW-L2")
        col.create_vector_field("t", dim=3)
        col.add_named_vectors("t", np.eye(3), ids=[1000, 1001, 1002])
    elif step == "compact":
        col.compact()
    col.database.client.close()
""")


def write(path, step: str) -> None:
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), step], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_reader_sees_other_processes_commits_after_refresh(tmp_path):
    path = tmp_path / "store"
    x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    with vecstore.connect(path) as client:
        client.create_database("app").require_collection("c", dim=8, metric="l2").add(
            x, ids=list(range(200)), fields=[{"lang": "en"}] * 200)
    reader = vecstore.connect(path, read_only=True)
    col = reader.get_database("app").get_collection("c")
    assert col.refresh() is False                      # nothing new: one small read
    write(path, "grow")
    assert col.shape == (200, 8) and col.index_mode() != "HNSW-L2"   # a snapshot until refresh
    assert col.refresh() is True
    assert col.shape == (450, 8) and col.index_mode() == "HNSW-L2"
    assert col.search(x[60], k=1).ids == (60,)
    assert 10 not in col.search(x[10], k=5).ids        # deleted by the writer
    assert col.query(where="lang = 'de'", return_ids_only=True)[:2] == [1000, 1001]
    assert col.search([1, 0, 0], k=1, vector_field="t").ids == (1000,)
    assert col.text_search("de", k=3).ids              # the text index is built again on use
    assert col.refresh() is False
    write(path, "compact")                             # removes rows: positions change
    assert col.refresh() is True
    assert col.stats().n_vectors == 450 and col.search(x[60], k=1).ids == (60,)
    reader.close()
