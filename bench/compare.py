"""taskframe side by side with Huey and Celery on Redis: the same task body, W1/W2/W3.

Every job of every system does the same thing: one Redis round trip with
``INCR <key>:count`` and ``SETBIT <key>:bits <n> 1`` (``bench/peers/mark.py``;
for taskframe the ``redis_mark`` executor of ``bench/plugin``, installed at run
time as a real plugin on the server and the workers). Completion is observed
the same way for all: by polling that counter. At the end of each workload the
counter and the bitmap must both equal the number of jobs (each ran, once).

- W1: ``--jobs`` jobs submitted one by one from one Python thread (the
  submission rate: taskframe's ``Client.submit``, Huey's and Celery's own
  enqueue call), then 2 workers run them (taskframe: 2 workers of 64
  thread slots, as the docs recommend for short jobs; Huey: one consumer
  with 2 worker processes; Celery: one worker with 2 prefork processes):
  jobs/s from the workers' start, and from the first job done to the last.
- W2: submit -> done latency, one job at a time, one idle worker with one slot.
- W3: 200 jobs that sleep 0.5 s, one worker with 50 slots (taskframe: 50
  threads; Huey: 50 threads; Celery: threads pool of 50): seconds from the
  first submission to the last job done (ideal 2.0 s). ``--w3 1000x0.1``
  runs the issue's shape, 1,000 jobs of 0.1 s (ideal 2.0 s too).

For taskframe, each workload also checks through the API that every job
succeeded in exactly one attempt.

Each system runs on its documented defaults otherwise (taskframe: SQLite with
its defaults, and PostgreSQL if reachable, each on waitress and, with the
``granian`` extra, on Granian (``--server granian``); Huey: ``RedisHuey``, blocking
reads; Celery: Redis broker, results ignored, ``--without-gossip
--without-mingle --without-heartbeat``, which its docs suggest to cut start-up
time on a single node). Needs the ``bench`` extra (``pip install -e '.[bench]'``)
and Redis at ``--redis`` (default redis://127.0.0.1:6379/0).

    .venv/bin/python bench/compare.py [--jobs 5000] [--w2-jobs 200] [--systems ...]
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "peers")]

import bench_plugin  # noqa: E402
from harness import BIN, BenchError, Deadline, Env, Proc, new_workdir, verify_succeeded  # noqa: E402

from taskframe.client import Client  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEMS = (
    "taskframe-sqlite",
    "taskframe-postgres",
    "taskframe-sqlite-granian",  # the same, served by Granian (the granian extra)
    "taskframe-postgres-granian",
    "huey",
    "celery",
)
W3_SLOTS = 50


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(p / 100 * len(ordered)) - 1)]


class Counter:
    """The jobs' Redis counter and bitmap under one fresh key."""

    def __init__(self, redis_client: Any, run: str, name: str) -> None:
        self.redis = redis_client
        self.key = f"{run}:{name}"

    def count(self) -> int:
        return int(self.redis.get(self.key + ":count") or 0)

    def wait(self, n: int, timeout: float, interval: float, alive: Callable[[], None]) -> float:
        """Poll until the counter reaches ``n``; the ``perf_counter`` when seen."""
        deadline = Deadline(timeout, f"{n} jobs counted under {self.key}")
        polls = 0
        while self.count() < n:
            polls += 1
            if polls % 200 == 0:
                alive()
                deadline.check()
            time.sleep(interval)
        return perf_counter()

    def verify(self, n: int) -> None:
        count, bits = self.count(), self.redis.bitcount(self.key + ":bits")
        if count != n or bits != n:
            raise BenchError(f"{self.key}: {count} runs of {bits} distinct jobs, expected {n}")

    def drop(self) -> None:
        self.redis.delete(self.key + ":count", self.key + ":bits")


# -- the systems: each can submit a job and start workers ------------------------------


class Taskframe:
    def __init__(self, db: str, workdir: Path, label: str, server_args: list[str]) -> None:
        self.env = Env(db, workdir, label, server_args, [])
        self.ids: set[int] = set()
        # Jobs go in through the project's own client, as Huey's through its enqueue.
        self.client = Client(self.env.url)

    def submit(self, n: int, key: str, sleep: float = 0.0) -> None:
        payload = {"n": n, "key": key, "sleep": sleep}
        self.ids.add(self.client.submit("redis_mark", payload).id)

    def verify(self) -> None:
        """Through the API too: every job succeeded, in exactly one attempt.

        (After the counter: a job marks Redis before its worker reports it.)
        """
        self.env.api.wait_idle(self.env, timeout=60, interval=0.05)
        verify_succeeded(self.env.api, 0, self.ids)

    def start_workers(self, count: int, slots: int) -> None:
        self.env.start_workers(count, slots)

    def alive(self) -> None:
        self.env.check_alive()

    def close(self) -> list[str]:
        self.client.close()
        self.env.close()
        return self.env.notes


class Peer:
    """Huey or Celery: a client (the task's enqueue function) and consumer processes."""

    def __init__(self, name: str, workdir: Path, queue: str) -> None:
        self.name, self.workdir, self.queue = name, workdir, queue
        self.procs: list[Proc] = []
        os.environ["BENCH_QUEUE"] = queue  # read when the task module is imported
        if name == "huey":
            import huey_tasks

            self._enqueue = huey_tasks.mark_task
        else:
            import celery_tasks

            self._enqueue = celery_tasks.mark_task.delay

    def submit(self, n: int, key: str, sleep: float = 0.0) -> None:
        self._enqueue(n, key, sleep)

    def start_workers(self, count: int, slots: int, kind: str) -> None:
        """``count`` == 1 always here; ``kind``: ``process`` or ``thread``."""
        if self.name == "huey":
            args = [str(BIN / "huey_consumer"), "huey_tasks.huey", "-w", str(slots)]
            args += ["-k", kind, "-n", "-q"]
        else:
            pool = "prefork" if kind == "process" else "threads"
            args = [str(BIN / "celery"), "-A", "celery_tasks", "worker", "-P", pool]
            args += ["-c", str(slots), "-Q", self.queue, "--loglevel", "WARNING"]
            args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        log = self.workdir / f"{self.name}-{len(self.procs)}.log"
        self.procs.append(Proc(args, log))

    def alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise BenchError(f"{self.name} consumer exited, see {proc.log_path}")

    def stop_workers(self) -> list[str]:
        for proc in self.procs:
            proc.terminate()
        notes = [note for proc in self.procs if (note := proc.wait_exit(grace=10))]
        self.procs = []
        return notes

    def close(self) -> list[str]:
        return self.stop_workers()


# -- the workloads ---------------------------------------------------------------------


def w1(system: Any, counter: Counter, opts: argparse.Namespace, out: dict[str, str]) -> None:
    n = opts.jobs
    start = perf_counter()
    for index in range(n):
        system.submit(index, counter.key)
    out["W1 submission, 1 thread (jobs/s)"] = f"{n / (perf_counter() - start):,.0f}"
    if isinstance(system, Taskframe):
        system.start_workers(2, opts.w1_slots)
    else:
        system.start_workers(1, 2, "process")
    start = perf_counter()
    first = counter.wait(1, 120, 0.002, system.alive)
    end = counter.wait(n, 60 + n / 20, 0.005, system.alive)
    counter.verify(n)
    out["W1 run, 2 workers (jobs/s from worker start)"] = f"{n / (end - start):,.0f}"
    out["W1 run (jobs/s, first done to last)"] = f"{(n - 1) / max(end - first, 1e-9):,.0f}"


def w2(system: Any, counter: Counter, opts: argparse.Namespace, out: dict[str, str]) -> None:
    if isinstance(system, Taskframe):
        system.start_workers(1, 1)
    else:
        system.start_workers(1, 1, "thread")
    warm = 5  # the worker is up and idle (waiting for work) before timing starts
    for index in range(warm):
        system.submit(index, counter.key)
    counter.wait(warm, 120, 0.01, system.alive)
    time.sleep(0.5)
    latencies = []
    for index in range(warm, warm + opts.w2_jobs):
        start = perf_counter()
        system.submit(index, counter.key)
        latencies.append(counter.wait(index + 1, 30, 0.0002, system.alive) - start)
    counter.verify(warm + opts.w2_jobs)
    p50, p99 = (percentile(latencies, p) * 1000 for p in (50, 99))
    out["W2 submit -> done, 1 slot (p50 / p99 ms)"] = f"{p50:.1f} / {p99:.1f}"


def w3(system: Any, counter: Counter, opts: argparse.Namespace, out: dict[str, str]) -> None:
    if isinstance(system, Taskframe):
        system.start_workers(1, W3_SLOTS)
    else:
        system.start_workers(1, W3_SLOTS, "thread")
    system.submit(0, counter.key)  # warm-up: the worker is up
    counter.wait(1, 120, 0.01, system.alive)
    time.sleep(0.5)
    start = perf_counter()
    jobs, sleep = opts.w3_jobs, opts.w3_sleep
    for index in range(1, jobs + 1):
        system.submit(index, counter.key, sleep)
    end = counter.wait(jobs + 1, 60, 0.002, system.alive)
    counter.verify(jobs + 1)
    ideal = jobs * sleep / W3_SLOTS
    out[f"W3 {jobs} x sleep {sleep:g} s, {W3_SLOTS} slots (s; ideal {ideal:.1f})"] = (
        f"{end - start:.2f}"
    )


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3}


def run_system(
    name: str, opts: argparse.Namespace, workdir: Path, redis_client: Any, run: str, cleanup: list
) -> dict[str, str]:
    """Every workload on a fresh system (database, queue, workers); figures or errors."""
    out: dict[str, str] = {}
    for workload, body in WORKLOADS.items():
        if workload not in opts.workloads:
            continue
        label = f"{name}-{workload}"
        counter = Counter(redis_client, run, label)
        system: Any = None
        try:
            if name.startswith("taskframe"):
                db = "sqlite" if "-sqlite" in name else opts.postgres
                server = ["--server", "granian"] if name.endswith("-granian") else []
                system = Taskframe(db, workdir, label.replace("-", "_"), server)
            else:
                system = Peer(name, workdir, f"{run}-{name}")  # one queue: one import
            cleanup.append(system)
            body(system, counter, opts, out)
            if isinstance(system, Taskframe):
                system.verify()
        except BenchError as exc:
            out[f"{workload} error"] = str(exc)
            print(f"  {label}: {exc} (logs in {workdir})", file=sys.stderr)
        finally:
            if system is not None:
                for note in system.close():
                    print(f"  note ({label}): {note}", file=sys.stderr)
                cleanup.remove(system)
            counter.drop()
        print(f"  {label} done", file=sys.stderr, flush=True)
    for key in redis_client.scan_iter(f"*{run}-{name}*"):  # the peers' queues
        redis_client.delete(key)
    return out


def print_table(results: dict[str, dict[str, str]], opts: argparse.Namespace) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{when}; {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load}; W1 with {opts.jobs:,} jobs\n"
    )
    names = list(results)
    rows = list(dict.fromkeys(row for figures in results.values() for row in figures))
    print("| workload | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        cells = [results[name].get(row, "-") for name in names]
        print(f"| {row} | " + " | ".join(cells) + " |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="W1 jobs")
    parser.add_argument("--w2-jobs", type=int, default=200, help="W2 round trips")
    parser.add_argument("--w1-slots", type=int, default=64, help="W1: slots per taskframe worker")
    parser.add_argument("--w3", default="200x0.5", help="W3 jobs x seconds each, on 50 slots")
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default=POSTGRES, help="taskframe-postgres database")
    opts = parser.parse_args(argv)
    opts.workloads = [w.strip().upper() for w in opts.workloads.split(",")]
    opts.systems = [s.strip() for s in opts.systems.split(",")]
    try:
        jobs, seconds = opts.w3.lower().split("x")
        opts.w3_jobs, opts.w3_sleep = int(jobs), float(seconds)
    except ValueError:
        parser.error(f"--w3: JOBSxSECONDS, e.g. 200x0.5, not {opts.w3!r}")
    unknown = set(opts.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"--systems: unknown {', '.join(sorted(unknown))} (known: {SYSTEMS})")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        import redis
    except ImportError:
        print("compare.py needs the bench extra: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    redis_client = redis.Redis.from_url(opts.redis)
    try:
        redis_client.ping()
    except redis.RedisError as exc:
        print(
            f"Redis is not running at {opts.redis} ({exc}); start it first "
            "(e.g. `redis-server` or `docker run -p 6379:6379 redis`)",
            file=sys.stderr,
        )
        return 2
    os.environ["BENCH_REDIS_URL"] = opts.redis
    workdir = new_workdir()
    bench_plugin.install(workdir / "site")
    os.environ["PYTHONPATH"] += os.pathsep + str(HERE / "peers")  # for the peers' consumers
    run = f"bench-{uuid.uuid4().hex[:8]}"
    cleanup: list[Any] = []
    atexit.register(lambda: [s.close() for s in list(cleanup)])
    results = {}
    for name in opts.systems:
        if "-postgres" in name and not _postgres_ok(opts.postgres):
            print(f"  skipping {name}: PostgreSQL at {opts.postgres} unreachable", file=sys.stderr)
            continue
        if name.endswith("-granian") and importlib.util.find_spec("granian") is None:
            print(f"  skipping {name}: pip install -e '.[granian]' first", file=sys.stderr)
            continue
        results[name] = run_system(name, opts, workdir, redis_client, run, cleanup)
    print_table(results, opts)
    failed = any(" error" in row for figures in results.values() for row in figures)
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _postgres_ok(url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
