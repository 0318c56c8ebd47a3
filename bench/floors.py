"""Where the time of one request goes: the floors under the issue's goals.

Prints, measured in one run on this machine:

- **HTTP floor**: a bare Falcon app on waitress with one route that reads
  the body and answers ``{"id": 1}``; one thread posting with ``http.client``
  keep-alive. Requests/s and the server's CPU per request: what waitress and
  Falcon cost before taskframe does anything.
- **POST /jobs**: the same loop against a real ``taskframe-server``.
- **In process**: the app alone (a WSGI call, no waitress) per ``POST
  /jobs``, and SQLite alone (``BEGIN IMMEDIATE``, the insert, ``COMMIT``).
- **W2 timeline** (``--w2 N``): one idle worker with one slot, submit and
  ``GET ?wait=``; the median of each leg, by the server's timestamps, and the
  CPU each process spent per round trip.
- **W1 CPU per job** (``--w1 N``): N no-op jobs queued first, then 2 workers
  of 64 slots run them: jobs/s and the CPU per job of the server and of the
  workers (their start-up included), the budget two cores have to share.

Nothing is asserted; the figures explain the benchmarks' ceilings.

    .venv/bin/python bench/floors.py [--requests 3000] [--w2 300] [--w1 5000]
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import io
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import NOOP, Env, Proc, free_port, kill_all, new_workdir, parse_time  # noqa: E402

BARE_APP = """
import sys, falcon, waitress
class Jobs:
    def on_post(self, req, resp):
        req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.media = {"id": 1}
app = falcon.App()
app.add_route("/jobs", Jobs())
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=32, _quiet=True)
"""
BODY = json.dumps(NOOP).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_loop(port: int, pid: int, count: int) -> tuple[float, float, float]:
    """(requests/s, server CPU µs per request, client CPU µs per request)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    for _ in range(50):  # warm-up: the connection, the server's first allocations
        conn.request("POST", "/jobs", BODY, headers)
        conn.getresponse().read()
    server_before, client_before = cpu_seconds(pid), time.process_time()
    start = time.perf_counter()
    for _ in range(count):
        conn.request("POST", "/jobs", BODY, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            raise RuntimeError(f"POST /jobs answered {response.status}")
    elapsed = time.perf_counter() - start
    server = (cpu_seconds(pid) - server_before) / count * 1e6
    client = (time.process_time() - client_before) / count * 1e6
    conn.close()
    return count / elapsed, server, client


def wait_listening(port: int, proc: Proc) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited, see {proc.log_path}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {port}")


def bare_floor(workdir: Path, count: int) -> tuple[float, float, float]:
    port = free_port()
    proc = Proc([sys.executable, "-c", BARE_APP, str(port)], workdir / "bare-app.log")
    try:
        wait_listening(port, proc)
        return post_loop(port, proc.popen.pid, count)
    finally:
        proc.terminate()
        proc.wait_exit()


def per_call(
    fn: Callable[[], Any], count: int, clock: Callable[[], float] = time.process_time
) -> float:
    """µs per call of ``fn`` by ``clock`` (CPU time unless told), best of three rounds."""
    best = float("inf")
    for _ in range(3):
        start = clock()
        for _ in range(count):
            fn()
        best = min(best, (clock() - start) / count * 1e6)
    return best


def app_alone(workdir: Path, count: int) -> float:
    """CPU µs per POST /jobs through the real app, called as WSGI (no waitress)."""
    from taskframe.core.plugins import load_plugins
    from taskframe.server.config import ServerConfig
    from taskframe.server.engine.scheduler import Scheduler
    from taskframe.server.http.app import create_app
    from taskframe.server.storage import open_store

    store = open_store(f"sqlite:///{workdir}/app.db")
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    app = create_app(scheduler.config, scheduler, load_plugins())

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        if not status.startswith("201"):
            raise RuntimeError(f"POST /jobs answered {status}")

    def call() -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/jobs",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": io.BytesIO(BODY),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        b"".join(app(environ, start_response))

    try:
        return per_call(call, count)
    finally:
        store.close()


def sqlite_alone(workdir: Path, count: int) -> float:
    """CPU+IO µs (wall) per BEGIN IMMEDIATE + insert_job + COMMIT on a migrated file."""
    from taskframe.server.storage import open_store
    from taskframe.server.storage.sqlite import QUERIES

    open_store(f"sqlite:///{workdir}/alone.db").migrate()
    db = sqlite3.connect(f"{workdir}/alone.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    now = time.time()
    params = {
        **{"type": "sleep", "payload": '{"duration":0}', "priority": 0, "max_attempts": 3},
        **{"timeout": None, "run_at": now, "created_at": now, "idempotency_key": None},
        **{"request_hash": "0" * 64, "notify_url": None, "queue": "default"},
        **{"depends_on": None, "on_dependency_failure": None},
    }

    def insert() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute(QUERIES["insert_job"], params).fetchone()
        db.execute("COMMIT")

    try:
        return per_call(insert, count, clock=time.perf_counter)  # the commit waits on I/O
    finally:
        db.close()


def w2_timeline(env: Env, rounds: int) -> dict[str, float]:
    """Median ms of each leg of submit → done, and CPU ms per round trip by process."""
    env.start_workers(1, 1)
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)

    def call(method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        return json.loads(conn.getresponse().read())

    def one() -> tuple[float, ...]:
        start = time.time()
        job = call("POST", "/jobs", NOOP)
        posted = time.time()
        job = call("GET", f"/jobs/{job['id']}?wait=30")
        answered = time.time()
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job['id']} is {job['status']}")
        started, finished = parse_time(job["started_at"]), parse_time(job["finished_at"])
        return (
            posted - start,
            started - start,
            finished - started,
            answered - finished,
            answered - start,
        )

    for _ in range(20):  # the worker's start-up, then warm
        one()
    worker_pid, server_pid = env.workers[0].popen.pid, env.server.popen.pid
    before = (cpu_seconds(server_pid), cpu_seconds(worker_pid), time.process_time())
    legs = [one() for _ in range(rounds)]
    after = (cpu_seconds(server_pid), cpu_seconds(worker_pid), time.process_time())
    names = ["POST answered", "submit -> leased", "leased -> finished", "finished -> answered"]
    medians = {
        name: sorted(leg[i] for leg in legs)[rounds // 2] * 1000
        for i, name in enumerate([*names, "total"])
    }
    for label, b, a in zip(["server", "worker", "client"], before, after, strict=True):
        medians[f"CPU {label} per round trip"] = (a - b) / rounds * 1000
    return medians


def unfinished(path: Path) -> bool:
    """Is any job queued or running? Read from the SQLite file (no server CPU)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        found = db.execute(
            "SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return found is not None


def w1_cpu(
    workdir: Path, jobs: int, slots: int = 64, server_args: list[str] | None = None
) -> dict[str, float]:
    """Jobs/s and CPU µs per job (server, workers) for ``jobs`` queued no-op jobs,
    on the server ``server_args`` choose (``--server granian``)."""
    env = Env("sqlite", workdir, "floors-w1", server_args or [], [])
    try:
        for start in range(0, jobs, 1000):
            env.api.batch([NOOP] * min(1000, jobs - start))
        server_before = cpu_seconds(env.server.popen.pid)
        start = time.perf_counter()
        env.start_workers(2, slots)
        # Polled in the database file itself: a poll through the API every 20 ms
        # cost the server more CPU than the W1 figure's difference between versions.
        while unfinished(workdir / "floors-w1.db"):
            env.check_alive()
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        server = cpu_seconds(env.server.popen.pid) - server_before
        if env.api.call("GET", "/stats")["by_status"].get("succeeded", 0) != jobs:
            raise RuntimeError("W1: not every job succeeded")
        workers = sum(cpu_seconds(worker.popen.pid) for worker in env.workers)
    finally:
        env.close()
    return {
        "jobs/s from worker start": jobs / elapsed,
        "server CPU us/job": server / jobs * 1e6,
        "workers CPU us/job": workers / jobs * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="POSTs per loop")
    parser.add_argument("--w2", type=int, default=300, help="W2 round trips (0: skip)")
    parser.add_argument("--w1", type=int, default=5000, help="W1 no-op jobs (0: skip)")
    parser.add_argument("--w1-slots", type=int, default=64, help="W1: slots of each worker")
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    rows: list[tuple[str, str, float]] = []

    rate, server, client = bare_floor(workdir, opts.requests)
    rows += [("bare Falcon + waitress, one POST per request", "requests/s", rate)]
    rows += [("", "server CPU us/request", server), ("", "client CPU us/request", client)]

    env = Env("sqlite", workdir, "floors", [], [])
    envs.append(env)
    rate, server, client = post_loop(env.port, env.server.popen.pid, opts.requests)
    rows += [("taskframe POST /jobs, one per request", "requests/s", rate)]
    rows += [("", "server CPU us/request", server), ("", "client CPU us/request", client)]
    rows += [
        ("in process: the app alone (WSGI call)", "CPU us/POST /jobs", app_alone(workdir, 1000))
    ]
    rows += [
        ("in process: SQLite alone (begin, insert, commit)", "us/job", sqlite_alone(workdir, 1000))
    ]
    if opts.w2:
        for name, value in w2_timeline(env, opts.w2).items():
            rows.append((f"W2 {name}", "ms (median)" if "CPU" not in name else "ms", value))
    env.close()
    envs.clear()
    if opts.w1:
        for unit, value in w1_cpu(workdir, opts.w1, opts.w1_slots).items():
            rows.append((f"W1, 2 workers x {opts.w1_slots} slots, no-op jobs", unit, value))

    load = os.getloadavg()[0]
    print(f"\nwhere the time goes, sqlite, {os.cpu_count()} cores, load {load:.1f}")
    for what, unit, value in rows:
        print(f"{what:52s} {unit:24s} {value:10,.1f}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
