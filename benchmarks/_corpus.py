"""A real text corpus without a download: the docstrings of the installed Python packages."""

from __future__ import annotations

import ast
import site
from pathlib import Path
from typing import Iterator

import numpy as np


def docstrings(rng: np.random.Generator, min_chars: int) -> Iterator[tuple[str, str]]:
    """``(name, docstring)`` of modules, classes and functions in site-packages, files in an
    order shuffled by ``rng`` (so a seed fixes the corpus for a given set of installed packages)."""
    roots = [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]
    files = sorted(f for root in roots for f in root.rglob("*.py"))
    rng.shuffle(files)
    for path in files:
        try:
            tree = ast.parse(path.read_text("utf-8", errors="replace"))
        except (SyntaxError, ValueError, RecursionError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > min_chars:
                    yield (path.stem if isinstance(node, ast.Module) else f"{path.stem}.{node.name}"), doc
