"""Submission from one Python thread with ``taskframe.client``: one call per job vs ``batch()``.

Starts a real server on a fresh database (no worker: only submission is
timed), then submits ``--jobs`` no-op jobs from one thread three ways: a raw
``requests.Session`` POST per job (the way the issue measured "today"),
``Client.submit`` per job, and ``Client.batch()`` (futures, resolved once
the server has committed each batch). Every job is counted on the server
afterwards: the figures only stand if every job is there.

    .venv/bin/python bench/client_submit.py [--db postgresql://...] [--jobs 3000]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import NOOP, BenchError, Env, kill_all, new_workdir  # noqa: E402

from taskframe.client import Client  # noqa: E402


def per_call_requests(url: str, jobs: int) -> float:
    with requests.Session() as session:
        session.trust_env = False
        start = time.perf_counter()
        for _ in range(jobs):
            session.post(f"{url}/jobs", json=NOOP, timeout=30).raise_for_status()
        return jobs / (time.perf_counter() - start)


def per_call_client(client: Client, jobs: int) -> float:
    start = time.perf_counter()
    for _ in range(jobs):
        client.submit("sleep", {"duration": 0})
    return jobs / (time.perf_counter() - start)


def batched(client: Client, jobs: int) -> float:
    start = time.perf_counter()
    with client.batch() as batch:
        futures = [batch.submit("sleep", {"duration": 0}) for _ in range(jobs)]
    ids = [future.result() for future in futures]
    rate = jobs / (time.perf_counter() - start)
    if len(set(ids)) != jobs:
        raise BenchError("batch: duplicate or missing ids")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per one-call-per-job run")
    parser.add_argument("--batch-jobs", type=int, default=100_000, help="jobs through batch()")
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    try:
        env = Env(opts.db, workdir, "submit", [], [])
        envs.append(env)
        with Client(env.url) as client:
            rows = [
                (
                    "requests.Session, one POST per job",
                    per_call_requests(env.url, opts.jobs),
                    opts.jobs,
                ),
                ("Client.submit, one call per job", per_call_client(client, opts.jobs), opts.jobs),
                ("Client.batch()", batched(client, opts.batch_jobs), opts.batch_jobs),
            ]
            stored = sum(client.stats().by_status.values())
        expected = 2 * opts.jobs + opts.batch_jobs
        if stored != expected:
            raise BenchError(f"{stored} jobs stored, {expected} submitted")
        print(f"submission from one thread, {opts.db.split(':')[0]}; all {expected} jobs stored")
        for label, rate, count in rows:
            print(f"{label:<40} {rate:>9,.0f} jobs/s  ({count} jobs)")
        env.close()
    except BenchError as exc:
        print(f"error: {exc} (logs kept in {workdir})", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
