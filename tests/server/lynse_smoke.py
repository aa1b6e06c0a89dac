"""Drive a server with the real LynseDB 0.2.0 Python client: every operation it has.

Run it with the Python that has ``lynsedb==0.2.0`` installed (a 3.12 venv, see
``shared/research/lynse_api.md`` §10-§11), against a running server::

    .peers/lynse020/bin/python tests/server/lynse_smoke.py http://127.0.0.1:7637 \
        [--api-key KEY] [--backup-dir DIR]

``--backup-dir`` is a folder *on the server* for snapshots and exports (for vecstore: its data
folder or a ``--backup-dir``); without it the paths are relative names, which vecstore
resolves inside its data folder. ``--reference`` skips the few checks of behaviour vecstore
adds (for a run against LynseDB's own server). Prints one line per check, then ``N passed, M failed``; exits
non-zero when a check failed. It also passes against LynseDB's own 0.2.0 server, which is
how the checks themselves were validated.

Only the standard library, numpy and the ``lynse`` client (with its httpx) are used.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import httpx
import numpy as np

import lynse
from lynse.api.http_api.client_api import ExecutionError
from smoke_base import E0, ROWS, SmokeBase, check_close, check_raises
from smoke_base import check_eq as _eq
from smoke_base import check_true as _true
from smoke_base import main as smoke_main



class Smoke(SmokeBase):
    prefix = 'smoke'

    def __init__(self, url: str, api_key: str | None, backup_dir: str | None, reference: bool = False) -> None:
        super().__init__(url, api_key, backup_dir, reference)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)

    # -- helpers ---------------------------------------------------------------------------

    def raw(self, path: str, body: dict) -> dict:
        r = self.http.post(path, json=body)
        assert r.status_code == 200, (r.status_code, r.text[:200])
        return r.json()

    def names(self) -> dict:
        return {"database_name": self.s["db_name"], "collection_name": "items"}

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        s = self.s
        s["db_name"] = f"smoke_{self.tag}"
        s["db2_name"] = f"smoke_{self.tag}_restored"

        # connection and system paths
        def connect():
            s["client"] = lynse.VectorDBClient(self.url, api_key=self.api_key)  # GET / then /list_databases
        self.step("connect (GET / and /list_databases)", connect)
        if "client" not in s:
            return self.finish()
        self.step("GET /healthz", lambda: _eq(self.http.get("/healthz").json()["status"], "ok"))
        self.step("GET /readyz", lambda: _eq(self.http.get("/readyz").json()["status"], "ready"))
        self.step("GET /openapi.json", lambda: _true("paths" in self.http.get("/openapi.json").json()))
        self.step("GET /metrics", lambda: _eq(self.http.get("/metrics").status_code, 200))
        if self.api_key:
            self.step("no key -> 401", lambda: _eq(httpx.get(f"{self.url}/list_databases").status_code, 401))

        # databases
        def create_db():
            s["db"] = s["client"].create_database(s["db_name"], drop_if_exists=True)
        self.step("create_database", create_db)
        if "db" not in s:
            return self.finish()
        self.step("list_databases", lambda: _true(s["db_name"] in s["client"].list_databases()))
        self.step("database_exists", lambda: _true(self.db.database_exists()["params"]["exists"]))
        self.step("get_database", lambda: _eq(s["client"].get_database(s["db_name"]).database_name, s["db_name"]))

        # collection lifecycle
        def require():
            s["coll"] = self.db.require_collection("items", dim=4, description="smoke")
        self.step("require_collection", require)
        if "coll" not in s:
            return self.finish()
        # LynseDB 0.2.0 answers 400 here (dim null); lynse_api §4.1 recommends accepting it.
        self.step("require_collection again (dim=None, existing)",
                  lambda: self.db.require_collection("items"), extension=True)
        self.step("show_collections", lambda: _true("items" in self.db.show_collections()))
        self.step("get_collection (is_collection_exists + config)",
                  lambda: _eq(self.db.get_collection("items")._init_params["dim"], 4))
        self.step("exists", lambda: _true(self.c.exists()))
        self.step("get_collection on a missing one raises", lambda: _raises(lambda: self.db.get_collection("nope")))

        # writes
        rid, vec, field = ROWS[0]
        self.step("add_item (direct)", lambda: _eq(self.c.add_item(vec, id=rid, field=field, buffer_size=False), 0))
        self.step("bulk_add_items", lambda: _eq(
            self.c.bulk_add_items([(v, i, f) for i, v, f in ROWS[1:4]], enable_progress_bar=False), [1, 2, 3]))

        def buffered_and_commit():
            for i, v, f in ROWS[4:6]:
                self.c.add_item(v, id=i, field=f)  # buffered client-side
            rj = self.c.commit()  # POST /commit with "items"
            _eq(rj["params"]["status"], "Success")
            _eq(self.c.shape, (6, 4))
        self.step("add_item buffered + commit(items)", buffered_and_commit)
        self.step("upsert_items", lambda: _eq(
            self.c.upsert_items([(np.array([0, 0, 0.6, 0.6], np.float32), 5, ROWS[5][2])],
                                enable_progress_bar=False), [5]))
        self.step("upsert_item (2-tuple keeps fields)",
                  lambda: _eq(self.c.upsert_item([0.0, 0.0, 0.5, 0.5], 5), 5))
        self.step("bulk_add_binary", lambda: _eq(
            self.c.bulk_add_binary(np.array([[0.1] * 4, [0.2] * 4], np.float32), enable_progress_bar=False), 2))
        self.step("shape", lambda: _eq(self.c.shape, (8, 4)))
        self.step("max_id", lambda: _eq(self.c.max_id, 7))

        def stats():
            st = self.c.stats()
            _eq((st["n_vectors"], st["dimension"], st["max_id"], st["n_tombstoned"]), (8, 4, 7, 0))
        self.step("stats", stats)
        self.step("index_mode before any build is null", lambda: _eq(self.c.index_mode, None))
        self.step("list_fields", lambda: _true({"lang", "n", "title", "tags"} <= set(self.c.list_fields())))
        self.step("is_id_exists", lambda: _eq((self.c.is_id_exists(3), self.c.is_id_exists(999)), (True, False)))

        # search and retrieval
        def search():
            r = self.c.search(E0, k=3)
            _eq([int(i) for i in r.ids[:2]], [0, 4])
            _close(r.distances[:2], [1.0, 0.5])
        self.step("search (binary)", search)

        def search_where_fields():
            r = self.c.search(E0, k=10, where="lang = 'en'", return_fields=True)
            _eq(set(int(i) for i in r.ids), {0, 2, 4})
            _eq(r.fields[0]["title"], "apple pie")
            _true(all("id" not in f for f in r.fields))
        self.step("search where + return_fields", search_where_fields)

        def batch():
            rs = self.c.batch_search(np.array([E0, [0, 1, 0, 0]], np.float32), k=2)
            _eq([int(r.ids[0]) for r in rs], [0, 1])
        self.step("batch_search (binary)", batch)

        def query():
            r = self.c.query(where="n >= 4")
            _eq(sorted(int(i) for i in r.ids), [4, 5])
            _eq(sorted(f["n"] for f in r.fields), [4, 5])
            _eq(sorted(int(i) for i in self.c.query(filter_ids=[1, 2]).ids), [1, 2])
            _eq(sorted(int(i) for i in self.c.query(where="lang = 'de'", return_ids_only=True).ids), [1, 5])
        self.step("query (where, filter_ids, return_ids_only)", query)

        def query_vectors():
            r = self.c.query_vectors(where="lang = 'fr'")
            _eq([int(i) for i in r.ids], [3])
            _close(np.asarray(r.vectors).ravel(), ROWS[3][1])
        self.step("query_vectors", query_vectors)

        def head_tail():
            h, t = self.c.head(2), self.c.tail(2)
            _eq([int(i) for i in h.ids], [0, 1])
            _eq(np.asarray(h.vectors).shape, (2, 4))
            _eq(h.fields[0]["lang"], "en")
            _eq([int(i) for i in t.ids], [6, 7])
        self.step("head / tail (binary)", head_tail)

        def read_by_id():
            r = self.c.read_by_only_id(1)
            _eq([int(i) for i in r.ids], [1])
            _close(np.asarray(r.vectors).ravel(), ROWS[1][1])
            _eq(r.fields[0]["title"], "apple strudel")
            _eq([int(i) for i in self.c.read_by_only_id([2, 3]).ids], [2, 3])
        self.step("read_by_only_id (one, many)", read_by_id)

        def text():
            r = self.c.text_search("apple", k=10, return_fields=True)
            _eq(set(int(i) for i in r.ids), {0, 1, 3})
            _true(all(float(x) > 0 for x in r.distances))
            _eq(set(int(i) for i in self.c.text_search("apple", text_fields=["lang"]).ids), set())
        self.step("text_search", text)

        def hybrid():
            r = self.c.hybrid_search(E0, "apple", k=3)
            _eq(int(r.ids[0]), 0)
            w = self.c.hybrid_search(E0, "apple", k=3, fusion="weighted", vector_weight=0.7, text_weight=0.3)
            _eq(int(w.ids[0]), 0)
            _eq(int(self.c.hybrid_search(text="strudel", k=1).ids[0]), 1)
        self.step("hybrid_search (rrf, weighted, text only)", hybrid)

        def search_range():
            r = self.c.search_range(E0, 0.4)
            _eq(set(int(i) for i in r.ids), {0, 4})
        self.step("search_range", search_range)

        def profile():
            p = self.c.search_profile(E0, k=2, where="n >= 1")
            _true("items" in p and "profile" in p)
            _eq(p["items"]["ids"][0], 4)
        self.step("search_profile", profile)

        def sparse():
            self.c.add_sparse_vectors([{1: 1.0, 3: 2.0}, [(3, 1.0)]], ids=[0, 1])
            r = self.c.search_sparse({3: 1.0}, k=5)
            _eq([int(i) for i in r.ids], [0, 1])
            _close(r.distances, [2.0, 1.0])
        self.step("add_sparse_vectors + search_sparse", sparse)

        # named vector fields
        self.step("create_vector_field", lambda: _eq(
            self.c.create_vector_field("title_vec", dim=2, metric="cos")["params"]["field"]["dimension"], 2))
        self.step("list_vector_fields", lambda: _eq(
            {f["name"] for f in self.c.list_vector_fields()} >= {"default", "title_vec"}, True))
        self.step("add_named_vectors", lambda: _eq(
            self.c.add_named_vectors("title_vec", [[1.0, 0.1], [0.0, 1.0]], ids=[0, 1])["params"]["ids"], [0, 1]))
        self.step("search a named field", lambda: _eq(
            int(self.c.search([1.0, 0.0], k=2, vector_field="title_vec").ids[0]), 0))
        self.step("build_vector_field_index", lambda: self.c.build_index("FLAT-COS", field_name="title_vec"))
        self.step("remove_vector_field_index", lambda: self.c.remove_index(field_name="title_vec"))

        # primary index
        def build(mode: str, **kw: Any) -> Callable[[], None]:
            def go():
                self.c.build_index(mode, **kw)
                _eq(self.c.index_mode.upper(), mode.upper())
                _eq(int(self.c.search(E0, k=1, nprobe=4).ids[0]), 0)
            return go
        self.step("build_index FLAT", build("FLAT"))
        self.step("build_index HNSW", build("HNSW"))
        self.step("build_index IVF n_clusters=2", build("IVF", n_clusters=2))
        self.step("build_index FLAT-L2 (ascending distances)", lambda: (
            self.c.build_index("FLAT-L2"), _close(self.c.search(E0, k=1).distances, [0.0])))

        def remove_index():
            self.c.remove_index()
            _eq(self.c.index_mode, None)
        self.step("remove_index", remove_index)

        # descriptions, details, paths
        self.step("update_description", lambda: self.c.update_description("smoke 2"))
        self.step("update_collection_description", lambda: self.db.update_collection_description("items", "smoke 3"))
        self.step("get_collection_config sees description", lambda: _eq(
            self.raw("/get_collection_config", self.names())["params"]["config"]["description"], "smoke 3"))
        self.step("show_collections_details", lambda: _true("items" in self.db.show_collections_details()))
        self.step("get_collection_path", lambda: _true(isinstance(self.c.get_collection_path(), str)))

        # raw JSON twins of the binary paths
        def raw_json():
            items = self.raw("/search", {**self.names(), "vector": E0, "k": 2})["params"]["items"]
            _eq(items["ids"][:1], [0])
            _eq(len(self.raw("/batch_search", {**self.names(), "vectors": [E0, E0], "k": 1})["params"]["results"]), 2)
            head = self.raw("/head", {**self.names(), "n": 2})["params"]["head"]
            _eq(head[1], [0, 1])
            _eq(self.raw("/tail", {**self.names(), "n": 1})["params"]["tail"][1], [7])
        self.step("raw JSON /search /batch_search /head /tail", raw_json)
        self.step("search with a wrong dimension raises", lambda: _raises(lambda: self.c.search([1.0, 0.0], k=1)))

        # delete, restore, compact
        def delete():
            self.c.delete_items([4])
            _true(4 not in [int(i) for i in self.c.search(E0, k=3).ids])
            _eq(self.c.list_deleted_ids(), [4])
        self.step("delete_items", delete)

        def restore():
            self.c.restore_items([4])
            _eq(self.c.list_deleted_ids(), [])
            _true(4 in [int(i) for i in self.c.search(E0, k=3).ids])
        self.step("restore_items", restore)

        def compact():
            self.c.delete_items([4])
            _eq(self.c.compact(), 1)
            _eq(self.c.list_deleted_ids(), [])
            _eq(self.c.stats()["n_live"], 7)
        self.step("compact", compact)

        self.step("flush", lambda: self.c.flush())
        self.step("checkpoint", lambda: self.c.checkpoint())
        self.step("close", lambda: self.c.close())

        # backup and portability (paths are on the server)
        def snapshot_restore():
            path = self.server_path("coll_snap")
            self.c.snapshot_to(path)
            self.db.restore_collection("items_restored", path)
            _eq(self.db.get_collection("items_restored").shape, (7, 4))
        self.step("snapshot_collection + restore_collection", snapshot_restore)

        def export_import():
            path = self.server_path("coll_export")
            self.c.export_to(path)
            self.db.import_collection("items_imported", path)
            imported = self.db.get_collection("items_imported")
            _eq(imported.shape, (7, 4))
            _eq(int(imported.search(E0, k=1).ids[0]), 0)
        self.step("export_collection + import_collection", export_import)

        def db_snapshot_restore():
            path = self.server_path("db_snap")
            s["client"].snapshot_database(s["db_name"], path)
            s["client"].restore_database(s["db2_name"], path)
            _true(s["db2_name"] in s["client"].list_databases())
            _true("items" in s["client"].get_database(s["db2_name"]).show_collections())
        self.step("snapshot_database + restore_database", db_snapshot_restore)

        # teardown
        def drop_collection():
            self.db.drop_collection("items_restored")
            _true("items_restored" not in self.db.show_collections())
            self.db.drop_collection("never_existed")  # missing is fine
        self.step("drop_collection", drop_collection)

        def drop_databases():
            s["client"].get_database(s["db2_name"]).drop_database()  # POST /drop_database
            s["client"].drop_database(s["db_name"])  # POST /delete_database
            left = s["client"].list_databases()
            _true(s["db_name"] not in left and s["db2_name"] not in left)
        self.step("drop_database (/drop_database and /delete_database)", drop_databases)
        return self.finish()



ERRORS = (ExecutionError, RuntimeError, ValueError)


def _close(got: Any, want: Any, tol: float = 1e-4) -> None:
    check_close(got, want, tol)


def _raises(fn: Callable[[], Any]) -> None:
    check_raises(fn, ERRORS)


def main(argv: list[str] | None = None) -> int:
    return smoke_main(Smoke, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
