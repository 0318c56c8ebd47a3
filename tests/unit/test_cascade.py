"""Big fan-outs resolve in bounded chunks, durably (issue 18, both backends).

Cancelling a job with 100,000 dependants used to cancel them all in its own
transaction (33 s, other submissions answered 503 meanwhile). Now the
finishing transaction resolves one chunk and leaves a marker; the
housekeeper resolves the rest a chunk per transaction. A dependant of a
failed or cancelled job never runs, even if the server dies mid-cascade.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskframe.core.errors import ErrorCode, JobConflict
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import Store, open_store
from tests.processes import wait_until
from tests.unit.test_scheduler import Clock

# The fan-outs are 50, 20 and 10 chunks (of a small chunk: submitting a dependant
# costs PostgreSQL a few round trips, and 5,000 of them took seconds per test).
CHUNK = 20
FAN_OUT = 50 * CHUNK


def job(**fields: Any) -> dict[str, Any]:
    return {
        "type": "sleep",
        "payload": {"duration": 0},
        "priority": 5,
        "max_attempts": 1,
        "timeout": None,
        "idempotency_key": None,
        **fields,
    }


def config(**fields: Any) -> ServerConfig:
    return ServerConfig(cascade_batch=CHUNK, default_timeout=None, reap_interval=0.05, **fields)


@pytest.fixture
def scheduler(store: Store) -> Scheduler:
    return Scheduler(store, config())


def fan_out(scheduler: Scheduler, root: int, count: int = FAN_OUT, **fields: Any) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        size = min(1000, count - len(ids))
        rows = scheduler.submit([job(depends_on=[root], **fields)] * size)
        ids += [row["id"] for row, _ in rows]
    return ids


def statuses(scheduler: Scheduler) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        page = scheduler.list_jobs(None, None, 1000, cursor)
        if not page:
            return counts
        for row in page:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        cursor = page[-1]["id"]


@pytest.mark.timeout(300)
def test_a_cancel_resolves_one_chunk_and_the_housekeeper_the_rest_while_others_submit(
    scheduler,
):
    [(root, _)] = scheduler.submit([job(type="other")])
    dependants = fan_out(scheduler, root["id"])
    assert scheduler.get(dependants[-1])["status"] == "waiting"
    scheduler.cancel(root["id"])
    # The cancel's own transaction took one chunk: the rest waits for the housekeeper.
    assert statuses(scheduler) == {"cancelled": 1 + CHUNK, "waiting": FAN_OUT - CHUNK}
    assert scheduler.wakeups.cascade_wanted.is_set()
    assert scheduler.lease("w", ["sleep"], 10, wait=0) == []  # waiting jobs never run

    cascading = threading.Thread(target=scheduler.cascade)
    cascading.start()
    submitted = []
    try:
        while cascading.is_alive() and len(submitted) < 200:
            [(row, created)] = scheduler.submit([job(type="other")])
            assert created and row["status"] == "queued"
            submitted.append(row["id"])
    finally:
        cascading.join(timeout=240)
    assert submitted, "no submission got in during the cascade"
    assert statuses(scheduler) == {"cancelled": 1 + FAN_OUT, "queued": len(submitted)}
    for row in scheduler.list_jobs("cancelled", None, 3, None):
        if row["id"] != root["id"]:
            assert row["error"] == f"dependency {root['id']} cancelled"


@pytest.mark.timeout(300)
def test_a_crash_mid_cascade_loses_nothing_and_runs_no_dependant(db_url):
    store = open_store(db_url)
    store.migrate()
    first = Scheduler(store, config())
    [(root, _), (other, _)] = first.submit([job(type="root"), job(type="other")])
    dependants = fan_out(first, root["id"], 10 * CHUNK)
    # The last one waits on two jobs: the cancelled root and one that will succeed.
    [(both, _)] = first.submit([job(depends_on=[root["id"], other["id"]])])
    first.cancel(root["id"])
    store.close()  # the server dies: the rest of the cascade never ran here

    store = open_store(db_url)
    try:
        second = Scheduler(store, config())
        assert second.get(dependants[-1])["status"] == "waiting"
        # Its other dependency succeeds: one edge left (the cancelled root's), it waits on.
        [leased] = second.lease("w", ["other"], 1, wait=0)
        second.complete([Completion(other["id"], leased["lease_id"], "succeeded", "w")])
        assert second.get(both["id"])["status"] == "waiting"
        assert second.get(both["id"])["deps_pending"] == 1
        assert second.lease("w", ["sleep"], 10, wait=0) == []
        # A restarted server's housekeeper goes on from the marker.
        assert second.cascade() == 10 * CHUNK + 1 - CHUNK
        for job_id in (*dependants, both["id"]):
            assert second.get(job_id)["status"] == "cancelled"
        assert second.cascade() == 0
    finally:
        store.close()


@pytest.mark.timeout(300)
def test_a_success_readies_every_dependant_promptly_through_the_housekeeper(scheduler):
    [(root, _)] = scheduler.submit([job(type="root")])
    dependants = fan_out(scheduler, root["id"], 20 * CHUNK)
    housekeeper = scheduler.housekeeper()
    housekeeper.start()
    try:
        [leased] = scheduler.lease("w", ["root"], 1, wait=0)
        scheduler.complete([Completion(root["id"], leased["lease_id"], "succeeded", "w")])
        wait_until(lambda: statuses(scheduler).get("queued") == len(dependants), 60)
    finally:
        housekeeper.stop()


def test_grandchildren_of_a_failed_job_are_cancelled_level_after_level(scheduler):
    [(root, _)] = scheduler.submit([job(type="root")])
    children = fan_out(scheduler, root["id"], CHUNK + 20)
    grandchildren = [
        row["id"]
        for child in children[-30:]
        for row, _ in scheduler.submit([job(depends_on=[child])] * 5)
    ]
    [leased] = scheduler.lease("w", ["root"], 1, wait=0)
    scheduler.complete([Completion(root["id"], leased["lease_id"], "failed", "w", None, "x")])
    scheduler.cascade()
    for job_id in children + grandchildren:
        assert scheduler.get(job_id)["status"] == "cancelled"
    assert scheduler.get(grandchildren[0])["error"] == f"dependency {children[-30]} cancelled"


def test_retry_and_prune_wait_for_a_cascade(store):
    clock = Clock()
    scheduler = Scheduler(store, config(retention=60.0), clock=clock)
    [(root, _)] = scheduler.submit([job(type="root")])
    fan_out(scheduler, root["id"], CHUNK * 3)
    scheduler.cancel(root["id"])
    with pytest.raises(JobConflict, match="still being cancelled") as refused:
        scheduler.retry(root["id"])
    assert refused.value.code is ErrorCode.TRY_AGAIN  # answered 409 with code try_again
    clock.advance(61)
    assert scheduler.prune() == CHUNK  # the cancelled dependants, not the root
    scheduler.cascade()
    assert scheduler.retry(root["id"])["status"] == "queued"
