"""The one after-commit publisher: what a write recorded is published once it committed,
and nothing of a write that rolled back (each test runs once per backend)."""

from __future__ import annotations

import pytest

from taskframe.core.errors import JobConflict
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.scheduler import Scheduler

NOOP = {"type": "sleep", "payload": {"duration": 0}, "priority": 0, "max_attempts": 3}


def _sample(scheduler: Scheduler, name: str, **labels: str) -> float:
    value = scheduler.telemetry.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_a_write_that_rolls_back_publishes_nothing(store):
    scheduler = Scheduler(store, ServerConfig())
    scheduler.submit([dict(NOOP)])
    [row] = scheduler.lease("w", ["sleep"], 1, 0.0)
    with scheduler.notifier.waiting_for_job(row["id"]) as waiter:
        with pytest.raises(JobConflict):
            scheduler.attempts.release(row["id"], "w", "not-the-lease")
        assert not waiter.event.is_set()  # no waiter woken
    assert (
        _sample(scheduler, "taskframe_jobs_finished_total", type="sleep", outcome="cancelled") == 0
    )
    assert scheduler.get(row["id"])["status"] == "running"


def test_every_write_is_published_once_after_its_commit(store):
    """Submission, completion, cancel, retry and a schedule's fire: counted once each,
    and the waiters woken."""
    scheduler = Scheduler(store, ServerConfig())
    submitted = "taskframe_jobs_submitted_total"
    [(first, _), (second, _)] = scheduler.submit([dict(NOOP), dict(NOOP)])
    assert _sample(scheduler, submitted, type="sleep") == 2
    leased = {row["id"]: row for row in scheduler.lease("w", ["sleep"], 2, 0.0)}
    done = Completion(first["id"], leased[first["id"]]["lease_id"], "succeeded", "w")
    with scheduler.notifier.waiting_for_job(first["id"]) as waiter:
        scheduler.complete([done])
        assert waiter.event.is_set()  # its waiter woken
    finished = "taskframe_jobs_finished_total"
    assert _sample(scheduler, finished, type="sleep", outcome="succeeded") == 1
    scheduler.complete([done])  # a resend: recorded already, nothing published again
    assert _sample(scheduler, finished, type="sleep", outcome="succeeded") == 1
    failed = Completion(second["id"], leased[second["id"]]["lease_id"], "failed", "w", None, "x")
    scheduler.complete([failed])  # retried: counted as a retry, not finished
    assert _sample(scheduler, "taskframe_attempts_retried_total", type="sleep") == 1
    scheduler.jobs.cancel(second["id"])
    assert _sample(scheduler, finished, type="sleep", outcome="cancelled") == 1
    scheduler.jobs.retry(second["id"])
    assert scheduler.get(second["id"])["status"] == "queued"
