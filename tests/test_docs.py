"""The documentation runs: module doctests, the README's Python blocks, and every example."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vecstore

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(vecstore.__path__, "vecstore.")
                 if not m.name.startswith("vecstore.server"))


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python quickstart"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_run(name, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_library_prints_nothing_unless_the_application_configures_logging(tmp_path):
    """Without a handler of ours, Python's last-resort handler printed vecstore's warnings to
    stderr in applications that never set up logging; configured, they reach its handlers."""
    code = ("import logging, sys, vecstore\n"
            "logging.getLogger('vecstore.storage').warning('a warning')\n"
            "if sys.argv[1] == 'configured':\n"
            "    logging.basicConfig()\n"
            "    logging.getLogger('vecstore.storage').warning('a configured warning')\n")
    for mode, expected in [("bare", ""), ("configured", "WARNING:vecstore.storage:a configured warning\n")]:
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        assert (out.stdout, out.stderr) == ("", expected)
