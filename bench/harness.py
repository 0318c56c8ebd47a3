"""Real server and worker processes, a fresh database, and HTTP helpers for the benchmark."""

from __future__ import annotations

import ctypes
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
NOOP = {"type": "sleep", "payload": {"duration": 0}}
PAGE = 1000  # the largest page GET /jobs gives


class BenchError(Exception):
    """A workload could not run or its jobs did not end as expected."""


class Deadline:
    def __init__(self, seconds: float, what: str) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"timed out after {self.seconds:.0f} s: {self.what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Children get SIGKILL if the benchmark dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def proc_kb(pid: int, field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` (peak) of a live process, in kB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


class Proc:
    """A child process logging to a file; ``stop`` always leaves nothing behind."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.name = log_path.stem
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.peak_kb: int | None = None
        self.signalled = 0.0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        """Record the peak RSS, then SIGTERM (``wait_exit`` finishes the job)."""
        self.signalled = time.monotonic()
        if self.alive():
            self.peak_kb = proc_kb(self.popen.pid, "VmHWM")
            self.popen.send_signal(signal.SIGTERM)

    def wait_exit(self, grace: float = 15.0) -> str | None:
        """Wait, SIGKILL after ``grace`` s; a note if the exit was slow or unclean."""
        killed = False
        try:
            self.popen.wait(timeout=max(0.0, self.signalled + grace - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            killed = True
        self.log.close()
        took = time.monotonic() - self.signalled
        if killed:
            return f"{self.name} ignored SIGTERM for {grace:.0f} s, killed"
        if self.popen.returncode not in (0, -signal.SIGTERM):
            return f"{self.name} exited with code {self.popen.returncode}"
        return f"{self.name} took {took:.1f} s to exit after SIGTERM" if took > 3 else None

    def problems(self) -> list[str]:
        """Log lines that look like errors: ERROR/CRITICAL, and each traceback's last line."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        found: list[str] = []
        for index, line in enumerate(lines):
            if re.search(r"\bERROR\b|\bCRITICAL\b", line):
                found.append(line.strip())
            elif line.startswith("Traceback"):
                rest = (x for x in lines[index + 1 :] if x and not x[0].isspace())
                found.append(f"Traceback ... {next(rest, '?').strip()}")
        unique = list(dict.fromkeys(line[:300] for line in found))
        more = [f"... {len(unique) - 5} more"] if len(unique) > 5 else []
        return [f"{self.name}: {line}" for line in unique[:5] + more]


class Env:
    """A fresh database and a real ``taskframe-server`` on a free port, plus workers."""

    def __init__(
        self, db: str, workdir: Path, label: str, server_args: list[str], worker_args: list[str]
    ) -> None:
        self.workdir, self.label, self.worker_args = workdir, label, worker_args
        self.schema: str | None = None
        self.base_db = db
        if db == "sqlite":
            url = str(workdir / f"{label}.db")
        else:
            import psycopg

            self.schema = f"bench_{label.lower()}_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            url = f"{db}{'&' if '?' in db else '?'}options=-csearch_path%3D{self.schema}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers: list[Proc] = []
        self.notes: list[str] = []
        args = [str(BIN / "taskframe-server"), "--port", str(self.port), "--db", url]
        self.server = Proc(args + server_args, workdir / f"{label}-server.log")
        self.api = Api(self.url)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        deadline = Deadline(30, "server /health")
        while True:
            if not self.server.alive():
                raise BenchError(f"server exited early, see {self.server.log_path}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            deadline.check()
            time.sleep(0.05)

    def start_workers(self, count: int, concurrency: int) -> None:
        for _ in range(count):
            name = f"{self.label}-worker{len(self.workers)}"
            args = [str(BIN / "taskframe-worker"), "--api-url", self.url, "--worker-id", name]
            args += ["--concurrency", str(concurrency), *self.worker_args]
            self.workers.append(Proc(args, self.workdir / f"{name}.log"))

    def check_alive(self) -> None:
        for proc in [self.server, *self.workers]:
            if not proc.alive():
                raise BenchError(f"{proc.name} exited (code {proc.popen.returncode})")

    def close(self) -> dict[str, Any]:
        """Stop workers, then the server, drop the schema; peak RSS (MB) and notes."""
        for worker in self.workers:  # all at once: an idle one may take a while
            worker.terminate()
        exits = [worker.wait_exit() for worker in self.workers]
        self.server.terminate()
        exits.append(self.server.wait_exit())
        self.notes.extend(note for note in exits if note)
        for proc in [self.server, *self.workers]:
            self.notes.extend(proc.problems())
        if self.schema:
            import psycopg

            with psycopg.connect(self.base_db, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        workers = [w.peak_kb for w in self.workers]
        return {
            "server_peak_rss_mb": _mb(self.server.peak_kb),
            "worker_peak_rss_mb": _mb(max(workers) if None not in workers else None)
            if workers
            else "no worker",
        }


def _mb(kb: int | None) -> float | str:
    return round(kb / 1024, 1) if kb else "n/a (exited early)"


class Api:
    """The few client calls the benchmark needs, on one ``requests.Session``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        resp = self.session.request(method, self.url + path, timeout=kw.pop("timeout", 60), **kw)
        if resp.status_code != expect:
            raise BenchError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def submit(self, job: dict[str, Any] = NOOP) -> int:
        return self.call("POST", "/jobs", 201, json=job)["id"]

    def batch(self, jobs: list[dict[str, Any]]) -> list[int]:
        body = self.call("POST", "/jobs/batch", 201, json={"jobs": jobs})
        if body["created"] != len(jobs) or len(body["ids"]) != len(jobs):
            raise BenchError(f"batch of {len(jobs)}: created={body['created']}")
        return body["ids"]

    def newest_id(self) -> int:
        jobs = self.call("GET", "/jobs", params={"limit": 1})["jobs"]
        return jobs[0]["id"] if jobs else 0

    def jobs_after(
        self, base_id: int, status: str | None = None, timeout: float = 600
    ) -> Iterator[dict[str, Any]]:
        """Every job with id > ``base_id`` (newest first), paging with the cursor."""
        params: dict[str, Any] = {"limit": PAGE}
        if status:
            params["status"] = status
        deadline = Deadline(timeout, "paging GET /jobs")
        while True:
            page = self.call("GET", "/jobs", params=params)
            for job in page["jobs"]:
                if job["id"] <= base_id:
                    return
                yield job
            if page["next_cursor"] is None:
                return
            params["cursor"] = page["next_cursor"]
            deadline.check()

    def active(self) -> bool:
        """Is any job queued or running?"""
        return any(
            self.call("GET", "/jobs", params={"status": status, "limit": 1})["jobs"]
            for status in ("queued", "running")
        )

    def wait_idle(self, env: Env, timeout: float, interval: float = 0.02) -> float:
        """Poll until no job is queued or running; the ``perf_counter`` at that moment."""
        deadline = Deadline(timeout, "jobs to finish")
        while self.active():
            env.check_alive()
            deadline.check()
            time.sleep(interval)
        return time.perf_counter()


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def verify_succeeded(api: Api, base_id: int, expected: set[int]) -> list[dict[str, Any]]:
    """All jobs after ``base_id`` are exactly ``expected``, succeeded, in one attempt."""
    jobs = list(api.jobs_after(base_id, timeout=60 + len(expected) / 200))
    seen = {job["id"] for job in jobs}
    problems = []
    if seen != expected:
        problems.append(
            f"{len(expected - seen)} submitted job(s) missing, {len(seen - expected)} unexpected"
        )
    statuses: dict[str, int] = {}
    for job in jobs:
        if job["status"] != "succeeded":
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
    if statuses:
        problems.append(f"not succeeded: {statuses}")
    retried = [job["id"] for job in jobs if job["attempts"] != 1]
    if retried:
        problems.append(f"{len(retried)} job(s) with attempts != 1, e.g. {retried[:5]}")
    if problems:
        raise BenchError("verification failed: " + "; ".join(problems))
    return jobs


def job_clock(jobs: list[dict[str, Any]], start_field: str = "started_at") -> float:
    """Seconds from the first ``start_field`` to the last ``finished_at`` (server clock)."""
    start = min(parse_time(job[start_field]) for job in jobs)
    return max(parse_time(job["finished_at"]) for job in jobs) - start


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="taskframe-bench-"))


def kill_all(envs: list[Env]) -> None:
    """Last resort at exit: SIGKILL whatever is still running."""
    for env in envs:
        for proc in [env.server, *env.workers]:
            if proc.alive():
                proc.popen.kill()
