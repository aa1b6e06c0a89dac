"""A stateful property test: random add / upsert / delete / restore / compact / reopen drive a
collection and a dict-plus-numpy model side by side; every read is compared after every step."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import vecstore

DIM = 4
ID_POOL = st.one_of(st.integers(0, 40), st.sampled_from(["a", "b", "c", "d", "e"]))
FIELDS = st.dictionaries(st.sampled_from(["lang", "n", "tags"]),
                         st.one_of(st.sampled_from(["en", "de"]), st.integers(-3, 3), st.lists(st.sampled_from("xy"), max_size=2)),
                         max_size=3)


class CollectionModel(RuleBasedStateMachine):
    """Model: ``rows`` maps id -> [vector, fields, deleted] in storage order."""

    @initialize(metric=st.sampled_from(["ip", "l2", "cosine"]))
    def open(self, metric):
        self.dir = tempfile.mkdtemp()
        self.metric = metric
        self.client = vecstore.connect(self.dir)
        self.col = self.client.create_database("app").require_collection("m", dim=DIM, metric=metric)
        self.rows: dict = {}
        self.rng = np.random.default_rng(len(self.dir))

    def teardown(self):
        self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def vec(self):
        v = self.rng.standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v) if self.metric == "cosine" else v

    @rule(ids=st.lists(ID_POOL, min_size=1, max_size=4, unique=True), fields=st.lists(FIELDS, min_size=4, max_size=4))
    def add(self, ids, fields):
        vecs = [self.vec() for _ in ids]
        if any(i in self.rows for i in ids):
            try:
                self.col.add(np.stack(vecs), ids=ids, fields=fields[: len(ids)])
            except vecstore.AlreadyExistsError:
                return
            raise AssertionError("adding an existing id must fail")
        assert self.col.add(np.stack(vecs), ids=ids, fields=fields[: len(ids)]) == ids
        for i, v, f in zip(ids, vecs, fields):
            self.rows[i] = [v, f, False]

    @rule(ids=st.lists(ID_POOL, min_size=1, max_size=4, unique=True), fields=st.lists(FIELDS, min_size=4, max_size=4),
          keep_fields=st.booleans())
    def upsert(self, ids, fields, keep_fields):
        vecs = [self.vec() for _ in ids]
        self.col.upsert(np.stack(vecs), ids=ids, fields=None if keep_fields else fields[: len(ids)])
        for i, v, f in zip(ids, vecs, fields):
            old = self.rows.get(i)
            new_fields = (old[1] if old else {}) if keep_fields else f
            if old is None:
                self.rows[i] = [v, new_fields, False]
            else:
                old[0], old[1], old[2] = v, new_fields, False

    @precondition(lambda self: any(not r[2] for r in self.rows.values()))
    @rule(data=st.data())
    def delete(self, data):
        live = [i for i, r in self.rows.items() if not r[2]]
        ids = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=3, unique=True))
        assert self.col.delete_items(ids) == len(ids)
        for i in ids:
            self.rows[i][2] = True

    @precondition(lambda self: any(r[2] for r in self.rows.values()))
    @rule(data=st.data())
    def restore(self, data):
        dead = [i for i, r in self.rows.items() if r[2]]
        ids = data.draw(st.lists(st.sampled_from(dead), min_size=1, max_size=3, unique=True))
        assert self.col.restore_items(ids) == len(ids)
        for i in ids:
            self.rows[i][2] = False

    @rule()
    def compact(self):
        dead = [i for i, r in self.rows.items() if r[2]]
        assert self.col.compact() == len(dead)
        for i in dead:
            del self.rows[i]

    @rule()
    def reopen(self):
        self.client.close()
        self.client = vecstore.connect(self.dir)
        self.col = self.client.get_database("app").get_collection("m")

    # -- every read agrees with the model ----------------------------------------------------
    def live(self):
        return [(i, r) for i, r in self.rows.items() if not r[2]]

    @invariant()
    def reads_agree(self):
        if not hasattr(self, "col"):
            return
        live = self.live()
        assert self.col.shape == (len(live), DIM)
        assert self.col.query() == [{**r[1], "id": i} for i, r in live]
        assert self.col.list_deleted_ids() == [i for i, r in self.rows.items() if r[2]]
        assert self.col.head(3).ids == tuple(i for i, _ in live[:3])
        assert self.col.tail(3).ids == tuple(i for i, _ in live[-3:])
        for i, r in self.rows.items():
            assert self.col.is_id_exists(i) == (not r[2])
        if live:
            got = self.col.read_by_only_id([i for i, _ in live])
            np.testing.assert_allclose(got.vectors, np.stack([r[0] for _, r in live]), rtol=1e-5, atol=1e-6)
        ints = [i for i, _ in live if isinstance(i, int)]
        assert self.col.max_id() == (max(ints) if ints else -1)
        assert self.col.list_fields() == sorted({name for _, r in live for name in r[1]})

    @invariant()
    def search_agrees(self):
        if not hasattr(self, "col"):
            return
        live = self.live()
        q = self.vec()
        r = self.col.search(q, k=5)
        if not live:
            assert r.ids == ()
            return
        mat = np.stack([row[0] for _, row in live])
        if self.metric == "ip":
            s = mat @ q
            order = np.argsort(-s, kind="stable")
        elif self.metric == "l2":
            s = ((mat - q) ** 2).sum(1)
            order = np.argsort(s, kind="stable")
        else:
            s = 1 - mat @ q
            order = np.argsort(s, kind="stable")
        np.testing.assert_allclose(r.scores, s[order[:5]], rtol=1e-4, atol=1e-5)
        assert set(r.ids) <= {i for i, _ in live}


CollectionModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestCollectionModel = CollectionModel.TestCase
