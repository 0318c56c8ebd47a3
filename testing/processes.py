"""A real ``taskframe-server`` and ``taskframe-worker`` in child processes, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from taskframe.core import model

FINISHED = frozenset(status.value for status in model.FINISHED)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChildProcess:
    """A child process logging to a file; ``stop()`` always leaves nothing running."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
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

    def output(self) -> str:
        """Everything the process logged so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

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
        self._log.close()
        return self.popen.returncode


_Process = ChildProcess  # the former name


class TaskframeServer(ChildProcess):
    """``taskframe-server`` on a free port and the given database, with small HTTP helpers."""

    def __init__(
        self,
        db: str,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "taskframe.standalone"]  # taskframe-server
        command += ["--port", str(self.port), "--db", db, *args]
        super().__init__(command, log_path, env)
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"taskframe-server exited early:\n{self.output()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"taskframe-server not ready after {timeout} s:\n{self.output()}"
                )
            time.sleep(0.05)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return requests.post(
            self.url + path, json=body, timeout=kwargs.pop("timeout", 30), **kwargs
        )

    def submit(self, job_type: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """``POST /jobs``; returns the job. Raises AssertionError with the answer otherwise."""
        answer = self.post("/jobs", {"type": job_type, "payload": payload, **fields})
        if answer.status_code not in (200, 201):
            raise AssertionError(f"POST /jobs answered {answer.status_code}: {answer.text}")
        return answer.json()

    def wait(self, job_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """The job once it finished; AssertionError (with the job) after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            wait = max(0.0, min(left, 60.0))
            answer = self.get(f"/jobs/{job_id}", params={"wait": f"{wait:.3f}"})
            answer.raise_for_status()
            job = answer.json()
            if job["status"] in FINISHED:
                return job
            if left <= 0:
                raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")

    def run(
        self, job_type: str, payload: dict[str, Any], *, within: float = 30.0, **fields: Any
    ) -> dict[str, Any]:
        """Submit a job and wait up to ``within`` s for it: the finished job.

        ``fields`` are the job's other fields (``timeout``, ``max_attempts``, ...).
        """
        return self.wait(self.submit(job_type, payload, **fields)["id"], within)


class TaskframeWorker(ChildProcess):
    """``taskframe-worker`` leasing from ``server``."""

    def __init__(
        self,
        server: TaskframeServer,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        command = [sys.executable, "-m", "taskframe.worker.cli", "--api-url", server.url, *args]
        super().__init__(command, log_path, env)
