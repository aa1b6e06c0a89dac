"""Filtered search keeps its recall at every selectivity, for every index: recall@10 against
exact filtered brute force at 0.1%, 1%, 10% and 50% of the rows; never fewer than k hits when k
allowed rows exist."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import clustered

N, DIM = 20_000, 32


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    import vecstore
    client = vecstore.connect(tmp_path_factory.mktemp("filtered"))
    x = clustered(N, DIM, clusters=50, seed=21)
    rng = np.random.default_rng(5)
    bucket = rng.integers(0, 1000, N)
    db = client.create_database("app")
    cols = {}
    for mode in ("FLAT", "HNSW", "IVF"):
        col = db.require_collection(mode.lower(), dim=DIM, metric="l2")
        col.add(x, fields=[{"bucket": int(b), "even": bool(b % 2 == 0)} for b in bucket])
        if mode != "FLAT":
            col.build_index(f"{mode}-L2")
        cols[mode] = col
    yield x, bucket, cols
    client.close()


@pytest.mark.parametrize("mode", ["FLAT", "HNSW", "IVF"])
@pytest.mark.parametrize("limit", [1, 10, 100, 500])   # 0.1%, 1%, 10%, 50%
def test_filtered_recall(populated, mode, limit):
    x, bucket, cols = populated
    col = cols[mode]
    allowed = np.flatnonzero(bucket < limit)
    # queries from the data's own distribution (near stored rows), as real queries are
    rng = np.random.default_rng(77)
    queries = x[rng.choice(N, 30, replace=False)] + 0.05 * rng.standard_normal((30, DIM)).astype(np.float32)
    hits = 0
    for q in queries:
        d = ((x[allowed] - q) ** 2).sum(1)
        truth = set(allowed[np.argsort(d, kind="stable")[:10]].tolist())
        got = col.search(q, k=10, where=f"bucket < {limit}")
        assert len(got) == 10  # k allowed rows exist: never fewer than k
        assert all(bucket[i] < limit for i in got.ids)
        hits += len(truth & set(got.ids))
    assert hits / (10 * len(queries)) >= 0.95


@pytest.mark.parametrize("mode", ["HNSW", "IVF"])
def test_fewer_allowed_rows_than_k(populated, mode):
    x, bucket, cols = populated
    allowed = np.flatnonzero(bucket == 7)[:3]
    where = "id IN (" + ", ".join(str(int(i)) for i in allowed) + ")"
    got = cols[mode].search(x[0], k=10, where=where)
    assert sorted(got.ids) == sorted(allowed.tolist())
