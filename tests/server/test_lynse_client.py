"""The real LynseDB 0.2.0 Python client against our server (issue 7: "a real client works").

``tests/server/lynse_smoke.py`` (69 checks) runs in a Python 3.12 virtual environment with
``lynsedb==0.2.0`` (its wheel for 3.11 dies with SIGILL on some CPUs, lynse_api §10-§11),
against a live server started here with an API key. The environment is, in order:

1. ``$VECSTORE_LYNSE020_PYTHON`` (an interpreter that has ``lynse``), if set;
2. ``.peers/lynse020`` in the repository, if it imports ``lynse``;
3. otherwise created there: ``python3.12 -m venv`` + ``pip install lynsedb==0.2.0`` (PyPI;
   about a minute, 120 MB). No python3.12, or pip failing, is a skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vecstore
from live_server import start_server

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".peers" / "lynse020"
SMOKE = Path(__file__).with_name("lynse_smoke.py")
KEY = "smoke-key-7"
EXPECTED_CHECKS = 69  # every check of lynse_smoke.py when an API key is set


def _works(python: Path) -> bool:
    try:
        r = subprocess.run([str(python), "-c", "import lynse, httpx, numpy; assert lynse.__version__ == '0.2.0'"],
                           capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _find_python312() -> str | None:
    """A working 3.12 interpreter (a pyenv shim may exist and still refuse to run)."""
    candidates = [*sorted(map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")), reverse=True),
                  shutil.which("python3.12"), "/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for candidate in filter(None, candidates):
        try:
            r = subprocess.run([candidate, "-c", "import sys, venv; assert sys.version_info[:2] == (3, 12)"],
                               capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return candidate
    return None


def lynse_python() -> Path:
    """An interpreter with lynsedb 0.2.0, creating the venv if needed; pytest.skip if impossible."""
    override = os.environ.get("VECSTORE_LYNSE020_PYTHON")
    if override:
        if _works(Path(override)):
            return Path(override)
        pytest.skip(f"$VECSTORE_LYNSE020_PYTHON={override} cannot import lynse 0.2.0")
    python = VENV / "bin" / "python"
    if python.exists() and _works(python):
        return python
    base = _find_python312()
    if base is None:
        pytest.skip("no python3.12 on this machine: cannot build the LynseDB 0.2.0 client venv "
                    "(its 3.11 wheel is unusable, lynse_api §10)")
    # Build beside the final place and rename, so an interrupted build never looks usable.
    tmp = VENV.with_name(f"lynse020.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    steps = [[base, "-m", "venv", str(tmp)],
             [str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "lynsedb==0.2.0"]]
    for cmd in steps:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.skip(f"building the lynse 0.2.0 venv timed out: {' '.join(cmd)}")
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = f"cannot build the lynse 0.2.0 venv ({' '.join(cmd)}): {(r.stderr or r.stdout)[-800:]}"
            print(reason, file=sys.stderr)
            pytest.skip(reason)
    shutil.rmtree(VENV, ignore_errors=True)
    tmp.rename(VENV)
    if not _works(python):
        pytest.skip("the freshly built lynse 0.2.0 venv cannot import lynse")
    return python


@pytest.fixture
def keyed_server(tmp_path):
    data = tmp_path / "served"
    data.mkdir()
    backing = vecstore.connect(data)
    server = start_server(data, backing, api_key=KEY)
    try:
        yield server
    finally:
        server.stop()
        backing.close()


@pytest.mark.timeout(900)  # building the venv on a fresh machine takes a minute or two
def test_lynse_020_client_smoke(keyed_server):
    python = lynse_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("VECSTORE_API_KEY", None)
    try:
        r = subprocess.run([str(python), str(SMOKE), keyed_server.url, "--api-key", KEY],
                           capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the smoke run did not finish in 240 s; output so far:\n{e.stdout}")
    out = r.stdout + r.stderr
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not failed, out
    assert f"{EXPECTED_CHECKS} passed, 0 failed" in out, out
