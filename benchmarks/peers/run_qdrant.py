"""qdrant-client local mode (``QdrantClient(path=...)``, no server): Euclid distance,
``upload_collection`` in batches, ``query_points`` single, ``query_batch_points`` batch,
``query_filter`` with a ``Range`` on the payload field. Local mode has no HNSW (it scans), so
there is nothing to sweep. Runs in benchmarks/.peers/qdrant."""

from __future__ import annotations

import time
from importlib.metadata import version

import numpy as np
from qdrant_client import QdrantClient, models

from _common import Data, Timer, disk_bytes, emit, filtered_runs, log, parse_args, point, single_queries

NAME = "c"


def main() -> None:
    a = parse_args()
    data = Data(a.data, a.mode)
    client = QdrantClient(path=a.workdir)
    cap = float(a.params.get("max_ingest_s", 180))
    with Timer() as t_build:
        client.create_collection(NAME, vectors_config=models.VectorParams(size=data.dim, distance=models.Distance.EUCLID))
        t0 = time.perf_counter()
        for s in range(0, data.n, 1000):
            e = min(s + 1000, data.n)
            payloads = [{"bucket": int(b)} for b in data.bucket[s:e]] if data.bucket is not None else None
            client.upsert(NAME, models.Batch(ids=list(range(s, e)), vectors=data.base[s:e].tolist(), payloads=payloads))
            if time.perf_counter() - t0 > cap and e < data.n:
                took = time.perf_counter() - t0
                emit({"system": "qdrant-local", "version": version("qdrant-client"),
                      "error": f"ingest too slow: {e:,} of {data.n:,} points in {took:.0f}s "
                               f"({e / took:.0f} points/s; local mode commits each point to SQLite "
                               f"and grows its arrays per point); stopped at the {cap:.0f}s cap"})
                return
        client.query_points(NAME, query=data.queries[0].tolist(), limit=10)
    log(f"qdrant-local: build {t_build.s:.2f}s")
    out = {"system": "qdrant-local", "version": version("qdrant-client"), "ingest_s": t_build.s, "index_s": 0.0,
           "build_s": t_build.s}

    def one(q, flt=None):
        r = client.query_points(NAME, query=q.tolist(), limit=10, query_filter=flt)
        return [pt.id for pt in r.points]

    def batch(qs):
        rs = client.query_batch_points(NAME, [models.QueryRequest(query=q.tolist(), limit=10) for q in qs])
        return [[pt.id for pt in r.points] for r in rs]

    if a.mode == "filtered":
        flts = {t: models.Filter(must=[models.FieldCondition(key="bucket", range=models.Range(lt=t))])
                for t in (1, 10, 100, 500)}
        out["filtered"] = filtered_runs(lambda q, t: one(q, flts[t]), one, data, a.budget, a.min_queries)
        client.close()
        emit(out)
        return
    lat, res = single_queries(one, data.queries, a.budget, a.min_queries)
    pt = point(None, lat, res, data.gt, batch, data.queries)
    log(f"  recall {pt['recall']:.4f} qps {pt['qps']:.0f} batch {pt['batch_qps']:.0f}")
    out["sweep"] = [pt]
    client.close()
    out["disk_bytes"] = disk_bytes(a.workdir)
    t = time.perf_counter()
    client = QdrantClient(path=a.workdir)
    client.query_points(NAME, query=data.queries[0].tolist(), limit=10)
    out["reopen_s"] = time.perf_counter() - t
    client.close()
    emit(out)


if __name__ == "__main__":
    main()
