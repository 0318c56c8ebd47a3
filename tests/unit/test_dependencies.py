"""Dependency resolution in the transaction that finishes the dependency (both backends)."""

from __future__ import annotations

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
