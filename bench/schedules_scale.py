"""Many every-second schedules on one server (issue 18, item 10).

Creates ``--schedules`` schedules firing every second (no worker: the jobs
stay queued), then for ``--seconds`` samples ``GET /health`` every 100 ms and
afterwards counts, for the whole seconds of that window, the fire times that
became a job against those that should have (one per schedule per second).
Prints /health p50/p99 before any schedule and during the window, fire
times fired and dropped, and what the server itself counted as dropped
(``taskframe_schedule_fires_dropped_total``, when it has that metric).

The server is the one installed beside the Python that runs this script
(old code: run it with an old environment's Python).

    .venv/bin/python bench/schedules_scale.py [--schedules 2000] [--seconds 30] [--db sqlite]
"""

from __future__ import annotations

import argparse
import atexit
import math
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BIN, Env, kill_all, new_workdir, parse_time  # noqa: E402


def health_latencies(url: str, stop: threading.Event, out: list[float]) -> None:
    session = requests.Session()
    while not stop.is_set():
        start = time.perf_counter()
        session.get(url + "/health", timeout=60)
        out.append(time.perf_counter() - start)
        stop.wait(0.1)


def sample_health(url: str, count: int) -> list[float]:
    out: list[float] = []
    session = requests.Session()
    for _ in range(count):
        start = time.perf_counter()
        session.get(url + "/health", timeout=60)
        out.append(time.perf_counter() - start)
        time.sleep(0.05)
    return out


def p(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def fired_in(env: Env, start: float, end: float) -> int:
    """Jobs whose run_at (their fire time) is in [start, end), paging GET /jobs."""
    count, cursor = 0, None
    session = requests.Session()
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = session.get(env.url + "/jobs", params=params, timeout=120).json()
        for job in page["jobs"]:
            if start <= parse_time(job["run_at"]) < end:
                count += 1
        cursor = page.get("next_cursor")
        if not cursor:
            return count


def dropped_metric(env: Env) -> float | None:
    text = requests.get(env.url + "/metrics", timeout=60).text
    if "# HELP taskframe_schedule_fires_dropped" not in text:
        return None  # a server without the metric
    found = re.findall(r"^taskframe_schedule_fires_dropped_total\S* (\S+)$", text, re.M)
    return sum(float(v) for v in found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    opts = parser.parse_args(argv)
    help_text = subprocess.run(
        [str(BIN / "taskframe-server"), "--help"], capture_output=True, text=True
    ).stdout
    server_args = ["--max-schedules", str(opts.schedules)] if "--max-schedules" in help_text else []
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    env = Env(opts.db, workdir, "schedules", server_args, [])
    envs.append(env)
    idle = sample_health(env.url, 40)
    job = {"type": "sleep", "payload": {"duration": 0}}
    for i in range(opts.schedules):
        body = {"name": f"s{i}", "cron": "* * * * * *", "job": job}
        env.api.call("POST", "/schedules", 201, json=body)
    time.sleep(2.0)  # firing settles
    latencies: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=health_latencies, args=(env.url, stop, latencies))
    start = math.ceil(time.time())
    sampler.start()
    time.sleep(max(0.0, start + opts.seconds - time.time()))
    end = math.floor(time.time())
    stop.set()
    sampler.join()
    for i in range(opts.schedules):  # nothing more fires while counting
        env.api.call("POST", f"/schedules/s{i}/pause")
    time.sleep(3.0)  # a fire still in flight commits
    fired = fired_in(env, start, end)
    counted = dropped_metric(env)
    env.check_alive()
    env.close()
    envs.clear()

    expected = opts.schedules * (end - start)
    print(f"\n{opts.schedules} every-second schedules, {opts.db.split(':')[0]}, {end - start} s")
    print(f"  /health idle         p50 {p(idle, 0.5):8.1f} ms   p99 {p(idle, 0.99):8.1f} ms")
    print(
        f"  /health meanwhile    p50 {p(latencies, 0.5):8.1f} ms   p99 {p(latencies, 0.99):8.1f} ms"
        f"   ({len(latencies)} requests, median {statistics.median(latencies) * 1000:.1f} ms)"
    )
    print(f"  fire times due       {expected:10d}")
    print(f"  fired (a job)        {fired:10d}   {fired / expected:7.1%}")
    print(f"  dropped              {expected - fired:10d}   {(expected - fired) / expected:7.1%}")
    shown = "no such metric" if counted is None else f"{counted:.0f} (whole run)"
    print(f"  server counted as dropped   {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
