"""What the two LynseDB client smokes (``lynse_smoke.py`` for 0.2.0, ``lynse_head_smoke.py`` for
0.9.0) share: the check runner, the assertions and the command line. They run as scripts in
the clients' own virtual environments, so this module uses only the standard library and numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np

ROWS = [
    (0, [1.0, 0.0, 0.0, 0.0], {"lang": "en", "n": 0, "title": "apple pie", "tags": ["a", "b"]}),
    (1, [0.0, 1.0, 0.0, 0.0], {"lang": "de", "n": 1, "title": "apple strudel", "tags": ["b"]}),
    (2, [0.0, 0.0, 1.0, 0.0], {"lang": "en", "n": 2, "title": "blue sky", "tags": ["c"]}),
    (3, [0.0, 0.0, 0.0, 1.0], {"lang": "fr", "n": 3, "title": "green apple", "tags": ["a"]}),
    (4, [0.5, 0.5, 0.0, 0.0], {"lang": "en", "n": 4, "title": "red car", "tags": ["d"]}),
    (5, [0.0, 0.0, 0.5, 0.5], {"lang": "de", "n": 5, "title": "fast car", "tags": ["c"]}),
]
E0 = [1.0, 0.0, 0.0, 0.0]


class SmokeBase:
    """Counts checks; ``run()`` (in the subclass) calls :meth:`step` per check, then :meth:`finish`."""

    prefix = "smoke"  # of server-side names, so runs of both smokes never collide
    client_version = "LynseDB"

    def __init__(self, url: str, api_key: str | None, backup_dir: str | None, reference: bool = False) -> None:
        self.url = url.rstrip("/")
        self.reference = reference
        self.api_key = api_key
        self.backup_dir = backup_dir
        self.tag = f"{os.getpid()}_{int(time.time())}"
        self.passed = 0
        self.failed = 0
        self.s: dict[str, Any] = {}  # state shared between steps

    def step(self, name: str, fn: Callable[[], Any], *, extension: bool = False) -> None:
        """Run one check. ``extension`` marks behaviour vecstore adds on top of LynseDB (skipped
        with ``--reference``, when the server under test is LynseDB's own)."""
        if extension and self.reference:
            print(f"skip {name} (vecstore extension)")
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a smoke test reports every failure and goes on
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if os.environ.get("SMOKE_VERBOSE"):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {name}")

    def server_path(self, name: str) -> str:
        leaf = f"{self.prefix}_{self.tag}_{name}"
        return os.path.join(self.backup_dir, leaf) if self.backup_dir else leaf

    @property
    def c(self):
        return self.s["coll"]

    @property
    def db(self):
        return self.s["db"]

    def finish(self) -> int:
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed or not self.passed else 0


def check_eq(got: Any, want: Any) -> None:
    if isinstance(got, np.ndarray):
        got = got.tolist()
    if got != want:
        raise AssertionError(f"expected {want!r}, got {got!r}")


def check_true(value: Any) -> None:
    if not value:
        raise AssertionError("expected a true value")


def check_close(got: Any, want: Any, tol: float) -> None:
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    if got.shape != want.shape or not np.allclose(got, want, atol=tol):
        raise AssertionError(f"expected {want.tolist()}, got {got.tolist()}")


def check_raises(fn: Callable[[], Any], types: tuple[type[BaseException], ...]) -> None:
    try:
        fn()
    except types:
        return
    raise AssertionError("expected an error")


def main(smoke: type[SmokeBase], doc: str, argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--api-key", default=os.environ.get("VECSTORE_API_KEY"))
    ap.add_argument("--backup-dir", default=None, help="server-side folder for snapshots and exports")
    ap.add_argument("--reference", action="store_true",
                    help="the server is LynseDB's own: skip the checks of vecstore extensions")
    args = ap.parse_args(argv)
    return smoke(args.url, args.api_key, args.backup_dir, args.reference).run()


if __name__ == "__main__":
    sys.exit("run lynse_smoke.py or lynse_head_smoke.py")
