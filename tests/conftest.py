"""Shared fixtures. ``client`` runs every behaviour test against the local library and, once
the server is importable, against ``vecstore.connect("http://...")`` on a live server."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import vecstore

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("ci")


def clustered(n: int, dim: int, *, clusters: int = 32, seed: int = 0, spread: float = 0.15) -> np.ndarray:
    """Gaussian clusters around random centres: the data ANN indexes meet in practice
    (uniform noise makes every neighbour equally far and tells nothing about recall)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    which = rng.integers(0, clusters, n)
    return (centres[which] + spread * rng.standard_normal((n, dim))).astype(np.float32)


class Beside:
    """Another caller's ``delete_items(ids)`` then ``compact()``, in a thread started when this
    is called (from a hook inside a search or a build). The call returns once that thread has
    finished, or waits for a lock the calling thread holds: so the call goes on exactly where a
    compact() running beside it would let it, without timing. Counts the waiters of the
    collection's writer mutex (which it wraps) for that."""

    def __init__(self, col, ids):
        self.col, self.ids, self.errors, self.waiting = col, ids, [], 0
        self._mutex, self._count = col._wlock, threading.Lock()
        col._wlock = self

    def __enter__(self):
        with self._count:
            self.waiting += 1
        self._mutex.acquire()
        with self._count:
            self.waiting -= 1

    def __exit__(self, *exc):
        self._mutex.release()

    def __call__(self):
        def run():
            try:
                self.col.delete_items(self.ids)
                self.col.compact()
            except Exception as e:  # noqa: BLE001 - reported by join()
                self.errors.append(e)
        self.thread = threading.Thread(target=run)
        self.thread.start()
        while self.thread.is_alive() and not (self.waiting or self.col._rw.writers_waiting):
            time.sleep(0.001)

    def join(self):
        self.thread.join()
        assert not self.errors, self.errors



# Prepended to a child script that runs a call short of file descriptors.
FD_PRESSURE = r'''
import os
def hold_all_but(spare):
    """Open /dev/null until the process is out of descriptors, then free ``spare`` of them;
    returns the ones held (close them to end the pressure)."""
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for fd in held[:spare]:
        os.close(fd)
    return held[spare:]
'''

@pytest.fixture
def lake(tmp_path):
    """A pyiceberg SqlCatalog with a file:// warehouse in a temp folder (iceberg_util.Lake)."""
    from iceberg_util import Lake
    return Lake(tmp_path / "lake")


@pytest.fixture
def table(lake):
    """ns.docs (dim 8) with two appended files: ids 0..999 and 1000..1999."""
    from iceberg_util import append
    tbl = lake.create_table("docs", dim=8)
    append(tbl, 0, 1000)
    append(tbl, 1000, 1000)
    return tbl


@pytest.fixture
def local_client(tmp_path):
    client = vecstore.connect(tmp_path / "store")
    yield client
    client.close()


def _remote_available() -> bool:
    try:
        import vecstore.remote  # noqa: F401
        import vecstore.server.app  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture
def server_url(tmp_path):
    """A live server on an ephemeral loopback port, over a fresh data folder."""

    from live_server import start_server
    data = tmp_path / "served"
    data.mkdir()
    backing = vecstore.connect(data)
    server = start_server(data, backing)
    try:
        yield server.url
    finally:
        server.stop()
        backing.close()


MODES = ["local", "remote"] if _remote_available() else ["local"]


@pytest.fixture(params=MODES)
def client(request, tmp_path):
    """The same API, locally and over HTTP."""
    if request.param == "local":
        c = vecstore.connect(tmp_path / "store")
    else:
        c = vecstore.connect(request.getfixturevalue("server_url"))
    yield c
    c.close()


@pytest.fixture
def db(client):
    return client.create_database("app")


@pytest.fixture
def count_reads(monkeypatch):
    """Records the path of every data file pyiceberg decodes."""
    import pyiceberg.io.pyarrow as pio

    seen: list[str] = []
    real = pio._task_to_record_batches

    def counting(io, task, *args, **kwargs):
        seen.append(task.file.file_path)
        return real(io, task, *args, **kwargs)

    monkeypatch.setattr(pio, "_task_to_record_batches", counting)
    return seen
