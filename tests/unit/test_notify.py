"""Waiting without waste (issue 19, W2): a long-poll looks at the database once per
wake-up meant for it, reads before it writes, and a client waiting on a job gets the
job from the commit that finished it. Each test over a real store runs once per backend;
the store is counted (every call goes through to it), not replaced."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taskframe.server.config import ServerConfig
from taskframe.server.engine.notify import ChangeNotifier
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import Store
from tests.processes import wait_until
from tests.unit.test_lease_delivery import asleep, waiter
from tests.unit.test_scheduler import complete, lease_one, submit

#: The window in which an idle long-poll, having looked, must write nothing.
SETTLE = 0.3


class _CountedTransaction:
    def __init__(self, tx: Any, queries: Counter[str]) -> None:
        self._tx, self._queries = tx, queries

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tx, name)
        if name not in {"one", "all", "run", "run_many", "run_set", "returning_many"}:
            return attr

        def counted(query: str, *args: Any, **kwargs: Any) -> Any:
            self._queries[query] += 1
            return attr(query, *args, **kwargs)

        return counted


class CountedStore:
    """The real store, counting its write transactions and the named queries run."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes = 0
        self.queries: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        self.writes += 1
        with self._store.transaction() as tx:
            yield _CountedTransaction(tx, self.queries)

    @contextmanager
    def reader(self) -> Iterator[Any]:
        with self._store.reader() as tx:
            yield _CountedTransaction(tx, self.queries)


def _in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", call()), daemon=True)
    thread.start()
    return thread, result


def test_an_idle_long_poll_reads_once_and_writes_only_to_lease(store):
    counted = CountedStore(store)
    scheduler = Scheduler(counted, ServerConfig())  # type: ignore[arg-type]
    thread, result = _in_thread(lambda: scheduler.lease("w1", ["sleep"], 1, wait=10))
    wait_until(lambda: counted.queries["any_queued"] >= 1, 10, 0.01, "the poll to look")
    time.sleep(SETTLE)  # an absence: nothing may follow the look
    assert counted.writes == 0  # found nothing queued by reading: no write transaction
    submit(scheduler)  # one write; its wake-up, one lease: one more
    thread.join(10)
    assert len(result["value"]) == 1
    assert counted.writes == 2
    assert counted.queries["lease_jobs"] == 1


def test_a_job_waiter_reads_its_job_once_whatever_else_finishes(store):
    counted = CountedStore(store)
    scheduler = Scheduler(counted, ServerConfig())  # type: ignore[arg-type]
    target = submit(scheduler, priority=1)  # leased after the others (default priority)
    thread, result = _in_thread(lambda: scheduler.wait_for_job(target["id"], wait=10))
    wait_until(lambda: counted.queries["get_job"] >= 1, 10, 0.01, "the client to look")
    for _ in range(3):  # other jobs come and go: not the waiter's business
        submit(scheduler)
        complete(scheduler, lease_one(scheduler))
    complete(scheduler, lease_one(scheduler))  # the target
    thread.join(10)
    row, refused = result["value"]
    assert not refused and row["id"] == target["id"] and row["status"] == "succeeded"
    # Read once before it slept; the finishing commit handed the job over.
    assert counted.queries["get_job"] == 1


def test_the_job_handed_to_a_waiter_is_the_job_as_committed(store):
    counted = CountedStore(store)
    scheduler = Scheduler(counted, ServerConfig())  # type: ignore[arg-type]
    submit(scheduler)
    leased = lease_one(scheduler)
    thread, result = _in_thread(lambda: scheduler.wait_for_job(leased["id"], wait=10))
    wait_until(lambda: counted.queries["get_job"] >= 1, 10, 0.01, "the client to look")
    complete(scheduler, leased, result={"answer": 42})
    thread.join(10)
    assert result["value"] == (scheduler.get(leased["id"]), False)


def test_a_wake_up_that_came_while_the_waiter_looked_is_passed_on_when_it_leaves():
    notifier = ChangeNotifier()
    with notifier.waiting_for_work(["sleep"]) as looking:  # registered, looking at the store
        thread, later = waiter(notifier, ["sleep"])
        asleep(notifier, 2)
        notifier.work_ready({("sleep", "default"): 1})  # the oldest waiter gets it
        assert looking.unused and "woken" not in later
    notifier.pass_on(looking, full=False)  # it left without looking again: hand it on
    thread.join(2)
    assert later.get("woken") is True


def test_a_waiter_that_looked_after_its_wake_up_passes_nothing_on_unless_its_batch_was_full():
    notifier = ChangeNotifier()
    with notifier.waiting_for_work(["sleep"]) as first:
        thread, later = waiter(notifier, ["sleep"], timeout=0.5)
        asleep(notifier, 2)
        notifier.work_ready({("sleep", "default"): 1})
        assert first.wait(1)  # woken, registered again to look
    notifier.pass_on(first, full=False)  # it looked and took what there was
    thread.join(2)
    assert later.get("woken") is False
    thread, later = waiter(notifier, ["sleep"])
    asleep(notifier, 1)
    notifier.pass_on(first, full=True)  # a full batch: there may be more
    thread.join(2)
    assert later.get("woken") is True


def test_a_job_waiter_sleeps_through_new_work_and_other_jobs_finishing():
    notifier = ChangeNotifier()
    with notifier.waiting_for_job(7) as waiting:
        notifier.work_ready({("sleep", None): 3})
        notifier.jobs_finished([{"id": 8, "status": "succeeded"}])
        assert not waiting.event.is_set()
        notifier.jobs_finished([{"id": 7, "status": "succeeded"}])
        assert waiting.wait(1) and waiting.finished == {"id": 7, "status": "succeeded"}
