"""A worker frozen (SIGSTOP) past its lease: it is fenced off when it wakes up."""

from __future__ import annotations

import re
import signal

import pytest

from tests.fault import SERVER_ARGS, attempts, get_job, sleep_job, submit, worker_args
from tests.processes import wait_until
from tests.unit.test_scheduler import raw_connection


@pytest.mark.fault
@pytest.mark.timeout(90)
def test_stopped_worker_is_fenced_after_its_lease_expired(
    db_url, start_server, start_worker, http, tmp_path
):
    server = start_server(db_url, *SERVER_ARGS)
    file_root = tmp_path / "files"
    first = start_worker([server.url], *worker_args(file_root, "first"))
    job = submit(http, server.url, sleep_job(2, max_attempts=5))
    wait_until(
        lambda: get_job(http, server.url, job["id"])["status"] == "running",
        timeout=30,
        message="the first worker to lease the job",
    )
    first.signal(signal.SIGSTOP)
    try:
        assert get_job(http, server.url, job["id"])["worker_id"] == "first"
        # Only now a second worker: it gets the job once the frozen worker's lease expired.
        start_worker([server.url], *worker_args(file_root, "second"))
        done = wait_until(
            lambda: (
                (current := get_job(http, server.url, job["id"]))["status"] == "succeeded"
                and current
            ),
            timeout=40,
            message="the second worker to re-run the job",
        )
    finally:
        first.signal(signal.SIGCONT)
    assert done["worker_id"] == "second"
    assert done["attempts"] == 2
    history = attempts(http, server.url, job["id"])
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in history] == [
        (1, "first", "lease_expired"),
        (2, "second", "succeeded"),
    ]

    # Woken up, the first worker finds its attempt over: either its heartbeat
    # learns that the lease is gone (and the job is dropped unreported), or
    # its completion comes back 409. Neither changes the job.
    job_id = job["id"]
    fenced = re.compile(
        rf"lost the lease of job {job_id}\b|refused the \w+ outcome of job {job_id} \(409"
    )
    wait_until(
        lambda: fenced.search(first.output()),
        timeout=20,
        message=f"the woken worker to be fenced off; its log:\n{first.output()}",
    )
    # The same late report, sent by hand, is refused with 409 and changes nothing.
    # (Only the worker saw its lease id: the API shows it to no one else.)
    with raw_connection(db_url) as raw:
        query = f"SELECT lease_id FROM job_attempts WHERE job_id = {int(job_id)} AND attempt = 1"
        [(first_lease,)] = raw.execute(query).fetchall()
    lease = {"worker_id": "first", "lease_id": first_lease}
    late = http.post(
        f"{server.url}/jobs/{job_id}/complete",
        json={**lease, "status": "succeeded", "result": {"stale": True}},
    )
    assert late.status_code == 409, late.text
    assert "stale" in late.json()["description"]
    heartbeat = http.post(f"{server.url}/jobs/{job_id}/heartbeat", json=lease)
    assert heartbeat.status_code == 409, heartbeat.text
    final = get_job(http, server.url, job_id)
    assert final == done, "a stale worker changed the job"
    assert final["result"] != {"stale": True}
    assert attempts(http, server.url, job_id) == history
