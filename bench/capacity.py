"""Capacity: idle long-polling workers and waiting clients must not delay other requests.

Holds ``--workers`` (500) idle workers long-polling ``POST /lease`` and
``--waiters`` (200) clients waiting on unfinished jobs (``GET /jobs/{id}?wait=30``)
against one server, and meanwhile measures ``GET /health`` and ``POST /jobs``
latency (p50/p99; the goal is p99 under 50 ms). Each simulated worker keeps one
keep-alive connection, re-polls at once after an answer, or after the
``retry_after`` the server asks for. Bounded: ``--seconds`` of measurement.

    .venv/bin/python bench/capacity.py [--workers 500 --waiters 200 --seconds 20]
    .venv/bin/python bench/capacity.py --bin /other/venv/bin   # another build
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import sys
import threading
import time
from pathlib import Path

from loadgen import Server, common_options, request, summary

# Jobs nobody will run: the waiters wait on them, the probes submit more of them.
LATER = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600}


def idle_worker(port: int, index: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """Long-poll for a job type nobody submits, as an idle worker does."""
    body = {"worker_id": f"idle-{index}", "types": ["http"], "max": 8, "wait": 10}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    while not stop.is_set():
        try:
            status, answer, _ = request(port, "POST", "/lease", body, connection=conn)
        except OSError:
            counts["errors"] += 1
            conn.close()
            stop.wait(1.0)
            continue
        counts["polls"] += 1
        pause = (answer or {}).get("retry_after") if status == 200 else 1.0
        if pause:
            stop.wait(pause)
    conn.close()


def waiter(port: int, job_id: int, stop: threading.Event, counts: dict[str, int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    while not stop.is_set():
        try:
            status, _, headers = request(port, "GET", f"/jobs/{job_id}?wait=30", connection=conn)
        except OSError:
            counts["errors"] += 1
            conn.close()
            stop.wait(1.0)
            continue
        counts["waits"] += 1
        pause = headers.get("Retry-After")
        if pause:
            stop.wait(float(pause))
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(parser)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds to let the load build")
    opts = parser.parse_args()
    bin_dir = opts.bin or Path(sys.executable).parent
    server = Server(bin_dir, opts.db, shlex.split(opts.server_args))
    port = server.port
    stop = threading.Event()
    counts = {"polls": 0, "waits": 0, "errors": 0}
    threads: list[threading.Thread] = []
    try:
        jobs = [{**LATER} for _ in range(max(1, opts.waiters))]
        status, answer, _ = request(port, "POST", "/jobs/batch", {"jobs": jobs})
        assert status == 201, answer
        ids = answer["ids"]
        for i in range(opts.workers):
            threads.append(threading.Thread(target=idle_worker, args=(port, i, stop, counts)))
        for i in range(opts.waiters):
            threads.append(threading.Thread(target=waiter, args=(port, ids[i], stop, counts)))
        for thread in threads:
            thread.daemon = True
            thread.start()
        time.sleep(opts.ramp)
        health: list[float] = []
        submit: list[float] = []
        failures = 0
        end = time.monotonic() + opts.seconds
        while time.monotonic() < end:
            for path, method, body, into in (
                ("/health", "GET", None, health),
                ("/jobs", "POST", LATER, submit),
            ):
                start = time.perf_counter()
                try:
                    status, _, _ = request(port, method, path, body, timeout=60)
                except OSError:
                    status = 0
                if status not in (200, 201):
                    failures += 1
                into.append(time.perf_counter() - start)
            time.sleep(0.05)
        print(
            f"{opts.workers} idle workers + {opts.waiters} waiting clients, "
            f"server flags: {opts.server_args or '(defaults)'}"
        )
        print(f"  GET /health : {summary(health)}")
        print(f"  POST /jobs  : {summary(submit)}")
        print(
            f"  probe failures {failures}; meanwhile {counts['polls']} lease answers, "
            f"{counts['waits']} wait answers, {counts['errors']} connection errors"
        )
    finally:
        stop.set()
        server.stop()  # answers the long-polls; the daemon threads end with us
    return 0


if __name__ == "__main__":
    sys.exit(main())
