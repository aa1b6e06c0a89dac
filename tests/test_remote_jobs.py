"""The job API of the remote client: external-collection and materialized-view refreshes driven
over HTTP (the Zilliz and Lance routes), against a live server on a real Iceberg table."""

from __future__ import annotations


import numpy as np
import pytest

import vecstore
from vecstore import functions
from iceberg_util import Lake
from live_server import start_server

SPEC = {"primaryKey": "id", "vector": {"externalField": "vec", "metric": "cosine"}}


@pytest.fixture
def served(tmp_path):
    """A server over a folder, plus the server process's own client (to create what has no
    HTTP route: external collections and views are defined where their sources live)."""
    data = tmp_path / "served"
    backing = vecstore.connect(data)
    server = start_server(data, backing)
    try:
        yield backing, vecstore.connect(server.url)
    finally:
        server.stop()
        backing.close()


def test_external_collection_refreshed_remotely(served, tmp_path):
    backing, remote = served
    lake = Lake(tmp_path / "lake")
    lake.create_table("docs", dim=8, rows=50)
    backing.create_database("app").create_external_collection("ext", lake.source("docs"), SPEC)
    db = remote.get_database("app")
    job_id = db.refresh_external_collection("ext")
    for bad in ("5", float("nan"), 10**400, -1):  # as locally (tests/test_jobs.py)
        with pytest.raises(vecstore.InvalidArgumentError, match="timeout"):
            db.wait_refresh_job(job_id, timeout=bad)
    job = db.wait_refresh_job(job_id, timeout=60, raise_on_failure=True)
    assert (job.state, job.progress, job.collection_name, job.kind) == ("COMPLETED", 100, "ext", "external_refresh")
    assert job.end_time >= job.start_time > 0
    col = db.get_collection("ext")
    assert col.shape == (50, 8) and col.kind == "external"
    assert col.search(np.ones(8), k=3).index.startswith("HNSW")
    assert [j.job_id for j in db.list_refresh_jobs("ext")] == [job_id]
    assert db.cancel_refresh_job(job_id).state == "COMPLETED"   # a finished job stays as it is
    with pytest.raises(vecstore.InvalidArgumentError):
        db.refresh_external_collection("ext", external_source=lake.source("docs"))  # spec missing
    with pytest.raises(vecstore.NotFoundError):
        db.describe_refresh_job(12345)
    with pytest.raises(vecstore.ReadOnlyError):
        col.add_item(np.ones(8), id=10_000)


def test_materialized_view_refreshed_remotely(served):
    backing, remote = served

    def words(text, size=2):
        w = text.split()
        return [" ".join(w[i:i + size]) for i in range(0, len(w), size)]

    def embed(texts):
        return np.stack([[len(t), t.count(" ") + 1.0, 1.0] for t in texts]).astype(np.float32)

    functions.register_chunker("remote_words", words, version="1")
    functions.register_udf("remote_embed", embed, version="1", dim=3)
    try:
        local = backing.create_database("app")
        docs = local.require_collection("docs", dim=2)
        docs.add([[1, 0], [0, 1]], ids=[1, 2], fields=[{"body": "a b c d"}, {"body": "e f"}])
        local.create_materialized_view("chunks", source="docs", definition={
            "kind": "chunker", "chunker": {"name": "remote_words", "input": "body"},
            "udfs": [{"name": "remote_embed", "inputs": ["chunk_text"], "output": "embedding"}],
            "vectorField": "embedding", "metric": "l2"})
        db = remote.get_database("app")
        job = db.wait_refresh_job(db.refresh_materialized_view("chunks"), timeout=60, raise_on_failure=True)
        assert (job.state, job.kind) == ("COMPLETED", "mv_refresh")  # the kind the library gives
        with pytest.raises(TypeError):
            db.refresh_materialized_view("chunks", bogus=1)  # as locally: no job started
        assert db.get_collection("chunks").shape == (3, 3)       # "a b", "c d", "e f"
        assert db.get_collection("chunks").kind == "view" and db.list_materialized_views() == ["chunks"]
        with pytest.raises(vecstore.NotFoundError):
            db.refresh_materialized_view("no_such_view")
        with pytest.raises(vecstore.InvalidArgumentError):
            db.refresh_materialized_view("chunks", src_version=10**6)
    finally:
        functions.unregister("remote_words")
        functions.unregister("remote_embed")


FUNCTIONS_MODULE = '''
import numpy as np
from vecstore import functions

def words(text, size=2):
    w = text.split()
    return [" ".join(w[i:i + size]) for i in range(0, len(w), size)]

functions.register_chunker("cli_words", words, version="1")
functions.register_udf("cli_embed", lambda texts: np.stack([[len(t), 1.0] for t in texts]), version="1", dim=2)
'''


def test_server_functions_flag_lets_a_view_refresh_over_http(tmp_path):
    """`python -m vecstore.server --functions my_functions.py`: the view's chunker and UDF are
    registered in the server process, where its refresh runs (without them every refresh over
    HTTP failed with "function ... is not registered")."""
    import socket
    import subprocess
    import sys
    import time
    module = tmp_path / "my_functions.py"
    module.write_text(FUNCTIONS_MODULE)
    data = tmp_path / "data"
    namespace: dict = {}
    exec(FUNCTIONS_MODULE, namespace)  # registered here too, to define the view  # noqa: S102
    try:
        with vecstore.connect(data) as local:
            db = local.create_database("app")
            db.require_collection("docs", dim=2).add([[1, 0], [0, 1]], ids=[1, 2],
                                                     fields=[{"body": "a b c d"}, {"body": "e f"}])
            db.create_materialized_view("chunks", source="docs", definition={
                "kind": "chunker", "chunker": {"name": "cli_words", "input": "body"},
                "udfs": [{"name": "cli_embed", "inputs": ["chunk_text"], "output": "e"}],
                "vectorField": "e", "metric": "l2"})
    finally:
        functions.unregister("cli_words")
        functions.unregister("cli_embed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vecstore.server", "--data", str(data), "--port", str(port),
                               "--functions", str(module)], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            try:
                remote = vecstore.connect(f"http://127.0.0.1:{port}")
                break
            except vecstore.VecstoreError:
                time.sleep(0.05)
        db = remote.get_database("app")
        job = db.wait_refresh_job(db.refresh_materialized_view("chunks"), timeout=60)
        assert job.state == "COMPLETED", job.reason
        assert db.get_collection("chunks").shape == (3, 2)
    finally:
        server.terminate()
        server.wait(30)
    bad = subprocess.run([sys.executable, "-m", "vecstore.server", "--data", str(tmp_path / "d2"), "--port", "0",
                          "--functions", "no_such_module_here"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "--functions no_such_module_here: ModuleNotFoundError" in bad.stderr
