"""``--pool process``: jobs in child processes that a timeout, a cancellation or a crash ends.

The ``spin`` and ``crash`` executors come from a real plugin distribution
(``tests.plugin_dist``) installed on the server and the worker through
``PYTHONPATH``; ``spin`` busy-loops without ever looking at its cancel event,
so only killing its process stops it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests import plugin_dist
from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import attempts_of, submit, wait_for_job, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": plugin_dist.install(tmp_path / "site")}


@pytest.fixture
def deployment(env, sqlite_url, start_server, start_worker):
    """A server and a one-slot process-pool worker, both with the test plugin."""
    server = start_server(sqlite_url, *SERVER_ARGS, env=env)
    worker = start_worker(
        [server.url], *WORKER_ARGS, "--pool", "process", "--concurrency", "1", env=env
    )
    return server, worker


def child_pid(url: str) -> int:
    """The pid of the worker's (single) job process: a quick ``spin`` reports it."""
    job = wait_for_job(url, submit(url, "spin", {"seconds": 0})["id"])
    assert job["status"] == "succeeded", job
    return job["result"]["pid"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_jobs_run_in_a_child_process_that_stays_between_jobs(deployment) -> None:
    server, worker = deployment
    first = child_pid(server.url)
    assert first != worker.pid
    assert child_pid(server.url) == first


def test_a_timeout_kills_a_job_that_ignores_its_cancel_event(deployment) -> None:
    server, worker = deployment
    before = child_pid(server.url)
    job = submit(server.url, "spin", {"seconds": 3600}, timeout=1, max_attempts=1)

    done = wait_for_job(server.url, job["id"], timeout=60)

    assert done["status"] == "failed" and "timed out after 1 s" in done["error"], done
    wait_until(lambda: gone(before), timeout=30, message=f"job process {before} killed")
    after = child_pid(server.url)  # the slot has a new process and runs the next job
    assert after not in (before, worker.pid)
    assert worker.alive()


def test_a_cancellation_kills_a_job_that_ignores_its_cancel_event(deployment) -> None:
    server, worker = deployment
    before = child_pid(server.url)
    job = submit(server.url, "spin", {"seconds": 3600}, max_attempts=1)
    wait_for_job(server.url, job["id"], "running")

    answer = requests.post(f"{server.url}/jobs/{job['id']}/cancel", timeout=30)
    assert answer.status_code == 200, answer.text

    done = wait_for_job(server.url, job["id"], timeout=60)
    assert done["status"] == "cancelled", done
    assert [a["outcome"] for a in attempts_of(server.url, job["id"])] == ["cancelled"]
    wait_until(lambda: gone(before), timeout=30, message=f"job process {before} killed")
    assert child_pid(server.url) != before
    assert "killing its process" in worker.output()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"how": "exit", "code": 3}, "the job's process died (exit code 3)"),
        ({"how": "segfault"}, "the job's process died (killed by SIGSEGV)"),
    ],
)
def test_a_crashing_child_fails_only_its_own_attempt(deployment, payload, error) -> None:
    server, worker = deployment
    before = child_pid(server.url)
    crash = submit(server.url, "crash", payload, max_attempts=2)

    done = wait_for_job(server.url, crash["id"], timeout=60)

    assert done["status"] == "failed" and done["error"] == error, done
    # Each attempt died alone; the worker survived both and runs the next job.
    assert [a["outcome"] for a in attempts_of(server.url, crash["id"])] == ["failed", "failed"]
    assert worker.alive()
    assert child_pid(server.url) not in (before, worker.pid)


def test_the_thread_pool_cannot_stop_a_deaf_job(env, sqlite_url, start_server, start_worker):
    """The contrast that motivates the process pool: a timed-out thread keeps spinning."""
    server = start_server(sqlite_url, *SERVER_ARGS, env=env)
    worker = start_worker([server.url], *WORKER_ARGS, "--concurrency", "1", env=env)
    job = submit(server.url, "spin", {"seconds": 3}, timeout=0.5, max_attempts=1)
    done = wait_for_job(server.url, job["id"], timeout=60)
    assert done["status"] == "failed" and "timed out" in done["error"]
    # The next job waits for the spinning thread to give the slot back, and runs in the worker.
    after = wait_for_job(server.url, submit(server.url, "spin", {"seconds": 0})["id"])
    assert after["result"]["pid"] == worker.pid


def test_job_processes_exit_when_the_worker_is_killed(deployment) -> None:
    server, worker = deployment
    busy = child_pid(server.url)
    job = submit(server.url, "spin", {"seconds": 3600}, max_attempts=1)
    wait_for_job(server.url, job["id"], "running")

    worker.kill()  # SIGKILL: no shutdown, no goodbye to the children

    wait_until(lambda: gone(busy), timeout=30, message=f"job process {busy} gone")
