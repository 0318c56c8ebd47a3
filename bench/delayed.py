"""Delayed jobs: submission rate and empty-lease cost with none queued, then with 100,000.

With ``--idle-workers`` (25) long-polling workers, ``--clients`` (2) threads
submit delayed jobs one at a time for ``--seconds`` (submissions/s), then one
connection asks ``POST /lease`` (wait 0) ``--leases`` times for a type that
has only delayed jobs (the empty lease's cost). The same again after
``--delayed`` (100,000) delayed jobs were added in batches. The goal: no worse
with them than without.

    .venv/bin/python bench/delayed.py [--delayed 100000 --seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import sys
import threading
import time
from pathlib import Path

from capacity import idle_worker
from loadgen import Server, common_options, request, summary

DELAYED = {"type": "sleep", "payload": {"duration": 0}, "delay": 86400}


def submission_rate(port: int, clients: int, seconds: float) -> float:
    done = [0] * clients
    end = time.monotonic() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < end:
            status, answer, _ = request(port, "POST", "/jobs", DELAYED, connection=conn)
            assert status == 201, answer
            done[index] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def empty_leases(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"worker_id": "probe", "types": ["sleep"], "max": 8, "wait": 0}
    took = []
    for _ in range(count):
        start = time.perf_counter()
        status, answer, _ = request(port, "POST", "/lease", body, connection=conn)
        took.append(time.perf_counter() - start)
        assert status == 200 and not answer["jobs"], answer
    conn.close()
    return took


def measure(port: int, opts: argparse.Namespace, label: str) -> None:
    rate = submission_rate(port, opts.clients, opts.seconds)
    took = empty_leases(port, opts.leases)
    print(f"  {label}: {rate:.0f} delayed submissions/s ({opts.clients} clients)")
    print(f"  {label}: empty POST /lease (wait 0) {summary(took)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(parser)
    parser.add_argument("--delayed", type=int, default=100_000)
    parser.add_argument("--idle-workers", type=int, default=25)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--leases", type=int, default=300)
    opts = parser.parse_args()
    bin_dir = opts.bin or Path(sys.executable).parent
    server = Server(bin_dir, opts.db, shlex.split(opts.server_args))
    stop = threading.Event()
    counts = {"polls": 0, "waits": 0, "errors": 0}
    try:
        for i in range(opts.idle_workers):
            thread = threading.Thread(
                target=idle_worker, args=(server.port, i, stop, counts), daemon=True
            )
            thread.start()
        time.sleep(1.0)
        print(
            f"{opts.idle_workers} idle long-polling workers, "
            f"server flags: {opts.server_args or '(defaults)'}"
        )
        measure(server.port, opts, "no delayed jobs")
        start = time.perf_counter()
        for first in range(0, opts.delayed, 1000):
            batch = [DELAYED] * min(1000, opts.delayed - first)
            status, answer, _ = request(server.port, "POST", "/jobs/batch", {"jobs": batch})
            assert status == 201, answer
        print(f"  added {opts.delayed} delayed jobs in {time.perf_counter() - start:.1f} s")
        measure(server.port, opts, f"{opts.delayed} delayed jobs")
    finally:
        stop.set()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
