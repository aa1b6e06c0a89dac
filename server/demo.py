"""``make run``'s first step: load a small demo collection into the data folder if it is empty,
and print a ``curl`` line that searches it once the server is up.

    python -m vecstore.server.demo --data ./data [--host 127.0.0.1] [--port 7637]

The demo is 2,000 short "articles" with 64-dimensional vectors, a ``lang`` and a ``year``
field, an HNSW index and text fields for BM25, in ``demo/articles``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("vecstore.server.demo")

TOPICS = ["vector search", "databases", "python", "gardening", "astronomy", "cooking", "music", "cycling"]
WORDS = {
    "vector search": "embedding nearest neighbour index recall hnsw cosine",
    "databases": "transaction durable query index storage commit",
    "python": "function module package typing interpreter library",
    "gardening": "soil seed water compost tomato spring",
    "astronomy": "planet telescope orbit galaxy star comet",
    "cooking": "recipe oven flour butter simmer taste",
    "music": "melody rhythm guitar chord tempo song",
    "cycling": "bike wheel climb route gear saddle",
}


def load_demo(data: Path, *, n: int = 2000, dim: int = 64, seed: int = 0) -> bool:
    """Create ``demo/articles`` unless the data folder already holds a database; True if loaded."""
    import vecstore

    client = vecstore.connect(data)
    try:
        if client.list_databases():
            return False
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((len(TOPICS), dim)).astype(np.float32)
        topic = rng.integers(0, len(TOPICS), n)
        vectors = centres[topic] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
        fields = []
        for i, t in enumerate(topic):
            words = rng.choice(WORDS[TOPICS[t]].split(), size=4, replace=False)
            fields.append({"title": f"{TOPICS[t].title()} note {i}", "body": " ".join(words),
                           "topic": TOPICS[t], "lang": ("en", "de", "fr")[i % 3], "year": int(2000 + i % 25)})
        col = client.create_database("demo").require_collection(
            "articles", dim=dim, metric="cosine", description="vecstore demo: 2,000 short notes on 8 topics")
        col.add(vectors, ids=list(range(n)), fields=fields)
        col.build_index("HNSW-COS")
        col.checkpoint()
        np.save(data / "demo" / ".query.npy", vectors[12])  # article 12: lang en, year 2012
        return True
    finally:
        client.close()


def curl_line(data: Path, host: str, port: int) -> str:
    """A search request for the demo collection (article 12's vector as the query)."""
    query_file = data / "demo" / ".query.npy"
    vector = np.load(query_file).astype(np.float64).round(4).tolist() if query_file.exists() else [0.0] * 64
    body = {"database_name": "demo", "collection_name": "articles", "vector": vector, "k": 3,
            "where": "lang = 'en' AND year >= 2010", "return_fields": True}
    return (f"curl -s -X POST http://{host}:{port}/search -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(body, separators=(',', ':')))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vecstore.server.demo", description="Load a small demo collection into the data folder if it is empty, and print "
                                             "a curl line that searches it once the server is up.")
    ap.add_argument("--data", default="./data")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7637)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = Path(args.data)
    if load_demo(data):
        log.info("loaded the demo collection demo/articles into %s", data)
    else:
        log.info("%s already holds databases; leaving them as they are", data)
    # The one place the project prints: the line a newcomer copies into a shell.
    if (data / "demo" / ".query.npy").exists():
        print("\nOnce the server below is up, search the demo with:\n\n  " + curl_line(data, args.host, args.port)
              + "\n", flush=True)
    else:
        print(f"\nOnce the server below is up, list its databases with:\n\n  curl -s http://{args.host}:{args.port}"
              "/list_databases\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
