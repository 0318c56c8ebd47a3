"""What tasks need of the scheduler, on each backend: an executor's retry delay,
tracebacks kept with attempts, progress stored with the job (fenced like a
heartbeat), and job types' submission defaults."""

from __future__ import annotations

import random

import pytest

from taskframe.core import schemas, task
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.engine.submission import job_errors
from taskframe.server.storage import Store
from taskframe.server.storage.representation import attempt_json, job_json
from tests.unit.test_scheduler import BACKOFF, TTL, Clock, complete, lease_one, submit


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler(store: Store, clock: Clock) -> Scheduler:
    config = ServerConfig(lease_ttl=TTL, default_timeout=300.0, backoff=BACKOFF)
    return Scheduler(store, config, clock=clock, rng=random.Random(7))


def test_an_executors_retry_delay_replaces_the_backoff(scheduler, clock):
    submit(scheduler)
    row = lease_one(scheduler)
    complete(scheduler, row, "failed", error="Retry: later", retry_after=120.0)
    job = scheduler.get(row["id"])
    assert job["status"] == "scheduled" and job["run_at"] == clock.now + 120.0
    assert 120.0 > BACKOFF.cap  # not the server's backoff
    # Without one, the backoff as before.
    clock.advance(120)
    row = lease_one(scheduler)
    complete(scheduler, row, "failed", error="boom")
    assert scheduler.get(row["id"])["run_at"] <= clock.now + BACKOFF.nominal(2)


def test_the_last_attempt_fails_whatever_delay_it_asks_for(scheduler, clock):
    submit(scheduler, max_attempts=1)
    row = lease_one(scheduler)
    complete(scheduler, row, "failed", error="Retry: not yet", retry_after=5.0)
    job = scheduler.get(row["id"])
    assert job["status"] == "failed" and job["error"] == "Retry: not yet"


def test_tracebacks_are_kept_repaired_with_each_attempt(scheduler, store):
    submit(scheduler)
    row = lease_one(scheduler)
    text = 'Traceback (most recent call last):\n  File "t.py"\x00\nValueError: bad \ufffd\n'
    complete(scheduler, row, "failed", error="ValueError: bad", traceback=text)
    [attempt] = scheduler.jobs.attempts(row["id"])
    shown = attempt_json(attempt)
    assert shown["traceback"] == text.replace("\x00", "\ufffd")
    assert shown["error"] == "ValueError: bad"


def test_progress_is_stored_for_the_lease_holder_only(scheduler, clock):
    submit(scheduler)
    row = lease_one(scheduler)
    lease = (row["id"], row["lease_id"])
    clock.advance(1)
    scheduler.heartbeat("w1", [lease], {lease: {"fraction": 0.25, "message": "a quarter"}})
    progress = job_json(scheduler.get(row["id"]))["progress"]
    assert progress["fraction"] == 0.25 and progress["message"] == "a quarter"
    assert progress["attempt"] == 1 and progress["updated_at"].endswith("Z")
    # Another worker, or a stale lease, changes nothing.
    scheduler.heartbeat("w2", [lease], {lease: {"fraction": 0.9, "message": "not mine"}})
    stale = (row["id"], "not-the-lease")
    scheduler.heartbeat("w1", [stale], {stale: {"fraction": 0.9, "message": "stale"}})
    assert job_json(scheduler.get(row["id"]))["progress"]["fraction"] == 0.25
    # A later attempt's job shows none until that attempt reports.
    complete(scheduler, row, "failed", error="boom")
    clock.advance(600)
    again = lease_one(scheduler)
    assert again["attempts"] == 2 and job_json(scheduler.get(row["id"]))["progress"] is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"queue": "math", "priority": 9, "max_attempts": 7, "timeout": 12.0}),
        (
            {"queue": "other", "priority": 1, "max_attempts": 2, "timeout": 5},
            {"queue": "other", "priority": 1, "max_attempts": 2, "timeout": 5.0},
        ),
        ({"timeout": None}, {"timeout": 12.0}),
    ],
)
def test_a_job_types_defaults_apply_to_what_the_submission_omits(scheduler, given, expected):
    @task(queue="math", priority=9, max_attempts=7, timeout=12)
    def add(x: int) -> int:
        return x

    job = schemas.SubmitJobSchema().load({"type": "add", "payload": {"x": 1}, **given})
    assert job_errors(job, {"add": add}) == {}
    [(row, _)] = scheduler.submit([job])
    for key, value in expected.items():
        assert row[key] == value, key
