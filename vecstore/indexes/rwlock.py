"""A small writer-preferring readers-writer lock for the derived indexes.

hnswlib releases the GIL inside ``knn_query`` / ``add_items``; a search that runs while an insert,
``mark_deleted`` or ``resize_index`` mutates the graph can crash the process (reliability.md §2.2:
4 readers + ``resize_index`` writer segfaulted 3/3 runs). So every index guards its native
structure with this lock: any number of readers, or one writer.

Writer preference: once a writer is waiting, new readers queue behind it, so a steady stream of
searches cannot starve ``add``. The lock is **not re-entrant**: a thread holding either side must
not acquire again (a reader re-acquiring while a writer waits would deadlock).

>>> lock = RWLock()
>>> with lock.read:
...     with lock.read:  # two readers at once (here from one thread, only for the doctest)
...         lock.readers
2
>>> with lock.write:
...     lock.writing
True
"""

from __future__ import annotations

import threading

__all__ = ["RWLock"]


class _Side:
    """Context manager for one side of the lock (kept as a class: cheaper than @contextmanager)."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire, release) -> None:
        self._acquire = acquire
        self._release = release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, *exc: object) -> None:
        self._release()


class RWLock:
    """Readers-writer lock: ``with lock.read:`` (shared) and ``with lock.write:`` (exclusive)."""

    __slots__ = ("_cond", "_mutex", "_readers", "_writers_waiting", "_writing", "read", "write")

    def __init__(self) -> None:
        # ``with self._mutex`` rather than ``with self._cond``: the same lock, entered from C
        # instead of through Condition's Python-level __enter__ (a search takes two read locks).
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self.read = _Side(self.acquire_read, self.release_read)
        self.write = _Side(self.acquire_write, self.release_write)

    @property
    def readers(self) -> int:
        """Number of readers currently holding the lock."""
        return self._readers

    @property
    def writers_waiting(self) -> int:
        """Number of writers queued for the lock."""
        return self._writers_waiting

    @property
    def writing(self) -> bool:
        """True while a writer holds the lock."""
        return self._writing

    def acquire_read(self) -> None:
        with self._mutex:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._mutex:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            except BaseException:  # interrupted: let the readers queued behind us go
                self._writers_waiting -= 1
                self._cond.notify_all()
                raise
            self._writers_waiting -= 1
            self._writing = True

    def release_write(self) -> None:
        with self._mutex:
            self._writing = False
            self._cond.notify_all()
