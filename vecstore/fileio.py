"""The two file operations the durability contract needs outside LMDB.

A side file (an index, a snapshot, a text-index field map) is fsynced, and so is the folder
that names it, before the LMDB commit that points at it; a checksum recorded with it is
checked before the file is trusted.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "f"
>>> _ = p.write_bytes(b"abc")
>>> fsync_path(p); fsync_path(p.parent)
>>> sha256_file(p)[:12]
'ba7816bf8f01'
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 1 << 20


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's entry list is what a rename changes)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()
