"""The worker's CPU per job, without its start-up: sync and ``async def`` no-op tasks.

``floors.py --w1`` counts the workers' start-up in their CPU per job (about
0.25 s of imports and plugin loading per worker: 100 µs per job over 5,000
jobs). Here the workers start first and go idle; their CPU is read, then N
no-op jobs are queued (in batches of 1,000) and the CPU they spend running
them is what is printed, per job, for a plain function and for an ``async
def`` one (which the worker awaits on its event loop).

    .venv/bin/python bench/worker_cpu.py [--jobs 10000] [--slots 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floors import cpu_seconds  # noqa: E402
from harness import Env, kill_all, new_workdir  # noqa: E402

TASKS = """
from taskframe.core import task

@task
def noop() -> None:
    return None

@task
async def anoop() -> None:
    return None
"""


def run(workdir: Path, job_type: str, jobs: int, workers: int, slots: int) -> dict[str, float]:
    args = ["--tasks", "bench_noop_tasks", "--log-level", "WARNING"]
    env = Env("sqlite", workdir, f"cpu-{job_type}", args, args)
    try:
        env.start_workers(workers, slots)
        time.sleep(2.0)  # started and idle in a long poll
        pids = [worker.popen.pid for worker in env.workers]
        before = sum(cpu_seconds(pid) for pid in pids)
        start = time.perf_counter()
        for first in range(0, jobs, 1000):
            env.api.batch([{"type": job_type, "payload": {}}] * min(1000, jobs - first))
        while env.api.active():
            env.check_alive()
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        spent = sum(cpu_seconds(pid) for pid in pids) - before
        if env.api.call("GET", "/stats")["by_status"].get("succeeded", 0) != jobs:
            raise RuntimeError(f"{job_type}: not every job succeeded")
    finally:
        env.close()
    return {
        "jobs/s (submission included)": jobs / elapsed,
        "workers CPU us/job": spent / jobs * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--slots", type=int, default=64, help="slots of each worker")
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    atexit.register(kill_all, [])
    (workdir / "bench_noop_tasks.py").write_text(TASKS)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(workdir), os.environ.get("PYTHONPATH")])
    )
    print(f"\n{opts.workers} workers x {opts.slots} slots, {opts.jobs} no-op jobs, sqlite")
    for job_type, label in (("noop", "def"), ("anoop", "async def")):
        for unit, value in run(workdir, job_type, opts.jobs, opts.workers, opts.slots).items():
            print(f"{label:10s} {unit:32s} {value:10,.1f}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
