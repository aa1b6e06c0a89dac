"""The real LynseDB Python clients against our server (issue 7: "a real client works").

Two eras of the client, each in its own Python 3.12 virtual environment, against a live server
started here with an API key:

* ``tests/server/lynse_smoke.py`` (69 checks): ``lynsedb==0.2.0``, the seed-era client (its
  wheel for 3.11 dies with SIGILL on some CPUs, lynse_api §10-§11), in ``.peers/lynse020``;
* ``tests/server/lynse_head_smoke.py`` (103 checks): ``lynsedb==0.9.0``, the HEAD-era client
  (renamed paths, binary record writes, blobs; lynse_api §4.8, §5.5, §6), in ``.peers/lynse090``.

The environment of a version is, in order:

1. ``$VECSTORE_LYNSE020_PYTHON`` / ``$VECSTORE_LYNSE090_PYTHON`` (an interpreter that has that
   ``lynse``), if set;
2. ``.peers/lynse020`` / ``.peers/lynse090`` in the repository, if it imports that ``lynse``;
3. otherwise created there: ``python3.12 -m venv`` + ``pip install lynsedb==<version>`` (PyPI;
   10 s to a minute, 120 MB). No python3.12, or pip failing, is a skip with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import vecstore
from live_server import start_server

REPO = Path(__file__).resolve().parents[2]
KEY = "smoke-key-7"


@dataclass(frozen=True)
class Era:
    version: str
    smoke: Path
    expected_checks: int  # every check of the smoke script when an API key is set
    imports: str  # what the smoke script needs besides lynse
    why_312: str  # why a 3.12 interpreter, for the skip message

    @property
    def tag(self) -> str:
        return "lynse" + self.version.replace(".", "")

    @property
    def venv(self) -> Path:
        return REPO / ".peers" / self.tag

    @property
    def env_var(self) -> str:
        return f"VECSTORE_{self.tag.upper()}_PYTHON"


SEED = Era("0.2.0", Path(__file__).with_name("lynse_smoke.py"), 69, "httpx, numpy",
           "its 3.11 wheel is unusable, lynse_api §10")
HEAD = Era("0.9.0", Path(__file__).with_name("lynse_head_smoke.py"), 103, "numpy",
           "one interpreter for both client eras")


def _works(python: Path, era: Era) -> bool:
    try:
        r = subprocess.run([str(python), "-c", f"import lynse, {era.imports}; assert lynse.__version__ == '{era.version}'"],
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


def lynse_python(era: Era) -> Path:
    """An interpreter with lynsedb ``era.version``, creating the venv if needed; pytest.skip if impossible."""
    v = era.version
    override = os.environ.get(era.env_var)
    if override:
        if _works(Path(override), era):
            return Path(override)
        pytest.skip(f"${era.env_var}={override} cannot import lynse {v}")
    python = era.venv / "bin" / "python"
    if python.exists() and _works(python, era):
        return python
    base = _find_python312()
    if base is None:
        pytest.skip(f"no python3.12 on this machine: cannot build the LynseDB {v} client venv ({era.why_312})")
    # Build beside the final place and rename, so an interrupted build never looks usable.
    tmp = era.venv.with_name(f"{era.tag}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    steps = [[base, "-m", "venv", str(tmp)],
             [str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              f"lynsedb=={v}"]]
    for cmd in steps:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.skip(f"building the lynse {v} venv timed out: {' '.join(cmd)}")
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = f"cannot build the lynse {v} venv ({' '.join(cmd)}): {(r.stderr or r.stdout)[-800:]}"
            print(reason, file=sys.stderr)
            pytest.skip(reason)
    shutil.rmtree(era.venv, ignore_errors=True)
    tmp.rename(era.venv)
    if not _works(python, era):
        pytest.skip(f"the freshly built lynse {v} venv cannot import lynse")
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


def _run_smoke(era: Era, url: str, key: str = KEY) -> None:
    python = lynse_python(era)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("VECSTORE_API_KEY", None)
    try:
        r = subprocess.run([str(python), str(era.smoke), url, "--api-key", key],
                           capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the smoke run did not finish in 240 s; output so far:\n{e.stdout}")
    out = r.stdout + r.stderr
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not failed, out
    assert f"{era.expected_checks} passed, 0 failed" in out, out


@pytest.mark.timeout(900)  # building the venv on a fresh machine takes a minute or two
def test_lynse_020_client_smoke(keyed_server):
    _run_smoke(SEED, keyed_server.url)


@pytest.mark.timeout(900)
def test_lynse_090_client_smoke(keyed_server):
    _run_smoke(HEAD, keyed_server.url)


def _served(conn) -> int:
    """Requests the process behind ``conn`` answered, its own /metrics calls left out."""
    _, body, _ = conn.raw("GET", "/metrics")
    return sum(int(n) for path, n in re.findall(rb'vecstore_http_requests_total\{path="([^"]+)",status="\d+"\} (\d+)', body)
               if path != b"/metrics")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("era", [SEED, HEAD], ids=["0.2.0", "0.9.0"])
def test_lynse_client_smoke_against_two_processes(era, tmp_path):
    """``--processes 2``, with the client's first connection steered to the replica (the
    primary holds one more connection, and a new one goes to the process holding fewer): its
    reads are answered there and its writes forwarded, and every check still passes."""
    from test_processes import KEY as PROCESS_KEY, Server
    lynse_python(era)  # skip before starting anything when the client cannot be installed
    server = Server(tmp_path / "data")
    held = []
    try:
        while len(held) < 20:
            held.append(server.connect())
            roles = [c.role for c in held]
            if roles.count("replica") >= 1 and roles.count("primary") == roles.count("replica") + 1:
                break
        replica = next(c for c in held if c.role == "replica")
        before = _served(replica)
        _run_smoke(era, f"http://127.0.0.1:{server.port}", PROCESS_KEY)
        assert _served(replica) > before + 10, "the replica answered none of the client's requests"
    finally:
        for c in held:
            c.close()
        server.stop()
