"""Lease answers that cannot be used: a worker gone, stopped or frozen while its lease
request is parked on the server.

A long-poll answer written for a worker that is no longer there must not cost
the job an attempt (it is released at once, outcome ``released``), and a worker
that reads a lease answer late must not start a job whose lease may have
expired meanwhile (another worker may have run it already).
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

import pytest
import requests

from tests.fault import (
    SERVER_ARGS,
    all_jobs,
    append_job,
    attempts,
    executions,
    get_job,
    submit,
    wait_all_finished,
    worker_args,
)
from tests.processes import wait_until

#: Long enough that a parked lease request outlives every step of a test.
LONG_POLL = ("--poll-interval", "30")
ROLLING_RESTARTS = 6


def parked_worker(start_worker, http, url: str, file_root: Path, name: str, *extra: str):
    """A worker whose lease request is parked on the server (it ran a probe job, and the
    request that reported it now waits for work)."""
    worker = start_worker([url], *worker_args(file_root, name), *LONG_POLL, *extra)
    probe = submit(http, url, append_job(f"probe-{name}"))
    wait_until(
        lambda: get_job(http, url, probe["id"])["status"] == "succeeded",
        timeout=30,
        message=f"worker {name} to run its probe job",
    )
    return worker


def finished(http, url: str, job_id: int) -> dict:
    return wait_until(
        lambda: (
            (job := get_job(http, url, job_id))["status"] in ("succeeded", "failed", "cancelled")
            and job
        ),
        timeout=40,
        message=f"job {job_id} to finish",
    )


@pytest.mark.fault
@pytest.mark.timeout(90)
def test_a_job_leased_to_a_killed_parked_worker_is_released_uncharged(
    db_url, start_server, start_worker, http, tmp_path
):
    """Issue 24.2: kill -9 while parked. Before: the parked request leased the next
    job to the dead worker; it failed "lease expired" one TTL later."""
    server = start_server(db_url, *SERVER_ARGS)
    file_root = tmp_path / "files"
    victim = parked_worker(start_worker, http, server.url, file_root, "victim")
    victim.kill()
    job = submit(http, server.url, append_job("once", max_attempts=1))
    start_worker([server.url], *worker_args(file_root, "second"))
    done = finished(http, server.url, job["id"])
    history = attempts(http, server.url, job["id"])
    assert done["status"] == "succeeded", (done, history)
    assert done["worker_id"] == "second"
    # Leased to the dead worker's request or not at all; never charged.
    assert {a["outcome"] for a in history[:-1]} <= {"released"}, history
    assert history[-1]["outcome"] == "succeeded"
    assert executions(file_root)["once"] == 1


@pytest.mark.fault
@pytest.mark.timeout(90)
def test_a_gracefully_stopped_worker_leaves_no_job_behind(
    db_url, start_server, start_worker, http, tmp_path
):
    """Issue 18.3, one stop: a job submitted after the worker exited is not leased to it."""
    server = start_server(db_url, *SERVER_ARGS)
    file_root = tmp_path / "files"
    stopped = parked_worker(start_worker, http, server.url, file_root, "stopped")
    stopped.signal(signal.SIGTERM)
    assert stopped.popen.wait(timeout=15) == 0
    job = submit(http, server.url, append_job("once", max_attempts=1))
    start_worker([server.url], *worker_args(file_root, "second"))
    done = finished(http, server.url, job["id"])
    history = attempts(http, server.url, job["id"])
    assert done["status"] == "succeeded", (done, history)
    assert [a["outcome"] for a in history if a["outcome"] != "released"] == ["succeeded"]


@pytest.mark.fault
@pytest.mark.timeout(150)
def test_rolling_restarts_under_steady_submission_fail_no_job(
    db_url, start_server, start_worker, http, tmp_path
):
    """Issue 18.3: workers replaced one by one (SIGTERM) while jobs keep coming.
    Before: every stop of an idle worker left its long poll parked on the server,
    which leased the next job to nobody; with one attempt, that job failed."""
    server = start_server(db_url, *SERVER_ARGS)
    file_root = tmp_path / "files"
    names = iter(f"w{n}" for n in range(100))

    def new_worker():
        name = next(names)
        worker = start_worker([server.url], *worker_args(file_root, name, 2), *LONG_POLL)
        wait_until(lambda: name in seen_workers(), timeout=30, message=f"worker {name} to lease")
        return worker

    def seen_workers() -> set[str]:
        answer = http.get(f"{server.url}/workers", timeout=10)
        return {w["id"] for w in answer.json()["workers"]}

    submitted: list[int] = []
    stop = threading.Event()

    def submit_steadily() -> None:
        with requests.Session() as session:
            n = 0
            while not stop.is_set():
                job = submit(session, server.url, append_job(f"j{n}", max_attempts=1))
                submitted.append(job["id"])
                n += 1
                stop.wait(0.05)

    workers = [new_worker(), new_worker()]
    submitter = threading.Thread(target=submit_steadily, daemon=True)
    submitter.start()
    try:
        for _ in range(ROLLING_RESTARTS):
            workers.append(new_worker())
            old = workers.pop(0)
            old.signal(signal.SIGTERM)
            assert old.popen.wait(timeout=15) == 0, old.output()
            # Jobs keep coming after the stop: a parked request of the stopped
            # worker would lease some of them.
            target = len(submitted) + 10
            wait_until(lambda: len(submitted) >= target, timeout=20, message="submissions")  # noqa: B023
    finally:
        stop.set()
        submitter.join(timeout=20)
    wait_all_finished(http, server.url, "after the rolling restarts", timeout=60)
    failed = all_jobs(http, server.url, "failed")
    assert [(j["id"], j["error"]) for j in failed] == []
    assert len(all_jobs(http, server.url, "succeeded")) == len(submitted)
    runs = executions(file_root)
    assert len(runs) == len(submitted) and set(runs.values()) == {1}


@pytest.mark.fault
@pytest.mark.timeout(90)
def test_a_stalled_worker_does_not_start_a_job_another_worker_ran(
    db_url, start_server, start_worker, http, tmp_path
):
    """Issue 24.1: a worker frozen (SIGSTOP) while its lease request is parked. The
    server leases it a job, the lease expires, another worker runs the job. Before:
    once thawed, the first worker read the old answer and ran the job a second time."""
    server = start_server(db_url, *SERVER_ARGS)
    file_root = tmp_path / "files"
    first = parked_worker(
        start_worker, http, server.url, file_root, "first", "--log-level", "DEBUG"
    )
    first.signal(signal.SIGSTOP)
    try:
        job = submit(http, server.url, append_job("twice?", max_attempts=5))
        job_id = job["id"]
        outcomes = lambda: [a["outcome"] for a in attempts(http, server.url, job_id)]  # noqa: E731
        wait_until(
            lambda: "lease_expired" in outcomes(),
            timeout=30,
            message="the frozen worker's lease to expire",
        )
        start_worker([server.url], *worker_args(file_root, "second"))
        done = finished(http, server.url, job_id)
        assert done["status"] == "succeeded" and done["worker_id"] == "second"
    finally:
        first.signal(signal.SIGCONT)
    # Thawed, the first worker reads the answer: it either ran the job (its report
    # then comes back 409) or gave it back unstarted.
    dealt_with = re.compile(
        rf"refused the \w+ outcome of job {job_id}\b|job {job_id}\b.*(unstarted|not started)"
    )
    wait_until(
        lambda: dealt_with.search(first.output()),
        timeout=30,
        message=f"the thawed worker to deal with job {job_id}; its log:\n{first.output()}",
    )
    assert executions(file_root)["twice?"] == 1, first.output()
