"""Rolling restarts of workers under steady submission: jobs failed and attempts reaped.

One server (``--lease-ttl 2``), two workers (``--poll-interval 10``). A client
submits a no-op job every 50 ms (``max_attempts: 1``, so a lost attempt fails
the job). ``--restarts`` (6) times: a new worker starts, the oldest is sent
``--signal`` (TERM: a graceful stop; KILL: ``kill -9``), and submission goes
on for a second. Then every job is waited for, and the script prints how many
failed and how many attempts the reaper ended (``lease_expired``): attempts
leased to a worker that was already gone.

With ``KILL``, a job leased in the few milliseconds between the kill and the
kernel closing the dead worker's sockets (10-20 ms on a busy machine) still
goes to it and expires; ``--verbose`` shows each one's lease time beside the
kill times.

    .venv/bin/python bench/rolling_restarts.py [--restarts 6] [--signal KILL]
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import _die_with_parent
from loadgen import Server, common_options, request

SLEEP = {"type": "sleep", "payload": {"duration": 0}, "max_attempts": 1}


def start_worker(bin_dir: Path, port: int, name: str, log: Path) -> subprocess.Popen:
    command = [
        str(bin_dir / "taskframe-worker"),
        *("--api-url", f"http://127.0.0.1:{port}", "--worker-id", name),
        *("--poll-interval", "10", "--concurrency", "2", "--log-level", "WARNING"),
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )


def metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(parser)
    parser.add_argument("--restarts", type=int, default=6)
    parser.add_argument("--signal", choices=("TERM", "KILL"), default="TERM")
    parser.add_argument("--verbose", action="store_true", help="show the failed jobs")
    opts = parser.parse_args()
    bin_dir = opts.bin or Path(sys.executable).parent
    args = ["--lease-ttl", "2", "--reap-interval", "0.2", *shlex.split(opts.server_args)]
    server = Server(bin_dir, opts.db, args)
    stop = threading.Event()
    submitted = [0]

    def submit_steadily() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while not stop.is_set():
            status, answer, _ = request(server.port, "POST", "/jobs", SLEEP, connection=conn)
            assert status == 201, answer
            submitted[0] += 1
            stop.wait(0.05)

    workers: list[subprocess.Popen] = []
    names = iter(range(1000))
    try:

        def new_worker() -> subprocess.Popen:
            n = next(names)
            log = server.folder / f"worker-{n}.log"
            worker = start_worker(bin_dir, server.port, f"w{n}", log)
            workers.append(worker)
            return worker

        pool = [new_worker(), new_worker()]
        time.sleep(1.0)
        submitter = threading.Thread(target=submit_steadily, daemon=True)
        submitter.start()
        sig = signal.SIGTERM if opts.signal == "TERM" else signal.SIGKILL
        for _ in range(opts.restarts):
            pool.append(new_worker())
            time.sleep(1.0)  # the new worker is up and polling
            old = pool.pop(0)
            if opts.verbose:
                now = time.time()
                stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:]
                print(f"  SIG{opts.signal} to worker pid {old.pid} at {stamp} (UTC)")
            old.send_signal(sig)
            old.wait(timeout=30)
            time.sleep(1.0)  # submissions go on after the stop
        stop.set()
        submitter.join()
        while True:  # every job finished (one TTL and a reap at most)
            status, stats, _ = request(server.port, "GET", "/stats")
            left = sum(n for s, n in stats["by_status"].items() if s in ("queued", "running"))
            if not left:
                break
            time.sleep(0.2)
        failed = stats["by_status"]["failed"]
        if opts.verbose and failed:
            _, page, _ = request(server.port, "GET", "/jobs?status=failed&limit=100")
            for job in page["jobs"]:
                _, history, _ = request(server.port, "GET", f"/jobs/{job['id']}/attempts")
                for attempt in history["attempts"]:
                    print(f"  job {job['id']} created {job['created_at']}: {attempt}")
        reaped = metric(server.port, "taskframe_attempts_reaped_total")
        print(
            f"{opts.restarts} rolling restarts (SIG{opts.signal}), {submitted[0]} jobs: "
            f"{failed} failed, {reaped:g} attempts reaped (lease expired)"
        )
    finally:
        stop.set()
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=20)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
