"""The scheduler over each storage backend: a real SQLite file and a real PostgreSQL.

Every test taking ``store`` (or a fixture built on it) runs once per backend.
Time is a controllable clock, except where a test waits on real threads.
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest

from taskframe.core import schemas
from taskframe.core.errors import JobConflict, JobNotFound
from taskframe.core.retry import BackoffPolicy
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion, CompletionResult
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import Row, Store, StoreUnavailable, open_store
from taskframe.server.storage.base import load_queries, migrations
from tests.processes import wait_until

T0 = 1_700_000_000.0
TTL = 30.0
BACKOFF = BackoffPolicy(base=2.0, cap=60.0)
RETENTION = 3600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LaterClock:
    """Real time, moved on by hand (``clock.offset = 3600``: an hour from now)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def job(type: str = "sleep", payload: dict | None = None, **fields: Any) -> dict[str, Any]:
    """A submission as the API hands it to the scheduler (validated, defaults filled)."""
    body = {"type": type, "payload": {"n": 0} if payload is None else payload, **fields}
    if isinstance(body.get("run_at"), float):
        body["run_at"] = datetime.fromtimestamp(body["run_at"], timezone.utc).isoformat()
    return schemas.SubmitJobSchema().load(body)


def latest_version(store: Store) -> int:
    return max(version for version, _ in migrations(load_queries(f"{store.backend}.sql")))


@contextmanager
def raw_connection(db_url: str) -> Iterator[Any]:
    """The driver's own autocommit connection, for what the store does not offer."""
    if db_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as connection:
            yield connection
    else:
        connection = sqlite3.connect(db_url, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(
        lease_ttl=TTL, default_timeout=300.0, backoff=BACKOFF, retention=RETENTION, prune_batch=2
    )


@pytest.fixture
def scheduler(store: Store, config: ServerConfig, clock: Clock) -> Scheduler:
    return Scheduler(store, config, clock=clock, rng=random.Random(7))


def submit(scheduler: Scheduler, **fields: Any) -> Row:
    [(row, created)] = scheduler.submit([job(**fields)])
    assert created
    return row


def lease_one(scheduler: Scheduler, worker: str = "w1", types: tuple = ("sleep",)) -> Row:
    scheduler.promote()  # what the housekeeper does once a scheduled job is due
    [row] = scheduler.lease(worker, types, 1, wait=0)
    return row


def complete(scheduler: Scheduler, row: Row, status: str = "succeeded", **fields: Any):
    [outcome] = scheduler.complete(
        [Completion(row["id"], row["lease_id"], status, worker_id=row["worker_id"], **fields)]
    )
    return outcome


def outcomes(scheduler: Scheduler, job_id: int) -> list[str]:
    return [attempt["outcome"] for attempt in scheduler.jobs.attempts(job_id)]


# ------------------------------------------------------------------ submitting


def test_submit_returns_queued_rows_with_ids(scheduler, clock):
    results = scheduler.submit([job(priority=3), job("other", {"x": [1, 2]}, max_attempts=5)])
    (first, created_first), (second, created_second) = results
    assert created_first and created_second
    assert isinstance(first["id"], int) and second["id"] > first["id"]
    assert first["status"] == second["status"] == "queued"
    assert first["attempts"] == 0 and first["priority"] == 3
    assert second["type"] == "other" and second["payload"] == '{"x":[1,2]}'
    assert second["max_attempts"] == 5
    assert first["created_at"] == first["run_at"] == clock.now
    assert first["timeout"] == 300.0  # the server default
    assert scheduler.get(first["id"]) == first


def test_unknown_job_is_not_found(scheduler):
    with pytest.raises(JobNotFound):
        scheduler.get(12345)
    with pytest.raises(JobNotFound):
        scheduler.jobs.attempts(12345)
    [outcome] = scheduler.complete([Completion(12345, "nope", "succeeded")])
    assert outcome.result is CompletionResult.UNKNOWN_JOB


def test_same_idempotency_key_and_body_returns_the_existing_job(scheduler):
    first = submit(scheduler, idempotency_key="order-1")
    [(again, created)] = scheduler.submit([job(idempotency_key="order-1")])
    assert not created and again == first
    # Twice within one batch: one row.
    results = scheduler.submit([job(idempotency_key="k2"), job(idempotency_key="k2")])
    assert [created for _, created in results] == [True, False]
    assert results[0][0]["id"] == results[1][0]["id"]
    assert len(scheduler.list_jobs(None, None, 100, None)) == 2


def test_same_idempotency_key_with_another_body_conflicts_and_writes_nothing(scheduler):
    submit(scheduler, idempotency_key="order-1")
    with pytest.raises(JobConflict, match="order-1"):
        scheduler.submit([job(payload={"n": 1}), job(payload={"n": 2}, idempotency_key="order-1")])
    # The whole batch rolled back: the first job of it was not kept either.
    assert len(scheduler.list_jobs(None, None, 100, None)) == 1


def test_a_large_batch_keeps_its_order_and_finds_existing_keys(scheduler):
    existing = {i: submit(scheduler, payload={"n": i}, idempotency_key=f"k{i}") for i in (3, 501)}
    batch = [
        job(payload={"n": i}, idempotency_key=f"k{i}" if i % 3 == 0 else None) for i in range(1000)
    ]
    started = time.monotonic()
    results = scheduler.submit(batch)
    assert time.monotonic() - started < 20
    assert [row["payload"] for row, _ in results] == [f'{{"n":{i}}}' for i in range(1000)]
    assert [created for _, created in results] == [i not in existing for i in range(1000)]
    for i, row in existing.items():
        assert results[i][0] == row
    new_ids = [row["id"] for row, created in results if created]
    assert new_ids == sorted(new_ids) and len(set(new_ids)) == 998


# --------------------------------------------------------------------- leasing


def test_lease_takes_the_highest_priority_first_then_fifo(scheduler):
    low = submit(scheduler, priority=1)
    high_a = submit(scheduler, priority=9)
    mid = submit(scheduler, priority=5)
    high_b = submit(scheduler, priority=9)
    order = [lease_one(scheduler)["id"] for _ in range(4)]
    assert order == [high_a["id"], high_b["id"], mid["id"], low["id"]]
    assert scheduler.lease("w1", ["sleep"], 1, wait=0) == []


def test_lease_returns_a_batch_in_scheduling_order_up_to_the_limit(scheduler, clock):
    ids = [submit(scheduler, priority=p)["id"] for p in (1, 5, 5, 9, 1)]
    rows = scheduler.lease("w7", ["sleep"], 3, wait=0)
    assert [row["id"] for row in rows] == [ids[3], ids[1], ids[2]]
    for row in rows:
        assert row["status"] == "running" and row["attempts"] == 1
        assert row["worker_id"] == "w7" and row["started_at"] == clock.now
        assert row["lease_expires_at"] == clock.now + TTL
        assert row["deadline"] == clock.now + 300.0
    assert len({row["lease_id"] for row in rows}) == 3
    assert len(scheduler.lease("w7", ["sleep"], 10, wait=0)) == 2
    assert scheduler.lease("w7", ["sleep"], 0, wait=0) == []


def test_lease_only_takes_the_requested_types(scheduler):
    submit(scheduler, type="sleep", priority=9)
    wanted = submit(scheduler, type="http")
    assert scheduler.lease("w1", ["file"], 5, wait=0) == []
    assert scheduler.lease("w1", [], 5, wait=0) == []
    assert [row["id"] for row in scheduler.lease("w1", ["http", "file"], 5, wait=0)] == [
        wanted["id"]
    ]


def test_delayed_jobs_are_scheduled_until_promoted_when_due(scheduler, clock):
    delayed = submit(scheduler, delay=60, priority=9)
    at = submit(scheduler, run_at=T0 + 120, priority=8)
    assert delayed["run_at"] == T0 + 60 and at["run_at"] == T0 + 120
    assert delayed["status"] == at["status"] == "scheduled"
    assert scheduler.next_due() == T0 + 60
    assert scheduler.promote() == 0
    assert scheduler.lease("w1", ["sleep"], 5, wait=0) == []
    clock.advance(60)
    assert scheduler.lease("w1", ["sleep"], 5, wait=0) == []  # the lease never looks at run_at
    assert scheduler.promote() == 1
    assert scheduler.get(delayed["id"])["status"] == "queued"
    assert [row["id"] for row in scheduler.lease("w1", ["sleep"], 5, wait=0)] == [delayed["id"]]
    clock.advance(59.5)
    assert scheduler.promote() == 0
    assert scheduler.lease("w1", ["sleep"], 5, wait=0) == []
    clock.advance(0.5)
    assert scheduler.promote() == 1
    assert scheduler.next_due() is None
    assert [row["id"] for row in scheduler.lease("w1", ["sleep"], 5, wait=0)] == [at["id"]]


def test_promotion_goes_in_batches_earliest_first(store, clock):
    scheduler = Scheduler(store, ServerConfig(promote_batch=3), clock=clock)
    ids = [submit(scheduler, delay=10 - i)["id"] for i in range(7)]
    clock.advance(6)
    assert scheduler.promote() == 3  # delays 4, 5, 6 (the last three submitted)
    assert [scheduler.get(i)["status"] for i in ids] == ["scheduled"] * 4 + ["queued"] * 3
    clock.advance(10)
    assert scheduler.promote() == 4  # a full batch, then the rest
    assert {scheduler.get(i)["status"] for i in ids} == {"queued"}


def test_lease_long_poll_returns_when_another_thread_submits(store, config):
    scheduler = Scheduler(store, config)

    def submit_later() -> None:
        wait_until(scheduler.notifier.has_waiters, 10, 0.01, "the long poll to wait")
        submit(scheduler)

    thread = threading.Thread(target=submit_later)
    thread.start()
    started = time.monotonic()
    rows = scheduler.lease("w1", ["sleep"], 1, wait=10)
    elapsed = time.monotonic() - started
    thread.join()
    assert len(rows) == 1
    assert elapsed < 5  # woken by the submission, not by the end of the wait


def test_lease_long_poll_wakes_up_for_a_delayed_job(store, config):
    scheduler = Scheduler(store, config)
    housekeeper = scheduler.housekeeper()  # its promoter makes the job ready when due
    housekeeper.start()
    try:
        submit(scheduler, delay=30)  # the promoter first sleeps until this one...
        delayed = submit(scheduler, delay=0.4)  # ...and this earlier one moves its alarm
        started = time.monotonic()
        rows = scheduler.lease("w1", ["sleep"], 1, wait=10)
        elapsed = time.monotonic() - started
    finally:
        housekeeper.stop()
    assert [row["id"] for row in rows] == [delayed["id"]]
    assert 0.3 < elapsed < 5


def test_lease_long_poll_gives_up_after_the_wait(store, config):
    scheduler = Scheduler(store, config)
    submit(scheduler, type="other")
    started = time.monotonic()
    assert scheduler.lease("w1", ["sleep"], 1, wait=0.3) == []
    assert 0.25 < time.monotonic() - started < 5


# ------------------------------------------------------------------ completing


def test_complete_succeeded(scheduler, clock):
    submit(scheduler)
    row = lease_one(scheduler)
    clock.advance(3)
    outcome = complete(scheduler, row, result={"ok": [1]})
    assert outcome.result is CompletionResult.RECORDED
    done = scheduler.get(row["id"])
    assert outcome.job == done
    # Stored as canonical compact JSON, like payloads (answers splice it in as it is).
    assert done["status"] == "succeeded" and done["result"] == '{"ok":[1]}'
    assert done["finished_at"] == T0 + 3 and done["attempts"] == 1
    assert done["lease_expires_at"] is None and done["deadline"] is None
    [attempt] = scheduler.jobs.attempts(row["id"])
    assert attempt["attempt"] == 1 and attempt["outcome"] == "succeeded"
    assert attempt["worker_id"] == "w1" and attempt["lease_id"] == row["lease_id"]
    assert attempt["started_at"] == T0 and attempt["finished_at"] == T0 + 3


@pytest.fixture
def leased(scheduler: Scheduler) -> Row:
    submit(scheduler, max_attempts=3)
    return lease_one(scheduler)


def test_failed_attempt_is_requeued_with_backoff(scheduler, clock, leased):
    clock.advance(1)
    outcome = complete(scheduler, leased, "failed", error="boom")
    assert outcome.result is CompletionResult.RECORDED
    row = scheduler.get(leased["id"])
    # Waiting out its backoff: scheduled, off the lease path until promoted.
    assert row["status"] == "scheduled" and row["attempts"] == 1 and row["error"] == "boom"
    assert row["finished_at"] is None
    # First failure: nominal backoff is base (2 s), with jitter in [1, 2].
    assert clock.now + 1 <= row["run_at"] <= clock.now + 2
    assert scheduler.lease("w1", ["sleep"], 1, wait=0) == []
    clock.now = row["run_at"]
    again = lease_one(scheduler, "w2")
    assert again["attempts"] == 2 and again["lease_id"] != leased["lease_id"]
    clock.advance(1)
    complete(scheduler, again, "failed", error="boom 2")
    row = scheduler.get(leased["id"])
    assert clock.now + 2 <= row["run_at"] <= clock.now + 4
    clock.now = row["run_at"]
    third = lease_one(scheduler)
    complete(scheduler, third, "failed", error="boom 3")
    row = scheduler.get(leased["id"])
    assert row["status"] == "failed" and row["attempts"] == 3 and row["error"] == "boom 3"
    assert row["finished_at"] == clock.now
    assert outcomes(scheduler, leased["id"]) == ["failed"] * 3
    assert [a["error"] for a in scheduler.jobs.attempts(leased["id"])] == [
        "boom",
        "boom 2",
        "boom 3",
    ]


def test_failed_not_retryable_fails_at_once(scheduler, leased):
    complete(scheduler, leased, "failed", error="bad input", retryable=False)
    row = scheduler.get(leased["id"])
    assert row["status"] == "failed" and row["attempts"] == 1 and row["error"] == "bad input"


def test_cancelled_completion(scheduler, leased):
    assert complete(scheduler, leased, "cancelled").result is CompletionResult.RECORDED
    assert scheduler.get(leased["id"])["status"] == "cancelled"
    assert outcomes(scheduler, leased["id"]) == ["cancelled"]


def test_a_stale_lease_is_refused_and_changes_nothing(scheduler, leased):
    before = scheduler.get(leased["id"])
    stale = Completion(leased["id"], "not-the-lease", "succeeded", worker_id="w1")
    other_worker = Completion(leased["id"], leased["lease_id"], "succeeded", worker_id="w9")
    for completion in (stale, other_worker):
        [outcome] = scheduler.complete([completion])
        assert outcome.result is CompletionResult.STALE_LEASE and "stale" in outcome.error
    assert scheduler.get(leased["id"]) == before
    assert scheduler.jobs.attempts(leased["id"]) == []


def test_a_duplicate_completion_is_accepted_and_changes_nothing(scheduler, clock, leased):
    assert complete(scheduler, leased, result=1).result is CompletionResult.RECORDED
    done = scheduler.get(leased["id"])
    clock.advance(5)
    again = complete(scheduler, leased, "failed", error="late")
    assert again.result is CompletionResult.RECORDED and again.job == done
    assert scheduler.get(leased["id"]) == done
    assert outcomes(scheduler, leased["id"]) == ["succeeded"]


def test_a_completion_resent_after_a_retry_was_queued_changes_nothing(scheduler, leased):
    complete(scheduler, leased, "failed", error="once")
    queued = scheduler.get(leased["id"])
    assert complete(scheduler, leased, "failed", error="twice").result is CompletionResult.RECORDED
    assert scheduler.get(leased["id"]) == queued


def test_a_batch_of_completions_answers_in_request_order(scheduler):
    ids = [submit(scheduler)["id"] for _ in range(3)]
    rows = {row["id"]: row for row in scheduler.lease("w1", ["sleep"], 3, wait=0)}
    batch = [
        Completion(ids[2], rows[ids[2]]["lease_id"], "succeeded", worker_id="w1"),
        Completion(ids[0], "stale", "succeeded", worker_id="w1"),
        Completion(999_999, "x", "succeeded", worker_id="w1"),
        Completion(ids[1], rows[ids[1]]["lease_id"], "failed", "w1", retryable=False),
    ]
    answers = scheduler.complete(batch)
    assert [(a.job_id, a.result) for a in answers] == [
        (ids[2], CompletionResult.RECORDED),
        (ids[0], CompletionResult.STALE_LEASE),
        (999_999, CompletionResult.UNKNOWN_JOB),
        (ids[1], CompletionResult.RECORDED),
    ]
    assert [scheduler.get(i)["status"] for i in ids] == ["running", "failed", "succeeded"]


# ------------------------------------------------------- heartbeats and release


def test_heartbeat_extends_the_lease_and_reports_cancellation(scheduler, clock, leased):
    clock.advance(20)
    assert scheduler.heartbeat("w1", [(leased["id"], leased["lease_id"])]) == [
        (leased["id"], True, False)
    ]
    assert scheduler.get(leased["id"])["lease_expires_at"] == clock.now + TTL
    clock.advance(20)  # past the first expiry, not the extended one
    assert scheduler.reap() == 0
    scheduler.cancel(leased["id"])
    assert scheduler.heartbeat("w1", [(leased["id"], leased["lease_id"])]) == [
        (leased["id"], True, True)
    ]
    assert scheduler.heartbeat("w1", [(leased["id"], "stale")]) == [(leased["id"], False, False)]


def test_heartbeats_answer_in_request_order(scheduler):
    ids = [submit(scheduler)["id"] for _ in range(3)]
    rows = {row["id"]: row for row in scheduler.lease("w1", ["sleep"], 3, wait=0)}
    leases = [
        (ids[2], rows[ids[2]]["lease_id"]),
        (ids[0], "gone"),
        (ids[1], rows[ids[1]]["lease_id"]),
    ]
    assert scheduler.heartbeat("w1", leases) == [
        (ids[2], True, False),
        (ids[0], False, False),
        (ids[1], True, False),
    ]


def test_release_requeues_without_spending_an_attempt(scheduler, clock, leased):
    clock.advance(2)
    row = scheduler.release(leased["id"], "w1", leased["lease_id"])
    assert row["status"] == "queued" and row["attempts"] == 0 and row["run_at"] == clock.now
    assert row["lease_id"] is None
    assert outcomes(scheduler, leased["id"]) == ["released"]
    with pytest.raises(JobConflict):
        scheduler.release(leased["id"], "w1", leased["lease_id"])
    again = lease_one(scheduler)
    assert again["id"] == leased["id"] and again["attempts"] == 1
    with pytest.raises(JobNotFound):
        scheduler.release(999_999, "w1", "x")


def test_release_of_a_job_being_cancelled_cancels_it(scheduler, leased):
    scheduler.cancel(leased["id"])
    row = scheduler.release(leased["id"], "w1", leased["lease_id"])
    assert row["status"] == "cancelled"
    assert outcomes(scheduler, leased["id"]) == ["cancelled"]


# --------------------------------------------------------------------- reaping


def test_expired_leases_are_reaped_with_backoff_then_failed(scheduler, clock, leased):
    job_id = leased["id"]
    lease_ids = []
    row = leased
    for attempt in (1, 2, 3):
        lease_ids.append(row["lease_id"])
        clock.advance(TTL - 1)
        assert scheduler.reap() == 0
        clock.advance(2)
        assert scheduler.reap() == 1
        current = scheduler.get(job_id)
        assert current["attempts"] == attempt
        assert current["error"] == "lease expired: worker w1 stopped heartbeating"
        if attempt < 3:
            assert current["status"] == "scheduled" and current["lease_id"] is None
            nominal = BACKOFF.nominal(attempt)
            assert clock.now + nominal / 2 <= current["run_at"] <= clock.now + nominal
            clock.now = current["run_at"]
            row = lease_one(scheduler)
    assert current["status"] == "failed" and current["finished_at"] == clock.now
    assert outcomes(scheduler, job_id) == ["lease_expired"] * 3
    # The worker of a reaped attempt comes back: refused, nothing changes.
    for lease_id in lease_ids:
        [late] = scheduler.complete([Completion(job_id, lease_id, "succeeded", worker_id="w1")])
        assert late.result is CompletionResult.STALE_LEASE
    assert scheduler.get(job_id) == current
    assert scheduler.reap() == 0


def test_a_completion_after_the_reap_is_refused(scheduler, clock, leased):
    clock.advance(TTL + 1)
    assert scheduler.reap() == 1
    requeued = scheduler.get(leased["id"])
    assert complete(scheduler, leased).result is CompletionResult.STALE_LEASE
    assert scheduler.heartbeat("w1", [(leased["id"], leased["lease_id"])])[0][1] is False
    assert scheduler.get(leased["id"]) == requeued


def test_an_attempt_past_its_timeout_is_reaped_despite_heartbeats(scheduler, clock):
    submit(scheduler, timeout=5, max_attempts=1)
    row = lease_one(scheduler)
    assert row["deadline"] == clock.now + 5
    clock.advance(4)
    scheduler.heartbeat("w1", [(row["id"], row["lease_id"])])
    assert scheduler.reap() == 0
    clock.advance(2)
    assert scheduler.reap() == 1
    current = scheduler.get(row["id"])
    assert current["status"] == "failed"
    assert current["error"] == "attempt 1 timed out after 5 s"
    assert outcomes(scheduler, row["id"]) == ["timed_out"]


def test_reaping_a_job_being_cancelled_cancels_it(scheduler, clock, leased):
    scheduler.cancel(leased["id"])
    clock.advance(TTL + 1)
    assert scheduler.reap() == 1
    assert scheduler.get(leased["id"])["status"] == "cancelled"


# ------------------------------------------------------------ cancel and retry


def test_cancel_queued_running_and_finished(scheduler, clock):
    running = submit(scheduler)
    queued = submit(scheduler)
    assert lease_one(scheduler)["id"] == running["id"]
    clock.advance(1)
    cancelled = scheduler.cancel(queued["id"])
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] == clock.now
    requested = scheduler.cancel(running["id"])
    assert requested["status"] == "running" and requested["cancel_requested"]
    row = scheduler.get(running["id"])
    # The worker stops and reports a failure: the job ends cancelled, not retried.
    assert complete(scheduler, row, "failed", error="stopped").result is CompletionResult.RECORDED
    assert scheduler.get(running["id"])["status"] == "cancelled"
    assert not scheduler.get(running["id"])["cancel_requested"]
    for job_id in (queued["id"], running["id"]):
        with pytest.raises(JobConflict, match="has already been cancelled"):
            scheduler.cancel(job_id)
    with pytest.raises(JobNotFound):
        scheduler.cancel(999_999)


def test_retry_puts_a_failed_job_back_with_fresh_attempts(scheduler, clock):
    submit(scheduler, max_attempts=1)
    row = lease_one(scheduler)
    complete(scheduler, row, "failed", error="boom", result=None)
    clock.advance(10)
    retried = scheduler.retry(row["id"])
    assert retried["status"] == "queued" and retried["attempts"] == 1
    assert retried["max_attempts"] == 2  # one more attempt, as submitted
    assert retried["run_at"] == clock.now and retried["error"] is None
    assert retried["finished_at"] is None and retried["lease_id"] is None
    again = lease_one(scheduler)
    assert again["id"] == row["id"] and again["attempts"] == 2
    complete(scheduler, again)
    with pytest.raises(JobConflict, match="succeeded"):
        scheduler.retry(row["id"])
    with pytest.raises(JobNotFound):
        scheduler.retry(999_999)
    assert outcomes(scheduler, row["id"]) == ["failed", "succeeded"]


def test_attempts_are_numbered_for_the_life_of_the_job(scheduler, clock):
    """Each retry grants the submitted max_attempts again; numbers never restart at 1."""
    job_id = submit(scheduler, max_attempts=2)["id"]
    for expected_max in (2, 4, 6):
        while True:
            row = lease_one(scheduler)
            complete(scheduler, row, "failed", error="boom")
            after = scheduler.get(job_id)
            if after["status"] == "failed":
                break
            clock.now = after["run_at"]
        assert after["attempts"] == after["max_attempts"] == expected_max
        if expected_max < 6:
            scheduler.retry(job_id)
    assert [a["attempt"] for a in scheduler.jobs.attempts(job_id)] == [1, 2, 3, 4, 5, 6]


def test_a_retry_after_a_cancel_grants_the_submitted_attempts(scheduler):
    job_id = submit(scheduler, max_attempts=3)["id"]
    lease_one(scheduler)
    scheduler.cancel(job_id)
    row = scheduler.get(job_id)
    if row["status"] == "running":  # a running job is cancelled by its worker
        complete(scheduler, row, "cancelled")
    retried = scheduler.retry(job_id)
    assert (retried["attempts"], retried["max_attempts"]) == (1, 4)
    assert lease_one(scheduler)["attempts"] == 2


def test_retry_a_cancelled_job(scheduler):
    row = submit(scheduler)
    scheduler.cancel(row["id"])
    assert scheduler.retry(row["id"])["status"] == "queued"
    with pytest.raises(JobConflict, match="queued"):
        scheduler.retry(row["id"])


# ------------------------------------------------------------------- pruning


def test_prune_deletes_only_finished_jobs_past_retention(scheduler, clock, store):
    def finish(status: str) -> int:
        submit(scheduler, max_attempts=1, type="other")
        row = lease_one(scheduler, types=("other",))
        if status == "cancelled":
            scheduler.cancel(row["id"])
        complete(scheduler, row, "failed" if status != "succeeded" else "succeeded")
        assert scheduler.get(row["id"])["status"] == status
        return row["id"]

    old = [finish("succeeded"), finish("failed"), finish("cancelled"), finish("succeeded")]
    old_cancelled_queued = submit(scheduler)["id"]
    scheduler.cancel(old_cancelled_queued)
    old.append(old_cancelled_queued)
    queued = submit(scheduler)["id"]
    running = submit(scheduler, priority=9)
    lease_one(scheduler)
    clock.advance(RETENTION - 100)
    recent = finish("succeeded")
    assert scheduler.prune() == 0
    clock.advance(101)
    assert scheduler.prune() == len(old)  # in batches of prune_batch=2
    remaining = {row["id"] for row in scheduler.list_jobs(None, None, 100, None)}
    assert remaining == {queued, running["id"], recent}
    with store.reader() as tx:
        for job_id in old:
            assert tx.all("list_attempts", {"job_id": job_id}) == []
    assert outcomes(scheduler, recent) == ["succeeded"]
    assert scheduler.prune() == 0


def test_prune_is_off_with_zero_retention(store, clock):
    scheduler = Scheduler(store, ServerConfig(retention=0), clock=clock)
    row = submit(scheduler)
    scheduler.cancel(row["id"])
    clock.advance(10 * 365 * 86400)
    assert scheduler.prune() == 0
    assert scheduler.get(row["id"])["status"] == "cancelled"


# ---------------------------------------------------------- history and lists


def test_attempt_history_records_every_outcome(scheduler, clock):
    job_id = submit(scheduler, max_attempts=5)["id"]
    row = lease_one(scheduler, "w1")
    scheduler.release(job_id, "w1", row["lease_id"])
    row = lease_one(scheduler, "w2")
    complete(scheduler, row, "failed", error="e1")
    clock.advance(10)
    row = lease_one(scheduler, "w3")
    clock.advance(TTL + 1)
    scheduler.reap()
    clock.advance(100)
    row = lease_one(scheduler, "w4")
    complete(scheduler, row)
    history = scheduler.jobs.attempts(job_id)
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in history] == [
        (1, "w1", "released"),
        (1, "w2", "failed"),
        (2, "w3", "lease_expired"),
        (3, "w4", "succeeded"),
    ]
    assert history[1]["error"] == "e1"
    assert all(a["finished_at"] >= a["started_at"] for a in history)


def test_list_filters_and_pages_with_a_cursor(scheduler):
    ids = [submit(scheduler, type="sleep" if i % 2 else "http")["id"] for i in range(7)]
    lease_one(scheduler, types=("http",))  # ids[0] is running

    def pages(status: str | None, job_type: str | None, size: int) -> list[list[int]]:
        found, cursor = [], None
        while True:
            page = [row["id"] for row in scheduler.list_jobs(status, job_type, size, cursor)]
            if not page:
                return found
            found.append(page)
            cursor = page[-1]

    assert pages(None, None, 3) == [ids[6:3:-1], ids[3:0:-1], [ids[0]]]
    assert pages(None, "sleep", 2) == [[ids[5], ids[3]], [ids[1]]]
    assert pages("queued", None, 10) == [ids[:0:-1]]
    assert pages("running", None, 10) == [[ids[0]]]
    assert pages("queued", "http", 10) == [[ids[6], ids[4], ids[2]]]
    assert pages("succeeded", None, 10) == []


def test_wait_until_finished_returns_when_the_job_finishes(store, config):
    scheduler = Scheduler(store, config)
    submit(scheduler)
    row = lease_one(scheduler)

    def finish_later() -> None:
        wait_until(scheduler.notifier.has_waiters, 10, 0.01, "the job waiter to wait")
        complete(scheduler, row)

    thread = threading.Thread(target=finish_later)
    thread.start()
    started = time.monotonic()
    finished = scheduler.wait_until_finished(row["id"], wait=10)
    elapsed = time.monotonic() - started
    thread.join()
    assert finished["status"] == "succeeded"
    assert elapsed < 5
    started = time.monotonic()
    unfinished = submit(scheduler)
    assert scheduler.wait_until_finished(unfinished["id"], wait=0.2)["status"] == "queued"
    assert time.monotonic() - started >= 0.2


# ----------------------------------------------------------------- the store


def test_store_schema_ping_and_counts(store, scheduler):
    assert store.schema_version() == latest_version(store)
    assert store.migrate() == latest_version(store)  # nothing left to do
    store.ping()
    submit(scheduler)
    submit(scheduler)
    lease_one(scheduler)
    with store.reader() as tx:
        counts = {row["status"]: row["count"] for row in tx.all("count_by_status")}
    assert counts == {"queued": 1, "running": 1}


def test_a_failing_transaction_is_rolled_back(store, scheduler):
    row = submit(scheduler)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.one("cancel_queued", {"id": row["id"], "now": T0})
        raise RuntimeError("abort")
    assert scheduler.get(row["id"])["status"] == "queued"
    with store.transaction() as tx:
        assert tx.returning_many("insert_job", []) == []
        assert tx.run("cancel_queued", {"id": row["id"], "now": T0}) == 1
    assert scheduler.get(row["id"])["status"] == "cancelled"


def test_a_lock_held_too_long_is_store_unavailable(db_url, config):
    store = open_store(db_url, busy_timeout=0.3)
    try:
        store.migrate()
        scheduler = Scheduler(store, config)
        row = submit(scheduler)
        leased = lease_one(scheduler)
        with raw_connection(db_url) as other:
            if store.backend == "sqlite":
                other.execute("BEGIN IMMEDIATE")  # the write lock of the whole file
            else:
                other.execute("BEGIN")
                other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", [row["id"]])
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                complete(scheduler, leased)
            assert time.monotonic() - started < 10
            other.execute("ROLLBACK")
        assert complete(scheduler, leased).result is CompletionResult.RECORDED
    finally:
        store.close()


@pytest.mark.postgres
def test_an_unreachable_postgres_is_store_unavailable():
    pytest.importorskip("psycopg")
    # Refused at once: a short wait for a connection is enough (one per call below).
    store = open_store("postgresql://postgres@127.0.0.1:1/test", busy_timeout=0.1)
    try:
        for call in (store.ping, store.schema_version, store.migrate):
            with pytest.raises(StoreUnavailable):
                call()
    finally:
        store.close()


def test_a_lease_request_resent_with_its_id_gets_the_same_jobs_back(scheduler):
    ids = [submit(scheduler)["id"] for _ in range(3)]
    first = scheduler.lease("w1", ["sleep"], 2, 0, request_id="req-1")
    replay = scheduler.lease("w1", ["sleep"], 2, 0, request_id="req-1", resent=True)
    assert [(r["id"], r["lease_id"]) for r in replay] == [(r["id"], r["lease_id"]) for r in first]
    assert [r["id"] for r in first] == ids[:2]
    assert all(scheduler.get(i)["attempts"] == 1 for i in ids[:2])
    # The replay belongs to the worker that sent the request: another one leases afresh.
    other = scheduler.lease("w2", ["sleep"], 2, 0, request_id="req-1", resent=True)
    assert [r["id"] for r in other] == ids[2:]


# ------------------------------------------------------------ leases are secrets


def test_lease_ids_are_random_128_bit_secrets_per_attempt(scheduler, clock):
    ids = [submit(scheduler)["id"] for _ in range(3)]
    rows = scheduler.lease("w1", ["sleep"], 3, 0, request_id="req-7")
    lease_ids = [row["lease_id"] for row in rows]
    for row in rows:
        # 32 hex digits, and nothing guessable in them: not the job id, not the request id.
        assert re.fullmatch(r"[0-9a-f]{32}", row["lease_id"]), row["lease_id"]
        assert not row["lease_id"].startswith("req-7")
        assert row["lease_request"] == "req-7"
    assert len(set(lease_ids)) == 3
    # The next attempt of a job gets a new one.
    scheduler.release(ids[0], "w1", rows[0]["lease_id"])
    assert lease_one(scheduler)["lease_id"] not in lease_ids


def test_only_the_worker_holding_the_lease_may_complete_renew_or_release_it(scheduler, leased):
    job_id, lease_id = leased["id"], leased["lease_id"]
    [outcome] = scheduler.complete(
        [Completion(job_id, lease_id, "succeeded", worker_id="w2", result={"forged": True})]
    )
    assert outcome.result is CompletionResult.STALE_LEASE
    [outcome] = scheduler.complete([Completion(job_id, lease_id, "failed")])  # no worker id
    assert outcome.result is CompletionResult.STALE_LEASE
    assert scheduler.heartbeat("w2", [(job_id, lease_id)]) == [(job_id, False, False)]
    with pytest.raises(JobConflict):
        scheduler.release(job_id, "w2", lease_id)
    assert scheduler.get(job_id) == leased
    assert (
        complete(scheduler, leased, result=1).result is CompletionResult.RECORDED
    )  # the holder still can


# ------------------------------------------------------------- scheduled jobs


def test_a_scheduled_job_can_be_cancelled(scheduler, clock):
    row = submit(scheduler, delay=60)
    assert row["status"] == "scheduled"
    cancelled = scheduler.cancel(row["id"])
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] == clock.now
    clock.advance(61)
    assert scheduler.promote() == 0
    assert scheduler.lease("w1", ["sleep"], 1, wait=0) == []


def test_the_lease_does_not_read_jobs_that_are_not_due(tmp_path, config, clock):
    """The lease's cost must not grow with delayed jobs: count SQLite's VM steps."""
    store = open_store(str(tmp_path / "steps.db"))
    store.migrate()
    scheduler = Scheduler(store, config, clock=clock)
    try:

        def lease_steps() -> int:
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            connection = store._connection()
            connection.set_progress_handler(count, 1)
            try:
                assert scheduler.lease("w1", ["sleep"], 8, wait=0) == []
            finally:
                connection.set_progress_handler(None, 1)
            return steps[0]

        submit(scheduler, type="other")
        empty = lease_steps()
        scheduler.submit([job(delay=3600)] * 2000)
        assert lease_steps() <= empty + 50  # the same work, not 2000 index entries more
    finally:
        store.close()


# -------------------------------------------------------------------- sizes


def test_a_result_past_the_cap_fails_the_attempt_for_good(store, clock):
    scheduler = Scheduler(store, ServerConfig(max_result_bytes=1000), clock=clock)
    row = submit(scheduler, max_attempts=3)
    leased = lease_one(scheduler)
    outcome = complete(scheduler, leased, result={"blob": "x" * 2000})
    assert outcome.result is CompletionResult.RECORDED
    failed = scheduler.get(row["id"])
    assert failed["status"] == "failed" and failed["result"] is None
    assert "--max-result 1000" in failed["error"]
    assert outcomes(scheduler, row["id"]) == ["failed"]


def test_listings_are_summaries_and_full_pages_stop_short_of_the_answer_cap(store, clock):
    scheduler = Scheduler(store, ServerConfig(max_answer_bytes=5000), clock=clock)
    ids = [submit(scheduler, payload={"blob": "x" * 2000})["id"] for _ in range(5)]
    summaries = scheduler.list_jobs(None, None, 10, None)
    assert [row["id"] for row in summaries] == ids[::-1]
    assert all("payload" not in row and "result" not in row for row in summaries)
    assert summaries[0]["payload_bytes"] > 2000
    seen, cursor = [], None
    while True:
        page = scheduler.list_jobs(None, None, 10, cursor, full=True)
        if not page:
            break
        assert len(page) <= 2  # 2 jobs of ~2.6 kB fit in 5000 bytes
        assert all(row["payload"].startswith('{"blob"') for row in page)
        seen += [row["id"] for row in page]
        cursor = page[-1]["id"]
    assert seen == ids[::-1]


# ------------------------------------------------------------------ wake-ups


def test_a_new_job_wakes_one_long_poll_not_all(store, config):
    scheduler = Scheduler(store, config)
    threads = []
    got: list[list[Row]] = []
    for i in range(4):
        thread = threading.Thread(
            target=lambda i=i: got.append(scheduler.lease(f"w{i}", ["sleep"], 1, wait=2))
        )
        thread.start()
        threads.append(thread)
    waiting = scheduler.notifier
    wait_until(lambda: waiting.lease_waiters() == 4, 10, 0.01, "4 long polls to wait")
    submit(scheduler)
    # Woken synchronously by the submission: one waiter, the other three sleep on.
    assert waiting.lease_waiters() == 3
    wait_until(lambda: got, 10, 0.01, "the woken long poll to answer")
    waiting.close()  # the three others answer now rather than at the end of their wait
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(len(rows) for rows in got) == [0, 0, 0, 1]


def test_waits_past_the_cap_are_answered_at_once(store):
    scheduler = Scheduler(store, ServerConfig(max_waiting=1))
    row = submit(scheduler)
    holder = threading.Thread(target=lambda: scheduler.lease("w1", ["other"], 1, wait=5))
    holder.start()
    wait_until(scheduler.notifier.has_waiters, 10, 0.01, "the first long poll to wait")
    assert scheduler.lease_or_busy("w2", ["other"], 1, wait=5) == ([], True)
    same, refused = scheduler.wait_for_job(row["id"], wait=5)
    assert refused and same["status"] == "queued"
    scheduler.notifier.close()
    holder.join(timeout=10)
