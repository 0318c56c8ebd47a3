"""A database write-locked by someone else: 503 + Retry-After, nothing half-written.

SQLite: another connection holds ``BEGIN IMMEDIATE`` on the server's file.
PostgreSQL: another session holds ``LOCK TABLE jobs IN EXCLUSIVE MODE`` (reads
pass, writes wait); the server's ``lock_timeout`` is its --db-busy-timeout.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from tests.fault import (
    all_jobs,
    append_job,
    attempts,
    executions,
    get_job,
    server_args,
    sleep_job,
    submit,
    worker_args,
)
from tests.processes import wait_until

BUSY_TIMEOUT = 0.5


@contextmanager
def write_locked(db_url: str) -> Iterator[None]:
    """Hold the database's write lock (from this process) until the block ends."""
    if db_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_url) as connection:  # a transaction, rolled back below
            connection.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.rollback()
        return
    connection = sqlite3.connect(db_url, isolation_level=None, timeout=5)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
    finally:
        connection.close()


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert "Traceback" not in response.text
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["title"] == "Database unavailable"
    assert "unavailable" in body["description"] and "retry" in body["description"], body


@pytest.mark.fault
@pytest.mark.timeout(60)
def test_write_locked_database_answers_503_and_loses_nothing(
    db_url, start_server, start_worker, http, tmp_path
):
    # A TTL above the lock's ~2.5 s: heartbeats fail while the database is
    # locked, and this test is about the lock, not about losing the lease.
    args = [*server_args(lease_ttl="6"), "--db-busy-timeout", str(BUSY_TIMEOUT)]
    server = start_server(db_url, *args)
    file_root = tmp_path / "files"
    worker = start_worker([server.url], *worker_args(file_root, "w0"))
    job_id = submit(http, server.url, sleep_job(1.5))["id"]
    started = wait_until(
        lambda: (job := get_job(http, server.url, job_id))["status"] == "running" and job,
        timeout=30,
        message="the job to start",
    )
    finishes_at = datetime.fromisoformat(started["started_at"].replace("Z", "+00:00")).timestamp()
    finishes_at += 1.5
    before = {job["id"] for job in all_jobs(http, server.url)}
    submission = append_job("after-the-lock", idempotency_key="locked-out")

    with write_locked(db_url):
        _assert_unavailable(http.post(f"{server.url}/jobs", json=submission, timeout=10))
        _assert_unavailable(
            http.post(f"{server.url}/jobs/batch", json={"jobs": [submission]}, timeout=10)
        )
        _assert_unavailable(http.post(f"{server.url}/jobs/{job_id}/cancel", timeout=10))
        # Readers are not blocked: the job is still visible, still running.
        assert get_job(http, server.url, job_id)["status"] == "running"
        # Keep the lock until the job has ended on the worker and its report bounced.
        wait_until(
            lambda: time.time() > finishes_at + 1.0,
            timeout=30,
            message="the job to end on the worker",
        )
        assert "503" in worker.output(), "the worker's report did not meet the lock"
        assert get_job(http, server.url, job_id)["status"] == "running"

    # Nothing was half-written: no job appeared, and the key is still free.
    assert {job["id"] for job in all_jobs(http, server.url)} == before
    response = http.post(f"{server.url}/jobs", json=submission, timeout=10)
    assert response.status_code == 201, response.text
    new_id = response.json()["id"]

    # The worker kept its result and delivered it once the lock was gone.
    done = http.get(f"{server.url}/jobs/{job_id}", params={"wait": 30}, timeout=40).json()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["result"]["slept"] >= 1.5
    history = attempts(http, server.url, job_id)
    assert [(a["worker_id"], a["outcome"]) for a in history] == [("w0", "succeeded")]
    after = http.get(f"{server.url}/jobs/{new_id}", params={"wait": 30}, timeout=40).json()
    assert after["status"] == "succeeded", after
    assert executions(file_root) == {"after-the-lock": 1}
    log = server.output()
    assert "Traceback" not in log and "unexpected error" not in log, log
