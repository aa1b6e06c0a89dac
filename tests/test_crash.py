"""Crash safety: a child process writes in a loop and is killed with SIGKILL at random points,
many times. After each kill the store reopens with every acknowledged write, no partial batch,
and search agrees with the rows (including an HNSW index caught up from the log)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import numpy as np
import pytest

import vecstore

B = 40  # rows per batch
DIM = 8

CHILD = textwrap.dedent("""
    import sys, numpy as np, vecstore
    path, mode, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    col = vecstore.connect(path).create_database("app").require_collection("c", dim={dim}, metric="l2")
    if mode != "FLAT" and col.index_mode() is None:
        col.build_index(mode)
    def say(line):
        # One write() per record: with PYTHONUNBUFFERED, print("ack", b) is several writes and
        # a kill between them leaves a torn line.
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
    say("ready")
    b = start
    while True:
        rng = np.random.default_rng(b)
        ids = list(range(b * {B}, (b + 1) * {B}))
        col.bulk_add_items([{{"vector": v, "id": i, "field": {{"batch": b}}}}
                            for i, v in zip(ids, rng.standard_normal(({B}, {dim})))])
        say(f"ack {{b}}")
        if b % 3 == 2:
            col.delete_items(list(range((b - 2) * {B}, (b - 2) * {B} + 5)))
            say(f"del {{b - 2}}")
        if b % 7 == 6:
            col.checkpoint()
        b += 1
""").format(B=B, dim=DIM)


def expected_vectors(b: int) -> np.ndarray:
    return np.random.default_rng(b).standard_normal((B, DIM)).astype(np.float32)


def run_trial(path, mode, start, rng) -> tuple[set[int], set[int]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode, str(start)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("ready"), proc.stderr.read()
    time.sleep(rng.uniform(0.02, 0.4))
    os.kill(proc.pid, signal.SIGKILL)
    # Read the rest through the same buffered stream: readline() above may already hold part
    # of it, which communicate() (reading the raw pipe) would skip, tearing a line in two.
    out = proc.stdout.read()
    proc.stderr.read()
    proc.wait()
    acked, deleted = set(), set()
    # A record is acknowledged only once its newline is out: a last line without one was cut by
    # the kill (the write it reports may or may not have committed; neither case is claimed).
    for ln in out.split("\n")[:-1]:
        kind, b = ln.split()
        (acked if kind == "ack" else deleted).add(int(b))
    return acked, deleted


def check_store(path, all_acked, all_deleted, mode):
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        if mode != "FLAT":
            assert col.index_mode() == mode
        rows = col.query(return_ids_only=False)
        by_batch: dict[int, list] = {}
        for r in rows:
            by_batch.setdefault(r["batch"], []).append(r["id"])
        # per batch, counted once (a scan of every deleted id per batch made the 200-trial run
        # quadratic: it did not finish in 20 minutes)
        deleted_in = Counter(i // B for i in col.list_deleted_ids())
        for b, ids in by_batch.items():
            live_expected = B - 5 if b in all_deleted else B
            # A batch is all there or not at all (deletes of 5 rows are their own transaction).
            assert len(ids) + deleted_in[b] == B, f"partial batch {b}"
            assert len(ids) in (B, B - 5)
            if b in all_deleted:
                assert len(ids) == live_expected
        for b in all_acked:
            assert b in by_batch, f"acknowledged batch {b} lost"
        present = sorted(by_batch)
        # search agrees with the rows: each sampled row finds itself
        for b in present[:: max(1, len(present) // 8)]:
            vecs = expected_vectors(b)
            got = col.read_by_only_id(by_batch[b][:3])
            np.testing.assert_allclose(got.vectors, vecs[[i - b * B for i in by_batch[b][:3]]], rtol=1e-6)
            for i in by_batch[b][:3]:
                assert col.search(vecs[i - b * B], k=1).ids == (i,)
        return max(present) + 1 if present else 0


@pytest.mark.parametrize("mode", ["FLAT", "HNSW-L2"])
def test_sigkill_loses_nothing_acknowledged(tmp_path, mode):
    rng = random.Random(1234)
    path = tmp_path / "store"
    acked_all, deleted_all = set(), set()
    start = 0
    trials = 12
    for _ in range(trials):
        acked, deleted = run_trial(path, mode, start, rng)
        acked_all |= acked
        deleted_all |= deleted
        start = check_store(path, acked_all, deleted_all, mode)
    assert acked_all, "the child never acknowledged a write: the test did not exercise anything"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["FLAT", "HNSW-L2"])
def test_sigkill_many_trials(tmp_path, mode):
    rng = random.Random(99)
    path = tmp_path / "store"
    acked_all, deleted_all, start = set(), set(), 0
    for _ in range(200):
        acked, deleted = run_trial(path, mode, start, rng)
        acked_all |= acked
        deleted_all |= deleted
        start = check_store(path, acked_all, deleted_all, mode)


def _writer_holding(root) -> subprocess.Popen:
    """A process with app/c open for writing (10 rows) that adds 5 rows when told to."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, numpy as np, vecstore
        col = vecstore.connect({str(root)!r}).create_database("app").require_collection("c", dim=4)
        col.add(np.ones((10, 4)), ids=list(range(10)))
        print("ready", flush=True)
        sys.stdin.readline()
        col.add(np.ones((5, 4)), ids=list(range(10, 15)))
        print("acked", col.shape[0], flush=True)
        col.close()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("drop", ["collection", "database", "recreate"])
def test_a_drop_waits_for_no_writer_in_another_process(tmp_path, drop):
    """Dropping is a write: while another process has the collection open for writing, a drop
    is LockedError and deletes nothing, so that process's acknowledged writes stay."""
    proc = _writer_holding(tmp_path)
    try:
        client = vecstore.connect(tmp_path)
        db = client.get_database("app")
        call = {"collection": lambda: db.drop_collection("c"),
                "database": lambda: client.drop_database("app"),
                "recreate": lambda: db.require_collection("c", dim=4, drop_if_exists=True)}[drop]
        with pytest.raises(vecstore.LockedError):
            call()
        client.close()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["acked", "15"]
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    again = vecstore.connect(tmp_path)
    assert again.get_database("app").get_collection("c").shape[0] == 15
    again.get_database("app").drop_collection("c")  # and once the writer is gone, it drops
    assert again.get_database("app").show_collections() == []
    again.close()


# The child's hook on a restore with overwrite=True, and the rows the next open must find.
_KILLED_RESTORES = {
    # Where the system has no renameat2 exchange, the old collection is moved aside, then the
    # new one renamed in: killed in between, the next open puts the old one back (it used to
    # delete both with the staging). The child plays such a system.
    "between its two renames": ("""
        P._exchange = lambda new, final: False
        real = os.rename
        def rename(a, b):
            real(a, b)
            if str(b).endswith("/old"):  # the old collection is aside, the new one not yet in
                os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename
    """, 101),
    # With the exchange the new collection is in place in one step: killed right after it, the
    # next open has the restored rows, and the old ones go with the staging folder.
    "right after its exchange": ("""
        real = P._exchange
        def exchange(new, final):
            assert real(new, final)
            os.kill(os.getpid(), signal.SIGKILL)
        P._exchange = exchange
    """, 100),
}


@pytest.mark.parametrize("moment", list(_KILLED_RESTORES))
def test_a_restore_killed_midway_leaves_one_whole_collection(tmp_path, moment):
    hook, rows = _KILLED_RESTORES[moment]
    if moment == "right after its exchange" and not hasattr(vecstore.portability._libc(), "renameat2"):
        pytest.skip("no renameat2 on this system: the two-renames case covers it")
    col = vecstore.connect(tmp_path).create_database("app").require_collection("c", dim=4)
    col.add(np.ones((100, 4)), ids=list(range(100)))
    snap = col.snapshot_to(tmp_path / "c.snap")
    col.add(np.ones((1, 4)), ids=[100])
    col.database.client.close()
    child = "import os, signal, vecstore, vecstore.portability as P\n" + textwrap.dedent(hook) + (
        f"vecstore.connect({str(tmp_path)!r}).get_database('app').restore_collection('c', {str(snap)!r}, overwrite=True)\n")
    assert subprocess.run([sys.executable, "-c", child]).returncode == -signal.SIGKILL
    db = vecstore.connect(tmp_path).get_database("app")  # the open sweeps the staging folder
    assert db.show_collections() == ["c"] and db.get_collection("c").shape[0] == rows
    assert [p.name for p in db.path.iterdir() if p.name.startswith(".vecstore-tmp")] == []
    db.client.close()


CHECKPOINT_CHILD = textwrap.dedent("""
    import os, signal, sys, numpy as np, vecstore
    from vecstore import collection, storage
    collection.CHECKPOINT_MIN_ROWS = 150
    where = sys.argv[2]
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    checkpoints = []
    real_checkpoint, real_save, real_trim = (collection.Collection._checkpoint, collection.Collection._save_index,
                                             storage.Txn.trim_log)
    def checkpoint(self, **kw):
        checkpoints.append(1)
        real_checkpoint(self, **kw)
        if where == "after_trim" and len(checkpoints) == 3:
            die()
    def save(self, space):
        real_save(self, space)
        if where == "between_saves" and len(checkpoints) == 3 and space.name == "default":
            die()
    def trim(self, upto):
        if where == "before_trim" and len(checkpoints) == 3:
            die()
        return real_trim(self, upto)
    collection.Collection._checkpoint, collection.Collection._save_index = checkpoint, save
    storage.Txn.trim_log = trim
    x = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    col = vecstore.connect(sys.argv[1]).create_database("app").require_collection("c", dim=8, metric="l2")
    col.add(x[:300], ids=list(range(300)), fields=[{"t": f"w{i % 7}"} for i in range(300)])
    col.build_index("HNSW-L2")
    col.create_vector_field("n", dim=8, metric="l2", index_mode="HNSW")
    col.add_named_vectors("n", x[:300], ids=list(range(300)))
    col.text_search("w1")
    print("setup", flush=True)
    for b in range(40):                    # upserts, named vectors and deletes until the kill
        ids = [int(i) for i in np.random.default_rng(b).choice(300, 40, replace=False)]
        col.upsert(x[300 + 40 * b:340 + 40 * b], ids=ids, fields=[{"t": f"b{b}"}] * 40)
        print("ack", flush=True)
        col.add_named_vectors("n", x[300 + 40 * b:340 + 40 * b], ids=ids)
        print("ack", flush=True)
        col.delete_items([ids[0]])
        print("ack", flush=True)
""")


@pytest.mark.parametrize("where", ["between_saves", "before_trim", "after_trim"])
def test_a_writer_killed_around_a_checkpoint_loses_nothing(tmp_path, where):
    """The writes checkpoint themselves (index files saved, then the log trimmed in a later
    transaction). Killed between two index saves, before the trim or just after it: the reopen
    has every acknowledged write, and the indexes and the text index answer for them."""
    proc = subprocess.run([sys.executable, "-c", CHECKPOINT_CHILD, str(tmp_path), where],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    acked = proc.stdout.count("ack")
    x = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    vec, named, text, live = dict(enumerate(x[:300])), dict(enumerate(x[:300])), \
        {i: f"w{i % 7}" for i in range(300)}, set(range(300))
    with vecstore.connect(tmp_path) as client:
        col = client.get_database("app").get_collection("c")
        done = col.version - 2             # write calls committed after the setup's two
        assert done in (acked, acked + 1)  # the one killed in its checkpoint had committed
        for call in range(done):
            b, op = divmod(call, 3)
            ids = [int(i) for i in np.random.default_rng(b).choice(300, 40, replace=False)]
            new = x[300 + 40 * b:340 + 40 * b]
            for i, v in zip(ids, new):
                if op == 0:
                    vec[i], text[i] = v, f"b{b}"
                    live.add(i)
                elif op == 1:
                    named[i] = v
            if op == 2:
                live.discard(ids[0])
        assert set(col.query(return_ids_only=True)) == live
        for i in sorted(live)[::5]:
            assert col.search(vec[i], k=1, nprobe=500).ids == (i,)
            assert col.search(named[i], k=1, nprobe=500, vector_field="n").ids == (i,)
        for word in {"w1", *text.values()}:
            assert set(col.text_search(word, k=400).ids) == {i for i in live if text[i] == word}
