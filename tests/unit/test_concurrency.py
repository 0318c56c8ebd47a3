"""Several server processes on one database, played by several store objects.

Each thread opens its own store on the same URL (its own SQLite connections,
its own PostgreSQL pool), as separate ``taskframe-server`` processes would.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskframe.core.errors import JobConflict
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion, CompletionResult
from taskframe.server.engine.notify import ChangeNotifier
from taskframe.server.engine.queues import Flow
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import JobRow, Store, open_store
from taskframe.server.storage.base import load_queries, migrations
from tests.processes import wait_until
from tests.unit.test_scheduler import Clock, job, latest_version, raw_connection

THREADS = 8


@pytest.fixture
def open_stores(db_url: str) -> Iterator[Callable[..., list[Store]]]:
    """Factory: open_stores(n) -> n unmigrated stores on db_url, closed at teardown."""
    opened: list[Store] = []

    def open_n(count: int) -> list[Store]:
        stores = [open_store(db_url) for _ in range(count)]
        opened.extend(stores)
        return stores

    yield open_n
    for store in opened:
        store.close()


def defined_versions(store: Store) -> list[int]:
    """The migrations the backend's .sql file defines (numbers may be reserved, so gaps)."""
    return [version for version, _ in migrations(load_queries(f"{store.backend}.sql"))]


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run target(0..count-1) in threads started together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def main(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = target(index)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.timeout(90)
def test_concurrent_leasing_hands_out_every_job_exactly_once(store, open_stores):
    config = ServerConfig()
    submitted = [row["id"] for row, _ in Scheduler(store, config).submit([job()] * 500)]
    assert len(set(submitted)) == 500
    stores = open_stores(THREADS)

    def lease_until_empty(index: int) -> list[int]:
        scheduler = Scheduler(stores[index], config)
        rng = random.Random(index)
        worker = f"w{index}"
        leased: list[int] = []
        while rows := scheduler.lease(worker, ["sleep"], rng.randint(1, 4), wait=0):
            leased.extend(row["id"] for row in rows)
            completions = [
                Completion(row["id"], row["lease_id"], "succeeded", worker) for row in rows
            ]
            assert all(
                outcome.result is CompletionResult.RECORDED
                for outcome in scheduler.complete(completions)
            )
        return leased

    per_thread = run_threads(THREADS, lease_until_empty)
    leased = [job_id for ids in per_thread for job_id in ids]
    duplicates = [job_id for job_id, count in Counter(leased).items() if count > 1]
    assert duplicates == []
    assert len(leased) == 500 and set(leased) == set(submitted)
    with store.reader() as tx:
        counts = {row["status"]: row["count"] for row in tx.all("count_by_status")}
        assert counts == {"succeeded": 500}
        attempts = [tx.all("list_attempts", {"job_id": job_id}) for job_id in submitted[::50]]
    assert all(len(rows) == 1 for rows in attempts)


@pytest.mark.timeout(90)
def test_concurrent_reapers_reap_each_attempt_once(store, open_stores):
    clock = Clock()
    config = ServerConfig(lease_ttl=10)
    scheduler = Scheduler(store, config, clock=clock)
    scheduler.submit([job(max_attempts=2)] * 100)
    assert len(scheduler.lease("w", ["sleep"], 100, wait=0)) == 100
    clock.advance(11)
    stores = open_stores(4)
    reaped = run_threads(4, lambda i: Scheduler(stores[i], config, clock=clock).reap())
    assert sum(reaped) == 100
    assert scheduler.reap() == 0
    for row in scheduler.list_jobs(None, None, 200, None):
        assert row["status"] == "scheduled" and row["attempts"] == 1
        assert [a["outcome"] for a in scheduler.jobs.attempts(row["id"])] == ["lease_expired"]


def test_migrating_from_the_first_version_keeps_the_jobs(db_url, open_stores):
    [store] = open_stores(1)
    assert store.schema_version() == 0
    assert store.migrate(target=1) == 1
    assert store.schema_version() == 1
    # Jobs as version 1 stored them: a ready one, and a delayed one left 'queued'.
    insert = (
        "INSERT INTO jobs (type, payload, priority, status, max_attempts, run_at, created_at) "
        "VALUES ('sleep', '{{\"kept\":true}}', 5, 'queued', 3, {run_at}, 0)"
    )
    with raw_connection(db_url) as raw:
        raw.execute(insert.format(run_at=time.time() - 1))
        raw.execute(insert.format(run_at=time.time() + 3600))
    assert store.migrate() == latest_version(store)
    assert store.schema_version() == latest_version(store)
    scheduler = Scheduler(store, ServerConfig())
    ready, delayed = sorted(scheduler.list_jobs(None, None, 10, None), key=lambda row: row["id"])
    # migration 3: a job not due yet is 'scheduled', off the lease path.
    assert (ready["status"], delayed["status"]) == ("queued", "scheduled")
    leased = scheduler.lease("w1", ["sleep"], 5, wait=0)
    assert [r["id"] for r in leased] == [ready["id"]]
    assert leased[0]["payload"] == '{"kept":true}'
    [outcome] = scheduler.complete(
        [Completion(ready["id"], leased[0]["lease_id"], "succeeded", "w1")]
    )
    assert outcome.result is CompletionResult.RECORDED
    assert [a["outcome"] for a in scheduler.jobs.attempts(ready["id"])] == ["succeeded"]
    with raw_connection(db_url) as raw:
        versions = [r[0] for r in raw.execute("SELECT version FROM taskframe_schema").fetchall()]
    assert sorted(versions) == defined_versions(store)


@pytest.mark.timeout(90)
def test_servers_starting_at_once_migrate_safely(db_url, open_stores):
    stores = open_stores(6)
    versions = run_threads(6, lambda i: stores[i].migrate())
    latest = latest_version(stores[0])
    assert versions == [latest] * 6
    with raw_connection(db_url) as raw:
        applied = [r[0] for r in raw.execute("SELECT version FROM taskframe_schema").fetchall()]
    assert sorted(applied) == defined_versions(stores[0])  # each migration ran once
    scheduler = Scheduler(stores[3], ServerConfig())
    [(row, created)] = scheduler.submit([job()])
    assert created and scheduler.get(row["id"])["status"] == "queued"


def watching_scheduler(store: Store) -> Scheduler:
    """A scheduler whose store wakes its long-polls on other servers' commits."""
    notifier = ChangeNotifier()
    store.watch_changes(notifier.notify, notifier.has_waiters)
    return Scheduler(store, ServerConfig(), notifier=notifier)


def call_in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    answer: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        answer["value"] = call()
        answer["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answer


@pytest.mark.timeout(60)
def test_a_long_poll_wakes_up_for_a_job_submitted_through_another_server(store, open_stores):
    [store_b] = open_stores(1)
    server_a = watching_scheduler(store)
    server_b = Scheduler(store_b, ServerConfig())
    thread, answer = call_in_thread(lambda: server_a.lease("w1", ["sleep"], 1, wait=10))
    wait_until(server_a.notifier.has_waiters, 10, 0.01, "the long poll to wait")
    assert thread.is_alive()
    [(row, _)] = server_b.submit([job()])
    thread.join(timeout=15)
    assert [r["id"] for r in answer["value"]] == [row["id"]]
    assert answer["elapsed"] < 5  # well before the 10 s wait ran out


@pytest.mark.timeout(60)
def test_a_job_waiter_wakes_up_when_another_server_cancels_it(store, open_stores):
    [store_b] = open_stores(1)
    server_a = watching_scheduler(store)
    server_b = Scheduler(store_b, ServerConfig())
    [(row, _)] = server_b.submit([job()])
    thread, answer = call_in_thread(lambda: server_a.wait_until_finished(row["id"], wait=10))
    wait_until(server_a.notifier.has_waiters, 10, 0.01, "the job waiter to wait")
    assert thread.is_alive()
    server_b.cancel(row["id"])
    thread.join(timeout=15)
    assert answer["value"]["status"] == "cancelled"
    assert answer["elapsed"] < 5


def handed_over(server: Scheduler, queue: str, change: Callable[[], Any]) -> list[JobRow]:
    """What a long poll of ``server`` on ``queue`` leases when ``change`` is made while it
    waits: it must be woken (well before its 10 s wait runs out)."""
    thread, answer = call_in_thread(
        lambda: server.lease("w1", ["sleep"], 1, wait=10, queues=[queue])
    )
    wait_until(server.notifier.has_waiters, 10, 0.01, "the long poll to wait")
    assert thread.is_alive()
    change()
    thread.join(timeout=15)
    assert answer["elapsed"] < 5
    leased: list[JobRow] = answer["value"]
    return leased


@pytest.mark.timeout(60)
def test_a_long_poll_wakes_up_when_another_server_resumes_its_queue(store, open_stores):
    """Queue changes are published like jobs': other servers hear of them (PostgreSQL's
    NOTIFY at commit, SQLite's watcher) and their lease waiters look again."""
    [store_b] = open_stores(1)
    server_a = watching_scheduler(store)
    server_b = Scheduler(store_b, ServerConfig())
    # A job handed over first: A listens (its LISTEN connection is up).
    assert handed_over(server_a, "warm", lambda: server_b.submit([job(queue="warm")]))
    flow_b = Flow(store_b, server_b.publisher, server_b.clock)
    flow_b.set_paused("q", True)
    [(held, _)] = server_b.submit([job(queue="q")])
    resumed = handed_over(server_a, "q", lambda: flow_b.set_paused("q", False))
    assert [row["id"] for row in resumed] == [held["id"]]


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_connections_recover_after_being_dropped(postgres_url):
    # A distinct application name finds this test's connections, and only them.
    name = f"tf_test_{uuid.uuid4().hex[:8]}"
    store_a, store_b = (open_store(f"{postgres_url}&application_name={name}") for _ in "ab")
    try:
        store_a.migrate()
        server_a = watching_scheduler(store_a)
        server_b = Scheduler(store_b, ServerConfig())
        server_a.get(server_b.submit([job()])[0][0]["id"])  # both pools hold a connection
        [listener] = wait_until(lambda: listeners(postgres_url, name), 10, 0.02, "LISTEN")
        with raw_connection(postgres_url) as raw:
            killed_pids = [
                pid
                for (pid,) in raw.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name]
                ).fetchall()
            ]
            killed = raw.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [killed_pids]
            ).fetchall()
        assert len(killed) >= 3  # two pools and the listener
        # pg_terminate_backend only signals: the backends end (and say so) a moment later,
        # as a restarted server's old backends have ended before it takes connections.
        wait_until(lambda: not backends(postgres_url, killed_pids), 10, 0.01, "the backends")
        # The pools replace the broken connections; the listener reconnects.
        assert server_b.lease("w1", ["sleep"], 1, wait=0)
        assert server_a.get(1)["status"] == "running"
        wait_until(
            lambda: set(listeners(postgres_url, name)) - {listener},
            10,
            0.02,
            "the listener to connect again",
        )
        thread, answer = call_in_thread(lambda: server_a.lease("w1", ["sleep"], 1, wait=10))
        wait_until(server_a.notifier.has_waiters, 10, 0.01, "the long poll to wait")
        [(row, _)] = server_b.submit([job()])
        thread.join(timeout=15)
        assert [r["id"] for r in answer["value"]] == [row["id"]]
        assert answer["elapsed"] < 5
    finally:
        store_a.close()
        store_b.close()


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_servers_in_another_schema_of_the_database_do_not_wake_ours(postgres_url):
    """Deployments sharing a database, each in a schema of its own: a commit of the
    other's does not wake this one's waiters (one NOTIFY channel per schema)."""
    schema = postgres_url.rsplit("%3D", 1)[1]
    other_url = f"{postgres_url}_other"
    with raw_connection(postgres_url) as raw:
        raw.execute(f"CREATE SCHEMA {schema}_other")
    ours, ours_too, theirs = open_store(postgres_url), open_store(postgres_url), None
    try:
        theirs = open_store(other_url)
        for store in (ours, theirs):
            store.migrate()
        heard: list[float] = []
        ours.watch_changes(lambda: heard.append(time.monotonic()), lambda: True)
        wait_until(lambda: heard, 10, 0.01, "the listener to connect")  # it looks once then
        Scheduler(theirs, ServerConfig()).submit([job()])
        Scheduler(ours_too, ServerConfig()).submit([job()])  # after theirs: heard after it
        wait_until(lambda: len(heard) >= 2, 10, 0.01, "our other server's commit")
        time.sleep(0.3)
        assert len(heard) == 2  # the connect and our own schema's commit, not theirs
    finally:
        for store in (ours, ours_too, theirs):
            if store is not None:
                store.close()
        with raw_connection(postgres_url) as raw:
            raw.execute(f"DROP SCHEMA {schema}_other CASCADE")


def backends(postgres_url: str, pids: list[int]) -> list[int]:
    """Those of ``pids`` that are still backends of the server."""
    with raw_connection(postgres_url) as raw:
        rows = raw.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
        ).fetchall()
    return [pid for (pid,) in rows]


def listeners(postgres_url: str, application_name: str) -> list[int]:
    """The backends (pids) of ``application_name`` that sit in LISTEN."""
    with raw_connection(postgres_url) as raw:
        rows = raw.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND query LIKE 'LISTEN%%'",
            [application_name],
        ).fetchall()
    return [pid for (pid,) in rows]


@pytest.mark.timeout(90)
def test_racing_submissions_of_one_key_create_one_job(store, open_stores):
    """The same idempotency key from 8 'servers' at once: one job; same body -> that
    job, different body -> a conflict, never a second job or a silent mix-up."""
    schedulers = [Scheduler(s, ServerConfig()) for s in open_stores(8)]

    def submit(index: int) -> Any:
        body = job(payload={"n": index % 2}, idempotency_key="race")
        try:
            return schedulers[index].submit_one(body)
        except JobConflict as exc:
            return exc

    outcomes = run_threads(8, submit)
    rows = [outcome for outcome in outcomes if not isinstance(outcome, JobConflict)]
    [winner] = {row["id"] for row, _ in rows}
    assert sum(created for _, created in rows) == 1
    payload = schedulers[0].get(winner)["payload"]
    for index, outcome in enumerate(outcomes):
        same_body = f'"n":{index % 2}' in payload.replace(" ", "")
        assert isinstance(outcome, JobConflict) != same_body


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_a_mixed_completion_batch_and_a_heartbeat_do_not_deadlock(postgres_url):
    """complete([1 failed, 2 succeeded]) against a heartbeat of the same leases.

    The heartbeat (played by a raw connection, to hold its place) has renewed
    lease 1 and is about to renew lease 2. A completion that locked job 2
    first (successes before failures) would now wait for job 1 while holding
    job 2: a deadlock. Locking the batch in id order, it waits holding nothing.
    """
    import psycopg

    store = open_store(postgres_url)
    store.migrate()
    try:
        scheduler = Scheduler(store, ServerConfig())
        scheduler.submit([job(max_attempts=1), job(max_attempts=1)])
        rows = sorted(scheduler.lease("w1", ["sleep"], 2, wait=0), key=lambda row: row["id"])
        first, second = rows
        with psycopg.connect(postgres_url) as heartbeat:  # a transaction until commit
            renew = "UPDATE jobs SET lease_expires_at = lease_expires_at + 1 WHERE id = %s"
            heartbeat.execute(renew, [first["id"]])
            batch = [
                Completion(first["id"], first["lease_id"], "failed", "w1", error="boom"),
                Completion(second["id"], second["lease_id"], "succeeded", "w1"),
            ]
            thread, answer = call_in_thread(lambda: scheduler.complete(batch))

            def completion_waits_for_a_lock() -> bool:
                query = (
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid IN "
                    "(SELECT pid FROM pg_locks WHERE relation = 'jobs'::regclass "
                    "AND pid <> pg_backend_pid())"
                )
                with psycopg.connect(postgres_url, autocommit=True) as probe:
                    return probe.execute(query).fetchone()[0] > 0

            wait_until(completion_waits_for_a_lock, 20, 0.02, "the completion to wait")
            heartbeat.execute(renew, [second["id"]])  # deadlock detected here, before
            heartbeat.commit()
        thread.join(timeout=30)
        assert [(o.job_id, o.result) for o in answer["value"]] == [
            (first["id"], CompletionResult.RECORDED),
            (second["id"], CompletionResult.RECORDED),
        ]
        assert scheduler.get(first["id"])["status"] == "failed"
        assert scheduler.get(second["id"])["status"] == "succeeded"
    finally:
        store.close()


@pytest.mark.timeout(30)
def test_the_sqlite_watcher_sees_other_processes_commits_not_its_own(sqlite_url):
    # Waiters are woken directly for this process's commits: the watcher waking
    # them all again for each commit cost every long-poll a write transaction.
    ours, theirs = open_store(sqlite_url), open_store(sqlite_url)
    ours.migrate()
    changes: list[float] = []
    try:
        ours.watch_changes(lambda: changes.append(time.monotonic()), lambda: True)
        scheduler = Scheduler(ours, ServerConfig())
        for _ in range(20):  # the watcher polls every 5 ms meanwhile
            scheduler.submit([job()])
            time.sleep(0.01)
        assert changes == []
        Scheduler(theirs, ServerConfig()).submit([job()])
        wait_until(lambda: changes, 5, 0.01, "the watcher to see the other store's commit")
    finally:
        ours.close()
        theirs.close()
