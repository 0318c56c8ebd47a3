"""``POST /jobs/batch`` alone: jobs/s and the server's CPU per job, per job type.

Starts a real server on a fresh database (no worker), then posts batches of
``--size`` jobs from one thread with ``http.client`` keep-alive, the body
encoded once beforehand: what is timed is the server's validation and insert.
Each built-in type gets its own batch loop (``sleep``, ``http``, ``file``);
every job is counted on the server afterwards.

Runs the ``taskframe-server`` of the interpreter that runs it, so an older
checkout's virtualenv runs this very file for a before/after in one session::

    OLD/.venv/bin/python bench/batch_submit.py      # before
    .venv/bin/python bench/batch_submit.py          # after

Nothing is asserted.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floors import cpu_seconds  # noqa: E402
from harness import BenchError, Env, kill_all, new_workdir  # noqa: E402

JOBS: dict[str, dict[str, Any]] = {
    "sleep": {"type": "sleep", "payload": {"duration": 0}},
    "http": {
        "type": "http",
        "payload": {"url": "https://example.com/hook", "method": "post", "json": {"n": 1}},
    },
    "file": {"type": "file", "payload": {"operation": "write", "path": "a/b.txt", "content": "x"}},
}


def batch_loop(
    env: Env, job: dict[str, Any], size: int, batches: int, depends: bool = False
) -> tuple[float, float]:
    """(jobs/s, server CPU µs per job) for ``batches`` batches of ``size`` jobs;
    ``depends``: each job but the first depends on 1 to 3 earlier ones of its batch."""
    jobs = [job] * size
    if depends:
        refs = [[f"${i - k}" for k in range(1, 2 + i % 3) if i - k >= 0] for i in range(size)]
        jobs = [{**job, "depends_on": deps} if deps else job for deps in refs]
    body = json.dumps({"jobs": jobs}).encode()
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)

    def post() -> None:
        conn.request("POST", "/jobs/batch", body, headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 201:
            raise BenchError(f"POST /jobs/batch answered {response.status}: {answer[:300]!r}")

    post()  # warm-up
    before = cpu_seconds(env.server.popen.pid)
    start = time.perf_counter()
    for _ in range(batches):
        post()
    elapsed = time.perf_counter() - start
    server = cpu_seconds(env.server.popen.pid) - before
    conn.close()
    jobs = size * batches
    return jobs / elapsed, server / jobs * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--size", type=int, default=1000, help="jobs per batch")
    parser.add_argument("--batches", type=int, default=20, help="batches per job type")
    parser.add_argument("--types", default="sleep,http,file", help="job types, comma-separated")
    parser.add_argument(
        "--depends", action="store_true", help="each job depends on 1-3 earlier ones"
    )
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    rows = []
    try:
        env = Env(opts.db, workdir, "batch", [], [])
        envs.append(env)
        types = opts.types.split(",")
        for name in types:
            rows.append((name, *batch_loop(env, JOBS[name], opts.size, opts.batches, opts.depends)))
        stored = sum(env.api.call("GET", "/stats")["by_status"].values())
        expected = len(types) * opts.size * (opts.batches + 1)
        if stored != expected:
            raise BenchError(f"{stored} jobs stored, {expected} submitted")
        env.close()
    except BenchError as exc:
        print(f"error: {exc} (logs kept in {workdir})", file=sys.stderr)
        return 1
    load = os.getloadavg()[0]
    shape = ", each on 1-3 earlier jobs" if opts.depends else ""
    print(f"POST /jobs/batch of {opts.size}{shape}, {opts.db.split(':')[0]}, load {load:.1f}")
    for name, rate, cpu in rows:
        print(f"{name:<8} {rate:>9,.0f} jobs/s  {cpu:>7.1f} server CPU us/job")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
