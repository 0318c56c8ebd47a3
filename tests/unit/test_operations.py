"""Issue 23's engine over each backend: sorted pages, bulk actions, dependants,
the live log and the per-minute rollup (a real SQLite file and a real PostgreSQL)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.bulk import BulkActions, NothingApplies
from taskframe.server.engine.listing import Listing
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.observe import rollup
from taskframe.server.storage import Row, Store, open_store
from tests.unit.test_scheduler import BACKOFF, TTL, Clock, complete, job, lease_one, submit


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler(store: Store, clock: Clock) -> Scheduler:
    config = ServerConfig(lease_ttl=TTL, default_timeout=300.0, backoff=BACKOFF)
    return Scheduler(store, config, clock=clock, rng=random.Random(7))


def walk(scheduler: Scheduler, listing: Listing) -> list[int]:
    """Every page of ``listing``, following next cursors, as ids."""
    ids: list[int] = []
    cursor: Any = None
    while True:
        rows = scheduler.list_jobs(None, None, listing.limit, cursor, listing=listing)
        ids += [row["id"] for row in rows]
        if len(rows) < listing.limit:
            return ids
        cursor = listing.cursor_after(rows[-1])


# ------------------------------------------------------------------ sorted pages


def test_pages_in_every_order_cover_each_job_once(scheduler, clock):
    rows = []
    for i in range(11):
        clock.advance(1)
        rows.append(submit(scheduler, priority=1 + (i * 7) % 10, queue="q" if i % 2 else "default"))
    for _ in rows[:4]:  # four finish, in another order than they were created
        clock.advance(5)
        leased = lease_one(scheduler)
        complete(scheduler, leased)
    finished = [
        r["id"] for r in sorted(scheduler.list_jobs(None, None, 100, None), key=lambda r: r["id"])
    ]
    by_id = {row["id"]: scheduler.get(row["id"]) for row in rows}

    def expected(key, reverse: bool) -> list[int]:
        return [
            r["id"]
            for r in sorted(by_id.values(), key=lambda r: (key(r), r["id"]), reverse=reverse)
        ]

    assert walk(scheduler, Listing(sort="priority", order="desc", limit=3)) == expected(
        lambda r: r["priority"], True
    )
    assert walk(scheduler, Listing(sort="priority", order="asc", limit=4)) == expected(
        lambda r: r["priority"], False
    )
    assert walk(scheduler, Listing(sort="created", order="asc", limit=2)) == expected(
        lambda r: r["created_at"], False
    )
    assert walk(scheduler, Listing(sort="id", order="asc", limit=5)) == sorted(finished)
    done = [r for r in by_id.values() if r["finished_at"] is not None]
    assert walk(scheduler, Listing(sort="finished", order="desc", limit=3)) == [
        r["id"] for r in sorted(done, key=lambda r: (r["finished_at"], r["id"]), reverse=True)
    ]
    in_q = walk(scheduler, Listing({"queue": "q"}, sort="priority", order="desc", limit=2))
    assert sorted(in_q) == sorted(r["id"] for r in rows if r["queue"] == "q")


def test_a_page_goes_on_where_the_last_ended_while_jobs_are_added(scheduler):
    for priority in (5, 5, 9, 1):
        submit(scheduler, priority=priority)
    listing = Listing(sort="priority", order="desc", limit=2)
    first = scheduler.list_jobs(None, None, 2, None, listing=listing)
    submit(scheduler, priority=10)  # sorts before the first page: not shown again or shifted
    second = scheduler.list_jobs(None, None, 2, listing.cursor_after(first[-1]), listing=listing)
    assert [r["priority"] for r in first + second] == [9, 5, 5, 1]


def test_the_idempotency_key_finds_its_job(scheduler):
    submit(scheduler)
    keyed = submit(scheduler, idempotency_key="order-17")
    rows = scheduler.list_jobs(None, None, 10, None, listing=Listing({"key": "order-17"}))
    assert [r["id"] for r in rows] == [keyed["id"]]


# ------------------------------------------------------------------ bulk actions


def test_bulk_cancel_counts_first_then_cancels_in_chunks(scheduler, clock):
    queued = [submit(scheduler, queue="mail") for _ in range(7)]
    other = submit(scheduler, queue="reports")
    running = lease_one(scheduler)  # the oldest mail job runs: asked to stop
    actions = BulkActions(scheduler.jobs, chunk=3)
    counted = actions.run("cancel", {"queue": "mail"}, None, dry_run=True)
    assert (counted.matched, counted.changed) == (7, 0)
    assert scheduler.get(queued[1]["id"])["status"] == "queued"  # a dry run changes nothing
    done = actions.run("cancel", {"queue": "mail"}, None, dry_run=False)
    assert (done.matched, done.changed, done.cancel_requested) == (7, 7, 1)
    assert scheduler.get(running["id"])["cancel_requested"]
    assert {scheduler.get(r["id"])["status"] for r in queued[1:]} == {"cancelled"}
    assert scheduler.get(other["id"])["status"] == "queued"


def test_bulk_retry_takes_the_filter_and_the_limit(scheduler, clock):
    failed = []
    for job_type in ("sleep", "sleep", "sleep", "echo"):
        clock.advance(10)
        row = submit(scheduler, type=job_type, max_attempts=1)
        [leased] = scheduler.lease("w1", [job_type], 1, wait=0)
        complete(scheduler, leased, "failed", error="boom", retryable=False)
        failed.append(scheduler.get(row["id"]))
    actions = BulkActions(scheduler.jobs, chunk=2)
    since = {"finished_after": failed[1]["finished_at"]}
    assert actions.run("retry", {"type": "sleep", **since}, None, True).matched == 2
    done = actions.run("retry", {"type": "sleep"}, 2, dry_run=False)
    assert (done.matched, done.changed) == (2, 2)
    statuses = [scheduler.get(r["id"])["status"] for r in failed]
    assert statuses == ["queued", "queued", "failed", "failed"]  # oldest first, at most 2
    with pytest.raises(NothingApplies):
        actions.run("retry", {"status": "queued"}, None, dry_run=True)


def test_a_retried_job_whose_dependency_still_runs_waits_for_it(scheduler):
    """Regression: retrying a job cancelled while its dependency ran queued it ahead of it."""
    first = submit(scheduler)
    then = scheduler.submit([job(depends_on=[first["id"]])])[0][0]
    assert then["status"] == "waiting"
    scheduler.cancel(then["id"])
    assert scheduler.retry(then["id"])["status"] == "waiting"
    leased = lease_one(scheduler)
    assert leased["id"] == first["id"]  # the dependant was not ready
    complete(scheduler, leased)
    assert scheduler.get(then["id"])["status"] == "queued"
    # Cancelled again and retried in bulk once its dependency finished: ready at once.
    scheduler.cancel(then["id"])
    BulkActions(scheduler.jobs).run("retry", {}, None, dry_run=False)
    assert scheduler.get(then["id"])["status"] == "queued"


# ------------------------------------------------------------------ dependants


def test_a_job_lists_its_dependants_after_they_were_resolved(scheduler):
    first = submit(scheduler)
    dependants = [scheduler.submit([job(depends_on=[first["id"]])])[0][0] for _ in range(3)]
    complete(scheduler, lease_one(scheduler))  # resolves (deletes) the edges
    listing = Listing({"dependant_of": first["id"]}, "id", "asc", 2)
    assert walk(scheduler, listing) == [row["id"] for row in dependants]


# ------------------------------------------------------------------ live log


def test_heartbeat_logs_are_appended_fenced_and_cleared_at_the_end(scheduler):
    from taskframe.server.engine import live_log

    row = submit(scheduler)
    leased = lease_one(scheduler)
    lease = (leased["id"], leased["lease_id"])
    scheduler.heartbeat("w1", [lease], logs={lease: "line 1\n"})
    scheduler.heartbeat("w1", [lease], logs={lease: "line 2\n"})
    scheduler.heartbeat("w2", [lease], logs={lease: "not the holder\n"})
    scheduler.heartbeat("w1", [(leased["id"], "stale")], logs={(leased["id"], "stale"): "x"})
    running = live_log.running_attempt(scheduler.store, row["id"])
    assert running["log"] == "line 1\nline 2\n" and running["attempt"] == 1
    big = "y" * 70000  # the last 64 KiB are kept
    scheduler.heartbeat("w1", [lease], logs={lease: big})
    assert live_log.running_attempt(scheduler.store, row["id"])["log"] == "y" * 65536
    complete(scheduler, leased)
    assert live_log.running_attempt(scheduler.store, row["id"]) is None
    assert scheduler.get(row["id"])["live_log"] is None


# ------------------------------------------------------------------ rollup


def test_the_rollup_counts_what_the_metrics_count(scheduler, clock):
    for index in range(5):
        submit(scheduler, max_attempts=1)
        leased = lease_one(scheduler)
        if index < 3:
            complete(scheduler, leased)
        else:
            complete(scheduler, leased, "failed", error="boom", retryable=False)
    waiting = [submit(scheduler, queue="later") for _ in range(2)]
    clock.advance(30)
    rollup.write(scheduler.store, scheduler.telemetry.finishes, clock())
    answer = rollup.history(scheduler.store, "hour", clock())
    assert sum(p["succeeded"] for p in answer["points"]) == 3
    assert sum(p["failed"] for p in answer["points"]) == 2
    last = answer["points"][-1]
    assert last["depth"] == len(waiting) and last["oldest_age"] == pytest.approx(30, abs=1)
    metrics = scheduler.telemetry.metrics.render().decode()
    assert 'taskframe_jobs_finished_total{outcome="succeeded",type="sleep"} 3.0' in metrics
    assert 'taskframe_jobs_finished_total{outcome="failed",type="sleep"} 2.0' in metrics
    by_queue = rollup.history(scheduler.store, "day", clock(), queue="default")
    assert by_queue["points"][-1]["depth"] == 0 and by_queue["queues"] == ["default", "later"]
    # A second write adds only what finished since; the minute's depth is the latest.
    scheduler.cancel(waiting[0]["id"])
    rollup.write(scheduler.store, scheduler.telemetry.finishes, clock())
    again = rollup.history(scheduler.store, "hour", clock())
    assert sum(p["succeeded"] for p in again["points"]) == 3
    assert again["points"][-1]["depth"] == 1


def test_rows_of_more_than_a_day_ago_are_deleted(scheduler, clock):
    submit(scheduler)
    complete(scheduler, lease_one(scheduler))
    rollup.write(scheduler.store, scheduler.telemetry.finishes, clock())
    clock.advance(rollup.KEEP + 120)
    rollup.write(scheduler.store, scheduler.telemetry.finishes, clock())
    with scheduler.store.reader() as tx:
        rows: list[Row] = tx.all("rollup_read", {"since": 0})
    assert all(row["minute"] > clock() - rollup.KEEP for row in rows)


# ------------------------------------------------------------------ migration 12


def test_migration_12_lists_the_dependants_of_a_v11_database(db_url):
    """A v11 database: its jobs' depends_on become dependant links, resolved or not,
    and its ready jobs keep their counts and age (the index per queue)."""
    from taskframe.server.storage import counts
    from tests.unit.test_scheduler import raw_connection

    store = open_store(db_url)
    try:
        assert store.migrate(target=11) == 11
        scheduler = Scheduler(store, ServerConfig())
        first = scheduler.submit([job()])[0][0]
        # Dependants as v11 stored them (no dependant links yet): one waiting, one done.
        insert = (
            "INSERT INTO jobs (type, payload, priority, status, max_attempts, run_at, "
            "created_at, queue, depends_on) VALUES ('sleep', '{{}}', 5, '{status}', 3, 0, 0, "
            "'{queue}', '[{dep}]')"
        )
        with raw_connection(db_url) as raw:
            raw.execute(insert.format(status="waiting", queue="default", dep=first["id"]))
            raw.execute(insert.format(status="succeeded", queue="q", dep=first["id"]))
        then, done = first["id"] + 1, first["id"] + 2
        store.migrate()
        listing = Listing({"dependant_of": first["id"]}, "id", "asc", 10)
        assert walk(scheduler, listing) == [then, done]
        ready = counts.ready_jobs(store, scheduler.clock())
        assert [(row["type"], row["queue"], row["count"]) for row in ready] == [
            ("sleep", "default", 1)
        ]
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_servers_writing_the_rollup_at_once_add_up(db_url):
    """Each server adds its own finishes and rewrites the snapshot: never a deadlock."""
    from tests.unit.test_concurrency import run_threads

    stores = [open_store(db_url) for _ in range(3)]
    try:
        stores[0].migrate()
        now = 1_700_000_000.0
        finished = [
            {"type": t, "queue": q, "status": "succeeded", "finished_at": now - 70}
            for t in "ab"
            for q in "xy"
        ]
        ready = Scheduler(stores[0], ServerConfig())  # queued jobs: snapshot rows to rewrite
        ready.submit([job(type=row["type"], queue=row["queue"]) for row in finished])

        def server(index: int) -> None:
            tally = rollup.FinishTally()
            for _ in range(20):
                tally.add(finished)
                rollup.write(stores[index], tally, now)

        run_threads(3, server)
        answer = rollup.history(stores[0], "hour", now)
        assert sum(point["succeeded"] for point in answer["points"]) == 3 * 20 * 4
        # Counted in the minute they finished in, not the minute they were written in.
        assert answer["points"][-2]["succeeded"] == 3 * 20 * 4
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize(
    ("listing", "index"),
    [
        (Listing({}, "priority", "desc"), "jobs_priority_id"),
        (Listing({}, "priority", "asc"), "jobs_priority_id"),
        (Listing({}, "finished", "desc"), "jobs_finished"),
        (Listing({}, "finished", "asc"), "jobs_finished"),
        (Listing({"queue": "q"}, "id", "desc"), "jobs_queue_id"),
    ],
)
def test_each_order_walks_its_index_on_sqlite(migrated_sqlite_url, listing, index):
    """No sort of every matching job: a page costs its size, not the table's."""
    from taskframe.server.storage.sqlite import QUERIES, _adapt

    store = open_store(migrated_sqlite_url)
    try:
        with store.reader() as tx:
            sql = QUERIES[listing.query(tx)]
            plan = tx._connection.execute(  # type: ignore[attr-defined]
                "EXPLAIN QUERY PLAN " + sql, _adapt(listing.params(None))
            ).fetchall()
    finally:
        store.close()
    # The raw connection gives tuples (the transaction's methods make dicts): detail is last.
    details = " ".join(row[-1] for row in plan)
    assert f"USING INDEX {index}" in details and "TEMP B-TREE" not in details, details
