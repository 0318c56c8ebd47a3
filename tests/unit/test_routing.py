"""The routed lease: named queues, paused queues and limits, on both backends."""

from __future__ import annotations

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.queues import Flow
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from tests.api_server import default_plugins
from tests.unit.test_concurrency import handed_over


def job(queue: str = "default", priority: int = 5, job_type: str = "sleep") -> dict:
    return {
        "type": job_type,
        "payload": {"duration": 0},
        "priority": priority,
        "max_attempts": 1,
        "timeout": None,
        "idempotency_key": None,
        "queue": queue,
    }


def test_a_full_limit_passes_over_its_jobs_without_blocking_the_rest(store):
    scheduler = Scheduler(store, ServerConfig())
    flow = Flow(scheduler.store, scheduler.publisher, scheduler.clock)
    flow.set_limit("queue", "narrow", 2)
    flow.set_limit("type", "file", 1)
    rows = scheduler.submit(
        [job("narrow", 9)] * 4 + [job("default", 9, "file")] * 2 + [job("default", 1)] * 3
    )
    ids = [row["id"] for row, _ in rows]
    leased = scheduler.lease("w", ["sleep", "file"], 10, wait=0)
    # Two of narrow (its limit), one file (its limit), then the low-priority work behind them.
    assert [row["id"] for row in leased] == ids[0:2] + ids[4:5] + ids[6:9]
    assert scheduler.lease("w", ["sleep", "file"], 10, wait=0) == []
    done = leased[0]
    scheduler.complete([Completion(done["id"], done["lease_id"], "succeeded", "w", None)])
    [next_one] = scheduler.lease("w", ["sleep", "file"], 10, wait=0)
    assert next_one["id"] == ids[2]  # a slot freed: the next of narrow, in order
    flow.delete_limit("queue", "narrow")
    assert [row["id"] for row in scheduler.lease("w", ["sleep"], 10, wait=0)] == [ids[3]]


def test_next_job_takes_queues_and_a_paused_queue_gives_nothing(store):
    scheduler = Scheduler(store, ServerConfig())
    client = testing.TestClient(create_app(ServerConfig(), scheduler, default_plugins()))
    [(a, _), (b, _)] = scheduler.submit([job("a"), job("b")])
    Flow(scheduler.store, scheduler.publisher, scheduler.clock).set_paused("b", True)
    assert client.simulate_post("/next-job?worker_id=w&queues=b").status_code == 204
    answer = client.simulate_post("/next-job?worker_id=w&queues=a,b")
    assert answer.json["id"] == a["id"] and answer.json["queue"] == "a"
    assert client.simulate_post("/next-job?worker_id=w").status_code == 204
    Flow(scheduler.store, scheduler.publisher, scheduler.clock).set_paused("b", False)
    assert client.simulate_post("/next-job?worker_id=w").json["id"] == b["id"]


@pytest.mark.timeout(60)
def test_a_long_poll_wakes_up_when_its_queue_resumes_or_its_limit_is_raised(store):
    """Queue and limit changes are published after their commit like every write:
    this server's lease waiters look again at once."""
    scheduler = Scheduler(store, ServerConfig())
    flow = Flow(scheduler.store, scheduler.publisher, scheduler.clock)
    flow.set_paused("p", True)
    flow.set_limit("queue", "l", 0)
    [(paused, _), (limited, _)] = scheduler.submit([job("p"), job("l")])
    resumed = handed_over(scheduler, "p", lambda: flow.set_paused("p", False))
    assert [row["id"] for row in resumed] == [paused["id"]]
    raised = handed_over(scheduler, "l", lambda: flow.set_limit("queue", "l", 1))
    assert [row["id"] for row in raised] == [limited["id"]]
