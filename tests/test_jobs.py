"""The job system: states, progress, one refresh per target, cancel, persistence, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vecstore.errors import (ConflictError, InvalidArgumentError, JobFailedError, NotFoundError, ReadOnlyError, TimeoutError_,
                             VecstoreError)
from vecstore.jobs import JobManager


@pytest.fixture
def jm(tmp_path):
    m = JobManager(tmp_path / ".jobs")
    yield m
    m.close()


def test_completed_job_record(jm):
    seen = []

    def work(ctx):
        for p in (10, 5, 50, 99, 120):
            ctx.progress(p)
            seen.append(jm.describe(ctx.job_id).progress)
        return {"rows": 7}
    job_id = jm.submit("external_refresh", "books", work, external_source="s3://x")
    job = jm.wait(job_id, timeout=10)
    assert job.state == "COMPLETED" and job.progress == 100 and job.stats == {"rows": 7}
    assert seen == [10, 10, 50, 99, 99]  # monotonic, below 100 while running
    assert job.end_time >= job.start_time > 0
    z = job.to_zilliz()
    assert z["state"] == "RefreshCompleted" and "reason" not in z and z["externalSource"] == "s3://x"
    assert job.to_geneva()["status"] == "DONE"


def test_failed_job_keeps_reason(jm):
    def work(ctx):
        raise VecstoreError("column 'vec' is missing")
    job = jm.wait(jm.submit("external_refresh", "books", work), timeout=10)
    assert job.state == "FAILED" and "column 'vec'" in job.reason
    assert job.to_zilliz()["state"] == "RefreshFailed" and job.to_zilliz()["reason"]
    with pytest.raises(JobFailedError, match="column 'vec'"):
        jm.wait(job.job_id, raise_on_failure=True)
    # a bug in the work fails the job, not the process
    job = jm.wait(jm.submit("external_refresh", "books", lambda ctx: 1 / 0), timeout=10)
    assert job.state == "FAILED" and "ZeroDivisionError" in job.reason


def test_one_refresh_per_target_and_parallel_targets(jm):
    gate = threading.Event()
    running = []

    def slow(ctx):
        running.append(ctx.job_id)
        gate.wait(10)
    a = jm.submit("external_refresh", "a", slow)
    with pytest.raises(ConflictError, match="already in progress"):
        jm.submit("external_refresh", "a", slow)
    b = jm.submit("external_refresh", "b", slow)
    deadline = time.time() + 5
    while len(running) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert sorted(running) == sorted([a, b])  # different targets run at the same time
    gate.set()
    assert jm.wait(a, timeout=10).state == "COMPLETED"
    jm.wait(b, timeout=10)
    c = jm.submit("external_refresh", "a", lambda ctx: None)  # the lock was released
    assert jm.wait(c, timeout=10).state == "COMPLETED"


def test_cancel_running_and_pending(tmp_path):
    jm = JobManager(tmp_path / ".jobs", max_workers=1)
    try:
        started = threading.Event()

        def loop(ctx):
            started.set()
            while True:
                ctx.check_cancelled()
                time.sleep(0.01)
        a = jm.submit("mv_refresh", "a", loop)
        b = jm.submit("mv_refresh", "b", lambda ctx: None)  # queued behind a (one worker)
        started.wait(5)
        assert jm.describe(b).state == "PENDING"
        jm.cancel(b)
        jm.cancel(a)
        ja, jb = jm.wait(a, timeout=10), jm.wait(b, timeout=10)
        assert (ja.state, ja.cancelled, ja.reason) == ("FAILED", True, "cancelled by user")
        assert (jb.state, jb.cancelled) == ("FAILED", True)
        done = jm.wait(jm.submit("mv_refresh", "c", lambda ctx: None), timeout=10)
        assert jm.cancel(done.job_id).state == "COMPLETED"  # finished jobs stay as they are
    finally:
        jm.close()


def test_a_pending_job_cancelled_ends_at_once(tmp_path):
    """A cancelled pending job does not wait for a worker: it is FAILED at once and its target
    takes a new refresh while the other job still runs."""
    jm = JobManager(tmp_path / ".jobs", max_workers=1)
    try:
        started, release = threading.Event(), threading.Event()

        def hold(ctx):
            started.set()
            release.wait(10)
        a = jm.submit("mv_refresh", "a", hold)
        b = jm.submit("mv_refresh", "b", lambda ctx: None)
        started.wait(5)
        job = jm.cancel(b)
        assert (job.state, job.cancelled, job.reason) == ("FAILED", True, "cancelled by user")
        again = jm.submit("mv_refresh", "b", lambda ctx: {"rows": 1})  # the target is free
        assert jm.describe(a).state == "RUNNING"
        release.set()
        assert jm.wait(a, timeout=10).state == "COMPLETED"
        assert jm.wait(again, timeout=10).stats == {"rows": 1}
        assert jm.describe(b).state == "FAILED"  # its worker did not run it afterwards
    finally:
        jm.close()


def test_a_read_only_client_reads_jobs_another_process_runs(tmp_path):
    """A read-only client describes, lists and waits for the writer's jobs (no LockedError, no
    recovery written), and may not start or cancel any."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / ".vecstore-database").touch()
    jm = JobManager(tmp_path / "app" / ".jobs")
    release = threading.Event()
    job = jm.submit("mv_refresh", "v", lambda ctx: release.wait(20) and {"rows": 2})
    reader = textwrap.dedent(f"""
        import sys, vecstore
        from vecstore.errors import ReadOnlyError
        db = vecstore.connect(sys.argv[1], read_only=True).get_database("app")
        print(db.describe_refresh_job({job}).state, [j.state for j in db.list_refresh_jobs()], flush=True)
        try:
            db.cancel_refresh_job({job})
            print("accepted", flush=True)
        except ReadOnlyError:
            print("refused", flush=True)
        print(db.wait_refresh_job({job}, timeout=30).state, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", reader, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "RUNNING ['RUNNING']"
        assert proc.stdout.readline().strip() == "refused"
        assert jm.describe(job).state == "RUNNING"  # not cancelled, not marked interrupted
        release.set()
        assert proc.stdout.readline().strip() == "COMPLETED"
        assert proc.wait(30) == 0
    finally:
        release.set()
        proc.kill()
        jm.close()
    empty = JobManager(tmp_path / "none", read_only=True)  # no job store yet: nothing to read
    assert empty.list() == [] and empty.active_job("v") is None
    with pytest.raises(NotFoundError):
        empty.describe(1)
    with pytest.raises(ReadOnlyError):
        empty.submit("mv_refresh", "v", lambda ctx: None)
    empty.close()
    assert not (tmp_path / "none").exists()


def test_wait_timeout_and_unknown_job(jm):
    gate = threading.Event()
    job_id = jm.submit("external_refresh", "a", lambda ctx: gate.wait(10))
    with pytest.raises(TimeoutError_):
        jm.wait(job_id, timeout=0.2)
    for bad in ("5", float("nan"), float("inf"), 10**400, -1):  # a TypeError, OverflowError, never timing out
        with pytest.raises(InvalidArgumentError, match="timeout"):
            jm.wait(job_id, timeout=bad)
    with pytest.raises(InvalidArgumentError, match="raise_on_failure"):
        jm.wait(job_id, timeout=1, raise_on_failure="no")
    gate.set()
    jm.wait(job_id, timeout=10)
    with pytest.raises(NotFoundError):
        jm.describe(12345)


def test_list_survives_restart(tmp_path):
    jm = JobManager(tmp_path / ".jobs")
    ids = [jm.wait(jm.submit("external_refresh", name, lambda ctx: None), timeout=10).job_id for name in ("a", "b", "a")]
    jm.close()
    jm = JobManager(tmp_path / ".jobs")
    try:
        assert [j.job_id for j in jm.list()] == ids
        assert [j.job_id for j in jm.list(collection_name="a")] == [ids[0], ids[2]]
        assert all(j.state == "COMPLETED" for j in jm.list())
    finally:
        jm.close()


def test_job_running_when_process_died_is_failed_interrupted(tmp_path):
    child = textwrap.dedent(f"""
        import time, pathlib
        from vecstore.jobs import JobManager
        jm = JobManager(pathlib.Path({str(tmp_path / '.jobs')!r}))
        def work(ctx):
            ctx.progress(40)
            print("running", ctx.job_id, flush=True)
            time.sleep(60)
        jm.submit("external_refresh", "books", work)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line[0] == "running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    jm = JobManager(tmp_path / ".jobs")
    try:
        job = jm.describe(int(line[1]))
        assert (job.state, job.reason) == ("FAILED", "interrupted")
        jm.wait(jm.submit("external_refresh", "books", lambda ctx: None), timeout=10)  # lock released
    finally:
        jm.close()
