"""Scale out: several servers on one database, several workers over all of them.

Every test runs once per backend: two server processes on one SQLite file, and
two servers on one PostgreSQL database.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import (
    FINISHED,
    attempts_of,
    get_job,
    submit,
    wait_for_job,
    wait_long_polling,
    wait_until,
)

JOBS = 300


def all_jobs(url: str) -> list[dict]:
    """Every job the server lists, following the cursor."""
    jobs: list[dict] = []
    params: dict = {"limit": 1000, "full": "true"}
    while True:
        answer = requests.get(f"{url}/jobs", params=params, timeout=30)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        jobs += page["jobs"]
        if page["next_cursor"] is None:
            return sorted(jobs, key=lambda job: job["id"])
        params["cursor"] = page["next_cursor"]


def summary(jobs: list[dict]) -> list[tuple]:
    return [(j["id"], j["status"], j["attempts"], j["worker_id"], j["result"]) for j in jobs]


@pytest.mark.timeout(180)
def test_two_servers_four_workers_run_every_job_exactly_once(
    db_url, start_server, start_worker, tmp_path: Path
):
    # The jobs take no time: a long lease rules out expiries on a busy machine, so
    # that "attempts == 1" tests the leasing, not the scheduler of the host.
    args = (*SERVER_ARGS, "--lease-ttl", "30")
    servers = [start_server(db_url, *args), start_server(db_url, *args)]
    urls = [server.url for server in servers]
    root = tmp_path / "shared-files"
    root.mkdir()
    for n in range(4):
        start_worker(
            urls,
            *WORKER_ARGS,
            "--concurrency",
            "4",
            "--file-root",
            str(root),
            "--worker-id",
            f"w{n}",
        )

    tokens: dict[int, str] = {}
    sessions = [requests.Session(), requests.Session()]
    for n in range(JOBS):
        token = f"job-{n:03d}"
        payload = {"operation": "append", "path": "shared/run.log", "content": f"{token}\n"}
        answer = sessions[n % 2].post(
            f"{urls[n % 2]}/jobs", json={"type": "file", "payload": payload}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        tokens[answer.json()["id"]] = token
    for session in sessions:
        session.close()
    assert len(tokens) == JOBS

    def finished() -> list[dict] | None:
        jobs = all_jobs(urls[0])
        return jobs if all(job["status"] in FINISHED for job in jobs) else None

    jobs = wait_until(finished, 120, interval=0.5, message=f"{JOBS} jobs finished")
    assert [job["id"] for job in jobs] == sorted(tokens)
    assert Counter(job["status"] for job in jobs) == {"succeeded": JOBS}
    assert [job for job in jobs if job["attempts"] != 1] == []
    assert len({job["worker_id"] for job in jobs}) >= 2
    # Both servers give the same answers.
    assert summary(all_jobs(urls[1])) == summary(jobs)
    sample = jobs[:: JOBS // 10]
    for job in sample:
        assert get_job(urls[1], job["id"]) == get_job(urls[0], job["id"])

    lines = (root / "shared" / "run.log").read_text().splitlines()
    counts = Counter(lines)
    assert [line for line, count in counts.items() if count > 1] == [], "ran more than once"
    assert set(tokens.values()) - set(counts) == set(), "never ran"
    assert len(lines) == JOBS


@pytest.mark.timeout(120)
def test_job_submitted_to_one_server_wakes_a_worker_polling_another(
    db_url, start_server, start_worker
):
    server_a = start_server(db_url, *SERVER_ARGS)
    server_b = start_server(db_url, *SERVER_ARGS, "--max-waiting", "1")  # wait_long_polling
    # A long poll interval: only a cross-server wake-up can hand the job over quickly.
    worker = start_worker(
        [server_b.url],
        "--poll-interval", "20",
        "--heartbeat-interval", "0.3",
        "--shutdown-grace", "2",
    )  # fmt: skip
    warm_up = submit(server_b.url, "sleep", {"duration": 0})
    assert wait_for_job(server_b.url, warm_up["id"], timeout=30)["status"] == "succeeded"
    wait_long_polling(server_b.url)  # the worker is back in its 20 s long poll on B

    job = submit(server_a.url, "sleep", {"duration": 0})
    submitted = time.monotonic()
    seen = get_job(server_b.url, job["id"])  # readable from B at once
    for field in ("id", "type", "payload", "priority", "created_at", "max_attempts"):
        assert seen[field] == job[field]

    done = wait_for_job(server_b.url, job["id"], timeout=10)
    assert done["status"] == "succeeded", done
    assert time.monotonic() - submitted < 10
    assert get_job(server_a.url, job["id"]) == done

    # The worker sits in a 20 s long poll on B, which a graceful stop would wait out.
    worker.kill()
    server_b.kill()


@pytest.mark.timeout(150)
def test_worker_fails_over_when_a_server_stops(db_url, start_server, start_worker):
    server_a = start_server(db_url, *SERVER_ARGS)
    server_b = start_server(db_url, *SERVER_ARGS)
    start_worker([server_a.url, server_b.url], *WORKER_ARGS, "--concurrency", "1")

    batch = [{"type": "sleep", "payload": {"duration": 0.05}} for _ in range(60)]
    answer = requests.post(f"{server_a.url}/jobs/batch", json={"jobs": batch}, timeout=30)
    assert answer.status_code == 201, answer.text
    ids = answer.json()["ids"]

    def succeeded() -> int:
        jobs = all_jobs(server_b.url)
        return sum(job["status"] == "succeeded" for job in jobs)

    wait_until(lambda: succeeded() >= 10, 60, interval=0.05, message="10 jobs done")
    server_a.stop()  # SIGTERM while the worker is busy
    unfinished_at_stop = len(ids) - succeeded()
    assert unfinished_at_stop > 0, "every job ended before the server stopped: nothing tested"

    for job_id in ids:
        done = wait_for_job(server_b.url, job_id, timeout=60)
        assert done["status"] == "succeeded", done
        history = attempts_of(server_b.url, job_id)
        outcomes = [attempt["outcome"] for attempt in history]
        assert outcomes.count("succeeded") == 1, (done, history)
        # Only an attempt whose lease answer died with the server may come before it.
        assert set(outcomes) <= {"succeeded", "lease_expired"}, (done, history)
        assert done["attempts"] == len(history), (done, history)
