"""What the webhook outbox's trigger (migration 10) costs every job status change.

Every ``UPDATE jobs SET status = ...`` now tests the trigger's ``WHEN`` (a
notify_url, a final status). Two schemas side by side, one at version 7
(before the trigger) and one at the latest, each with ``--rows`` jobs without
a notify_url (the common case); the same whole-table status update runs on
each in turn, ``--rounds`` times. Prints the best and median time per updated
row. SQLite runs in this process (CPU time); PostgreSQL at 127.0.0.1 (wall
time of the statement).

    .venv/bin/python bench/outbox_trigger.py [--rows 50000] [--rounds 20] [--no-postgres]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from taskframe.server.storage import open_store

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BEFORE = 7
INSERT = (
    "INSERT INTO jobs (type, payload, priority, status, max_attempts, run_at, created_at) "
    "VALUES ('sleep', '{}', 5, 'queued', 3, 0, 0)"
)


def sqlite_updaters(folder: Path, rows: int) -> dict[str, Callable[[str], float]]:
    found = {}
    for label, target in (("before", BEFORE), ("trigger", None)):
        path = str(folder / f"{label}.db")
        store = open_store(path)
        store.migrate(target)
        store.close()
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN")
        connection.executemany(INSERT, [()] * rows)
        connection.execute("COMMIT")

        def update(status: str, connection: sqlite3.Connection = connection) -> float:
            started = time.process_time()
            connection.execute("BEGIN")
            connection.execute("UPDATE jobs SET status = ?", (status,))
            connection.execute("COMMIT")
            return time.process_time() - started

        found[label] = update
    return found


def postgres_updaters(rows: int, schemas: list[str]) -> dict[str, Callable[[str], float]]:
    import psycopg

    found = {}
    for label, target in (("before", BEFORE), ("trigger", None)):
        schema = f"tf_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        store = open_store(url)
        store.migrate(target)
        store.close()
        connection = psycopg.connect(url, autocommit=True)
        connection.execute(INSERT.replace("VALUES (", "SELECT ").rstrip(")")
                           + f" FROM generate_series(1, {rows})")  # fmt: skip
        connection.execute("VACUUM ANALYZE jobs")

        def update(status: str, connection: psycopg.Connection = connection) -> float:
            started = time.perf_counter()
            connection.execute("UPDATE jobs SET status = %s", (status,))
            elapsed = time.perf_counter() - started
            connection.execute("VACUUM jobs")
            return elapsed

        found[label] = update
    return found


def measure(name: str, updaters: dict[str, Callable[[str], float]], rows: int, rounds: int) -> None:
    times: dict[str, list[float]] = {label: [] for label in updaters}
    for number in range(rounds):
        for label, update in updaters.items():
            times[label].append(update("running" if number % 2 == 0 else "queued"))
    for label, found in times.items():
        best, median = min(found) / rows * 1e9, statistics.median(found) / rows * 1e9
        print(f"{name:10} {label:8} best {best:8.0f} ns/row   median {median:8.0f} ns/row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measure("sqlite", sqlite_updaters(Path(folder), args.rows), args.rows, args.rounds)
    if args.no_postgres:
        return
    import psycopg

    schemas: list[str] = []
    try:
        measure("postgres", postgres_updaters(args.rows, schemas), args.rows, args.rounds)
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            for schema in schemas:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
