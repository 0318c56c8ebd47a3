"""The job counts stay exact, and anonymous /health reads nothing (issue 18, both backends).

``job_counts`` is kept by triggers in the transaction of every change, so it
must agree with a GROUP BY over the jobs after any mix of operations: the
scheduler's own (submit, lease, complete, cancel, retry, reap, promote), and
dependencies resolved in chunks, pruning, schedules and the counts' folding.
"""

from __future__ import annotations

import random
import re
import uuid
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import create_app
from taskframe.server.http.auth import TokenSet
from taskframe.server.storage import counts
from taskframe.server.storage.base import load_queries
from tests.api_server import default_plugins
from tests.unit.test_properties import counted_jobs, grouped_jobs
from tests.unit.test_scheduler import Clock

OPERATIONS = (
    "submit",
    "depend",
    "lease_and_complete",
    "cancel",
    "retry",
    "reap",
    "promote",
    "prune",
    "cascade",
    "fold",
    "fire",
    "route",
)


def job(rng: random.Random, **fields: Any) -> dict[str, Any]:
    return {
        "type": rng.choice(["sleep", "http"]),
        "payload": {},
        "priority": rng.randint(1, 3),
        "max_attempts": rng.randint(1, 2),
        "timeout": None,
        "idempotency_key": None,
        "queue": rng.choice(["default", "a", "b"]),
        **fields,
    }


class Driver:
    def __init__(self, store, clock: Clock) -> None:
        config = ServerConfig(retention=30.0, cascade_batch=3, lease_ttl=10.0, max_schedules=5)
        self.scheduler = Scheduler(store, config, clock=clock)
        self.schedules = self.scheduler.schedules
        self.store, self.clock = store, clock
        self.ids: list[int] = []

    def run(self, operation: str, rng: random.Random) -> None:
        getattr(self, operation)(rng)

    def submit(self, rng: random.Random) -> None:
        delay = rng.choice([0.0, 0.0, 5.0])
        rows = self.scheduler.submit([job(rng, delay=delay) for _ in range(rng.randint(1, 4))])
        self.ids += [row["id"] for row, _ in rows]

    def depend(self, rng: random.Random) -> None:
        live = [i for i in self.ids if self._exists(i)]
        if not live:
            return
        deps = rng.sample(live, min(len(live), rng.randint(1, 2)))
        fields = {"depends_on": deps}
        if rng.random() < 0.3:
            fields["on_dependency_failure"] = "run"
        rows = self.scheduler.submit([job(rng, **fields) for _ in range(rng.randint(1, 6))])
        self.ids += [row["id"] for row, _ in rows]

    def lease_and_complete(self, rng: random.Random) -> None:
        leased = self.scheduler.lease("w", ["sleep", "http"], rng.randint(1, 4), wait=0)
        outcomes = [rng.choice(["succeeded", "failed", "cancelled"]) for _ in leased]
        self.scheduler.complete(
            [
                Completion(row["id"], row["lease_id"], outcome, "w", None, "x")
                for row, outcome in zip(leased, outcomes, strict=True)
                if rng.random() < 0.8  # some stay running, for the reaper
            ]
        )

    def cancel(self, rng: random.Random) -> None:
        self._try(self.scheduler.cancel, rng)

    def retry(self, rng: random.Random) -> None:
        self._try(self.scheduler.retry, rng)

    def reap(self, rng: random.Random) -> None:
        self.clock.advance(rng.choice([1.0, 11.0]))
        self.scheduler.reap()

    def promote(self, rng: random.Random) -> None:
        self.clock.advance(rng.choice([1.0, 6.0]))
        self.scheduler.promote()

    def prune(self, rng: random.Random) -> None:
        self.clock.advance(31.0)
        self.scheduler.prune()

    def cascade(self, rng: random.Random) -> None:
        self.scheduler.cascade()

    def fold(self, rng: random.Random) -> None:
        counts.fold(self.store, drop_empty=rng.random() < 0.5)

    def fire(self, rng: random.Random) -> None:
        if not self.schedules.list():
            spec = {"name": "tick", "cron": "* * * * * *", "timezone": "UTC"}
            spec.update(job=job(rng), misfire="latest", paused=False)
            self.schedules.create(spec)
        self.clock.advance(rng.choice([1.0, 3.0]))
        self.schedules.fire()

    def route(self, rng: random.Random) -> None:
        """A paused queue or a limit: the leases that follow take the routed path."""
        with self.store.transaction() as tx:
            if rng.random() < 0.5:
                params = {"name": rng.choice(["a", "b"]), "paused": rng.randint(0, 1)}
                tx.run("set_queue_paused", params)
            else:
                params = {"kind": "type", "name": "http", "max_running": rng.randint(0, 3)}
                tx.run("set_limit", params)

    def _exists(self, job_id: int) -> bool:
        with self.store.reader() as tx:
            return tx.one("get_job", {"id": job_id}) is not None

    def _try(self, action, rng: random.Random) -> None:
        if not self.ids:
            return
        try:
            action(rng.choice(self.ids))
        except Exception as exc:  # a conflict or a pruned job: refused, nothing changed
            if type(exc).__name__ not in ("JobConflict", "JobNotFound"):
                raise


@contextmanager
def fresh_store(db_url: str, request: pytest.FixtureRequest):
    """A store of its own for one example (a new file, or a pooled PostgreSQL schema
    as migrated: creating, migrating and dropping one took 0.1 s an example)."""
    from taskframe.server.storage import open_store

    if db_url.startswith("postgresql://"):
        pool = request.getfixturevalue("postgres_schemas")
        schema = pool.take()
        try:
            with closing(open_store(pool.url(schema))) as store:
                yield store
        finally:
            pool.give_back(schema)
        return
    store = open_store(f"{db_url}.{uuid.uuid4().hex[:12]}")
    with closing(store):
        store.migrate()
        yield store


@pytest.mark.timeout(900)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(st.sampled_from(OPERATIONS), min_size=5, max_size=40),
    seed=st.integers(0, 2**32),
)
def test_counts_agree_with_the_jobs_after_any_operations(db_url, request, operations, seed):
    rng = random.Random(seed)
    with fresh_store(db_url, request) as store:
        driver = Driver(store, Clock())
        for operation in operations:
            driver.run(operation, rng)
            assert counted_jobs(store) == grouped_jobs(store), operation


def test_migration_9_counts_the_jobs_already_there(db_url):
    from taskframe.server.storage import open_store

    store = open_store(db_url)
    try:
        store.migrate(target=8)
        rng = random.Random(7)
        with store.transaction() as tx:
            for n in range(40):
                params = Scheduler(store, ServerConfig()).intake.new_job_params(job(rng), 1.0)
                tx.returning_many("insert_job", [params])
                if n % 3 == 0:
                    tx.run("cancel_queued", {"id": n + 1, "now": 2.0})
        store.migrate()
        assert counted_jobs(store) == grouped_jobs(store)
        assert sum(counted_jobs(store).values()) == 40
    finally:
        store.close()


# -- anonymous /health reads nothing ---------------------------------------------------


class CountingStore:
    """The real store, noting every way into the database (transactions, reads, pings)."""

    def __init__(self, store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def reader(self):
        self.calls.append("reader")
        with self._store.reader() as tx:
            yield tx

    @contextmanager
    def transaction(self):
        self.calls.append("transaction")
        with self._store.transaction() as tx:
            yield tx

    def ping(self) -> None:
        self.calls.append("ping")
        self._store.ping()


CLIENT_TOKEN = "c" * 32


def test_anonymous_health_reads_nothing_from_the_database(store):
    counting = CountingStore(store)
    tokens = TokenSet()
    tokens.add_lines([f"client:{CLIENT_TOKEN}"], "tokens")
    config = ServerConfig()
    scheduler = Scheduler(counting, config)  # type: ignore[arg-type]
    app = create_app(config, scheduler, default_plugins(), AccessConfig(tokens=tokens))
    client = testing.TestClient(app)
    scheduler.submit([job(random.Random(1))] * 3)
    scheduler.database.record()  # what the housekeeper does after each reap
    counting.calls.clear()
    for _ in range(50):
        answer = client.simulate_get("/health")
        assert (answer.status_code, answer.json) == (200, {"status": "ok"})
    assert counting.calls == []
    # An outage the housekeeper saw is told, still without a read.
    scheduler.database.record("database is locked")
    answer = client.simulate_get("/health")
    assert (answer.status_code, answer.json) == (503, {"status": "unavailable"})
    assert counting.calls == []
    # With a token, the full answer reads the database (and records what it saw).
    full = client.simulate_get("/health", headers={"Authorization": f"Bearer {CLIENT_TOKEN}"})
    assert full.status_code == 200 and full.json["status"] == "ok"
    assert "ping" in counting.calls
    assert client.simulate_get("/health").status_code == 200


# -- what the triggers leave to the statements -------------------------------------------

QUERIES = {backend: load_queries(f"{backend}.sql") for backend in ("sqlite", "postgres")}


def _set_clause(sql: str) -> str:
    """What an UPDATE of jobs assigns (comments left out)."""
    code = re.sub(r"--[^\n]*", "", sql)
    after = re.split(r"\bUPDATE jobs\s+SET\b", code, maxsplit=1)[1]
    return re.split(r"\bWHERE\b|\bFROM\b|\bRETURNING\b", after)[0]


@pytest.mark.parametrize("backend", sorted(QUERIES))
def test_the_moves_the_triggers_skip_are_the_ones_the_scheduler_counts(backend):
    """The update trigger skips queued -> running and running -> succeeded: only the
    lease and the success set those statuses, and the scheduler counts them
    (counts.moved). No statement changes a job's type, queue or priority."""
    updates = {
        name: _set_clause(sql)
        for name, sql in QUERIES[backend].items()
        if re.search(r"\bUPDATE jobs\s+SET\b", sql) and not name.startswith("migration_")
    }
    setting = {
        status: {name for name, clause in updates.items() if f"status = '{status}'" in clause}
        for status in ("running", "succeeded")
    }
    # Successes are set by end_attempts, whose rows name their status (next_status chose
    # it): the attempts module counts those that succeeded with counts.moved.
    assert setting == {"running": {"lease_jobs", "lease_picked"}, "succeeded": set()}
    for name, clause in updates.items():
        assert not re.search(r"(?<![_.\w])(type|queue|priority)\s*=", clause), name


def test_every_insert_of_a_job_is_counted_by_its_caller():
    """No trigger counts inserts: only insert_job and insert_jobs (its statements
    insert_jobs_without_keys and insert_job_without_key) insert jobs, and every module
    that runs them counts what they inserted (counts.added)."""
    for backend, queries in QUERIES.items():
        inserting = {
            name
            for name, sql in queries.items()
            if re.search(r"\bINSERT INTO jobs\b", re.sub(r"--[^\n]*", "", sql))
            and not name.startswith("migration_")
        }
        allowed = {"insert_job", "insert_jobs_without_keys", "insert_job_without_key"}
        assert inserting <= allowed, backend
    server = Path(counts.__file__).parent
    for path in sorted(server.rglob("*.py")):
        if path.parent.name == "storage":
            continue  # insert_jobs itself: its callers count
        text = path.read_text("utf-8")
        if '"insert_job"' in text or ".insert_jobs(" in text:
            assert "counts.added(" in text, f"{path.name} inserts jobs without counting them"
