"""The server SIGKILLed mid-stream and restarted on the same database and port.

Every submission the server acknowledged (201) must end ``succeeded``; in
separate mode the outcomes a worker produced while the server was down must
reach the restarted server (accepted, not refused and run again).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import pytest
import requests

from tests.fault import (
    SERVER_ARGS,
    Recorder,
    all_jobs,
    append_job,
    attempts,
    executions,
    server_args,
    tag_of,
    wait_all_finished,
    worker_args,
)
from tests.processes import Server, wait_until

KILLS = 2


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Submitter(threading.Thread):
    """Submits jobs one by one until stopped, remembering which ones got a 201."""

    def __init__(self, url: str, make_job: Callable[[str], dict]) -> None:
        super().__init__(name="submitter", daemon=True)
        self.url = url
        self.make_job = make_job
        self.acknowledged: dict[int, str] = {}  # job id -> tag
        self.refused: Counter[str] = Counter()  # why unacknowledged submissions failed
        self.stopping = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            n = 0
            while not self.stopping.is_set():
                n += 1
                tag = f"s{n}"
                try:
                    response = http.post(f"{self.url}/jobs", json=self.make_job(tag), timeout=5)
                except requests.RequestException as exc:
                    self.refused[type(exc).__name__] += 1
                    time.sleep(0.05)
                    continue
                if response.status_code == 201:
                    self.acknowledged[response.json()["id"]] = tag
                else:
                    self.refused[str(response.status_code)] += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)


def _kill_and_restart(server: Server, start_server, *args: str) -> tuple[Server, float, float]:
    """SIGKILL ``server`` and start it again on the same port.

    Returns the new server, when the old one was killed and when the new one started.
    """
    killed_at = time.time()
    server.signal(signal.SIGKILL)
    server.popen.wait(timeout=10)
    time.sleep(0.3)  # down for a moment longer, with submissions and completions failing
    restarted_at = time.time()
    return start_server(server.db, *args, port=server.port), killed_at, restarted_at


def _wait_for_jobs_in_flight(http, url: str, submitter: Submitter, recorder: Recorder) -> list:
    """Wait until this server acknowledged submissions and a slow (recorder) job runs,
    its call arrived; return the running jobs. Killed then, it is in flight."""
    acknowledged = len(submitter.acknowledged)

    def in_flight() -> list | None:
        if len(submitter.acknowledged) <= acknowledged:
            return None
        running = all_jobs(http, url, "running")
        started = [job for job in running if recorder.calls[tag_of(job) or ""]]
        return running if started else None

    return wait_until(in_flight, 30, 0.02, "a slow job in flight, submissions acknowledged")


def _wait_for_acknowledgements(submitter: Submitter, count: int = 3) -> None:
    """Wait until ``count`` more submissions were acknowledged (by the restarted server)."""
    target = len(submitter.acknowledged) + count
    wait_until(
        lambda: len(submitter.acknowledged) >= target,
        30,
        0.02,
        f"{count} submissions acknowledged after the restart (refused: {submitter.refused})",
    )


def _check_every_acknowledged_job_succeeded(http, url, submitter, ran, context):
    jobs = {job["id"]: job for job in all_jobs(http, url)}
    assert submitter.acknowledged, f"no submission was acknowledged {context}"
    missing = set(submitter.acknowledged) - set(jobs)
    assert not missing, f"acknowledged jobs lost: {sorted(missing)} {context}"
    # Unacknowledged submissions may have been written before the kill: they run too.
    statuses = Counter(job["status"] for job in jobs.values())
    assert statuses == {"succeeded": len(jobs)}, context
    histories = {}
    for job_id, tag in submitter.acknowledged.items():
        history = attempts(http, url, job_id)
        outcomes = Counter(attempt["outcome"] for attempt in history)
        assert outcomes["succeeded"] == 1, (jobs[job_id], history, context)
        assert 1 <= ran[tag] <= 1 + outcomes["lease_expired"], (jobs[job_id], history, context)
        histories[job_id] = history
    return jobs, histories


@pytest.mark.fault
@pytest.mark.timeout(120)
def test_separate_server_killed_and_restarted(db_url, start_server, start_worker, http, tmp_path):
    # A TTL well above the restart time (seconds on a loaded machine) plus the
    # worker's retry backoff: this test is about outcomes crossing the outage,
    # not about leases expiring (see test_worker_crash for that).
    args = server_args(lease_ttl="10")
    file_root = tmp_path / "files"
    server = start_server(db_url, *args)
    start_worker([server.url], *worker_args(file_root, "w0", concurrency=8))
    with Recorder(delay=0.3) as recorder:
        # Every other job takes 0.3 s, so that jobs are running at each kill.
        submitter = Submitter(
            server.url,
            lambda tag: append_job(tag) if int(tag[1:]) % 2 else recorder.job(tag),
        )
        submitter.start()
        in_flight: dict[int, tuple[float, float]] = {}  # running at a kill -> (killed, restarted)
        for _ in range(KILLS):
            running = [
                job["id"] for job in _wait_for_jobs_in_flight(http, server.url, submitter, recorder)
            ]
            server, killed_at, restarted_at = _kill_and_restart(server, start_server, *args)
            in_flight.update((job_id, (killed_at, restarted_at)) for job_id in running)
        _wait_for_acknowledgements(submitter)
        submitter.stop()
        context = f"(submissions refused: {dict(submitter.refused)})"
        wait_all_finished(http, server.url, context)
        ran = executions(file_root) + recorder.calls
    jobs, histories = _check_every_acknowledged_job_succeeded(
        http, server.url, submitter, ran, context
    )
    assert in_flight, "no job was running when the server was killed"
    crossed = 0
    for job_id, (killed_at, restarted_at) in in_flight.items():
        history = histories.get(job_id) or attempts(http, server.url, job_id)
        # Running at the kill, the job ran once: what it produced meanwhile was
        # not refused and re-run. (A lease granted in a response the kill cut
        # off never reached the worker: that job waits for the lease to expire
        # and then runs, once, in a second attempt.)
        assert ran[tag_of(jobs[job_id])] == 1, (jobs[job_id], history)
        outcomes = [a["outcome"] for a in history]
        assert outcomes in (["succeeded"], ["lease_expired", "succeeded"]), (jobs[job_id], history)
        first = history[0]
        assert first["worker_id"] == "w0" and _timestamp(first["started_at"]) < killed_at
        crossed += outcomes == ["succeeded"] and _timestamp(first["finished_at"]) >= restarted_at
    # Outcomes produced while the server was down were delivered after the restart.
    assert crossed >= 1, f"no outcome crossed the outage: {in_flight}"


@pytest.mark.fault
@pytest.mark.timeout(120)
def test_standalone_server_killed_and_restarted(db_url, start_server, http, tmp_path):
    file_root = tmp_path / "files"

    def standalone(n: int) -> list[str]:
        return ["--standalone", *SERVER_ARGS, *worker_args(file_root, f"sa{n}", concurrency=8)]

    server = start_server(db_url, *standalone(0))
    with Recorder(delay=0.3) as recorder:
        submitter = Submitter(
            server.url,
            lambda tag: append_job(tag) if int(tag[1:]) % 2 else recorder.job(tag),
        )
        submitter.start()
        for n in range(1, KILLS + 1):
            _wait_for_jobs_in_flight(http, server.url, submitter, recorder)
            server, _, _ = _kill_and_restart(server, start_server, *standalone(n))
        _wait_for_acknowledgements(submitter)
        submitter.stop()
        context = f"(submissions refused: {dict(submitter.refused)})"
        # The killed worker's leases expire (TTL 2 s) and its jobs run again.
        wait_all_finished(http, server.url, context)
        ran = executions(file_root) + recorder.calls
    _check_every_acknowledged_job_succeeded(http, server.url, submitter, ran, context)
