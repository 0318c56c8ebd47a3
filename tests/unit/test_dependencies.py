"""Dependency resolution in the transaction that finishes the dependency (both backends)."""

from __future__ import annotations

import json
import time

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.dependencies import MissingDependencies
from taskframe.server.engine.scheduler import Scheduler


def job(**fields) -> dict:
    return {
        "type": "sleep",
        "payload": {"duration": 0},
        "priority": 5,
        "max_attempts": 1,
        "timeout": 10.0,
        "idempotency_key": None,
        **fields,
    }


@pytest.fixture
def scheduler(store) -> Scheduler:
    return Scheduler(store, ServerConfig(lease_ttl=5))


def test_a_reaped_dependency_cancels_its_dependants_in_the_same_transaction(scheduler):
    [(root, _)] = scheduler.submit([job()])
    [(child, _), (grandchild, _)] = scheduler.submit(
        [job(depends_on=[root["id"]]), job(depends_on=[("ref", 0)])]
    )
    assert (child["status"], grandchild["status"]) == ("waiting", "waiting")
    [leased] = scheduler.lease("w", ["sleep"], 5, wait=0)
    assert leased["id"] == root["id"]  # waiting jobs are not leased
    later = time.time() + 3600
    scheduler = Scheduler(scheduler.store, scheduler.config, clock=lambda: later)
    assert scheduler.reap() == 1
    assert scheduler.get(root["id"])["status"] == "failed"
    for row, cause in ((child, root), (grandchild, child)):
        found = scheduler.get(row["id"])
        assert found["status"] == "cancelled"
        assert found["error"] == f"dependency {cause['id']} {scheduler.get(cause['id'])['status']}"


def test_a_released_dependency_keeps_its_dependant_waiting(scheduler):
    [(root, _)] = scheduler.submit([job()])
    [(child, _)] = scheduler.submit([job(depends_on=[root["id"]])])
    [leased] = scheduler.lease("w", ["sleep"], 5, wait=0)
    scheduler.release(leased["id"], "w", leased["lease_id"])
    assert scheduler.get(child["id"])["status"] == "waiting"
    [leased] = scheduler.lease("w", ["sleep"], 5, wait=0)
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "succeeded", "w", 1)])
    assert scheduler.get(child["id"])["status"] == "queued"


def test_run_anyway_and_a_delay_both_hold(scheduler):
    [(root, _)] = scheduler.submit([job()])
    [(anyway, _)] = scheduler.submit(
        [job(depends_on=[root["id"]], on_dependency_failure="run", delay=3600.0)]
    )
    [leased] = scheduler.lease("w", ["sleep"], 5, wait=0)
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "failed", "w", None, "x")])
    # Its dependency failed, it runs anyway: when its delay has passed.
    assert scheduler.get(anyway["id"])["status"] == "scheduled"


def test_a_missing_dependency_writes_nothing(scheduler):
    with pytest.raises(MissingDependencies) as info:
        scheduler.submit([job(), job(depends_on=[("ref", 0), 424242])])
    assert info.value.errors == {"depends_on": ["no job has id 424242"]}
    assert scheduler.list_jobs(None, None, 10, None) == []


def test_a_retried_dependant_waits_again_for_the_dependencies_still_running(scheduler):
    # A client cancels a waiting dependant, then retries it while one of its two
    # dependencies still runs: it must wait for that one, not run ahead of it.
    [(first, _), (second, _)] = scheduler.submit([job(), job()])
    [(child, _)] = scheduler.submit([job(depends_on=[first["id"], second["id"]])])
    [leased] = scheduler.lease("w", ["sleep"], 1, wait=0)
    assert leased["id"] == first["id"]
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "succeeded", "w", 1)])
    scheduler.cancel(child["id"])
    retried = scheduler.retry(child["id"])
    assert retried["status"] == "waiting"
    assert retried["deps_pending"] == 1
    [leased] = scheduler.lease("w", ["sleep"], 5, wait=0)  # only the dependency is ready
    assert leased["id"] == second["id"]
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "succeeded", "w", 1)])
    assert scheduler.get(child["id"])["status"] == "queued"


def test_a_retried_dependant_whose_dependencies_all_finished_is_queued(scheduler):
    [(root, _)] = scheduler.submit([job()])
    [(child, _)] = scheduler.submit([job(depends_on=[root["id"]])])
    scheduler.cancel(child["id"])
    [leased] = scheduler.lease("w", ["sleep"], 5, wait=0)
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "succeeded", "w", 1)])
    assert scheduler.retry(child["id"])["status"] == "queued"


def _dependant_batch(done: int, cancelled: int, queued: int, n: int) -> list[dict]:
    """``n`` rounds of four jobs on a finished, a cancelled and a queued job and on
    each other: each kind of starting status, within the batch and outside it."""
    jobs: list[dict] = []
    for _ in range(n):
        first = len(jobs)
        jobs += [
            job(depends_on=[queued, done]),  # waiting, one edge
            job(depends_on=[cancelled, ("ref", first)]),  # cancelled
            job(depends_on=[("ref", first + 1)], on_dependency_failure="run"),  # queued
            job(depends_on=[("ref", first + 1), ("ref", first)]),  # cancelled in turn
        ]
    return jobs


def test_a_batch_attaches_its_dependencies_with_the_same_statements_whatever_its_size(store):
    from tests.unit.test_notify import CountedStore

    counted = CountedStore(store)
    scheduler = Scheduler(counted, ServerConfig(lease_ttl=5))  # type: ignore[arg-type]
    [(done, _), (cancelled, _), (queued, _)] = scheduler.submit([job(), job(), job()])
    [leased] = scheduler.lease("w", ["sleep"], 1, wait=0)
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "succeeded", "w", 1)])
    scheduler.cancel(cancelled["id"])
    statements = []
    for n in (1, 25):
        counted.queries.clear()
        rows = [
            row
            for row, _ in scheduler.submit(
                _dependant_batch(leased["id"], cancelled["id"], queued["id"], n)
            )
        ]
        statements.append(sum(counted.queries.values()))
        assert [row["status"] for row in rows] == [
            "waiting",
            "cancelled",
            "queued",
            "cancelled",
        ] * n
        assert [scheduler.get(row["id"]) for row in rows] == rows  # as committed
        assert rows[1]["error"] == f"dependency {cancelled['id']} cancelled"
        assert rows[3]["error"] == f"dependency {rows[1]['id']} cancelled"
        assert (rows[0]["deps_pending"], json.loads(rows[0]["depends_on"])) == (
            1,
            sorted([queued["id"], leased["id"]]),
        )
    assert statements[0] == statements[1]
    assert scheduler.get(queued["id"])["has_dependants"]
