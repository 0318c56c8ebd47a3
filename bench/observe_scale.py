"""Observability reads against a big jobs table (issue 18, item 9).

Creates a database with the schema of the installed code (``taskframe-server
--migrate-only``), fills it with ``--jobs`` jobs straight through SQL (a bulk
``INSERT ... SELECT``, triggers off, the counts computed once at the end when
the schema has them), starts a real server on it with a token, and times over
HTTP what the dashboard's overview and the monitoring read: ``/stats``,
``/queues``, ``/health`` (anonymous and with the token), ``/workers``,
``/schedules``, ``/jobs?status=running``, ``/job-types``, ``/metrics``.

The mix: 95 % succeeded, 3 % failed, 1.5 % cancelled, 0.4 % queued and the
rest scheduled or waiting, over 3 types, 5 queues and 10 priorities; 10 live
workers running 8 jobs each at 10M jobs (running jobs are bounded by the
workers' slots, not by history: /workers and /jobs?status=running cost what
those jobs cost).

Run with the Python of the code to measure (old code: an old environment's).

    .venv/bin/python bench/observe_scale.py [--jobs 10000000] [--db sqlite|postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BIN, Proc, free_port, new_workdir  # noqa: E402

CHUNK = 1_000_000
NOW = time.time()
# One row per n: status by n % 1000, the rest spread so that every combination occurs.
COLUMNS = """
    type, payload, priority, status, attempts, max_attempts, run_at, created_at,
    started_at, finished_at, worker_id, queue
"""
# Running jobs are as many as the workers' slots (10 x 8 at 10M jobs), not a share of history.
RUNNING = "n % 120000 = 2999"
STATUS = f"""CASE
    WHEN n % 1000 < 950 THEN 'succeeded' WHEN n % 1000 < 980 THEN 'failed'
    WHEN n % 1000 < 995 THEN 'cancelled' WHEN n % 1000 < 999 THEN 'queued'
    WHEN n % 3000 = 999 THEN 'scheduled' WHEN n % 3000 = 1999 THEN 'waiting'
    WHEN {RUNNING} THEN 'running' ELSE 'queued' END"""
FINISHED = "n % 1000 < 995"


def pick(index: str, names: list[str]) -> str:
    """SQL choosing names[index] (a CASE: the same text on both databases)."""
    whens = " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(names))
    return f"CASE {index} {whens} END"


def select_rows(first: int, last: int, now: float, postgres: bool) -> str:
    """SELECT of jobs first..last (n), every column a function of n."""
    div = (lambda a, b: f"div({a}, {b})") if postgres else (lambda a, b: f"({a} / {b})")
    run_at = f"({now} - 86400.0 + n * 0.0001)"  # a day old at most: within any retention
    source = (
        f"generate_series({first}, {last}) AS n"
        if postgres
        else f"(WITH RECURSIVE s(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM s "
        f"WHERE n < {last}) SELECT n FROM s)"
    )
    return f"""
SELECT {pick("n % 3", ["sleep", "http", "file"])}, '{{"duration":0}}',
       1 + {div("n", 11)} % 10, {STATUS}, 1, 3, {run_at}, {run_at},
       CASE WHEN {FINISHED} OR {RUNNING} THEN {run_at} + 1 END,
       CASE WHEN {FINISHED} THEN {run_at} + 2 END,
       CASE WHEN {RUNNING} THEN 'w' || (n % 10) END,
       {pick(f"{div('n', 7)} % 5", ["default", "reports", "mail", "batch", "urgent"])}
FROM {source}"""


COUNTS = """INSERT INTO job_counts (type, queue, status, priority, count)
SELECT type, queue, status, priority, count(*) FROM jobs GROUP BY type, queue, status, priority"""


def fill_sqlite(path: str, jobs: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    triggers = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    ).fetchall()
    for name, _ in triggers:
        db.execute(f"DROP TRIGGER {name}")
    for first in range(1, jobs + 1, CHUNK):
        last = min(jobs, first + CHUNK - 1)
        db.execute("BEGIN")
        db.execute(f"INSERT INTO jobs ({COLUMNS}) {select_rows(first, last, NOW, False)}")
        db.execute("COMMIT")
        print(f"  {last:,} jobs", flush=True)
    has_counts = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'job_counts'")
    if has_counts.fetchone()[0]:
        db.execute("DELETE FROM job_counts")
        db.execute(COUNTS)
    for _, sql in triggers:
        db.execute(sql)
    workers(db, "?")
    db.execute("ANALYZE")
    db.close()


def fill_postgres(url: str, jobs: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ALTER TABLE jobs DISABLE TRIGGER USER")
        for first in range(1, jobs + 1, CHUNK):
            last = min(jobs, first + CHUNK - 1)
            db.execute(f"INSERT INTO jobs ({COLUMNS}) {select_rows(first, last, NOW, True)}")
            print(f"  {last:,} jobs", flush=True)
        db.execute("ALTER TABLE jobs ENABLE TRIGGER USER")
        if db.execute("SELECT to_regclass('job_counts') IS NOT NULL").fetchone()[0]:
            db.execute("DELETE FROM job_counts")
            db.execute(COUNTS)
        workers(db, "%s")
        db.execute("VACUUM ANALYZE")


def workers(db, mark: str) -> None:
    for n in range(10):
        db.execute(
            f"INSERT INTO workers (id, host, types, slots, last_seen) "
            f"VALUES ({mark}, 'bench', '[\"sleep\", \"http\"]', 8, {mark})",
            (f"w{n}", time.time() + 3600),
        )


def timed(session: requests.Session, url: str, headers: dict, budget: float = 20.0) -> list[float]:
    for _ in range(3):  # warm: connections, caches
        session.get(url, headers=headers, timeout=600)
    took: list[float] = []
    started = time.monotonic()
    while len(took) < 30 and (len(took) < 3 or time.monotonic() - started < budget):
        start = time.perf_counter()
        answer = session.get(url, headers=headers, timeout=600)
        took.append(time.perf_counter() - start)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {url}: {answer.status_code} {answer.text[:200]}")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    schema = None
    if opts.db == "sqlite":
        url = str(workdir / "observe.db")
    else:
        import psycopg

        schema = f"bench_observe_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(opts.db, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{opts.db}{'&' if '?' in opts.db else '?'}options=-csearch_path%3D{schema}"
    server = None
    try:
        subprocess.run([str(BIN / "taskframe-server"), "--migrate-only", "--db", url], check=True)
        started = time.perf_counter()
        print(f"filling {opts.jobs:,} jobs")
        (fill_sqlite if schema is None else fill_postgres)(url, opts.jobs)
        print(f"filled in {time.perf_counter() - started:.0f} s")
        token = secrets.token_hex(16)
        os.environ["TASKFRAME_TOKENS"] = f"admin:{token}"
        port = free_port()
        # --retention 0: no pruning while the reads are timed (the jobs must stay).
        args = [str(BIN / "taskframe-server"), "--port", str(port), "--db", url, "--retention", "0"]
        server = Proc(args, workdir / "observe-server.log")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(base + "/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or not server.alive():
                raise RuntimeError(f"the server did not start, see {server.log_path}")
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {token}"}
        session = requests.Session()
        held = session.get(base + "/stats", headers=auth, timeout=600).json()["by_status"]
        if sum(held.values()) != opts.jobs:
            raise RuntimeError(f"the server sees {sum(held.values())} jobs, not {opts.jobs}")
        print(f"\nobservability reads, {opts.db.split(':')[0]}, {opts.jobs:,} jobs (ms)")
        print(f"{'GET':40s} {'median':>9s} {'p90':>9s} {'max':>9s} {'n':>4s}")
        for path, headers in (
            ("/stats", auth),
            ("/queues", auth),
            ("/health (anonymous)", {}),
            ("/health (token)", auth),
            ("/workers", auth),
            ("/schedules", auth),
            ("/jobs?status=running&limit=500", auth),
            ("/job-types", auth),
            ("/metrics", auth),
        ):
            took = timed(session, base + path.split(" ")[0], headers)
            ordered = sorted(took)
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
            print(
                f"{path:40s} {statistics.median(took) * 1000:9.1f} {p90 * 1000:9.1f} "
                f"{max(took) * 1000:9.1f} {len(took):4d}"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait_exit()
        if schema is not None:
            import psycopg

            with psycopg.connect(opts.db, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
