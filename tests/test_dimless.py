"""A collection created without a dim: dim 0 until the first vectors, which fix it in the same
transaction as their rows (LynseDB HEAD's optional ``dim``). Behaviour tests run locally and
over HTTP (the ``client`` fixture); reopening and transaction tests are local."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore
from vecstore import ConflictError, DimensionMismatchError, InvalidArgumentError
from vecstore import storage

DIM = 8


def oracle(matrix: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    """Inner-product brute force: the ids (row numbers) of the k best rows per query."""
    scores = queries @ matrix.T
    return [np.argsort(-row, kind="stable")[:k].tolist() for row in scores]


def state(col) -> tuple:
    return (col.dim, col.shape, col.get_collection_config().dim, col.stats().dimension, col.query())


def test_first_add_fixes_the_dim(db):
    col = db.require_collection("auto")  # no dim
    assert (col.dim, col.shape, col.get_collection_config().dim, col.stats().dimension) == (0, (0, 0), 0, 0)
    assert db.show_collections_details()["auto"]["dim"] == 0
    # no dim yet: every query finds nothing, whatever its length (an empty collection)
    assert col.search([1.0, 2.0, 3.0], k=5).ids == ()
    assert [r.ids for r in col.batch_search(np.ones((2, 5)), k=3)] == [(), ()]
    assert col.search([1.0, 0.0], k=2, where="lang = 'en'").ids == ()
    assert col.search_range([1.0, 0.0], threshold=0.0).ids == ()

    rng = np.random.default_rng(0)
    data = rng.standard_normal((300, DIM)).astype(np.float32)
    assert col.add(data[:200], ids=list(range(200))) == list(range(200))  # int ids: the binary path remotely
    assert (col.dim, col.shape, col.get_collection_config().dim) == (DIM, (200, DIM), DIM)
    assert db.show_collections_details()["auto"]["shape"] == [200, DIM]
    col.bulk_add_items([{"vector": row, "id": 200 + i} for i, row in enumerate(data[200:250])])
    col.upsert(data[250:], ids=list(range(250, 300)))

    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    want = oracle(data, queries, 10)
    assert [list(col.search(q, k=10).ids) for q in queries] == want
    assert [list(r.ids) for r in col.batch_search(queries, k=10)] == want

    # the dim is fixed now: another one is refused and nothing is stored
    before = state(col)
    for write in (lambda: col.add(np.ones((2, DIM + 1)), ids=[500, 501]),
                  lambda: col.add_item([1.0] * (DIM - 1), id=500),
                  lambda: col.upsert(np.ones((1, 3)), ids=[0])):
        with pytest.raises(DimensionMismatchError, match="dimension 8"):
            write()
    with pytest.raises(DimensionMismatchError):
        col.search([1.0] * (DIM + 1), k=1)
    assert state(col) == before


def test_a_first_add_of_mixed_dims_stores_nothing(db):
    col = db.create_collection("mixed")
    for write, param in ((lambda: col.add([[1.0, 2.0], [3.0]], ids=[1, 2]), "vectors"),
                         (lambda: col.bulk_add_items([{"vector": [1.0, 2.0]}, {"vector": [1.0, 2.0, 3.0]}]),
                          "items"),
                         (lambda: col.upsert([[1.0], [1.0, 2.0]], ids=[1, 2]), "vectors")):
        with pytest.raises(DimensionMismatchError, match=param):
            write()
    with pytest.raises(InvalidArgumentError, match="dim"):  # vectors of no numbers set no dim
        col.add([[]], ids=[1])
    assert state(col) == (0, (0, 0), 0, 0, [])
    # still open to any dim
    assert col.add_item([1.0, 2.0, 3.0], id=7) == 7
    assert (col.dim, col.search([1.0, 0.0, 0.0], k=1).ids) == (3, (7,))


def test_indexes_before_the_dim(db):
    col = db.require_collection("idx")
    with pytest.raises(ConflictError, match="dim"):
        col.build_index("HNSW")
    with pytest.raises(ConflictError, match="dim"):
        col.build_index("IVF-IP")
    assert col.index_mode() is None
    col.build_index("FLAT-IP")  # FLAT needs no dim
    assert col.index_mode() == "FLAT-IP"
    col.add(np.eye(4, dtype=np.float32), ids=[0, 1, 2, 3])
    col.build_index("HNSW")  # fine once the dim is known
    assert col.search([0.0, 0.0, 1.0, 0.0], k=1).ids == (2,)


def test_require_with_a_dim(db):
    db.require_collection("late")
    assert db.require_collection("late").dim == 0  # still no dim
    col = db.require_collection("late", dim=5)  # an explicit dim fixes it
    assert col.dim == 5 and col.get_collection_config().dim == 5
    with pytest.raises(DimensionMismatchError, match="dim"):
        db.require_collection("late", dim=6)
    with pytest.raises(DimensionMismatchError):
        col.add(np.ones((1, 4)), ids=[1])
    assert col.add(np.ones((1, 5)), ids=[1]) == [1]


def test_reopen_keeps_the_dim_or_its_absence(tmp_path):
    path = tmp_path / "store"
    with vecstore.connect(path) as client:
        db = client.create_database("app")
        db.create_collection("none")
        db.create_collection("some").add(np.eye(3, dtype=np.float32), ids=[1, 2, 3])
    with vecstore.connect(path, read_only=True) as ro:  # a read-only open of a dim-less one too
        rdb = ro.get_database("app")
        assert rdb.get_collection("none").dim == 0
        assert rdb.get_collection("none").search([1.0], k=1).ids == ()
        assert rdb.get_collection("some").dim == 3
    with vecstore.connect(path) as client:
        db = client.get_database("app")
        assert (db.get_collection("none").dim, db.get_collection("some").dim) == (0, 3)
        assert db.get_collection("some").search([0.0, 1.0, 0.0], k=1).ids == (2,)
        db.get_collection("none").add(np.ones((2, 6)), ids=[1, 2])
    with vecstore.connect(path) as client:
        assert client.get_database("app").get_collection("none").shape == (2, 6)


@pytest.mark.parametrize("fail", ["rows", "config"])
def test_the_dim_and_the_first_rows_are_one_transaction(tmp_path, monkeypatch, fail):
    """A failure of either half of the first write leaves neither: no rows and dim 0, in the
    mirror and after reopening (it would not if the dim had its own transaction)."""
    path = tmp_path / "store"
    client = vecstore.connect(path)
    col = client.create_database("app").create_collection("c")

    class Boom(Exception):
        pass

    real_rows, real_meta = storage.Txn.put_rows, storage.Txn.put_meta

    def put_rows(self, *a, **kw):
        if fail == "rows":
            raise Boom()
        return real_rows(self, *a, **kw)

    def put_meta(self, key, value):
        if fail == "config" and key == "config" and value.get("dim"):
            raise Boom()
        return real_meta(self, key, value)

    monkeypatch.setattr(storage.Txn, "put_rows", put_rows)
    monkeypatch.setattr(storage.Txn, "put_meta", put_meta)
    with pytest.raises(Boom):
        col.add(np.ones((2, 4)), ids=[1, 2])
    assert (col.dim, col.shape) == (0, (0, 0))
    monkeypatch.undo()
    client.close()
    with vecstore.connect(path) as client:
        col = client.get_database("app").get_collection("c")
        assert (col.dim, col.shape, col.version) == (0, (0, 0), 0)
        col.add(np.ones((1, 2)), ids=[1])
        assert col.dim == 2


def test_export_and_snapshot_of_a_dimless_collection(tmp_path):
    with vecstore.connect(tmp_path / "store") as client:
        db = client.create_database("app")
        db.create_collection("none")
        db.import_collection("imported", db.export_collection("none", tmp_path / "exp"))
        db.restore_collection("restored", db.snapshot_collection("none", tmp_path / "none.snap"))
        for name in ("imported", "restored"):
            col = db.get_collection(name)
            assert col.dim == 0
            col.add(np.ones((1, 3)), ids=[1])
            assert col.dim == 3


def test_concurrent_first_writes_agree_on_one_dim(tmp_path):
    """Threads race to write the first vectors, with different dims: each write was validated
    against dim 0, so ``_commit`` must re-check under the write lock. Exactly the writes of the
    winning dim are stored; the others get DimensionMismatchError and store nothing."""
    import threading
    col = vecstore.connect(tmp_path).create_database("app").require_collection("race")
    barrier = threading.Barrier(6)
    outcome: dict[int, str] = {}

    def write(i: int) -> None:
        d = 3 + i % 2   # three writers of dim 3, three of dim 4
        barrier.wait()
        try:
            col.add(np.ones((5, d), np.float32), ids=list(range(10 * i, 10 * i + 5)))
            outcome[i] = f"ok{d}"
        except DimensionMismatchError:
            outcome[i] = f"refused{d}"
    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = col.dim
    assert won in (3, 4)
    assert sorted(outcome.values()) == sorted([f"ok{won}"] * 3 + [f"refused{7 - won}"] * 3)
    assert col.shape == (15, won)
    assert col.search(np.ones(won), k=20).ids and len(col.search(np.ones(won), k=20).ids) == 15


@pytest.mark.parametrize("bad", ["abc", 0, -1, 2.5, True, 70_000])
def test_a_bad_dim_is_refused_before_drop_if_exists_drops_anything(db, bad):
    col = db.require_collection("kept", dim=4)
    col.add(np.eye(4), ids=[1, 2, 3, 4])
    with pytest.raises(InvalidArgumentError, match="dim"):
        db.require_collection("kept", dim=bad, drop_if_exists=True)
    assert db.get_collection("kept").shape == (4, 4)


@pytest.mark.parametrize("bad", [None, "bogus", 5])
def test_a_bad_metric_is_refused_before_drop_if_exists_drops_anything(db, bad):
    """The collection is made again after the drop, so its metric is checked first: a bad one
    used to drop the collection and then fail."""
    col = db.require_collection("kept", dim=4)
    col.add(np.eye(4), ids=[1, 2, 3, 4])
    with pytest.raises(InvalidArgumentError, match="metric"):
        db.require_collection("kept", dim=4, metric=bad, drop_if_exists=True)
    assert db.get_collection("kept").shape == (4, 4)
