"""The set-based attempt statements (one per batch), on both backends: every row is
fenced by its own job id, lease id, worker id and status inside the statement; and
the set-based bulk insert of jobs."""

from __future__ import annotations

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler

NOOP = {"type": "sleep", "payload": {"duration": 0}, "priority": 0, "max_attempts": 3}


@pytest.fixture
def leased(store):
    """Four jobs leased to worker w: (scheduler, their rows by id)."""
    scheduler = Scheduler(store, ServerConfig())
    scheduler.submit([dict(NOOP) for _ in range(4)])
    rows = scheduler.lease("w", ["sleep"], 4, 0.0)
    return scheduler, {row["id"]: row for row in rows}


def _fence(row: dict, **changes: object) -> dict:
    return {"id": row["id"], "lease_id": row["lease_id"], "worker_id": "w", **changes}


def _success(row: dict) -> dict:
    return _fence(row, status="succeeded", result=None, error=None, finished_at=123.5,
                  run_at=row["run_at"], new_lease_id=row["lease_id"], refund=0)  # fmt: skip


def test_end_attempts_updates_only_rows_whose_fence_holds(store, leased):
    _, rows = leased
    a, b, c, d = sorted(rows)
    done = [
        {**_success(rows[a]), "result": '{"x":1}'},
        {**_success(rows[b]), "lease_id": "not-the-lease"},
        {**_success(rows[c]), "worker_id": "someone-else"},
        _success(rows[d]),
    ]
    with store.transaction() as tx:
        updated = tx.run_set("end_attempts", done)
    assert sorted(row["id"] for row in updated) == [a, d]
    assert {row["status"] for row in updated} == {"succeeded"}
    with store.reader() as tx:
        now = {row["id"]: row for row in tx.all("get_jobs", {"ids": [a, b, c, d]})}
    assert now[a]["result"] == '{"x":1}' and now[a]["finished_at"] == 123.5
    assert now[a]["lease_id"] == rows[a]["lease_id"]  # kept: a resend is recognised
    assert now[b]["status"] == now[c]["status"] == "running"  # stale: nothing changed
    with store.transaction() as tx:  # a resend: the status fence refuses it
        assert tx.run_set("end_attempts", done[:1]) == []


def test_end_attempts_sets_each_rows_own_outcome(store, leased):
    _, rows = leased
    a, b, c, _ = sorted(rows)
    ended = [
        _fence(rows[a], status="failed", result=None, error="boom", finished_at=50.25,
               run_at=rows[a]["run_at"], new_lease_id=rows[a]["lease_id"], refund=0),
        _fence(rows[b], status="queued", result=None, error="again", finished_at=None,
               run_at=99.125, new_lease_id=None, refund=1),
        {**_fence(rows[c], status="failed", result=None, error="x", finished_at=1.0,
                  run_at=1.0, new_lease_id=None, refund=0), "lease_id": "stale"},
    ]  # fmt: skip
    with store.transaction() as tx:
        updated = {row["id"]: row for row in tx.run_set("end_attempts", ended)}
    assert set(updated) == {a, b}
    assert (updated[a]["status"], updated[a]["error"], updated[a]["finished_at"]) == (
        "failed",
        "boom",
        50.25,
    )
    assert updated[a]["lease_id"] == rows[a]["lease_id"] and updated[a]["attempts"] == 1
    assert (updated[b]["status"], updated[b]["run_at"], updated[b]["attempts"]) == (
        "queued",
        99.125,
        0,
    )
    assert updated[b]["lease_id"] is None


def test_insert_attempts_keeps_the_order_and_exact_times(store, leased):
    _, rows = leased
    a, b, _, _ = sorted(rows)
    history = [
        {"job_id": job, "attempt": 1, "worker_id": "w", "lease_id": rows[job]["lease_id"],
         "started_at": 1764998400.123456 + i, "finished_at": 1764998400.654321 + i,
         "outcome": outcome, "error": error, "log": "línea 1\n", "traceback": None}
        for i, (job, outcome, error) in enumerate(
            [(b, "failed", "boom"), (a, "succeeded", None), (b, "lease_expired", "gone")]
        )
    ]  # fmt: skip
    with store.transaction() as tx:
        tx.run_set("insert_attempts", history)
    with store.reader() as tx:
        found = tx.all("list_attempts", {"job_id": b})
    assert [row["outcome"] for row in found] == ["failed", "lease_expired"]
    assert [row["started_at"] for row in found] == [1764998400.123456, 1764998402.123456]
    assert found[0]["log"] == "línea 1\n" and found[0]["traceback"] is None


def test_mixed_int_and_float_times_are_accepted(store, leased):
    """A clock giving whole seconds (tests, embedders) next to fractional run_at."""
    _, rows = leased
    a, b, _, _ = sorted(rows)
    ended = [
        _fence(rows[job], status="queued", result=None, error=None, finished_at=None,
               run_at=run_at, new_lease_id=None, refund=1)
        for job, run_at in ((a, 100), (b, 100.5))
    ]  # fmt: skip
    with store.transaction() as tx:
        updated = tx.run_set("end_attempts", ended)
    assert sorted(row["run_at"] for row in updated) == [100.0, 100.5]


def test_bulk_insert_returns_the_rows_in_the_order_given(store):
    """POST /jobs/batch without keys: one statement (PostgreSQL: unnest), ids in order."""
    scheduler = Scheduler(store, ServerConfig())
    jobs = [dict(NOOP, priority=p, queue=f"q{p}") for p in (5, -3, 0, 7)]
    jobs[2]["delay"] = 3600.5
    rows = [row for row, created in scheduler.submit(jobs) if created]
    assert [row["priority"] for row in rows] == [5, -3, 0, 7]
    assert [row["queue"] for row in rows] == ["q5", "q-3", "q0", "q7"]
    assert rows == sorted(rows, key=lambda row: row["id"])
    assert [row["status"] for row in rows] == ["queued", "queued", "scheduled", "queued"]
