"""Job ids are never reused, and pruning takes dependency rows with their jobs (issue 18).

Before migration 8, SQLite gave the ids of pruned jobs again (``INTEGER
PRIMARY KEY`` without ``AUTOINCREMENT``), and pruning left the
``job_dependencies`` rows behind: a new job inherited an old job's
dependency rows and ran while the job it waited on was still queued.
"""

from __future__ import annotations

from typing import Any

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import Store, open_store
from tests.unit.test_scheduler import Clock, raw_connection

RETENTION = 60.0


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


def submit(scheduler: Scheduler, **fields: Any) -> dict[str, Any]:
    [(row, created)] = scheduler.submit([job(**fields)])
    assert created
    return row


def run_one(scheduler: Scheduler, job_type: str = "sleep") -> dict[str, Any]:
    """Lease one job of ``job_type`` and report it succeeded; the job as leased."""
    [leased] = scheduler.lease("w", [job_type], 1, wait=0)
    [outcome] = scheduler.complete([Completion(leased["id"], leased["lease_id"], "succeeded", "w")])
    assert outcome.recorded
    return leased


def dependency_rows(db_url: str) -> set[tuple[int, int]]:
    with raw_connection(db_url) as raw:
        rows = raw.execute("SELECT depends_on, job_id FROM job_dependencies").fetchall()
    return {(int(a), int(b)) for a, b in rows}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler(store: Store, clock: Clock) -> Scheduler:
    config = ServerConfig(retention=RETENTION, default_timeout=None)
    return Scheduler(store, config, clock=clock)


def test_after_a_full_prune_ids_grow_and_no_dependant_runs_before_its_dependency(
    scheduler, clock, db_url
):
    # Three jobs, the third waiting on the first; all run and finish.
    first = submit(scheduler)
    submit(scheduler)
    third = submit(scheduler, depends_on=[first["id"]])
    assert third["status"] == "waiting"
    for _ in range(3):
        run_one(scheduler)
    assert {r["status"] for r in scheduler.list_jobs(None, None, 10, None)} == {"succeeded"}
    old_ids = {first["id"], third["id"], first["id"] + 1}

    # Everything is pruned, dependency rows included.
    clock.advance(RETENTION + 1)
    assert scheduler.prune() == 3
    assert scheduler.list_jobs(None, None, 10, None) == []
    left_behind = dependency_rows(db_url)

    # New jobs: the reported scenario. A job waits on a job that stays queued
    # (another type, no worker for it) while another dependency chain runs.
    ready = submit(scheduler)
    blocker = submit(scheduler, type="other")
    blocked = submit(scheduler, depends_on=[blocker["id"]])
    follower = submit(scheduler, depends_on=[ready["id"]])

    run_one(scheduler)  # the ready job; its dependant becomes queued
    assert scheduler.get(follower["id"])["status"] == "queued"
    run_one(scheduler)  # the follower
    # The job waiting on the queued blocker waits on: nothing else can release it.
    assert scheduler.get(blocked["id"])["status"] == "waiting"
    assert scheduler.get(blocker["id"])["status"] == "queued"
    assert scheduler.lease("w", ["sleep"], 10, wait=0) == []
    run_one(scheduler, "other")
    assert scheduler.get(blocked["id"])["status"] == "queued"
    new_ids = [ready["id"], blocker["id"], blocked["id"], follower["id"]]
    assert min(new_ids) > max(old_ids), "a job id was given twice"
    assert left_behind == set(), "pruning left dependency rows behind"


def test_pruning_a_cancelled_dependant_takes_its_dependency_rows(scheduler, clock, db_url):
    dependency = submit(scheduler, type="other")
    dependant = submit(scheduler, depends_on=[dependency["id"]])
    scheduler.cancel(dependant["id"])  # its dependency still queued: the edge stays
    clock.advance(RETENTION + 1)
    assert scheduler.prune() == 1
    assert dependency_rows(db_url) == set()
    run_one(scheduler, "other")  # the dependency finishes: nothing to resolve, no error
    assert scheduler.get(dependency["id"])["status"] == "succeeded"


def test_a_retried_dependency_is_not_counted_twice(scheduler):
    """An edge counts once: a dependency that fails (run anyway), is retried and
    succeeds must not count again for a dependant still waiting on another job."""
    flaky = submit(scheduler)
    slow = submit(scheduler, type="other")
    dependant = submit(scheduler, depends_on=[flaky["id"], slow["id"]], on_dependency_failure="run")
    [leased] = scheduler.lease("w", ["sleep"], 1, wait=0)
    scheduler.complete([Completion(leased["id"], leased["lease_id"], "failed", "w", None, "x")])
    assert scheduler.get(flaky["id"])["status"] == "failed"
    assert scheduler.get(dependant["id"])["deps_pending"] == 1
    scheduler.retry(flaky["id"])
    run_one(scheduler)
    assert scheduler.get(flaky["id"])["status"] == "succeeded"
    assert scheduler.get(dependant["id"])["status"] == "waiting"  # slow is still queued
    run_one(scheduler, "other")
    assert scheduler.get(dependant["id"])["status"] == "queued"


# ------------------------------------------------------------------ migration 8

V7_JOBS = [
    # id, status, depends_on, deps_pending
    (1, "succeeded", None, 0),
    (2, "queued", None, 0),
    (3, "waiting", "[1,2]", 1),
    (4, "waiting", "[2]", 1),
    (5, "queued", None, 0),  # took the id of a pruned job that depended on 2
]
# (1, 3) was resolved when 1 finished; (2, 5) and (7, 9) were left by pruning.
V7_EDGES = [(1, 3), (2, 3), (2, 4), (2, 5), (7, 9)]


def _v7_rows(db_url: str) -> None:
    postgres = db_url.startswith("postgresql://")
    overriding = "OVERRIDING SYSTEM VALUE" if postgres else ""
    with raw_connection(db_url) as raw:
        for job_id, status, depends_on, pending in V7_JOBS:
            finished = "1.0" if status == "succeeded" else "NULL"
            deps = "NULL" if depends_on is None else f"'{depends_on}'"
            raw.execute(
                "INSERT INTO jobs (id, type, payload, priority, status, max_attempts, run_at, "
                "created_at, finished_at, depends_on, deps_pending, has_dependants, queue) "
                f"{overriding} VALUES ({job_id}, 'sleep', '{{}}', 5, '{status}', 3, 1.0, 1.0, "
                f"{finished}, {deps}, {pending}, {'true' if job_id in (1, 2) else 'false'}, "
                "'default')"
            )
        for depends_on, job_id in V7_EDGES:
            raw.execute(f"INSERT INTO job_dependencies VALUES ({depends_on}, {job_id})")
        raw.execute(
            "INSERT INTO job_attempts (job_id, attempt, finished_at, outcome) "
            "VALUES (1, 1, 1.0, 'succeeded')"
        )


def _index_names(db_url: str) -> set[str]:
    with raw_connection(db_url) as raw:
        if db_url.startswith("postgresql://"):
            query = "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs' "
            query += "AND indexname <> 'jobs_pkey' AND schemaname = current_schema()"
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' "
            query += "AND name NOT LIKE 'sqlite_autoindex%'"
        return {row[0] for row in raw.execute(query).fetchall()}


def _jobs(db_url: str) -> list[tuple]:
    with raw_connection(db_url) as raw:
        return [tuple(row) for row in raw.execute("SELECT * FROM jobs ORDER BY id").fetchall()]


def test_migration_8_keeps_a_v7_database_and_starts_ids_past_every_id_seen(db_url):
    store = open_store(db_url)
    try:
        assert store.migrate(target=7) == 7
        _v7_rows(db_url)
        indexes, rows = _index_names(db_url), _jobs(db_url)
        store.migrate()
        assert _index_names(db_url) >= indexes  # every index of migrations 1-7 is back
        # The rows as they were, columns in order (later migrations add columns).
        assert [row[: len(rows[0])] for row in _jobs(db_url)[: len(rows)]] == rows
        # Only the edges still to resolve stay; deps_pending counts them.
        assert dependency_rows(db_url) == {(2, 3), (2, 4)}
        scheduler = Scheduler(store, ServerConfig(default_timeout=None))
        assert scheduler.get(3)["deps_pending"] == scheduler.get(4)["deps_pending"] == 1
        # Ids go on past the highest id any table named (9), never back to 6.
        assert submit(scheduler)["id"] == 10
        assert [a["outcome"] for a in scheduler.jobs.attempts(1)] == ["succeeded"]
        # The migrated edges still work: job 2 finishing readies 3 and 4, not 5 again.
        leased = scheduler.lease("w", ["sleep"], 1, wait=0)
        assert [row["id"] for row in leased] == [2]
        scheduler.complete([Completion(2, leased[0]["lease_id"], "succeeded", "w")])
        assert [scheduler.get(i)["status"] for i in (3, 4, 5)] == ["queued"] * 3
        assert dependency_rows(db_url) == set()
    finally:
        store.close()
