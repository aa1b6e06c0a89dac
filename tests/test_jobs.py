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

from vecstore.errors import ConflictError, JobFailedError, NotFoundError, TimeoutError_, VecstoreError
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


def test_wait_timeout_and_unknown_job(jm):
    gate = threading.Event()
    job_id = jm.submit("external_refresh", "a", lambda ctx: gate.wait(10))
    with pytest.raises(TimeoutError_):
        jm.wait(job_id, timeout=0.2)
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
