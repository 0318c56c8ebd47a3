"""Real taskframe-server and taskframe-worker processes on free ports, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = ""):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(interval)


class Process:
    """One child process whose output goes to a log file; killed at cleanup."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL: always leaves no process behind."""
        if self.alive():
            self.signal(signal.SIGCONT)  # a SIGSTOPped process cannot exit otherwise
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self.log.close()
        return self.popen.returncode

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")


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

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


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
