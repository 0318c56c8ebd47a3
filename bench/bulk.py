"""Bulk cancel and retry of many jobs while others submit (issue 23).

Submits ``--jobs`` delayed jobs in one queue through ``POST /jobs/batch`` on a
real ``taskframe-server`` (no worker: nothing runs), then, while one client
keeps posting single jobs, counts them (``POST /jobs/cancel`` with
``dry_run``), cancels them all, and retries them all (``POST /jobs/retry``),
and prints how long each request took and p50 / p99 / max of the concurrent
``POST /jobs`` (the bulk work goes a chunk per transaction, so it never holds
the database for long).

    .venv/bin/python bench/bulk.py [--jobs 100000] [--db sqlite|postgresql://...]
"""

from __future__ import annotations

import argparse
import atexit
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cascade import Poster, percentile  # noqa: E402
from harness import Env, kill_all, new_workdir  # noqa: E402

JOB = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600, "queue": "bulk"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    env = Env(opts.db, workdir, "bulk", [], [])
    envs.append(env)
    started = time.perf_counter()
    for start in range(0, opts.jobs, 1000):
        env.api.batch([JOB] * min(1000, opts.jobs - start))
    print(f"submitted {opts.jobs} jobs in {time.perf_counter() - started:.1f} s")

    poster = Poster(env.url)
    poster.start()
    time.sleep(1.0)  # the poster warm
    poster.recording.set()
    took = {}
    answers = {}
    for name, path, body in (
        ("count (dry run)", "/jobs/cancel", {"queue": "bulk", "dry_run": True}),
        ("cancel", "/jobs/cancel", {"queue": "bulk"}),
        ("retry", "/jobs/retry", {"queue": "bulk"}),
    ):
        start = time.perf_counter()
        answers[name] = env.api.call("POST", path, json=body, timeout=1800)
        took[name] = time.perf_counter() - start
    poster.recording.clear()
    poster.stopping.set()
    poster.join(timeout=130)
    env.close()
    envs.clear()

    lat = poster.latencies
    print(f"\nbulk actions, {opts.db.split(':')[0]}, {opts.jobs} jobs")
    for name, seconds in took.items():
        answer = answers[name]
        print(
            f"  {name:<18} {seconds:8.2f} s  matched {answer['matched']:>8}"
            f"  changed {answer['changed']:>8}"
        )
    print(f"  concurrent POST /jobs    {len(lat):10d} requests")
    if lat:
        print(f"    p50                    {statistics.median(lat) * 1000:10.1f} ms")
        print(f"    p99                    {percentile(lat, 0.99) * 1000:10.1f} ms")
        print(f"    max                    {max(lat) * 1000:10.1f} ms")
    print(f"    not 201                {poster.refused or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
