"""Pruned jobs' ids are never given again, and no dependant runs early (issue 18, real processes).

Seen on SQLite before migration 8: after every job was pruned, ids started at
1 again and the new jobs inherited the old jobs' dependency rows; a new job
waiting on a queued job ran and succeeded.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import wait_for_job, wait_until


def post(url: str, **job) -> dict:
    answer = requests.post(f"{url}/jobs", json={"type": "sleep", **job}, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pruned(url: str, job_id: int) -> bool:
    return requests.get(f"{url}/jobs/{job_id}", timeout=30).status_code == 404


@pytest.mark.timeout(120)
def test_after_a_prune_new_jobs_get_new_ids_and_wait_for_their_dependency(
    db_url, start_server, start_worker
):
    # Retention of one second: finished jobs are pruned (every server prunes at start).
    args = (*SERVER_ARGS, "--retention", "1")
    server = start_server(db_url, *args)
    start_worker([server.url], *WORKER_ARGS, "--concurrency", "4")
    first = post(server.url, payload={"duration": 0})
    second = post(server.url, payload={"duration": 0})
    third = post(server.url, payload={"duration": 0}, depends_on=[first["id"]])
    finished = [wait_for_job(server.url, job["id"]) for job in (first, second, third)]
    assert [job["status"] for job in finished] == ["succeeded"] * 3
    # Past the retention, a restart prunes at once, whatever the pruning interval.
    last = max(parse_time(job["finished_at"]) for job in finished)
    wait_until(lambda: time.time() > last + 1.5, 10)
    server.stop()
    server = start_server(db_url, *args, port=server.port)
    wait_until(lambda: all(pruned(server.url, j["id"]) for j in (first, second, third)), 30)

    # The reported scenario: a job waiting on one that cannot run yet (delayed an
    # hour) must wait, while another dependency of the same shape runs and finishes.
    # The first one runs for a while: the others are in before it finishes.
    ready = post(server.url, payload={"duration": 1})
    delayed = post(server.url, payload={"duration": 0}, delay=3600)
    blocked = post(server.url, payload={"duration": 0}, depends_on=[delayed["id"]])
    follower = post(server.url, payload={"duration": 0}, depends_on=[ready["id"]])
    assert wait_for_job(server.url, follower["id"])["status"] == "succeeded"
    assert wait_for_job(server.url, ready["id"])["status"] == "succeeded"
    shown = requests.get(f"{server.url}/jobs/{blocked['id']}", timeout=30).json()
    assert shown["status"] == "waiting", shown
    new_ids = [ready["id"], delayed["id"], blocked["id"], follower["id"]]
    assert min(new_ids) > third["id"], "a pruned job's id was given again"
