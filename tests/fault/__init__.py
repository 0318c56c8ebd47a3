"""Fault-injection tests: real processes killed, stopped, cut off and locked out.

Shared settings and small helpers. Every job that matters records its
execution with a ``file`` append of ``"<tag>\\n"`` to a log under the workers'
shared ``--file-root``; the tag maps back to the job id, so a test counts how
often each job really ran. A ``file`` append is instant; where a test needs
jobs that take time *and* record their runs, an ``http`` job calls a
:class:`Recorder`, which counts the call and then answers slowly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from taskframe.core import model
from tests.processes import SERVER_ARGS, WORKER_ARGS, wait_until

# The short server and worker settings (the worker's without --file-root: see worker_args).
from tests.stub_http import QuietHandler, StubServer

RUN_LOG = "runs.log"
HTTP_TIMEOUT = 10.0


def server_args(**overrides: str) -> list[str]:
    """:data:`SERVER_ARGS` with some values replaced: ``server_args(lease_ttl="6")``."""
    args = list(SERVER_ARGS)
    for name, value in overrides.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def worker_args(file_root: Path, worker_id: str, concurrency: int = 4) -> list[str]:
    return [
        *WORKER_ARGS,
        "--file-root",
        str(file_root),
        "--worker-id",
        worker_id,
        "--concurrency",
        str(concurrency),
    ]


def append_job(tag: str, **fields: Any) -> dict[str, Any]:
    """A ``file`` job that appends ``"<tag>\\n"`` to the run log when it runs."""
    payload = {"operation": "append", "path": RUN_LOG, "content": f"{tag}\n"}
    return {"type": "file", "payload": payload, **fields}


def sleep_job(duration: float, **fields: Any) -> dict[str, Any]:
    return {"type": "sleep", "payload": {"duration": duration}, **fields}


def tag_of(job: dict[str, Any]) -> str | None:
    """The tag a job records when it runs (an append job's or a Recorder job's)."""
    payload = job["payload"]
    if job["type"] == "file" and payload.get("operation") == "append":
        return payload["content"].strip()
    if job["type"] == "http":
        return payload["url"].rsplit("/", 1)[-1]
    return None


def executions(file_root: Path) -> Counter[str]:
    """How many times each tag was appended to the run log."""
    path = file_root / RUN_LOG
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)


def submit(http: requests.Session, url: str, job: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"{url}/jobs", json=job, timeout=HTTP_TIMEOUT)
    assert response.status_code == 201, response.text
    return response.json()


def submit_batch(http: requests.Session, url: str, jobs: list[dict[str, Any]]) -> list[int]:
    response = http.post(f"{url}/jobs/batch", json={"jobs": jobs}, timeout=HTTP_TIMEOUT)
    assert response.status_code == 201, response.text
    return response.json()["ids"]


def get_job(http: requests.Session, url: str, job_id: int) -> dict[str, Any]:
    response = http.get(f"{url}/jobs/{job_id}", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def attempts(http: requests.Session, url: str, job_id: int) -> list[dict[str, Any]]:
    response = http.get(f"{url}/jobs/{job_id}/attempts", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["attempts"]


def all_jobs(http: requests.Session, url: str, status: str | None = None) -> list[dict]:
    """Every job, whole (or every job with ``status``), following the cursor."""
    jobs: list[dict] = []
    params: dict[str, Any] = {"limit": 1000, "full": "true"}
    if status:
        params["status"] = status
    while True:
        response = http.get(f"{url}/jobs", params=params, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        page = response.json()
        jobs += page["jobs"]
        if page["next_cursor"] is None:
            return jobs
        params["cursor"] = page["next_cursor"]


def unfinished(http: requests.Session, url: str) -> int | None:
    """How many jobs are not finished yet (None when the server does not answer).

    One snapshot (``GET /stats`` counts by status in one query): listing each
    status in turn missed jobs that the reaper moved from running to queued
    or scheduled between two listings, and the wait ended with them unfinished.
    """
    try:
        response = http.get(f"{url}/stats", timeout=HTTP_TIMEOUT)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    by_status: dict[str, int] = response.json()["by_status"]
    return sum(count for status, count in by_status.items() if status not in model.FINISHED)


def wait_all_finished(http: requests.Session, url: str, context: str, timeout: float = 60) -> None:
    """Wait until every job finished; ``context`` explains a failure."""
    wait_until(
        lambda: unfinished(http, url) == 0,
        timeout=timeout,
        interval=0.3,
        message=f"every job to finish {context}",
    )


class Recorder:
    """A local HTTP server counting ``GET /<tag>`` calls; it answers after ``delay`` s."""

    def __init__(self, delay: float = 0.3) -> None:
        self.calls: Counter[str] = Counter()
        lock = threading.Lock()
        calls = self.calls

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with lock:
                    calls[self.path.strip("/")] += 1
                time.sleep(delay)
                try:
                    self.reply(200, b"ok")
                except OSError:
                    pass  # the calling worker was killed meanwhile

        self._handler = Handler
        self._server: StubServer | None = None
        self.url = ""

    def job(self, tag: str, **fields: Any) -> dict[str, Any]:
        """An ``http`` job that records ``tag`` here when it runs."""
        return {"type": "http", "payload": {"url": f"{self.url}/{tag}", "timeout": 10}, **fields}

    def __enter__(self) -> Recorder:
        self._server = StubServer(self._handler)
        self.url = self._server.url
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
