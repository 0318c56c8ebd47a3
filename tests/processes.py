"""Real taskframe-server and taskframe-worker processes on free ports, for tests."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import requests

from taskframe.testing.processes import FINISHED, ChildProcess, free_port

BIN = Path(sys.executable).parent

#: A server that reaps quickly and retries almost at once (integration and fault tests).
SERVER_ARGS = (
    "--lease-ttl", "2",
    "--reap-interval", "0.2",
    "--retry-backoff", "0.1",
    "--retry-backoff-max", "0.5",
)  # fmt: skip

#: The HTTP server the test servers run on: TASKFRAME_TEST_SERVER=granian runs the
#: integration tests against Granian (.ci/run does, for the files of the HTTP layer).
TEST_SERVER = os.environ.get("TASKFRAME_TEST_SERVER", "").strip() or "waitress"

#: A worker that notices cancellations and signals quickly.
WORKER_ARGS = (
    "--poll-interval", "1",
    "--heartbeat-interval", "0.3",
    "--shutdown-grace", "2",
)  # fmt: skip


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = ""):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``.

    The first polls come after 5 ms, the pause doubling up to ``interval``: a condition
    met at once costs no full interval, a long wait polls no more often than asked.
    """
    deadline = time.monotonic() + timeout
    pause = min(0.005, interval)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(pause)
        pause = min(pause * 2, interval)


#: One child process whose output goes to a log file (the plugin authors' fixture class).
Process = ChildProcess


class Server(Process):
    def __init__(
        self,
        db: str,
        log_path: Path,
        *args: str,
        port: int | None = None,
        via_env: bool = False,
        **kw,
    ):
        """``via_env=True`` passes the port and database as TASKFRAME_PORT/TASKFRAME_DB."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        command = [str(BIN / "taskframe-server"), *args]
        if TEST_SERVER != "waitress":
            command[1:1] = ["--server", TEST_SERVER]
        if via_env:
            kw["env"] = {**kw.get("env", {}), "TASKFRAME_PORT": str(self.port), "TASKFRAME_DB": db}
        else:
            command[1:1] = ["--port", str(self.port), "--db", db]
        super().__init__(command, log_path, **kw)

    def wait_ready(self, timeout: float = 20.0) -> Server:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"server exited early:\n{self.output()}")
            try:
                return requests.get(self.url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout, message=f"server on {self.url}")
        return self


class Worker(Process):
    def __init__(self, api_urls: list[str], log_path: Path, *args: str, **kw):
        command = [str(BIN / "taskframe-worker"), "--api-url", ",".join(api_urls), *args]
        super().__init__(command, log_path, **kw)


# -- small HTTP helpers for integration tests -------------------------------------


def submit(url: str, job_type: str, payload: dict, **fields) -> dict:
    """``POST /jobs``; returns the created job (fails the test on any other answer)."""
    answer = requests.post(
        f"{url}/jobs", json={"type": job_type, "payload": payload, **fields}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def get_job(url: str, job_id: int) -> dict:
    answer = requests.get(f"{url}/jobs/{job_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def attempts_of(url: str, job_id: int) -> list[dict]:
    """The finished attempts of a job, oldest first (``GET /jobs/{id}/attempts``)."""
    answer = requests.get(f"{url}/jobs/{job_id}/attempts", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["attempts"]


def wait_for_job(
    url: str, job_id: int, statuses=FINISHED, timeout: float = 30.0, interval: float = 0.1
) -> dict:
    """Poll the job until its status is one of ``statuses``; return it."""
    if isinstance(statuses, str):
        statuses = {statuses}
    last: dict = {}

    def reached() -> dict | None:
        last.update(get_job(url, job_id))
        return dict(last) if last["status"] in statuses else None

    try:
        return wait_until(reached, timeout, interval, message=f"job {job_id} in {set(statuses)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last}") from None


def wait_for_start(worker: Process, job_id: int, timeout: float = 30.0) -> None:
    """Wait until ``worker`` (run with ``--log-level DEBUG``) has started the job.

    More than ``running`` tells: that status is the server's lease, whose answer
    may still be on its way to the worker (or held up by a fault under test).
    """
    wait_until(
        lambda: f"job {job_id} started (" in worker.output(),
        timeout,
        message=f"the worker to start job {job_id} (is its --log-level DEBUG?)",
    )


def wait_long_polling(url: str, probe_type: str = "file", timeout: float = 30.0) -> None:
    """Wait until a long poll (a worker's lease) is pending on the server at ``url``.

    The server must run with ``--max-waiting 1``: a probe asking to wait (for
    ``probe_type``, which no job of the test has) is refused at once, with a
    ``retry_after``, exactly while that one wait slot is taken. The probe waits
    a millisecond when the slot is free, so it seldom turns the worker away (a
    worker turned away pauses, and this wait lasts that much longer).
    """

    def slot_taken() -> bool:
        answer = requests.post(
            f"{url}/lease",
            json={"worker_id": "long-poll-probe", "types": [probe_type], "max": 1, "wait": 0.001},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["jobs"] == [], "the probe leased a job"
        return answer.json()["retry_after"] is not None

    wait_until(slot_taken, timeout, message=f"a long poll to be pending on {url}")
