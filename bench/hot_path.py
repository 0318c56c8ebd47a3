"""The hot path of one job, request by request: CPU per request and requests/s.

Runs the ``taskframe-server`` of the interpreter that runs it, so an older
checkout's virtualenv runs this very file too, for a before/after in one
session (features it lacks are skipped or fall back as a client would)::

    OLD/.venv/bin/python bench/hot_path.py           # before
    .venv/bin/python bench/hot_path.py               # after, on waitress
    .venv/bin/python bench/hot_path.py --server granian

Prints, on SQLite:

- **POST /jobs**, one thread with ``http.client`` keep-alive: requests/s and
  the server's CPU per request;
- **lease answers**: ``POST /lease`` for 10 queued no-op jobs at a time (no
  completions), the server's CPU per request and per job leased;
- **Client.submit**, one thread: jobs/s, the client's and the server's CPU per call;
- **W2**: one worker with one slot, submit → result with ``POST /jobs?wait=30``
  (then ``GET /jobs/{id}?wait=30`` if the job is not finished: what an older
  server, which ignores the wait, needs), median and p99 ms and requests per job;
- **W1** (``--w1 N``): bench/floors.py's CPU per no-op job, on ``--server``;
- **bare Falcon** (``--bare``): a one-route app on waitress and on Granian,
  requests/s and server CPU per request (the HTTP servers' floors).

Nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floors import BARE_APP, cpu_seconds, post_loop, w1_cpu, wait_listening  # noqa: E402
from harness import NOOP, Env, Proc, free_port, new_workdir  # noqa: E402

BARE_GRANIAN = """
import falcon
class Jobs:
    def on_post(self, req, resp):
        req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.media = {"id": 1}
app = falcon.App()
app.add_route("/jobs", Jobs())
"""


def lease_answers(env: Env, jobs: int, per_lease: int = 10) -> tuple[float, float]:
    """(server CPU µs per lease request, per job) leasing ``jobs`` queued no-op jobs."""
    for start in range(0, jobs, 1000):
        env.api.batch([NOOP] * min(1000, jobs - start))
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=30)
    body = json.dumps({"worker_id": "bench", "types": ["sleep"], "max": per_lease}).encode()
    headers = {"Content-Type": "application/json"}
    pid = env.server.popen.pid
    before, requests, leased = cpu_seconds(pid), 0, 0
    while leased < jobs:
        conn.request("POST", "/lease", body, headers)
        answer = json.loads(conn.getresponse().read())
        if not answer["jobs"]:
            raise RuntimeError(f"the lease found no job after {leased}")
        requests += 1
        leased += len(answer["jobs"])
    spent = cpu_seconds(pid) - before
    conn.close()
    return spent / requests * 1e6, spent / leased * 1e6


def client_submit(env: Env, count: int) -> tuple[float, float, float]:
    """(jobs/s, client CPU µs per call, server CPU µs per call) of ``Client.submit``."""
    from taskframe.client import Client

    with Client(env.url) as client:
        for _ in range(50):
            client.submit("sleep", {"duration": 0})
        pid = env.server.popen.pid
        server, own, start = cpu_seconds(pid), time.process_time(), time.perf_counter()
        for _ in range(count):
            client.submit("sleep", {"duration": 0})
        elapsed = time.perf_counter() - start
        own, server = time.process_time() - own, cpu_seconds(pid) - server
    return count / elapsed, own / count * 1e6, server / count * 1e6


def w2(env: Env, rounds: int) -> dict[str, float]:
    """Submit → result with one idle worker: median and p99 ms, requests per job."""
    env.start_workers(1, 1)
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    body = json.dumps(NOOP).encode()
    requests = 0

    def one() -> float:
        nonlocal requests
        start = time.perf_counter()
        conn.request("POST", "/jobs?wait=30", body, headers)
        job = json.loads(conn.getresponse().read())
        requests += 1
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            conn.request("GET", f"/jobs/{job['id']}?wait=30")
            job = json.loads(conn.getresponse().read())
            requests += 1
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job['id']} is {job['status']}")
        return (time.perf_counter() - start) * 1000

    for _ in range(20):  # the worker's start-up, then warm
        one()
    requests = 0
    pids = [env.server.popen.pid, env.workers[0].popen.pid]
    before = [cpu_seconds(pid) for pid in pids]
    times = sorted(one() for _ in range(rounds))
    after = [cpu_seconds(pid) for pid in pids]
    return {
        "p50 ms": times[rounds // 2],
        "p99 ms": times[min(rounds - 1, rounds * 99 // 100)],
        "client requests per job": requests / rounds,
        "server CPU ms per job": (after[0] - before[0]) / rounds * 1000,
        "worker CPU ms per job": (after[1] - before[1]) / rounds * 1000,
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (Granian's CLI serves from a child process)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def bare(workdir: Path, server: str, count: int) -> tuple[float, float, float]:
    port = free_port()
    if server == "waitress":
        args = [sys.executable, "-c", BARE_APP, str(port)]
    else:
        (workdir / "bare_granian.py").write_text(BARE_GRANIAN)
        args = [sys.executable, "-m", "granian", "--interface", "wsgi", "--port", str(port)]
        args += ["--blocking-threads", "32", "--working-dir", str(workdir), "bare_granian:app"]
    proc = Proc(args, workdir / f"bare-{server}.log")
    try:
        wait_listening(port, proc)
        before = tree_cpu(proc.popen.pid)
        rate, _, client = post_loop(port, proc.popen.pid, count)
        # post_loop's 50 warm-up requests are inside this measure.
        return rate, (tree_cpu(proc.popen.pid) - before) / (count + 50) * 1e6, client
    finally:
        proc.terminate()
        proc.wait_exit()


def _has_granian() -> bool:
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


def w1_profile(workdir: Path, jobs: int, server_args: list[str], top: int) -> list[str]:
    """W1 with no-op jobs (2 workers x 64 slots) under py-spy: the server's top frames."""
    env = Env("sqlite", workdir, "profile", server_args, [])
    raw = workdir / "server.pyspy.txt"
    try:
        for start in range(0, jobs, 1000):
            env.api.batch([NOOP] * min(1000, jobs - start))
        spy = Proc(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(env.server.popen.pid), "--format", "raw", "--rate", "200", "--gil",
             "--output", str(raw)],
            workdir / "py-spy.log",
        )  # fmt: skip
        time.sleep(1.0)  # py-spy attaches
        env.start_workers(2, 64)
        while env.api.call("GET", "/stats")["by_status"].get("succeeded", 0) < jobs:
            env.check_alive()
            time.sleep(0.05)
        spy.popen.send_signal(2)  # SIGINT: py-spy writes its file and exits
        spy.popen.wait(timeout=60)
        spy.log.close()
    finally:
        env.close()
    return summarize_profile(raw.read_text(), top)


def summarize_profile(collapsed: str, top: int) -> list[str]:
    """Self and inclusive shares of the busiest functions in py-spy's collapsed stacks
    (sampled while holding the GIL: where the server's Python time goes)."""
    # py-spy names files by their package path: ours are these folders' modules.
    packages = ("server/", "core/", "client/", "worker/", "plugins/", "taskframe-server")
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    ours: set[str] = set()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = []
        for frame in stack.split(";"):
            name, _, place = frame.partition(" (")
            path = place.rsplit(":", 1)[0]
            label = f"{name} ({'/'.join(Path(path).parts[-2:])})"
            if path.startswith(packages):
                ours.add(label)
            frames.append(label)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    lines = [f"{total} samples holding the GIL; self % | inclusive % | function (file)"]
    for frame, samples in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{samples / total:6.1%} {inclusive[frame] / total:6.1%}  {frame}")
    lines.append("inclusive % | taskframe's own functions")
    mine = [(frame, inclusive[frame]) for frame in ours]
    for frame, samples in sorted(mine, key=lambda item: -item[1])[:top]:
        lines.append(f"{samples / total:6.1%}  {frame}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="waitress", help="taskframe-server --server")
    parser.add_argument("--requests", type=int, default=2000, help="POSTs per loop")
    parser.add_argument("--lease-jobs", type=int, default=3000, help="jobs leased, 10 a request")
    parser.add_argument("--w2", type=int, default=200, help="W2 round trips (0: skip)")
    parser.add_argument("--w1", type=int, default=0, help="W1 no-op jobs for CPU/job (0: skip)")
    parser.add_argument("--bare", action="store_true", help="also the bare Falcon floors")
    parser.add_argument(
        "--profile-w1", type=int, default=0, help="only: W1 of N no-op jobs under py-spy"
    )
    parser.add_argument("--top", type=int, default=25, help="frames shown by --profile-w1")
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    server_args = [] if opts.server == "waitress" else ["--server", opts.server]
    rows: list[tuple[str, str, float]] = []
    if opts.profile_w1:
        try:
            print("\n".join(w1_profile(workdir, opts.profile_w1, server_args, opts.top)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    try:
        env = Env("sqlite", workdir, "hot", server_args, [])
        try:
            rate, server, client = post_loop(env.port, env.server.popen.pid, opts.requests)
            rows += [("POST /jobs, one thread", "requests/s", rate)]
            rows += [("", "server CPU us/request", server)]
            per_request, per_job = lease_answers(env, opts.lease_jobs)
            rows += [("POST /lease answers, 10 jobs each", "server CPU us/request", per_request)]
            rows += [("", "server CPU us/job", per_job)]
            rate, client, server = client_submit(env, opts.requests)
            rows += [("Client.submit, one thread", "jobs/s", rate)]
            rows += [("", "client CPU us/call", client), ("", "server CPU us/call", server)]
            if opts.w2:
                for name, value in w2(env, opts.w2).items():
                    rows.append(("W2 submit -> result, 1 worker x 1 slot", name, value))
        finally:
            env.close()
        if opts.w1:
            for unit, value in w1_cpu(workdir, opts.w1, server_args=server_args).items():
                rows.append(("W1, 2 workers x 64 slots, no-op jobs", unit, value))
        if opts.bare:
            kinds = ["waitress"] + (["granian"] if _has_granian() else [])
            for kind in kinds:
                rate, server, _ = bare(workdir, kind, opts.requests)
                rows += [(f"bare Falcon on {kind}", "requests/s", rate)]
                rows += [("", "server CPU us/request", server)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\nhot path, {sys.prefix}, --server {opts.server}, sqlite, load {load:.1f}")
    for what, unit, value in rows:
        print(f"{what:42s} {unit:26s} {value:10,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
