"""Submission from one Python thread with ``taskframe.client``: one call per job vs ``batch()``.

Starts a real server on a fresh database (no worker: only submission is
timed), then submits ``--jobs`` no-op jobs from one thread three ways: a raw
``requests.Session`` POST per job (the way the issue measured "today"),
``Client.submit`` per job, and ``Client.batch()`` (futures, resolved once
the server has committed each batch). Every job is counted on the server
afterwards: the figures only stand if every job is there.

With Huey and Redis at hand (the ``bench`` extra, ``--redis``), Huey's enqueue
from one thread is timed too (``--jobs`` calls of a task, no consumer: the
queue is flushed afterwards), and each figure is given as a ratio to it: the
issue's goals are ``Client.submit`` >= 0.3x and ``Client.batch()`` >= 3x Huey's
enqueue in the same run.

    .venv/bin/python bench/client_submit.py [--db postgresql://...] [--jobs 3000]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import time
import uuid
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


def huey_enqueue(redis_url: str, jobs: int) -> float | None:
    """Huey's enqueue rate from one thread (jobs/s), or None without Huey or Redis."""
    try:
        import redis
        from huey import RedisHuey
    except ImportError:
        return None
    try:
        redis.Redis.from_url(redis_url).ping()
    except redis.RedisError:
        return None
    huey = RedisHuey(f"client-submit-{uuid.uuid4().hex[:8]}", url=redis_url)

    @huey.task()
    def mark(n: int, key: str) -> None:  # never run: only the enqueue is timed
        pass

    warm_up = 100  # the connection, as taskframe's runs had theirs
    try:
        for n in range(warm_up):
            mark(n, "key")
        start = time.perf_counter()
        for n in range(jobs):
            mark(n, "key")
        rate = jobs / (time.perf_counter() - start)
        if len(huey) != warm_up + jobs:
            raise BenchError(f"Huey: {len(huey)} tasks queued, {warm_up + jobs} enqueued")
        return rate
    finally:
        huey.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per one-call-per-job run")
    parser.add_argument("--batch-jobs", type=int, default=100_000, help="jobs through batch()")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="for Huey's enqueue")
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
        env.close()
        huey = huey_enqueue(opts.redis, opts.jobs)
        print(f"submission from one thread, {opts.db.split(':')[0]}; all {expected} jobs stored")
        if huey is not None:
            rows.append(("Huey enqueue (RedisHuey), one call per job", huey, opts.jobs))
        for label, rate, count in rows:
            ratio = f"  {rate / huey:5.2f}x Huey" if huey else ""
            print(f"{label:<44} {rate:>9,.0f} jobs/s{ratio}  ({count} jobs)")
    except BenchError as exc:
        print(f"error: {exc} (logs kept in {workdir})", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
