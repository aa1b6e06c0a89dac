"""Drive a server with the real LynseDB 0.9.0 (HEAD-era) Python client: every operation it has.

Run it with the Python that has ``lynsedb==0.9.0`` installed (a 3.12 venv, see
``shared/research/lynse_api.md`` §6, §11), against a running server::

    .peers/lynse090/bin/python tests/server/lynse_head_smoke.py http://127.0.0.1:7637 \
        [--api-key KEY] [--backup-dir DIR]

``--backup-dir`` is a folder *on the server* for snapshots and exports (for vecstore: its data
folder or a ``--backup-dir``); without it the paths are relative names, which vecstore
resolves inside its data folder. ``--reference`` skips the few checks of behaviour vecstore adds
(for a run against LynseDB's own 0.9.0 server). Prints one line per check, then
``N passed, M failed``; exits non-zero when a check failed. It also passes against LynseDB's own
0.9.0 server (``python -m lynse.server serve --port P --data-dir D`` from the same environment,
with ``--reference --backup-dir``), which is how the checks themselves were validated.

The 0.9.0 client talks through a Rust HTTP client (``lynse._core.RemoteHttpClient``) and has no
httpx, so the few raw requests here use ``urllib``. Which wire path each client call takes is
noted per check (lynse_api §5.5, §6): integer ids write through ``/add_records_binary`` and
``/upsert_records_binary``, string ids through JSON ``/add`` and ``/upsert``; ``add(vectors=...)``
without ids goes through ``/bulk_add_binary``, after which (on a collection that was empty) the
client reads through ``/search_binary`` and ``/batch_search_binary``; otherwise reads are JSON.

Client methods deliberately not exercised (they cannot work against a server other than
LynseDB's own, or are not HTTP at all):

* ``HTTPClient.set_environment`` / ``get_environment``: settings of the local Rust engine;
  LynseDB's own servers (0.2.0 and 0.9.0) answer 404 too (lynse_api §3).
* The cluster-mode branches of ``add``/``upsert``/``search``/``batch_search``
  (``/add_binary_ids``, ``/upsert_binary``, ``bulk_add_binary?return_ids=true``): taken only
  when ``/required_collection`` returns a config with ``integer_id_routing``, i.e. a LynseDB
  cluster router. A single server is not a cluster; the client's ``GET /cluster_info`` probe
  gets 404, which is checked.
* ``VectorDBClient`` local mode (a path instead of a URL): the in-process Rust engine, no HTTP.
* Embedding with LynseDB's default model (``documents=`` without ``embed_func``): downloads a
  model client-side; the ``embed_func`` variant, which is the same wire call, is checked.

Where vecstore differs from LynseDB's 0.9.0 server by design, the smoke does not check (nor
count) LynseDB's behaviour, and says so at the place:

* soft-deleted ids are gone for every read, ``is_id_exists`` included (LynseDB still reports
  them outside the search family; lynse_api §10).

Only the standard library, numpy and the ``lynse`` client are used.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

import numpy as np

import lynse
from lynse.api.http_api.client_api import ExecutionError
from smoke_base import E0, ROWS, SmokeBase, check_close, check_raises
from smoke_base import check_eq as _eq
from smoke_base import check_true as _true
from smoke_base import main as smoke_main

E1 = [0.0, 1.0, 0.0, 0.0]


class Raw:
    """Minimal HTTP for the checks the client cannot make itself (status codes, system paths)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url
        self.api_key = api_key

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True,
                params: dict | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        hdrs = dict(headers or {})
        data = None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
            hdrs.setdefault("Content-Type", "application/octet-stream")
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if auth and self.api_key:
            hdrs.setdefault("Authorization", f"Bearer {self.api_key}")
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_json(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, _, body = self.request("GET", path, **kw)
        return status, _json(body)

    def post_json(self, path: str, body: dict, **kw: Any) -> tuple[int, Any]:
        status, _, out = self.request("POST", path, body, **kw)
        return status, _json(out)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


class Smoke(SmokeBase):
    prefix = 'smoke090'

    def __init__(self, url: str, api_key: str | None, backup_dir: str | None, reference: bool = False) -> None:
        super().__init__(url, api_key, backup_dir, reference)
        self.raw = Raw(self.url, api_key)

    # -- helpers ---------------------------------------------------------------------------

    def post(self, path: str, body: dict) -> dict:
        status, rj = self.raw.post_json(path, body)
        assert status == 200, (status, rj)
        return rj

    def names(self, collection: str = "items") -> dict:
        return {"database_name": self.s["db_name"], "collection_name": collection}

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        s = self.s
        s["db_name"] = f"smoke090_{self.tag}"
        s["db2_name"] = f"smoke090_{self.tag}_restored"
        s["db3_name"] = f"smoke090_{self.tag}_oneshot"
        raw = self.raw

        # connection and system paths
        def connect():
            s["client"] = lynse.VectorDBClient(self.url, api_key=self.api_key)  # GET /list_databases only
            _eq(lynse.__version__, "0.9.0")
        self.step("connect (GET /list_databases)", connect)
        if "client" not in s:
            return self.finish()
        if self.api_key:
            self.step("connect with a wrong key raises ConnectionError", lambda: _raises(
                lambda: lynse.VectorDBClient(self.url, api_key=self.api_key + "x"), ConnectionError))
            def no_key():
                status, rj = raw.get_json("/list_databases", auth=False)
                _eq((status, rj["error"]), (401, "Unauthorized"))
            self.step("no key -> 401 JSON error", no_key)

            def basic_auth():
                token = base64.b64encode(f"anyone:{self.api_key}".encode()).decode()
                _eq(raw.get_json("/list_databases", auth=False, headers={"Authorization": f"Basic {token}"})[0], 200)
            self.step("Basic auth (password = key) accepted", basic_auth)
        self.step("GET /healthz (public)", lambda: _eq(raw.get_json("/healthz", auth=False)[1]["status"], "ok"))
        self.step("GET /readyz (public)", lambda: _eq(raw.get_json("/readyz", auth=False)[1]["status"], "ready"))
        self.step("GET /openapi.json", lambda: _true(
            {"/add", "/bm25_search", "/write_blob"} <= set(raw.get_json("/openapi.json")[1]["paths"])))
        self.step("GET /metrics", lambda: _eq(raw.request("GET", "/metrics")[0], 200))
        self.step("GET /cluster_info -> 404 (not a cluster)", lambda: _eq(raw.request("GET", "/cluster_info")[0], 404))

        # databases
        def create_db():
            s["db"] = s["client"].create_database(s["db_name"], drop_if_exists=True)
            _eq(s["db"].database_name, s["db_name"])
        self.step("create_database", create_db)
        if "db" not in s:
            return self.finish()
        self.step("list_databases", lambda: _true(s["db_name"] in s["client"].list_databases()))
        self.step("database_exists", lambda: _true(self.db.database_exists()["params"]["exists"]))
        self.step("get_database", lambda: _eq(s["client"].get_database(s["db_name"]).database_name, s["db_name"]))
        self.step("get_database on a missing one raises", lambda: _raises(
            lambda: s["client"].get_database(s["db_name"] + "_nope"), ValueError))
        self.step("invalid database name -> 400", lambda: _eq(
            raw.post_json("/create_database", {"database_name": "../evil"})[0], 400))

        # collection lifecycle
        def require():
            s["coll"] = self.db.require_collection("items", dim=4, description="smoke")  # default_index FLAT-IP
            _eq(self.c.exists(), True)
        self.step("require_collection (is_collection_exists + required_collection)", require)
        if "coll" not in s:
            return self.finish()
        self.step("index_mode of a new, empty collection is null", lambda: _eq(self.c.index_mode, None))
        self.step("require_collection again (dim=None, existing)", lambda: _eq(
            self.db.require_collection("items")._default_index, None))  # existed: no default index
        self.step("show_collections", lambda: _true("items" in self.db.show_collections()))
        self.step("get_collection (is_collection_exists + config)", lambda: _eq(
            self.db.get_collection("items")._init_params["dim"], 4))
        self.step("get_collection on a missing one raises", lambda: _raises(lambda: self.db.get_collection("nope")))

        def missing_db_is_404():
            status, rj = raw.post_json("/stats", {"database_name": s["db_name"] + "_nope", "collection_name": "x"})
            _eq((status, rj.get("code")), (404, "not_found"))
        self.step("missing database -> 404 not_found (HEAD mapping)", missing_db_is_404)

        # LynseDB 0.9.0 creates a missing collection on any collection call (shape [0, 0]).
        self.step("missing collection -> 404 not_found", lambda: _eq(tuple(
            (lambda st, rj: (st, rj.get("code")))(*raw.post_json("/collection_shape", self.names("nope")))),
            (404, "not_found")), extension=True)

        # writes: integer ids go through /add_records_binary, string ids through /add
        def add_binary():
            ids = [r[0] for r in ROWS[:4]]
            got = self.c.add(ids, vectors=[r[1] for r in ROWS[:4]], fields=[r[2] for r in ROWS[:4]])
            _eq(got, [0, 1, 2, 3])
            _eq(self.c.read_by_only_id(2).fields[0]["title"], "blue sky")
        self.step("add int ids + fields (/add_records_binary)", add_binary)
        self.step("default index FLAT-IP built after the first write", lambda: _eq(self.c.index_mode, "FLAT-IP"))

        def add_one():
            rid, vec, field = ROWS[4]
            _eq(self.c.add(rid, vectors=vec, fields=field), 4)  # one id -> one id back
            _eq(self.c.read_by_only_id(4).fields[0]["lang"], "en")
        self.step("add one int id (/add_records_binary)", add_one)
        self.step("add an existing id raises", lambda: _raises(lambda: self.c.add([1], vectors=[E0])))
        self.step("add with a wrong dimension raises", lambda: _raises(lambda: self.c.add([77], vectors=[[1.0, 0.0]])))

        def session():
            rid, vec, field = ROWS[5]
            with self.c.insert_session() as sess:
                _eq(sess.add(rid, vectors=vec, fields=field), rid)  # buffered client-side
                _eq(self.c.shape, (5, 4))
            _eq(self.c.shape, (6, 4))  # written (/add_records_binary) and committed on exit
        self.step("insert_session (buffered add + commit on exit)", session)

        def commit():
            rj = self.c.commit()  # COMMIT_FLAG was set by the session: answered client-side
            _eq(rj["params"]["status"], "Success")
            self.c.COMMIT_FLAG = False
            rj = self.c.commit()  # now POST /commit
            _eq((rj["params"]["status"], rj["params"]["result"]["collection_name"]), ("Success", "items"))
        self.step("commit (POST /commit)", commit)

        def upsert_binary():
            _eq(self.c.upsert([5], vectors=[[0.0, 0.0, 0.6, 0.6]], fields=[ROWS[5][2]]), [5])
            r = self.c.read_by_only_id(5)
            _close(r.vectors, [0.0, 0.0, 0.6, 0.6])
        self.step("upsert int ids + fields (/upsert_records_binary)", upsert_binary)

        def upsert_keeps():
            _eq(self.c.upsert(5, vectors=[0.0, 0.0, 0.5, 0.5]), 5)  # fields=None keeps the old ones
            r = self.c.read_by_only_id(5)
            _close(r.vectors, ROWS[5][1])
            _eq(r.fields[0]["title"], "fast car")
        self.step("upsert without fields keeps them", upsert_keeps)

        def upsert_new():
            _eq(self.c.upsert([6], vectors=[[0.1, 0.1, 0.1, 0.1]], fields=[{"lang": "xx", "n": 6, "title": "six",
                                                                            "tags": []}]), [6])
            _eq(self.c.shape, (7, 4))
        self.step("upsert a new int id inserts it", upsert_new)
        self.step("shape", lambda: _eq(self.c.shape, (7, 4)))
        self.step("max_id", lambda: _eq(self.c.max_id, 6))

        def stats():
            st = self.c.stats()
            _eq((st["n_vectors"], st["n_live"], st["dimension"], st["max_id"], st["n_tombstoned"]), (7, 7, 4, 6, 0))
            _eq(st["index_mode"], "FLAT-IP")
        self.step("stats", stats)
        self.step("list_fields", lambda: _true({"lang", "n", "title", "tags"} <= set(self.c.list_fields())))
        self.step("is_id_exists", lambda: _eq((self.c.is_id_exists(3), self.c.is_id_exists(999)), (True, False)))

        # blobs (HEAD only, lynse_api §4.8)
        def blobs():
            payload = bytes(range(256)) * 3
            _eq(self.c.write_blob("model/params.bin", payload), {"status": "success"})
            _eq(self.c.read_blob("model/params.bin"), payload)
            _eq(self.c.read_blob_range("model/params.bin", 10, 5), payload[10:15])
            _eq(self.c.read_blob_range("model/params.bin", 700), payload[700:])
            _eq(self.c.read_blob_range("model/params.bin", 760, 100), payload[760:])
            _eq(self.c.read_blob_range("model/params.bin", 768), b"")  # offset == length
            # (offset > length: LynseDB answers 400, vecstore an empty range; not checked)
            self.c.write_blob("model/params.bin", b"v2")  # replaces
            _eq(self.c.read_blob("model/params.bin"), b"v2")
        self.step("write_blob / read_blob / read_blob_range", blobs)
        self.step("read_blob of a missing key is None (204)", lambda: _eq(
            (self.c.read_blob("nope"), self.c.read_blob_range("nope", 1, 1)), (None, None)))

        def delete_blob():
            self.c.write_blob("tmp", b"x")
            _eq(self.c.delete_blob("tmp"), True)
            _eq(self.c.read_blob("tmp"), None)
            _eq(self.c.delete_blob("never-written"), False)
        self.step("delete_blob", delete_blob)
        # LynseDB 0.9.0 answers deleted=true for a key deleted before (the client's doc: "whether
        # they existed").
        self.step("delete_blob of a deleted key is False", lambda: _eq(self.c.delete_blob("tmp"), False),
                  extension=True)
        self.step("read_blob raw: 204 with an empty body", lambda: _eq(raw.request(
            "GET", "/read_blob", params={**self.names(), "key": "nope"})[0::2], (204, b"")))

        # search and retrieval (JSON paths: these ids were written with explicit ids)
        def search():
            r = self.c.search(E0, k=3)
            _eq(r.ids.tolist()[:2], [0, 4])
            _close(r.distances[:2], [1.0, 0.5])
            _eq(r.distance_metric, "IP")
        self.step("search (JSON /search, IP descending)", search)

        def search_where_fields():
            r = self.c.search(E0, k=10, where="lang = 'en'", return_fields=True)
            _eq(set(r.ids.tolist()), {0, 2, 4})
            _eq(r.fields[0]["title"], "apple pie")
            _true(all("id" not in f for f in r.fields))
            _eq(self.c.search(E0, k=10, where="tags CONTAINS 'b'").ids.tolist(), [0, 1])
        self.step("search where + return_fields", search_where_fields)

        def search_reranked():
            seen = {}

            def rerank(payload):
                seen.update(payload)
                return list(reversed([item["id"] for item in payload["items"]]))
            r = self.c.search(E0, k=2, reranker=rerank, rerank_with_fields=True)
            _eq(r.ids.tolist(), [4, 0])
            _eq(seen["items"][0]["field"]["title"], "apple pie")  # fields fetched for the reranker
        self.step("search with a client-side reranker", search_reranked)

        def search_document():
            r = self.c.search(document="anything", embed_func=lambda docs: [E1 for _ in docs], k=1)
            _eq(r.ids.tolist(), [1])
        self.step("search(document=, embed_func=)", search_document)

        def batch():
            rs = self.c.batch_search(np.array([E0, E1], np.float32), k=2, return_fields=True)
            _eq([r.ids.tolist() for r in rs], [[0, 4], [1, 4]])
            _eq(rs[1].fields[0]["title"], "apple strudel")
        self.step("batch_search (JSON /batch_search)", batch)

        def query():
            r = self.c.query(where="n >= 4")
            _eq(sorted(r.ids.tolist()), [4, 5, 6])
            _eq(sorted(f["n"] for f in r.fields), [4, 5, 6])
            _eq(sorted(self.c.query(filter_ids=[1, 2]).ids.tolist()), [1, 2])
            _eq(sorted(self.c.query(where="lang = 'de'", return_ids_only=True).ids.tolist()), [1, 5])
            _eq(len(self.c.query()), 0)  # neither: answered client-side
        self.step("query (where, filter_ids, return_ids_only)", query)

        def query_vectors():
            r = self.c.query_vectors(where="lang = 'fr'")
            _eq(r.ids.tolist(), [3])
            _close(r.vectors, ROWS[3][1])
            _eq(r.fields[0]["title"], "green apple")
            _eq(sorted(self.c.query_vectors(filter_ids=[0, 2]).ids.tolist()), [0, 2])
        self.step("query_vectors (where, filter_ids)", query_vectors)

        def head_tail():
            h, t = self.c.head(2), self.c.tail(2)
            _eq(h.ids.tolist(), [0, 1])
            _eq(np.asarray(h.vectors).shape, (2, 4))
            _close(h.vectors[1], E1)
            _eq(h.fields[0]["lang"], "en")
            _eq(t.ids.tolist(), [5, 6])
            _eq(t.fields[1]["title"], "six")
        self.step("head / tail (JSON)", head_tail)

        def read_by_id():
            r = self.c.read_by_only_id(1)
            _eq(r.ids.tolist(), [1])
            _close(r.vectors, ROWS[1][1])
            _eq(r.fields[0]["title"], "apple strudel")
            _eq(self.c.read_by_only_id([2, 3]).ids.tolist(), [2, 3])
            _raises(lambda: self.c.read_by_only_id(999))  # HEAD: unknown id is an error
        self.step("read_by_only_id (one, many, unknown raises)", read_by_id)

        def bm25():
            r = self.c.bm25_search("apple", k=10, return_fields=True)
            _eq(set(r.ids.tolist()), {0, 1, 3})
            _true(all(float(x) > 0 for x in r.distances))
            _true(list(r.distances) == sorted(r.distances, reverse=True))
            _true(all("apple" in f["title"] for f in r.fields))
            _eq(self.c.bm25_search("apple", text_fields=["lang"]).ids.tolist(), [])
            _eq(self.c.bm25_search("apple", where="lang = 'de'").ids.tolist(), [1])
        self.step("bm25_search (/bm25_search)", bm25)

        def hybrid():
            r = self.c.hybrid_search(E0, "apple", k=3)
            _eq(int(r.ids[0]), 0)
            _eq(r.index_type, "HYBRID-RRF")
            w = self.c.hybrid_search(E0, "apple", k=3, fusion="weighted", vector_weight=0.7, text_weight=0.3)
            _eq(w.ids.tolist()[0], 0)
            _eq(w.index_type, "HYBRID-WEIGHTED")
            _eq(int(self.c.hybrid_search(text="strudel", k=1).ids[0]), 1)
            _eq(int(self.c.hybrid_search(vector=E1, k=1).ids[0]), 1)
        self.step("hybrid_search (rrf, weighted, text only, vector only)", hybrid)

        def search_range():
            r = self.c.search_range(E0, 0.4)
            _eq(sorted(r.ids.tolist()), [0, 4])
            _eq(len(self.c.search_range(E0, 0.4, max_results=1).ids), 1)
        self.step("search_range", search_range)

        def profile():
            p = self.c.search_profile(E0, k=2, where="n >= 1")
            _true("items" in p and "profile" in p)
            _eq(p["items"]["ids"][0], 4)
            _eq(p["profile"]["filter_expression"], "n >= 1")
        self.step("search_profile", profile)

        def sparse():
            self.c.add_sparse_vectors([{1: 1.0, 3: 2.0}, [(3, 1.0)]], ids=[0, 1])
            r = self.c.search_sparse({3: 1.0}, k=5)
            _eq(r.ids.tolist(), [0, 1])
            _close(r.distances, [2.0, 1.0])
            _eq(self.c.search_sparse({3: 1.0}, k=5, where="lang = 'de'").ids.tolist(), [1])
        self.step("add_sparse_vectors + search_sparse", sparse)

        # named vector fields
        self.step("create_vector_field", lambda: _eq(
            self.c.create_vector_field("title_vec", dim=2, metric="cos")["params"]["field"]["dimension"], 2))
        self.step("list_vector_fields", lambda: _eq(
            {f["name"]: f["dimension"] for f in self.c.list_vector_fields()}, {"default": 4, "title_vec": 2}))
        self.step("add_named_vectors", lambda: _eq(
            self.c.add_named_vectors("title_vec", [[1.0, 0.1], [0.0, 1.0]], ids=[0, 1])["params"]["ids"], [0, 1]))

        def search_named():
            r = self.c.search([1.0, 0.0], k=2, vector_field="title_vec")  # + /list_vector_fields
            _eq(r.ids.tolist(), [0, 1])
            _close(r.distances, [1 - 1 / np.sqrt(1.01), 1.0])  # cosine distance, ascending
            _eq(r.distance_metric, "Cosine")
        self.step("search a named field", search_named)

        def build_named():
            self.c.build_index("HNSW-COS", field_name="title_vec", m=8)
            _eq(next(f["index_mode"] for f in self.c.list_vector_fields() if f["name"] == "title_vec").upper(),
                "HNSW-COS")
            _eq(int(self.c.search([0.0, 1.0], k=1, vector_field="title_vec").ids[0]), 1)
        self.step("build_index(field_name=...) (/build_vector_field_index)", build_named)
        self.step("remove_index(field_name=...) (/remove_vector_field_index)",
                  lambda: self.c.remove_index(field_name="title_vec"))

        # primary index (HEAD names carry the metric)
        def build(mode: str, first: list[int], **kw: Any) -> Callable[[], None]:
            def go():
                self.c.build_index(mode, **kw)
                _eq(self.c.index_mode, mode)
                r = self.c.search(E0, k=2, nprobe=4)
                _eq(r.ids.tolist()[:len(first)], first)
            return go
        self.step("build_index FLAT-IP", build("FLAT-IP", [0, 4]))
        self.step("build_index HNSW-IP m/ef_construction", build("HNSW-IP", [0, 4], m=8, ef_construction=32))
        # The client sends n_clusters twice (in params and at the top level): a regression check.
        self.step("build_index IVF-IP n_clusters=2", build("IVF-IP", [0], n_clusters=2, nprobe=2))
        self.step("build_index IVF-IP n_centroids=2 (LynseDB's alias)", build("IVF-IP", [0], n_centroids=2))
        self.step("build_index HNSW-IP ef_search (LynseDB's name for ef)", build("HNSW-IP", [0, 4], ef_search=16))

        def shared_kwargs():
            # The client's doc: keys of another index family are ignored, one dict serves all modes.
            kw = dict(n_clusters=2, nprobe=2, m=8, ef_construction=32, ef_search=16)
            for mode in ("FLAT-IP", "HNSW-IP", "IVF-IP"):
                build(mode, [0], **kw)()
        self.step("build_index with one kwargs dict for every family", shared_kwargs)

        def flat_l2():
            self.c.build_index("FLAT-L2")
            r = self.c.search(E0, k=2)
            _eq(r.ids.tolist(), [0, 4])
            _close(r.distances, [0.0, 0.5])  # squared L2, ascending
            _eq(r.distance_metric, "L2")
        self.step("build_index FLAT-L2 (ascending distances)", flat_l2)

        def flat_cos():
            self.c.build_index("FLAT-COS")
            r = self.c.search(E0, k=2)
            _eq(r.ids.tolist(), [0, 4])
            _close(r.distances, [0.0, 1 - np.sqrt(0.5)])  # cosine distance, ascending
            _eq(r.distance_metric, "Cosine")
        # vecstore re-targets the collection to cosine; like LynseDB it keeps the vectors as written.
        self.step("build_index FLAT-COS", flat_cos)
        self.step("build_index with an unknown mode raises", lambda: _raises(lambda: self.c.build_index("BOGUS-IP")))

        def remove_index():
            self.c.remove_index()
            _eq(self.c.index_mode, None)
            _eq(self.c.stats()["index_mode"], "none")
        self.step("remove_index", remove_index)

        # descriptions, details, paths
        def descriptions():
            self.c.update_description("smoke 2")
            _eq(self.post("/get_collection_config", self.names())["params"]["config"]["description"], "smoke 2")
            self.db.update_collection_description("items", "smoke 3")
            _eq(self.db.get_collection("items")._init_params["description"], "smoke 3")
        self.step("update_description + update_collection_description", descriptions)

        def details():
            d = self.db.show_collections_details()
            d = d.to_dict() if hasattr(d, "to_dict") else d
            _eq(list(d["items"]["shape"]), [7, 4])
        self.step("show_collections_details", details)
        self.step("get_collection_path", lambda: _true(str(self.c.get_collection_path()).endswith("items")))

        # string ids: JSON /add and /upsert
        def docs_add():
            # no dim: the first add fixes it (lynse_api §6, "Other HEAD differences")
            s["docs"] = self.db.require_collection("docs", default_index=None)
            got = s["docs"].add(["a", "b", "c"], vectors=[E0, E1, [0.0, 0.0, 1.0, 0.0]],
                                fields=[{"lang": "en"}, {"lang": "de"}, {"lang": "fr"}])
            _eq(got, ["a", "b", "c"])
            _eq(s["docs"].shape, (3, 4))
        self.step("add str ids (JSON /add)", docs_add)

        def nodim():
            # a new collection without a dim: 0 until the first add (/add_records_binary here),
            # which fixes it; the client then builds its default FLAT-IP index (obs).
            c = self.db.require_collection("nodim")
            _eq(self.db.get_collection("nodim")._init_params["dim"], 0)
            _eq(c.shape, (0, 0))
            _eq(c.add([1, 2, 3], vectors=[E0, E1, [0.0, 0.0, 1.0, 0.0]]), [1, 2, 3])
            _eq((c.shape, c.index_mode), ((3, 4), "FLAT-IP"))
            _eq(self.post("/get_collection_config", self.names("nodim"))["params"]["config"]["dim"], 4)
            r = c.search([0.1, 0.9, 0.2, 0.0], k=2)
            _eq(r.ids.tolist(), [2, 3])
            _raises(lambda: c.add([4], vectors=[[1.0, 0.0, 0.0]]))  # the dim is fixed now
            _eq(c.shape, (3, 4))
        self.step("require_collection without dim: the first add fixes it", nodim)

        def docs_documents():
            got = s["docs"].add("d", documents="red apple", embed_func=lambda docs: [[0.5, 0.5, 0.0, 0.0]])
            _eq(got, "d")
            _eq(s["docs"].read_by_only_id("d").fields[0]["document"], "red apple")
        self.step("add(documents=, embed_func=) stores the document field", docs_documents)

        def docs_search():
            r = s["docs"].search(E0, k=2, return_fields=True)
            _eq(r.ids.tolist(), ["a", "d"])
            _eq(r.fields[0]["lang"], "en")
            _eq(s["docs"].query(filter_ids=["b"]).ids.tolist(), ["b"])
            _eq(s["docs"].query(where="lang = 'fr'", return_ids_only=True).ids.tolist(), ["c"])
            _eq((s["docs"].is_id_exists("a"), s["docs"].is_id_exists("zz")), (True, False))
            _eq(s["docs"].head(1).ids.tolist(), ["a"])
        self.step("str ids in search / query / is_id_exists / head", docs_search)

        def docs_upsert():
            _eq(s["docs"].upsert(["a", "e"], vectors=[E0, [0.0, 0.0, 0.0, 1.0]],
                                 fields=[{"lang": "xx"}, {"lang": "es"}]), ["a", "e"])
            _eq(s["docs"].read_by_only_id("a").fields[0], {"lang": "xx"})  # replaced
            _eq(s["docs"].upsert("c", vectors=[0.0, 0.0, 0.9, 0.0]), "c")  # fields kept
            r = s["docs"].read_by_only_id(["c", "e"])
            _eq(r.ids.tolist(), ["c", "e"])
            _eq([f["lang"] for f in r.fields], ["fr", "es"])
            _close(r.vectors[0], [0.0, 0.0, 0.9, 0.0])
        self.step("upsert str ids (JSON /upsert; fields replace or keep)", docs_upsert)

        def docs_delete():
            s["docs"].delete(["b"])
            _eq(s["docs"].list_deleted_ids(), ["b"])
            _true("b" not in s["docs"].search(E1, k=5).ids.tolist())
            s["docs"].restore("b")
            _eq(s["docs"].search(E1, k=1).ids.tolist(), ["b"])
        self.step("delete / restore str ids", docs_delete)

        # no ids: /bulk_add_binary, then the client reads through the binary search paths
        def auto_add():
            s["auto"] = self.db.require_collection("auto", dim=4)
            _eq(s["auto"].add(vectors=np.array([E0, E1], np.float32)), [0, 1])
            _eq(s["auto"].add(vectors=[0.0, 0.0, 1.0, 0.0]), 2)  # ids continue from max_id + 1
            _eq((s["auto"].shape, s["auto"].max_id, s["auto"].index_mode), ((3, 4), 2, "FLAT-IP"))
        self.step("add(vectors=) without ids (/bulk_add_binary)", auto_add)

        def auto_search():
            _true(s["auto"]._can_read_binary_integer_ids())  # the client now uses /search_binary
            r = s["auto"].search([0.0, 0.9, 0.1, 0.0], k=2)
            _eq(r.ids.tolist(), [1, 2])
            _close(r.distances, [0.9, 0.1])
            _eq(s["auto"].search(E0, k=1, nprobe=4).ids.tolist(), [0])
        self.step("search_binary (after an id-less add)", auto_search)

        def auto_batch():
            rs = s["auto"].batch_search([E0, E1, [0.0, 0.0, 1.0, 0.0]], k=1)
            _eq([r.ids.tolist() for r in rs], [[0], [1], [2]])
            _close([float(r.distances[0]) for r in rs], [1.0, 1.0, 1.0])
        self.step("batch_search_binary (after an id-less add)", auto_batch)

        def f16():
            _eq(s["auto"].add([10], vectors=[[0.0, 0.0, 0.0, 1.0]], wire_dtype="float16"), [10])
            _close(s["auto"].read_by_only_id(10).vectors, [0.0, 0.0, 0.0, 1.0])
            _eq(s["auto"].search([0.0, 0.0, 0.0, 1.0], k=1, wire_dtype="float16").ids.tolist(), [10])
        self.step("float16 wire vectors (add_records_binary + search_binary)", f16)

        # delete, restore, compact (HEAD paths /delete and /restore)
        def delete():
            self.c.delete([4])
            _true(4 not in self.c.search(E0, k=3).ids.tolist())
            _eq(self.c.list_deleted_ids(), [4])
            _eq(self.c.stats()["n_tombstoned"], 1)
            # LynseDB still answers is_id_exists(4) -> True here; vecstore hides deleted rows.
        self.step("delete (/delete)", delete)

        def restore():
            self.c.restore([4])
            _eq(self.c.list_deleted_ids(), [])
            _true(4 in self.c.search(E0, k=3).ids.tolist())
        self.step("restore (/restore)", restore)

        def compact():
            self.c.delete([4, 6])
            _eq(self.c.compact(), 2)
            _eq(self.c.list_deleted_ids(), [])
            _eq((self.c.stats()["n_live"], self.c.shape), (5, (5, 4)))
        self.step("compact", compact)

        self.step("flush", lambda: _eq(self.c.flush()["status"], "success"))
        self.step("close (/close_collection)", lambda: _eq(self.c.close()["status"], "success"))

        def checkpoint():
            handle = self.db.get_collection("items")  # checkpoint closes the handle's session
            _eq(handle.checkpoint()["status"], "success")
            _eq(handle.COMMIT_FLAG, True)
        self.step("checkpoint", checkpoint)

        def context_manager():
            with self.db.get_collection("docs") as d:
                d.add(["f"], vectors=[[0.0, 0.0, 0.0, 1.0]])
            _eq(s["docs"].shape, (6, 4))
        self.step("Collection as a context manager (commit on exit)", context_manager)

        # backup and portability (paths are on the server)
        def snapshot_restore():
            path = self.server_path("coll_snap")
            self.c.snapshot_to(path)
            self.db.restore_collection("items_restored", path)
            restored = self.db.get_collection("items_restored")
            _eq(restored.shape, (5, 4))
            _eq(restored.read_by_only_id(3).fields[0]["title"], "green apple")
            _raises(lambda: self.db.restore_collection("items_restored", path))  # exists
            self.db.restore_collection("items_restored", path, overwrite=True)
        self.step("snapshot_to + restore_collection (overwrite)", snapshot_restore)
        # LynseDB 0.9.0's snapshot holds the blob as first written, not as replaced ("v2").
        self.step("blobs travel with a snapshot (latest value)", lambda: _eq(
            self.db.get_collection("items_restored").read_blob("model/params.bin"), b"v2"), extension=True)

        def export_import():
            path = self.server_path("coll_export")
            self.c.export_to(path)
            self.db.import_collection("items_imported", path)
            imported = self.db.get_collection("items_imported")
            _eq(imported.shape, (5, 4))
            _eq(int(imported.search(E0, k=1).ids[0]), 0)
            _eq(imported.index_mode, None)
        self.step("export_to + import_collection", export_import)

        def db_level_backup():
            snap, exp = self.server_path("docs_snap"), self.server_path("docs_export")
            self.db.snapshot_collection("docs", snap)
            self.db.export_collection("docs", exp)
            self.db.restore_collection("docs_restored", snap)
            self.db.import_collection("docs_imported", exp)
            _eq(sorted(self.db.get_collection("docs_restored").query(filter_ids=["a", "e"]).ids.tolist()), ["a", "e"])
            _eq(self.db.get_collection("docs_imported").search(E1, k=1).ids.tolist(), ["b"])
        self.step("HTTPClient.snapshot_collection / export_collection (str ids)", db_level_backup)

        def db_snapshot_restore():
            path = self.server_path("db_snap")
            s["client"].snapshot_database(s["db_name"], path)
            s["client"].restore_database(s["db2_name"], path)
            _true(s["db2_name"] in s["client"].list_databases())
            db2 = s["client"].get_database(s["db2_name"])
            _true({"items", "docs", "auto"} <= set(db2.show_collections()))
            _eq(db2.get_collection("auto").search(E1, k=1).ids.tolist(), [1])
        self.step("VectorDBClient.snapshot_database + restore_database", db_snapshot_restore)

        def db_snapshot_restore_http():
            path = self.server_path("db_snap2")
            self.db.snapshot_database(path)
            db2 = s["client"].get_database(s["db2_name"])
            db2.restore_database(path, overwrite=True)
            _true("items_restored" in db2.show_collections())
        self.step("HTTPClient.snapshot_database + restore_database(overwrite)", db_snapshot_restore_http)

        def create_collection_oneshot():
            c3 = s["client"].create_collection(s["db3_name"], "one", dim=2)
            _eq(c3.add([0, 1], vectors=[[1.0, 0.0], [0.0, 1.0]]), [0, 1])
            _eq((c3.index_mode, c3.search([0.0, 1.0], k=1).ids.tolist()), ("FLAT-IP", [1]))
        self.step("VectorDBClient.create_collection (database + collection)", create_collection_oneshot)

        # teardown
        def drop_collection():
            self.db.drop_collection("items_restored")
            _true("items_restored" not in self.db.show_collections())
            self.db.drop_collection("never_existed")  # missing is fine
        self.step("drop_collection", drop_collection)

        def drop_databases():
            s["client"].get_database(s["db2_name"]).drop_database()  # POST /drop_database
            s["client"].drop_database(s["db_name"])  # POST /delete_database
            s["client"].drop_database(s["db3_name"])
            _eq(self.db.drop_database()["message"], "The database does not exist.")  # answered client-side
            left = s["client"].list_databases()
            _true(not {s["db_name"], s["db2_name"], s["db3_name"]} & set(left))
        self.step("drop_database (/drop_database and /delete_database)", drop_databases)
        self.step("VectorDBClient.close", lambda: s["client"].close())
        return self.finish()



ERRORS = (ExecutionError, RuntimeError, ValueError)


def _close(got: Any, want: Any, tol: float = 1e-3) -> None:
    check_close(got, want, tol)


def _raises(fn: Callable[[], Any], *types: type[BaseException]) -> None:
    check_raises(fn, types or ERRORS)


def main(argv: list[str] | None = None) -> int:
    return smoke_main(Smoke, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
