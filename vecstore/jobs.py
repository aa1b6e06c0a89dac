"""Persisted asynchronous jobs: refreshes of external collections and materialized views.

A job record lives in the database's job store (an LMDB environment in ``<db>/.jobs``, through
``storage.Storage``), so the list survives restarts. States, with the wire names of both APIs
that expose them:

==========  ======================  ============
internal    Zilliz (external)       Geneva (MV)
==========  ======================  ============
PENDING     ``RefreshPending``      ``PENDING``
RUNNING     ``RefreshInProgress``   ``RUNNING``
COMPLETED   ``RefreshCompleted``    ``DONE``
FAILED      ``RefreshFailed``       ``FAILED``
==========  ======================  ============

Cancellation ends a job as FAILED with ``reason="cancelled by user"``. A job that was PENDING or
RUNNING when its process died is FAILED with ``reason="interrupted"`` at the next open (the
``flock`` on the job store guarantees no other live process owns it), unless its commit had
landed (the ``landed`` hook asks the target): it died in the derived work after the commit,
which the target's next open or refresh catches up, so it is COMPLETED with a warning in its
``stats``. One refresh per target
at a time; different targets run in parallel on a small thread pool. Progress is an int
0-100, monotonic, and 100 only with COMPLETED. Times are milliseconds since the epoch.

The work itself commits its result in one LMDB transaction of the target collection, so a job
that fails or is cancelled changes nothing a reader can see.

>>> import tempfile, pathlib
>>> jm = JobManager(pathlib.Path(tempfile.mkdtemp()))
>>> job_id = jm.submit("demo", "c", lambda ctx: {"rows": 3})
>>> jm.wait(job_id, timeout=10).state
'COMPLETED'
>>> jm.close()
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import (ConflictError, JobCancelledError, JobFailedError, NotFoundError, ReadOnlyError,
                     TimeoutError_, VecstoreError)
from . import validation as v
from .storage import Storage

log = logging.getLogger(__name__)

ZILLIZ_STATE = {"PENDING": "RefreshPending", "RUNNING": "RefreshInProgress",
                "COMPLETED": "RefreshCompleted", "FAILED": "RefreshFailed"}
GENEVA_STATE = {"PENDING": "PENDING", "RUNNING": "RUNNING", "COMPLETED": "DONE", "FAILED": "FAILED"}
TERMINAL = ("COMPLETED", "FAILED")
_PERSIST_EVERY = 0.5  # seconds between persisted progress updates of a running job


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RefreshJob:
    """One job as recorded. ``to_zilliz()`` / ``to_geneva()`` give the two wire shapes."""

    job_id: int
    kind: str
    collection_name: str
    state: str = "PENDING"
    progress: int = 0
    start_time: int = 0
    end_time: int = 0
    reason: str = ""
    cancelled: bool = False
    external_source: str | None = None
    params: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "RefreshJob":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_zilliz(self) -> dict:
        """The record shape of ``…/external_collection/refresh/list`` and ``…/describe``."""
        out = {"jobId": self.job_id, "collectionName": self.collection_name,
               "state": ZILLIZ_STATE[self.state], "progress": self.progress,
               "externalSource": self.external_source or "", "startTime": self.start_time,
               "endTime": self.end_time}
        if self.state == "FAILED":
            out["reason"] = self.reason
        return out

    def to_geneva(self) -> dict:
        return {"job_id": str(self.job_id), "status": GENEVA_STATE[self.state], "progress": self.progress,
                "view": self.collection_name, "start_time": self.start_time, "end_time": self.end_time,
                "reason": self.reason, "stats": self.stats}


class JobContext:
    """Handed to the work function: report progress, check for cancellation."""

    def __init__(self, manager: "JobManager", job_id: int) -> None:
        self._manager = manager
        self.job_id = job_id
        self.cancel_event = threading.Event()
        self.cancel_reason = "cancelled by user"

    def progress(self, pct: float) -> None:
        """Report progress (clamped to 0-99: 100 comes only with completion; never goes back)."""
        self._manager._progress(self.job_id, int(max(0, min(99, pct))))

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelledError` when a cancel was requested; call between batches."""
        if self.cancel_event.is_set():
            raise JobCancelledError(self.cancel_reason)


class JobManager:
    """The jobs of one database: submit, describe, list, wait, cancel; recovers on open."""

    def __init__(self, path: Path, *, max_workers: int = 2, read_only: bool = False,
                 landed: Callable[[RefreshJob], bool] | None = None) -> None:
        """``read_only``: another process owns the job store (a read-only client): jobs can be
        described, listed and waited for, not submitted or cancelled, and nothing is recovered.
        ``landed(job)``: whether an unfinished job of a dead process had committed its result
        (asked once per such job when the store is recovered)."""
        self._path = Path(path)
        self._landed = landed
        self.read_only = read_only
        self._ro_storage: Storage | None = None
        self._storage = None if read_only else Storage(self._path)
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._live: dict[int, RefreshJob] = {}        # jobs of this process not yet terminal
        self._contexts: dict[int, JobContext] = {}
        self._last_persist: dict[int, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vecstore-job")
        self._closed = False
        if not read_only:
            self._recover()

    @contextmanager
    def _read(self) -> Iterator[Any]:
        """A read transaction of the job store; ``None`` when a read-only manager finds no
        store yet (no job was ever submitted in this database)."""
        store = self._storage
        if store is None:
            with self._lock:
                if self._ro_storage is None and (self._path / "data.mdb").exists():
                    self._ro_storage = Storage(self._path, read_only=True)
                store = self._ro_storage
        if store is None:
            yield None
            return
        with store.read() as t:
            yield t

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("the client is read-only: jobs can be described and listed, not started or cancelled")

    def _recover(self) -> None:
        """Jobs left PENDING/RUNNING by a dead process are FAILED "interrupted", or COMPLETED
        when their commit had landed; locks released."""
        def tx(t):
            n = 0
            for rec in list(t.iter_jobs()):
                if rec["state"] in TERMINAL:
                    continue
                if self._committed(rec):
                    warning = ("the process died after the job's commit, during its derived work (index, "
                               "compaction, text index), which is caught up later")
                    stats = {**rec.get("stats", {}), "committed": True}
                    stats["warnings"] = [*stats.get("warnings", []), warning]
                    rec.update(state="COMPLETED", reason="", progress=100, end_time=now_ms(), stats=stats)
                else:
                    rec.update(state="FAILED", reason="interrupted", end_time=now_ms())
                    n += 1
                t.put_job(str(rec["job_id"]), rec)
            for key, _ in list(t.iter_meta("active:")):
                t.delete_meta(key)
            return n
        n = self._storage.write(tx)
        if n:
            log.warning("marked %d interrupted job(s) failed", n)

    def _committed(self, rec: dict) -> bool:
        if self._landed is None:
            return False
        try:
            return self._landed(RefreshJob.from_dict(rec))
        except Exception as e:  # noqa: BLE001 - an unreadable target must not keep the job store shut
            log.warning("job %s: cannot tell whether its commit landed (%s): marked interrupted", rec["job_id"], e)
            return False

    def _put(self, job: RefreshJob) -> None:
        def tx(t):
            t.put_job(str(job.job_id), job.to_dict())
            if job.done and t.get_meta(f"active:{job.collection_name}") == job.job_id:
                t.delete_meta(f"active:{job.collection_name}")
        self._storage.write(tx)

    def submit(self, kind: str, collection_name: str, work: Callable[[JobContext], dict | None], *,
               external_source: str | None = None, params: dict | None = None) -> int:
        """Queue ``work(ctx)`` as a job on ``collection_name``; returns the job id at once.

        A second refresh of a target whose refresh is pending or running is refused with
        :class:`ConflictError` (HTTP 409).
        """
        self._check_writable()
        with self._lock:
            if self._closed:
                raise VecstoreError("the job manager is closed")

            def tx(t):
                active = t.get_meta(f"active:{collection_name}")
                if active is not None:
                    raise ConflictError(f"a refresh of {collection_name!r} is already in progress (job {active})")
                job_id = max(t.get_meta("last_job_id", 0) + 1, now_ms() * 1000)
                t.put_meta("last_job_id", job_id)
                t.put_meta(f"active:{collection_name}", job_id)
                job = RefreshJob(job_id=job_id, kind=kind, collection_name=collection_name,
                                 start_time=now_ms(), external_source=external_source, params=params or {})
                t.put_job(str(job_id), job.to_dict())
                return job
            job = self._storage.write(tx)
            self._live[job.job_id] = job
            ctx = self._contexts[job.job_id] = JobContext(self, job.job_id)
            self._pool.submit(self._run, job.job_id, work, ctx)
            return job.job_id

    def _run(self, job_id: int, work: Callable, ctx: JobContext) -> None:
        with self._lock:
            job = self._live.get(job_id)
            if job is None:  # cancelled while pending: already finished
                return
            if ctx.cancel_event.is_set():
                self._finish(job, "FAILED", ctx.cancel_reason, cancelled=True)
                return
            job = self._live[job_id] = replace(job, state="RUNNING")
            self._put(job)
        try:
            stats = work(ctx) or {}
        except JobCancelledError:
            self._finish(self._live[job_id], "FAILED", ctx.cancel_reason, cancelled=True)
        except VecstoreError as e:
            self._finish(self._live[job_id], "FAILED", str(e))
        except Exception as e:  # a bug or a library error: the job fails, the process lives on
            log.exception("job %s failed", job_id)
            self._finish(self._live[job_id], "FAILED", f"{type(e).__name__}: {e}")
        else:
            self._finish(self._live[job_id], "COMPLETED", "", stats=stats)

    def _finish(self, job: RefreshJob, state: str, reason: str, *, cancelled: bool = False,
                stats: dict | None = None) -> None:
        with self._lock:
            job = replace(job, state=state, reason=reason, cancelled=cancelled, end_time=now_ms(),
                          progress=100 if state == "COMPLETED" else job.progress,
                          stats=stats if stats is not None else job.stats)
            try:
                self._put(job)
            finally:
                self._live.pop(job.job_id, None)
                self._contexts.pop(job.job_id, None)
                self._last_persist.pop(job.job_id, None)
                self._done.notify_all()

    def _progress(self, job_id: int, pct: int) -> None:
        with self._lock:
            job = self._live.get(job_id)
            if job is None or pct <= job.progress:
                return
            job = self._live[job_id] = replace(job, progress=pct)
            if time.monotonic() - self._last_persist.get(job_id, 0.0) >= _PERSIST_EVERY:
                self._last_persist[job_id] = time.monotonic()
                self._put(job)

    def describe(self, job_id: int) -> RefreshJob:
        """The current record of a job; NotFoundError for an unknown id."""
        job_id = _job_id(job_id)
        with self._lock:
            if job_id in self._live:
                return self._live[job_id]
        with self._read() as t:
            rec = None if t is None else t.get_job(str(job_id))
        if rec is None:
            raise NotFoundError(f"jobId: no job {job_id}")
        return RefreshJob.from_dict(rec)

    def list(self, collection_name: str | None = None, kind: str | None = None) -> list[RefreshJob]:
        """Jobs, oldest first, optionally of one target and kind."""
        with self._read() as t:
            recs = [] if t is None else [RefreshJob.from_dict(r) for r in t.iter_jobs()]
        with self._lock:
            recs = [self._live.get(r.job_id, r) for r in recs]
        return sorted((r for r in recs if (collection_name is None or r.collection_name == collection_name)
                       and (kind is None or r.kind == kind)), key=lambda r: r.job_id)

    def active_job(self, collection_name: str) -> int | None:
        with self._read() as t:
            return None if t is None else t.get_meta(f"active:{collection_name}")

    def wait(self, job_id: int, timeout: float | None = None, *, raise_on_failure: bool = False) -> RefreshJob:
        """Block until the job ends (or ``timeout`` seconds pass: :class:`TimeoutError_`).

        With ``raise_on_failure`` a failed job raises :class:`JobFailedError` (or
        :class:`JobCancelledError`) carrying its reason.
        """
        job_id = _job_id(job_id)
        timeout = v.check_timeout(timeout)
        raise_on_failure = v.check_bool(raise_on_failure, param="raise_on_failure")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            while True:
                job = self.describe(job_id)
                if job.done:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError_(f"job {job_id} still {job.state} after {timeout} s (progress {job.progress})")
                self._done.wait(timeout=0.5 if left is None else min(left, 0.5))
        if raise_on_failure and job.state == "FAILED":
            raise (JobCancelledError if job.cancelled else JobFailedError)(f"job {job_id} failed: {job.reason}")
        return job

    def cancel(self, job_id: int) -> RefreshJob:
        """Ask a job to stop. A pending job ends at once; a running one at its next check (its
        result is never committed); a finished job is left as it is."""
        job_id = _job_id(job_id)
        self._check_writable()
        with self._lock:
            ctx = self._contexts.get(job_id)
            if ctx is not None:
                ctx.cancel_event.set()
                job = self._live.get(job_id)
                if job is not None and job.state == "PENDING":  # its worker will find it finished
                    self._finish(job, "FAILED", ctx.cancel_reason, cancelled=True)
        return self.describe(job_id)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Cancel what is running, wait for the workers, release the job store."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for ctx in self._contexts.values():
                ctx.cancel_reason = "cancelled: the database was closed"
                ctx.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=False)
        for store in (self._storage, self._ro_storage):
            if store is not None:
                store.close()


def _job_id(value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        from .errors import InvalidArgumentError
        raise InvalidArgumentError(f"jobId: expected an integer job id, got {value!r}") from None
