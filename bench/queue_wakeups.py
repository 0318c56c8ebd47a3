"""Start latency of jobs in one queue while an idle worker serves another (issue 18.5).

One server; worker ``b`` (``--queues b``) parks its long poll first, then worker
``a`` (``--queues a``), both with ``--poll-interval`` (10 s). Then ``--jobs``
(100) jobs go to queue ``a`` one at a time, each submitted once the previous
one finished. Start latency: ``started_at - created_at`` of each job (both in
the server's clock). A wake-up that goes to ``b``'s worker leaves the job
waiting for ``a``'s next poll, up to the poll interval.

    .venv/bin/python bench/queue_wakeups.py [--jobs 100] [--bin other-venv/bin]

Run it on each version to compare (``--bin``: the taskframe-server and
taskframe-worker to measure).
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from harness import _die_with_parent
from loadgen import Server, common_options, request, summary

SLEEP = {"type": "sleep", "payload": {"duration": 0}}


def start_worker(bin_dir: Path, port: int, queue: str, poll: float, log: Path) -> subprocess.Popen:
    command = [
        str(bin_dir / "taskframe-worker"),
        *("--api-url", f"http://127.0.0.1:{port}", "--worker-id", queue, "--queues", queue),
        *("--poll-interval", str(poll), "--concurrency", "1", "--log-level", "WARNING"),
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )


def run_one(conn: http.client.HTTPConnection, port: int, queue: str) -> dict:
    """Submit a job to ``queue`` and wait until it finished; return it."""
    status, job, _ = request(port, "POST", "/jobs", {**SLEEP, "queue": queue}, connection=conn)
    assert status == 201, job
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        status, job, _ = request(port, "GET", f"/jobs/{job['id']}?wait=30", connection=conn)
        assert status == 200, job
    return job


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(parser)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    opts = parser.parse_args()
    bin_dir = opts.bin or Path(sys.executable).parent
    server = Server(bin_dir, opts.db, shlex.split(opts.server_args))
    workers = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for queue in ("b", "a"):  # b parks first: it is first in line for a wake-up
            log = server.folder / f"worker-{queue}.log"
            workers.append(start_worker(bin_dir, server.port, queue, opts.poll_interval, log))
            probe = run_one(conn, server.port, queue)
            assert probe["worker_id"] == queue, probe
        latencies = []
        started = time.perf_counter()
        for _ in range(opts.jobs):
            job = run_one(conn, server.port, "a")
            assert job["status"] == "succeeded" and job["worker_id"] == "a", job
            latencies.append(seconds(job["started_at"]) - seconds(job["created_at"]))
        took = time.perf_counter() - started
        print(
            f"queue a, idle worker on queue b, --poll-interval {opts.poll_interval:g}: "
            f"{opts.jobs} jobs in {took:.1f} s; start latency {summary(latencies)}"
        )
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=20)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
