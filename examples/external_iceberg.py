"""An external collection kept in sync with an Apache Iceberg table: the table is written with
pyiceberg (a SQLite catalog and a local warehouse), vecstore mirrors it read-only, and each
refresh job picks up only what changed (an append, then a delete).

    python examples/external_iceberg.py [DATA_DIR]

Everything lives in DATA_DIR/external-example, which is recreated on each run.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

import vecstore

root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()) / "external-example"
shutil.rmtree(root, ignore_errors=True)
lake = root / "lake"
lake.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def books(start: int, n: int) -> pa.Table:
    ids = np.arange(start, start + n)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    return pa.table({"book_id": pa.array(ids, pa.int64()),
                     "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 16),
                     "title": [f"book {i}" for i in ids], "year": pa.array(1950 + ids % 70, pa.int32())})


# 1. the source: an Iceberg table (catalog "lake", table "library.books")
catalog = SqlCatalog("lake", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}/warehouse")
catalog.create_namespace_if_not_exists("library")
table = catalog.create_table_if_not_exists("library.books", schema=books(0, 1).schema)
table.append(books(0, 5000))

source = {"type": "iceberg", "catalog": {"type": "sql", "name": "lake", "uri": f"sqlite:///{lake}/catalog.db",
                                         "warehouse": f"file://{lake}/warehouse"},
          "table": "library.books"}
spec = {"primaryKey": "book_id", "vector": {"externalField": "embedding", "metric": "cosine"},
        "fields": ["title", "year"]}

with vecstore.connect(root / "store") as client:
    db = client.create_database("app")
    ext = db.create_external_collection("books", source, spec)

    # 2. the first refresh loads the table; later ones read only the changes
    job = db.wait_refresh_job(db.refresh_external_collection("books"), timeout=120)
    print(job.to_zilliz()["state"], job.stats["mode"], "rows:", len(ext))

    table.append(books(5000, 500))
    job = db.wait_refresh_job(db.refresh_external_collection("books"), timeout=120)
    print(job.to_zilliz()["state"], job.stats["mode"], "inserted:", job.stats["rowsInserted"], "rows:", len(ext))

    table.delete("year < 1960")
    job = db.wait_refresh_job(db.refresh_external_collection("books"), timeout=120)
    print(job.to_zilliz()["state"], job.stats["mode"], "deleted:", job.stats["rowsDeleted"], "rows:", len(ext))

    # 3. every read works; writes are refused
    hits = ext.search(rng.standard_normal(16), k=3, where="year >= 2000", return_fields=True)
    for i, score, fields in zip(*hits):
        print(f"id={i:>5}  distance={score:.4f}  {fields}")
    try:
        ext.delete_items([1])
    except vecstore.ReadOnlyError as e:
        print("refused:", e)
    print([(j.job_id, j.state) for j in db.list_refresh_jobs("books")])
