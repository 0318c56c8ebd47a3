"""A CPU-bound executor under ``--pool thread`` and ``--pool process``: does it scale?

Each job hashes ``--size`` bytes with SHA-256 written in pure Python (a Python
loop that holds the GIL, unlike ``hashlib``). One worker runs ``--jobs`` of
them with 1 slot, then with ``--slots`` slots (default: the number of cores),
under each pool; the table shows jobs/s, the speed-up over one slot, and the
parallelism: CPU seconds the jobs got (each measures its own thread's CPU
time) per second of wall time. Threads cannot run Python in parallel, so
under ``thread`` that stays at or below 1 whatever the cores; under
``process`` it can reach the number of cores that are free (on a shared
machine, other processes take some: the load average is printed).

    .venv/bin/python bench/cpu_pool.py [--size 2097152] [--jobs 4] [--slots 2]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_plugin  # noqa: E402
from harness import BenchError, Env, job_clock, kill_all, new_workdir, verify_succeeded  # noqa: E402


def run(
    pool: str, slots: int, opts: argparse.Namespace, workdir: Path, envs: list[Env]
) -> tuple[float, float]:
    """Seconds for one worker (``pool``, ``slots``) to run the jobs, and the jobs' CPU seconds."""
    label = f"{pool}{slots}"
    env = Env("sqlite", workdir, label, [], ["--pool", pool, "--poll-interval", "1"])
    envs.append(env)
    try:
        base = env.api.newest_id()
        job = {"type": "pysha256", "payload": {"size": opts.size}, "timeout": 3600}
        ids = set(env.api.batch([job] * opts.jobs))
        env.start_workers(1, slots)
        # The clock starts at the first job's start (server clock), not the worker's
        # start-up: the process pool's children load the plugins before leasing.
        env.api.wait_idle(env, timeout=60 + 30 * opts.jobs * opts.size / 2**20, interval=0.1)
        jobs = verify_succeeded(env.api, base, ids)
        # Listings are summaries: each job's result comes from GET /jobs/{id}.
        results = [env.api.call("GET", f"/jobs/{job['id']}")["result"] for job in jobs]
        pids = {result["pid"] for result in results}
        if pool == "process" and env.workers[0].popen.pid in pids:
            raise BenchError("a process-pool job ran in the worker process")
        return job_clock(jobs), sum(result["cpu"] for result in results)
    finally:
        env.close()
        for note in env.notes:
            print(f"  note ({label}): {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2 << 20, help="bytes hashed per job")
    parser.add_argument("--jobs", type=int, default=4, help="jobs per run")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    bench_plugin.install(workdir / "site")
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    print(
        f"{opts.jobs} jobs x pure-Python SHA-256 of {opts.size / 2**20:g} MiB, one worker; "
        f"{os.cpu_count()} cores; time from the first job's start to the last one's end"
    )
    print(f"{'pool':<8} {'slots':>5} {'seconds':>8} {'jobs/s':>7} {'speed-up':>8} {'parallel':>8}")
    try:
        for pool in ("thread", "process"):
            one = None
            for slots in (1, opts.slots):
                seconds, cpu = run(pool, slots, opts, workdir, envs)
                one = one or seconds
                print(
                    f"{pool:<8} {slots:>5} {seconds:>8.2f} {opts.jobs / seconds:>7.3f} "
                    f"{one / seconds:>7.2f}x {cpu / seconds:>8.2f}",
                    flush=True,
                )
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average at the end: {load} (other processes compete for the cores)")
    except BenchError as exc:
        print(f"error: {exc} (logs kept in {workdir})", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
