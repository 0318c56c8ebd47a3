"""Property-based tests (hypothesis): the backoff policy and the scheduler's state machine.

The stateful test drives a real :class:`Scheduler` over a real SQLite file (and
over a real PostgreSQL schema) with a clock it moves by hand, mixing every
client, worker and housekeeping action with current and stale leases, and
checks the job invariants after each step.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from taskframe.core import model, schemas
from taskframe.core.errors import JobConflict
from taskframe.core.options import duration
from taskframe.core.retry import BackoffPolicy
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion, CompletionResult
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import Row, counts, open_store
from tests.pg_schemas import SchemaPool

# ------------------------------------------------------------------ backoff

bases = st.floats(min_value=0, max_value=1e6, allow_nan=False)
caps = st.floats(min_value=0, max_value=1e9, allow_nan=False)
failed_attempts = st.integers(min_value=0, max_value=100_000)


class FixedRandom(random.Random):
    """A generator whose ``random()`` always returns ``value`` (to hit the jitter's ends)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@given(base=bases, cap=caps, attempt=failed_attempts, seed=st.integers(0, 2**32))
def test_backoff_delay_is_between_half_the_nominal_delay_and_the_nominal_delay(
    base, cap, attempt, seed
):
    policy = BackoffPolicy(base, cap)
    nominal = policy.nominal(attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert math.isfinite(delay)
    assert 0 <= nominal / 2 <= delay <= nominal <= cap


@given(
    base=bases,
    cap=caps,
    attempt=failed_attempts,
    value=st.sampled_from([0.0, 0.5, 1.0 - 2**-53]),
)
def test_backoff_jitter_extremes_stay_within_bounds(base, cap, attempt, value):
    policy = BackoffPolicy(base, cap)
    nominal = policy.nominal(attempt)
    assert nominal / 2 <= policy.delay(attempt, FixedRandom(value)) <= nominal <= cap


@given(base=bases, cap=caps, attempt=failed_attempts)
def test_backoff_nominal_delay_grows_from_base_up_to_cap(base, cap, attempt):
    policy = BackoffPolicy(base, cap)
    assert policy.nominal(0) == policy.nominal(1) == min(cap, base)
    assert policy.nominal(attempt) <= policy.nominal(attempt + 1) <= cap
    if attempt < 60:  # exact doubling while far from the exponent clamp
        assert policy.nominal(attempt + 1) == min(cap, base * 2.0**attempt)


# ------------------------------------------------- durations on the command line


@given(
    text=st.one_of(
        st.floats().map(repr),
        st.builds(
            lambda n, unit: f"{n}{unit}", st.floats(), st.sampled_from(["", "s", "m", "h", "d"])
        ),
        st.text(max_size=8),
    )
)
@example(text="nan")
@example(text="inf")
@example(text="1e400d")
def test_a_duration_option_is_finite_seconds_or_a_usage_error(text):
    """``--lease-ttl``, ``--retry-backoff``... take a finite number of seconds.

    Known bug (fails today): ``duration("nan")`` and ``duration("inf")`` are
    accepted (server/cli.py, ``duration``: ``float()`` takes them and only
    ``value < 0`` is refused). ``--retry-backoff-max nan`` makes every failed
    attempt's ``run_at`` NaN, which SQLite stores as NULL: the NOT NULL
    constraint fails and each report of a failed attempt is a 500.
    ``--lease-ttl nan`` stores leases that never expire (NULL), so a dead
    worker's job waits for its attempt timeout (forever with --default-timeout 0).
    """
    try:
        value = duration(text)
    except argparse.ArgumentTypeError:
        return
    assert math.isfinite(value) and value >= 0, f"{text!r} -> {value!r}"


# ------------------------------------------------------------ the scheduler


def counted_jobs(store) -> dict[tuple[str, str, str, int], int]:
    """What job_counts says (deltas included), zeros left out."""
    with store.reader() as tx:
        counted = counts.read(tx).rows
    return {
        (row["type"], row["queue"], row["status"], int(row["priority"])): row["count"]
        for row in counted
        if row["count"]
    }


def grouped_jobs(store) -> dict[tuple[str, str, str, int], int]:
    """The same counted the slow way, from every row of jobs."""
    rows = store_rows(store)
    found: dict[tuple[str, str, str, int], int] = {}
    for row in rows:
        key = (row["type"], row["queue"], row["status"], int(row["priority"]))
        found[key] = found.get(key, 0) + 1
    return found


def store_rows(store) -> list[Row]:
    rows: list[Row] = []
    cursor = None
    with store.reader() as tx:
        while True:
            params = {"limit": 1000, "after_id": cursor or 2**62}
            page = tx.all(tx.filtered("list_jobs", ["id_desc"]), params)
            rows += page
            if len(page) < 1000:
                return rows
            cursor = page[-1]["id"]


T0 = 1_700_000_000.0
TTL = 10.0
TIMEOUT = 15.0
WORKERS = ("w1", "w2")
SUBMIT = schemas.SubmitJobSchema()


def _current(row: Row, lease_id: str) -> bool:
    """Does ``lease_id`` hold ``row`` now (the job runs under that lease)?"""
    return row["status"] == model.RUNNING and row["lease_id"] == lease_id


def _after_failed_attempt(row: Row, retryable: bool = True) -> str:
    if row["cancel_requested"]:
        return model.CANCELLED
    return model.status_after_failed_attempt(row["attempts"], row["max_attempts"], retryable)


class SchedulerMachine(RuleBasedStateMachine):
    """Random sequences of submit, lease, heartbeat, complete, reap, cancel, retry, release."""

    jobs = Bundle("jobs")
    leases = Bundle("leases")  # (job id, lease id, worker id): current or long stale

    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="taskframe-props-"))
        self.schema = None
        if self.backend == "postgres":  # a migrated schema, as good as new, from the pool
            self.schema = self.schemas.take()
            url = self.schemas.url(self.schema)
        else:
            url = str(self.folder / "jobs.db")
        self.store = open_store(url)
        self.store.migrate()
        self.now = T0
        config = ServerConfig(
            lease_ttl=TTL,
            default_timeout=None,
            backoff=BackoffPolicy(1.0, 4.0),
            retention=0,  # never prune: no job may disappear
        )
        self.scheduler = Scheduler(self.store, config, clock=lambda: self.now, rng=random.Random(0))
        self.seen: dict[int, Row] = {}  # every job as the last invariant check saw it
        self.retried: set[int] = set()  # finished jobs legitimately re-queued since then

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.schema:
            self.schemas.give_back(self.schema)

    # -- helpers -------------------------------------------------------------

    def rows(self) -> dict[int, Row]:
        rows = self.scheduler.list_jobs(None, None, 10_000, None, full=True)
        return {row["id"]: row for row in rows}

    def history(self, job_id: int) -> list[str]:
        return [attempt["outcome"] for attempt in self.scheduler.jobs.attempts(job_id)]

    def assert_only_changed(self, before: dict[int, Row], after: dict[int, Row], *ids: int):
        assert after.keys() == before.keys()
        for job_id, row in before.items():
            if job_id not in ids:
                assert after[job_id] == row, f"job {job_id} changed unexpectedly"

    # -- clients -------------------------------------------------------------

    @initialize(target=jobs, priorities=st.lists(st.integers(1, 10), min_size=1, max_size=4))
    def some_jobs(self, priorities):
        """Start with a few ready jobs, so that short runs lease something too."""
        rows = self.scheduler.submit(
            [SUBMIT.load({"type": "sleep", "priority": p, "max_attempts": 2}) for p in priorities]
        )
        return multiple(*(row["id"] for row, _ in rows))

    @rule(
        target=jobs,
        priority=st.integers(1, 10),
        max_attempts=st.integers(1, 3),
        delay=st.sampled_from([0.0, 0.0, 3.0]),
        timeout=st.sampled_from([None, None, TIMEOUT]),
    )
    def submit(self, priority, max_attempts, delay, timeout):
        body = {
            "type": "sleep",
            "payload": {"duration": 1},
            "priority": priority,
            "max_attempts": max_attempts,
            "delay": delay,
            "timeout": timeout,
        }
        [(row, created)] = self.scheduler.submit([SUBMIT.load(body)])
        assert created
        assert row["status"] == (model.QUEUED if delay == 0 else model.SCHEDULED)
        assert row["attempts"] == 0
        assert row["run_at"] == self.now + delay
        return row["id"]

    @rule(job_id=jobs)
    def cancel(self, job_id):
        before = self.rows()
        row = before[job_id]
        event(f"cancel: {row['status']}")
        if row["status"] in model.FINISHED:
            with pytest.raises(JobConflict):
                self.scheduler.cancel(job_id)
            assert self.rows() == before
            return
        cancelled = self.scheduler.cancel(job_id)
        after = self.rows()
        assert cancelled == after[job_id]
        if row["status"] in (model.QUEUED, model.SCHEDULED):
            assert cancelled["status"] == model.CANCELLED
            assert cancelled["finished_at"] == self.now
        else:  # running: the worker is asked to stop
            assert cancelled["status"] == model.RUNNING and cancelled["cancel_requested"]
            assert cancelled["lease_id"] == row["lease_id"]
        self.assert_only_changed(before, after, job_id)

    @rule(job_id=jobs)
    def retry(self, job_id):
        before = self.rows()
        row = before[job_id]
        event(f"retry: {row['status']}")
        if row["status"] not in (model.FAILED, model.CANCELLED):
            with pytest.raises(JobConflict):
                self.scheduler.retry(job_id)
            assert self.rows() == before
            return
        retried = self.scheduler.retry(job_id)
        self.retried.add(job_id)
        # Attempts are numbered for the life of the job; the retry grants the submitted number.
        grant = row.get("attempt_grant") or row["max_attempts"]
        assert retried["status"] == model.QUEUED and retried["attempts"] == row["attempts"]
        assert retried["max_attempts"] == row["attempts"] + grant
        assert retried["run_at"] == self.now and retried["lease_id"] is None
        assert not retried["cancel_requested"]
        self.assert_only_changed(before, self.rows(), job_id)

    # -- workers -------------------------------------------------------------

    @rule(target=leases, worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def lease(self, worker, limit):
        before = self.rows()
        ready = sorted(
            # Ready means queued: jobs not yet due are scheduled until promoted.
            (r for r in before.values() if r["status"] == model.QUEUED),
            key=lambda r: (-r["priority"], r["id"]),
        )
        leased = self.scheduler.lease(worker, ["sleep"], limit, wait=0)
        event(f"lease: {len(leased)} job(s)")
        # The best ready jobs, highest priority first, FIFO within a priority.
        assert [r["id"] for r in leased] == [r["id"] for r in ready[:limit]]
        for row in leased:
            old = before[row["id"]]
            assert row["status"] == model.RUNNING and row["worker_id"] == worker
            assert row["attempts"] == old["attempts"] + 1
            assert row["lease_id"] and row["lease_id"] != old["lease_id"]
            assert row["lease_expires_at"] == self.now + TTL
            assert row["deadline"] == (None if old["timeout"] is None else self.now + TIMEOUT)
            assert not row["cancel_requested"]
        self.assert_only_changed(before, self.rows(), *(r["id"] for r in leased))
        return multiple(*((r["id"], r["lease_id"], worker) for r in leased))

    @rule(lease=leases)
    def heartbeat(self, lease):
        job_id, lease_id, worker = lease
        before = self.rows()
        held = _current(before[job_id], lease_id)
        [(answered_id, still_held, cancel)] = self.scheduler.heartbeat(worker, [(job_id, lease_id)])
        assert (answered_id, still_held) == (job_id, held)
        after = self.rows()
        event(f"heartbeat: held={held}")
        if not held:
            assert after == before, "a stale heartbeat changed something"
            return
        assert cancel == bool(before[job_id]["cancel_requested"])
        assert after[job_id] == {**before[job_id], "lease_expires_at": self.now + TTL}
        self.assert_only_changed(before, after, job_id)

    @rule(
        lease=leases,
        status=st.sampled_from([model.SUCCEEDED, model.FAILED, model.CANCELLED]),
        retryable=st.booleans(),
        intruder=st.booleans(),
    )
    def complete(self, lease, status, retryable, intruder):
        job_id, lease_id, worker = lease
        before = self.rows()
        row = before[job_id]
        attempts_before = self.history(job_id)
        completion = Completion(
            job_id,
            lease_id,
            status,
            worker_id="intruder" if intruder else worker,
            result={"lease": lease_id},
            error=None if status == model.SUCCEEDED else f"{status} by test",
            retryable=retryable,
        )
        [outcome] = self.scheduler.complete([completion])
        after = self.rows()
        if not _current(row, lease_id) or intruder:
            event(f"complete: refused or re-sent ({outcome.result.value})")
            # Stale (or someone else's): refused, or a re-sent report of a
            # recorded outcome; either way nothing changes.
            assert outcome.result is not CompletionResult.UNKNOWN_JOB, outcome
            if outcome.result is CompletionResult.RECORDED:
                # Only a resend of that lease's own report: its worker's, recorded
                # before (the row may show a newer attempt since).
                assert outcome.already and not intruder
                reported = {
                    a["outcome"]
                    for a in self.scheduler.jobs.attempts(job_id)
                    if a["lease_id"] == lease_id and a["worker_id"] == worker
                }
                assert row["lease_id"] == lease_id or reported & {
                    model.SUCCEEDED,
                    model.FAILED,
                    model.CANCELLED,
                }, reported
            assert after == before, "a stale completion changed something"
            assert self.history(job_id) == attempts_before
            return
        assert outcome.result is CompletionResult.RECORDED, outcome
        event(f"complete: current lease, {status}")
        new = after[job_id]
        if status == model.SUCCEEDED:
            expected, outcome_name = model.SUCCEEDED, model.OUTCOME_SUCCEEDED
        elif status == model.CANCELLED or row["cancel_requested"]:
            expected, outcome_name = model.CANCELLED, model.OUTCOME_CANCELLED
        else:
            expected, outcome_name = _after_failed_attempt(row, retryable), model.OUTCOME_FAILED
        assert new["status"] == expected
        assert self.history(job_id) == [*attempts_before, outcome_name]
        if expected == model.SUCCEEDED:
            assert json.loads(new["result"]) == {"lease": lease_id}
        if expected in model.FINISHED:
            assert new["finished_at"] == self.now
        else:
            assert new["run_at"] > self.now  # re-queued after a backoff
        self.assert_only_changed(before, after, job_id)

    @rule(lease=leases)
    def release(self, lease):
        job_id, lease_id, worker = lease
        before = self.rows()
        row = before[job_id]
        event(f"release: current={_current(row, lease_id)}")
        if not _current(row, lease_id):
            with pytest.raises(JobConflict):
                self.scheduler.release(job_id, worker, lease_id)
            assert self.rows() == before, "a stale release changed something"
            return
        released = self.scheduler.release(job_id, worker, lease_id)
        if row["cancel_requested"]:
            assert released["status"] == model.CANCELLED
        else:  # back to the queue at once, the attempt refunded
            assert released["status"] == model.QUEUED
            assert released["attempts"] == row["attempts"] - 1
            assert released["run_at"] == self.now
        self.assert_only_changed(before, self.rows(), job_id)

    # -- housekeeping --------------------------------------------------------

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, TTL + 1, 30.0]))
    def advance_clock_and_reap(self, seconds):
        self.now += seconds
        before = self.rows()
        expired = {
            job_id: row
            for job_id, row in before.items()
            if row["status"] == model.RUNNING
            and (
                row["lease_expires_at"] < self.now
                or (row["deadline"] is not None and row["deadline"] < self.now)
            )
        }
        histories = {job_id: self.history(job_id) for job_id in expired}
        assert self.scheduler.reap() == len(expired)
        event(f"reap: {min(len(expired), 2)}+ attempts")
        after = self.rows()
        for job_id, row in expired.items():
            new = after[job_id]
            assert new["status"] == _after_failed_attempt(row)
            assert new["lease_id"] is None
            timed_out = row["deadline"] is not None and row["deadline"] < self.now
            outcome = model.OUTCOME_TIMED_OUT if timed_out else model.OUTCOME_LEASE_EXPIRED
            assert self.history(job_id) == [*histories[job_id], outcome]
        self.assert_only_changed(before, after, *expired)

    @rule()
    def promote(self):
        before = self.rows()
        due = {
            job_id
            for job_id, row in before.items()
            if row["status"] == model.SCHEDULED and row["run_at"] <= self.now
        }
        assert self.scheduler.promote() == len(due)
        event(f"promote: {min(len(due), 2)}+ jobs")
        after = self.rows()
        for job_id in due:
            assert after[job_id] == {**before[job_id], "status": model.QUEUED}
        self.assert_only_changed(before, after, *due)

    @rule(drop_empty=st.booleans())
    def fold_counts(self, drop_empty):
        """The housekeeper folds the counts' deltas (PostgreSQL); nothing may change."""
        before = self.rows()
        counts.fold(self.store, drop_empty)
        assert self.rows() == before

    # -- invariants ----------------------------------------------------------

    @invariant()
    def counts_are_exact(self):
        """job_counts (kept in each change's transaction) agrees with a GROUP BY."""
        assert counted_jobs(self.store) == grouped_jobs(self.store)

    @invariant()
    def jobs_follow_the_state_machine(self):
        current = self.rows()
        for job_id, old in self.seen.items():
            assert job_id in current, f"job {job_id} disappeared"
            new = current[job_id]
            if new["status"] != old["status"]:
                assert model.can_transition(old["status"], new["status"]), (old, new)
            if old["status"] in model.FINISHED and job_id not in self.retried:
                assert new == old, f"finished job {job_id} changed without a retry"
        for row in current.values():
            assert row["status"] in model.STATUSES
            if row["status"] == model.QUEUED:
                assert row["run_at"] <= self.now, "a queued job is always due"
            assert 0 <= row["attempts"] <= row["max_attempts"]
            if row["status"] == model.RUNNING:
                assert row["lease_id"] and row["worker_id"]
                assert row["lease_expires_at"] is not None and row["started_at"] is not None
            if row["status"] in model.FINISHED:
                assert row["finished_at"] is not None
        self.seen = current
        self.retried = set()


SchedulerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSchedulerStateMachine = SchedulerMachine.TestCase


class PostgresSchedulerMachine(SchedulerMachine):
    backend = "postgres"
    schemas: SchemaPool


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_scheduler_state_machine_on_postgres(postgres_schemas: SchemaPool):
    """The same machine over PostgreSQL (each example in a schema of its own, as migrated)."""
    PostgresSchedulerMachine.schemas = postgres_schemas
    run_state_machine_as_test(
        PostgresSchedulerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
