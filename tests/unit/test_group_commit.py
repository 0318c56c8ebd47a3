"""Group commit: one bad submission must not fail the others sharing its transaction."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.group_commit import GroupCommitter
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import StoreUnavailable, open_store
from tests.processes import wait_until

HONEST = 6


def run_grouped(committer: GroupCommitter, items: list, start_first: threading.Event | None = None):
    """Call ``committer`` for each item on its own thread; (results, errors) by item."""
    results: dict = {}
    errors: dict = {}

    def call(item) -> None:
        try:
            results[item] = committer(item)
        except Exception as exc:
            errors[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, results, errors


@pytest.mark.timeout(30)
def test_a_failing_group_is_retried_item_by_item_so_only_the_bad_one_fails():
    release = threading.Event()
    batches: list[list[str]] = []

    def run_batch(items: list[str]) -> list[str]:
        batches.append(items)
        if items == ["first"]:
            release.wait(10)  # hold the turn while the others queue into one group
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    committer = GroupCommitter(run_batch)
    first, first_results, _ = run_grouped(committer, ["first"])
    wait_until(lambda: batches, message="the first batch started")
    items = [f"h{i}" for i in range(HONEST)] + ["bad"]
    threads, results, errors = run_grouped(committer, items)
    wait_until(lambda: len(committer._waiting) == len(items), message="all queued")
    release.set()
    for thread in [*first, *threads]:
        thread.join(10)

    assert first_results == {"first": "FIRST"}
    assert set(errors) == {"bad"}, errors
    assert results == {f"h{i}": f"H{i}" for i in range(HONEST)}
    assert sorted(batches[1]) == sorted(items)  # they did share a group first


@pytest.mark.timeout(30)
def test_a_shared_failure_fails_the_group_at_once():
    release = threading.Event()
    calls: list[list[str]] = []

    def run_batch(items: list[str]) -> list[str]:
        calls.append(items)
        if items == ["first"]:
            release.wait(10)
            return ["ok"]
        raise StoreUnavailable("the database is down")

    committer = GroupCommitter(
        run_batch, shared_failure=lambda exc: isinstance(exc, StoreUnavailable)
    )
    first, _, _ = run_grouped(committer, ["first"])
    wait_until(lambda: calls, message="the first batch started")
    threads, results, errors = run_grouped(committer, ["a", "b", "c"])
    wait_until(lambda: len(committer._waiting) == 3, message="all queued")
    release.set()
    for thread in [*first, *threads]:
        thread.join(10)
    assert results == {} and set(errors) == {"a", "b", "c"}
    assert len(calls) == 2  # not retried one by one: every one would wait and fail alike


@pytest.mark.timeout(60)
def test_a_submission_that_cannot_be_prepared_fails_alone(sqlite_url: str):
    """Bug: jobs were serialised inside the group's transaction, so one job whose
    payload ``json.dumps`` cannot write (here a set; on the server, a payload nested
    976 deep) failed every submission committed with it."""
    path = sqlite_url
    store = open_store(path)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    committer = scheduler.intake.inserter._group_submit
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the first group's leader waits on it
        job = {"type": "sleep", "priority": 5, "max_attempts": 1, "timeout": None}
        outcomes: dict[str, object] = {}

        def submit(name: str, payload: dict) -> None:
            try:
                outcomes[name] = scheduler.submit_one({**job, "payload": payload})
            except Exception as exc:
                outcomes[name] = exc

        leader = threading.Thread(target=submit, args=("leader", {"duration": 0}))
        leader.start()
        wait_until(lambda: committer._turn.locked(), message="the leader holds the turn")
        names = [f"h{i}" for i in range(HONEST)]
        threads = [threading.Thread(target=submit, args=(n, {"duration": 0})) for n in names]
        bad = threading.Thread(target=submit, args=("bad", {"duration": {1, 2}}))
        for thread in [*threads, bad]:
            thread.start()
        # Queued behind the leader (the bad one too, had it joined before failing).
        wait_until(
            lambda: len(committer._waiting) + (not bad.is_alive()) == HONEST + 1,
            message="every submission queued",
        )
        blocker.execute("COMMIT")
        for thread in [leader, *threads, bad]:
            thread.join(30)
    finally:
        blocker.close()
    assert isinstance(outcomes.pop("bad"), TypeError)
    failed = {name: o for name, o in outcomes.items() if isinstance(o, BaseException)}
    assert failed == {}
    assert all(created for _, created in outcomes.values())
    store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (HONEST + 1,)


def test_plain_and_keyed_submissions_sharing_a_commit_each_get_their_own_row(store):
    """Plain jobs of a group go in one set-based insert, keyed ones one by one: every
    caller still gets its own job back, in its place, and a known key its old job."""
    scheduler = Scheduler(store, ServerConfig())
    inserter = scheduler.intake.inserter
    [(earlier, _)] = scheduler.submit([{"type": "sleep", "payload": {}, "idempotency_key": "k1"}])

    def job(n: int, key: str | None = None) -> dict:
        return {"type": "sleep", "payload": {"n": n}, "idempotency_key": key}

    jobs = [job(0), job(1, "k1"), job(2), job(3, "k2"), job(4)]
    prepared = [inserter.new_job_params(j, 1000.0) for j in jobs]
    prepared[1]["request_hash"] = earlier["request_hash"]  # the same request as before
    outcomes = inserter._insert_single_jobs(prepared)
    assert [created for _, created in outcomes] == [True, False, True, True, True]
    assert outcomes[1][0]["id"] == earlier["id"]
    for n, (row, _) in enumerate(outcomes):
        stored = scheduler.get(row["id"])
        assert stored == row
        assert stored["payload"] == (earlier["payload"] if n == 1 else f'{{"n":{n}}}')
    assert len({row["id"] for row, _ in outcomes}) == len(jobs)


@pytest.mark.timeout(30)
def test_dependant_submissions_sharing_a_commit_are_attached_together(store):
    """Jobs with dependencies of a group (without keys) are attached together, keyed
    ones alone: each caller gets its own job, with the status its dependencies give."""
    scheduler = Scheduler(store, ServerConfig())
    inserter = scheduler.intake.inserter
    [(queued, _), (cancelled, _)] = scheduler.submit([{"type": "sleep", "payload": {}}] * 2)
    scheduler.cancel(cancelled["id"])

    def job(deps: list[int], key: str | None = None) -> dict:
        return {"type": "sleep", "payload": {}, "idempotency_key": key, "depends_on": deps}

    jobs = [job([queued["id"]]), job([cancelled["id"]]), job([]), job([queued["id"]], "k")]
    outcomes = inserter._insert_single_jobs([inserter.new_job_params(j, 1000.0) for j in jobs])
    rows = [row for row, _ in outcomes]
    assert [row["status"] for row in rows] == ["waiting", "cancelled", "queued", "waiting"]
    assert [scheduler.get(row["id"]) for row in rows] == rows
    assert rows[1]["finished_at"] == 1000.0
    assert [row["depends_on"] for row in rows] == [
        f"[{queued['id']}]",
        f"[{cancelled['id']}]",
        None,
        f"[{queued['id']}]",
    ]
