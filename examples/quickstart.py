"""A first tour of vecstore: a collection of 10,000 clustered vectors with metadata, exact and
filtered search, deletes, and reopening the folder.

    python examples/quickstart.py [DATA_DIR]
"""

import sys
import tempfile

import numpy as np

import vecstore

root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
rng = np.random.default_rng(0)
centres = rng.standard_normal((20, 64)).astype(np.float32)
vectors = centres[rng.integers(0, 20, 10_000)] + 0.1 * rng.standard_normal((10_000, 64)).astype(np.float32)

with vecstore.connect(root) as client:
    db = client.create_database("app")
    col = db.require_collection("items", dim=64, metric="cosine", description="quickstart")
    if col.shape[0] == 0:
        col.add(vectors, fields=[{"lang": ("en", "de")[i % 2], "rank": i % 10} for i in range(10_000)])
    hits = col.search(vectors[42], k=5, where="lang = 'en' AND rank >= 5", return_fields=True)
    for i, score, fields in zip(*hits):
        print(f"id={i:>5}  distance={score:.4f}  {fields}")
    col.delete_items([hits.ids[0]])
    print("after delete:", col.search(vectors[42], k=3).ids, "deleted:", col.list_deleted_ids()[:3])
    col.restore_items([hits.ids[0]])

with vecstore.connect(root) as client:  # reopening needs no arguments
    col = client.get_database("app").get_collection("items")
    print("reopened:", col.shape, col.stats().index_mode)
