"""`make run`'s demo: loaded into an empty folder only, and the printed curl line works."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import vecstore
from vecstore.server.demo import curl_line, load_demo
from live_server import start_server


def test_demo_loads_once_and_its_curl_line_searches_it(tmp_path):
    data = tmp_path / "data"
    assert load_demo(data) is True
    assert load_demo(data) is False  # never touches a folder that already holds data
    client = vecstore.connect(data)
    assert client.get_database("demo").get_collection("articles").index_mode() == "HNSW-COS"
    server = start_server(data, client)
    try:
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed on this machine")
        line = curl_line(data, "127.0.0.1", server.server_address[1])
        out = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=30)
        reply = json.loads(out.stdout)
        items = reply["params"]["items"]
        assert reply["status"] == "success" and items["ids"][0] == 12 and len(items["ids"]) == 3
        assert all(f["lang"] == "en" and f["year"] >= 2010 for f in items["fields"])
    finally:
        server.stop()
        client.close()
