"""BM25 through ``vecstore.text.TextIndex`` against tantivy used directly.

Corpus: docstrings of the packages installed next to this interpreter (site-packages, parsed
with ``ast``; nothing is imported), one passage per module / class / function docstring, as
rows ``{"name": qualified name, "doc": docstring}``. Both sides use the same tantivy settings
(one writer thread, 64 MB heap) and search both fields; "direct" is the least a caller of
tantivy must do: ``parse_query`` + ``search`` + read the label fast field.

    python benchmarks/text.py [--passages 20000] [--queries 500] [--seed 0]

Prints indexing rate (best of 3 builds), query latency (p50 / mean over queries of the best of 5 runs, k=10;
the two sides interleaved query by query), filtered query latency and the ratio TextIndex /
direct. "direct" filters with the same term-set clause TextIndex uses for small ``allowed``
sets; for broad ones TextIndex over-fetches instead. Fixed seed; numbers vary with the machine and with what is installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tantivy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vecstore.text import TextIndex
from _corpus import docstrings  # noqa: E402

HEAP, THREADS = 64_000_000, 1


def collect_passages(limit: int, seed: int) -> list[dict]:
    out: list[dict] = []
    for name, doc in docstrings(np.random.default_rng(seed), min_chars=20):
        out.append({"name": name, "doc": doc})
        if len(out) >= limit:
            break
    return out


def make_queries(passages: list[dict], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    queries = []
    while len(queries) < n:
        # lower case: a sampled "OR" or "AND" would otherwise be an operator to tantivy's parser
        words = [w.lower() for w in passages[int(rng.integers(len(passages)))]["doc"].split() if w.isalpha()]
        if len(words) >= 3:
            start = int(rng.integers(len(words) - 2))
            queries.append(" ".join(words[start:start + int(rng.integers(1, 4))]))
    return queries


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


class Direct:
    """tantivy with a hand-made schema: label + one text field per row field."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        sb = tantivy.SchemaBuilder()
        sb.add_unsigned_field("label", indexed=True, fast=True)
        sb.add_text_field("name")
        sb.add_text_field("doc")
        self.schema = sb.build()
        self.index = tantivy.Index(self.schema, path=path)
        self.writer = self.index.writer(heap_size=HEAP, num_threads=THREADS)

    def add(self, labels: np.ndarray, rows: list[dict]) -> None:
        for label, row in zip(labels.tolist(), rows):
            doc = tantivy.Document()
            doc.add_unsigned("label", label)
            doc.add_text("name", row["name"])
            doc.add_text("doc", row["doc"])
            self.writer.add_document(doc)
        self.writer.commit()
        self.index.reload()

    def search(self, text: str, k: int, allowed: np.ndarray | None = None):
        query = self.index.parse_query(text, ["name", "doc"])
        if allowed is not None:
            query = tantivy.Query.boolean_query([
                (tantivy.Occur.Must, query),
                (tantivy.Occur.Must, tantivy.Query.const_score_query(
                    tantivy.Query.term_set_query(self.schema, "label", allowed.tolist()), 0.0))])
        searcher = self.index.searcher()
        hits = searcher.search(query, k, count=False).hits
        labels = searcher.fast_field_values("label", [h[1] for h in hits])
        return labels, [h[0] for h in hits]


def latency(a, b, queries: list[str], repeat: int = 5, **kw) -> tuple[tuple[float, float], ...]:
    """(p50, mean) in microseconds for searches ``a`` and ``b``, interleaved query by query
    (which goes first alternates), each query timed as the best of ``repeat`` runs (robust to a
    busy machine)."""
    for q in queries[:20]:  # warm-up
        a(q, 10, **kw)
        b(q, 10, **kw)
    times: tuple[list[float], list[float]] = ([], [])
    for n, q in enumerate(queries):
        pair = [(a, times[0]), (b, times[1])]
        for fn, out in (pair if n % 2 else pair[::-1]):
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                fn(q, 10, **kw)
                best = min(best, time.perf_counter() - t)
            out.append(best)
    return tuple((statistics.median(t) * 1e6, statistics.fmean(t) * 1e6) for t in times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    passages = collect_passages(args.passages, args.seed)
    print(f"collected passages in {time.perf_counter() - t0:.1f}s")
    queries = make_queries(passages, args.queries, args.seed)
    labels = np.arange(1, len(passages) + 1, dtype=np.uint64)
    rng = np.random.default_rng(args.seed + 2)
    allowed_small = np.sort(rng.choice(labels, 200, replace=False))
    allowed_broad = np.sort(rng.choice(labels, len(labels) // 2, replace=False))
    n_tokens = sum(len(p["doc"].split()) + 1 for p in passages)
    print(f"corpus: {len(passages)} passages, ~{n_tokens / len(passages):.0f} words each; "
          f"{len(queries)} queries; {tantivy.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        t_direct = t_ours = float("inf")
        for run in range(3):  # best of 3 fresh builds each, alternating
            direct = Direct(os.path.join(tmp, f"direct{run}"))
            t_direct = min(t_direct, timed(direct.add, labels, passages))
            ours = TextIndex.open(Path(tmp) / f"ours{run}", heap_bytes=HEAP, threads=THREADS)
            t_ours = min(t_ours, timed(lambda ti=ours: (ti.upsert(labels, passages), ti.commit())))
            if run < 2:
                ours.close()
                del direct
        # Same answers (same schema statistics: both have the fields "name" and "doc").
        for q in queries[:50]:
            a, _ = ours.search(q, 10)
            b, _ = direct.search(q, 10)
            assert a.tolist() == list(b)[: len(a)], q
        rows = [("index (rows/s)", len(passages) / t_direct, len(passages) / t_ours, "higher")]
        for title, kw in (("query k=10 (us)", {}),
                          ("query k=10, 200 allowed (us)", {"allowed": allowed_small}),
                          ("query k=10, 50% allowed (us)", {"allowed": allowed_broad})):
            (d50, dmean), (o50, omean) = latency(direct.search, ours.search, queries, **kw)
            rows.append((title + " p50", d50, o50, "lower"))
            rows.append((title + " mean", dmean, omean, "lower"))
        # The same queries through the public API: a collection holding the passages as fields.
        import vecstore
        col = vecstore.connect(Path(tmp) / "store").create_database("b").require_collection("c", dim=1)
        col.add(np.ones((len(passages), 1), np.float32), ids=list(range(len(passages))),
                fields=[{"name": p["name"], "doc": p["doc"]} for p in passages])
        col.text_search("warm up", k=10)  # builds the tantivy index once
        (d50, dmean), (o50, omean) = latency(direct.search, lambda q, k: col.text_search(q, k=k), queries)
        rows.append(("collection.text_search k=10 (us) p50", d50, o50, "lower"))
        rows.append(("collection.text_search k=10 (us) mean", dmean, omean, "lower"))
        col.database.client.close()
        # Last, as it leaves a second segment and deleted documents behind.
        t_upd = timed(lambda: (ours.upsert(labels[:2000], passages[:2000]), ours.commit()))
        rows.append(("re-upsert 2k existing rows (rows/s)", None, 2000 / t_upd, "higher"))
        ours.close()

    print(f"{'measure':40} {'tantivy direct':>15} {'TextIndex':>12} {'ratio':>7}")
    for title, d, o, better in rows:
        ratio = "" if d is None else f"{(o / d if better == 'lower' else d / o):.2f}x"
        d_txt = "-" if d is None else f"{d:,.0f}"
        print(f"{title:40} {d_txt:>15} {o:>12,.0f} {ratio:>7}")
    print("ratio = TextIndex cost / direct cost (1.00x = same; goal for queries <= 1.3x)")


if __name__ == "__main__":
    main()
