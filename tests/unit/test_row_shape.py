"""The storage layer gives one shape of row whatever the backend: SQLite's 0/1 come
back as bools and its REAL columns as floats, and NUL in the free text that workers
send is stored as U+FFFD by each backend (PostgreSQL text cannot hold NUL, SQLite's
JSON reader cuts a string at one). Nothing above the storage layer converts."""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import Store
from taskframe.server.storage.base import without_nul
from tests.unit.test_scheduler import BACKOFF, TTL, Clock, complete, lease_one, submit


@pytest.fixture
def scheduler(store: Store) -> Scheduler:
    config = ServerConfig(lease_ttl=TTL, default_timeout=300.0, backoff=BACKOFF)
    return Scheduler(store, config, clock=Clock(), rng=random.Random(7))


def test_a_job_row_has_the_same_types_on_every_backend(scheduler, store):
    row = submit(scheduler, timeout=30)
    with store.reader() as tx:
        stored = tx.one("get_job", {"id": row["id"]})
    assert stored is not None
    assert type(stored["cancel_requested"]) is bool and stored["cancel_requested"] is False
    assert type(stored["has_dependants"]) is bool
    assert type(stored["timeout"]) is float and stored["timeout"] == 30.0
    leased = lease_one(scheduler)  # RETURNING rows too
    assert type(leased["cancel_requested"]) is bool and type(leased["timeout"]) is float
    assert scheduler.jobs.cancel(row["id"])["cancel_requested"] is True


def test_the_store_replaces_nul_in_what_workers_send(scheduler, store):
    submit(scheduler)
    row = lease_one(scheduler)
    nul = {"error": "bad \x00 body", "log": "a\x00b", "traceback": "t\x00"}
    complete(scheduler, row, "failed", retryable=False, **nul)
    job = scheduler.get(row["id"])
    assert job["error"] == "bad \ufffd body"
    [attempt] = scheduler.jobs.attempts(row["id"])
    assert (attempt["error"], attempt["log"], attempt["traceback"]) == (
        "bad \ufffd body",
        "a\ufffdb",
        "t\ufffd",
    )


def test_statement_parameters_are_cleaned_in_place():
    # The caller then holds what was stored (an attempt's record goes on to hooks).
    params = {"id": 1, "error": "x\x00", "log": None, "traceback": "fine"}
    assert without_nul(params) is params
    assert params == {"id": 1, "error": "x\ufffd", "log": None, "traceback": "fine"}
    read_only = MappingProxyType({"error": "\x00"})
    assert without_nul(read_only) == {"error": "\ufffd"} and read_only["error"] == "\x00"


def test_a_batch_gives_the_rows_it_stored_without_reading_them_back(scheduler, store):
    """insert_jobs builds its rows (new_job_row): they must be what a read gives."""
    jobs = [
        {"type": "sleep", "payload": {"duration": 0, "note": "nul \x00 in a payload"}},
        {"type": "sleep", "payload": {}, "priority": 7, "timeout": 30, "queue": "q"},
        {"type": "sleep", "payload": {}, "delay": 60, "max_attempts": 1},
        {"type": "sleep", "payload": {}, "notify_url": "https://example.com/hook"},
        {"type": "sleep", "payload": {}, "on_dependency_failure": "run"},
    ]
    results = scheduler.submit(jobs)
    assert [created for _, created in results] == [True] * len(jobs)
    rows = [row for row, _ in results]
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
    assert [row["status"] for row in rows] == ["queued", "queued", "scheduled", "queued", "queued"]
    with store.reader() as tx:
        for row in rows:
            stored = tx.one("get_job", {"id": row["id"]})
            assert row == stored
            assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in stored.items()}
