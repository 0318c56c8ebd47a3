"""Cancelling a job with a big fan-out of dependants, while others submit (issue 18, item 8).

Builds ``--dependants`` jobs waiting on one root job through ``POST
/jobs/batch`` on a real ``taskframe-server`` (no worker: nothing runs),
then cancels the root while one client keeps posting single jobs, and
prints:

- how long the cancel request took, and how long until every dependant
  was cancelled (the last one polled, then counted through ``GET /stats``);
- p50 / p99 / max of the concurrent ``POST /jobs`` during that time, and
  how many were not answered 201 (503: the database was held).

The server is the one installed beside the Python that runs this script, so
the same script measures old code when run with an old environment's Python.

    .venv/bin/python bench/cascade.py [--dependants 100000] [--db sqlite|postgresql://...]
"""

from __future__ import annotations

import argparse
import atexit
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Env, kill_all, new_workdir  # noqa: E402

ROOT = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600}


def build(env: Env, dependants: int) -> tuple[int, int]:
    """(root id, last dependant id)."""
    root = env.api.submit(ROOT)
    last = root
    job = {"type": "sleep", "payload": {"duration": 0}, "depends_on": [root]}
    for start in range(0, dependants, 1000):
        last = env.api.batch([job] * min(1000, dependants - start))[-1]
    return root, last


class Poster(threading.Thread):
    """POST /jobs in a loop on its own connection; latencies kept while ``recording``."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.recording = threading.Event()
        self.stopping = threading.Event()
        self.latencies: list[float] = []
        self.refused: dict[int, int] = {}

    def run(self) -> None:
        session = requests.Session()
        body = {"type": "sleep", "payload": {"duration": 0}, "delay": 3600}
        while not self.stopping.is_set():
            start = time.perf_counter()
            status = session.post(self.url + "/jobs", json=body, timeout=120).status_code
            took = time.perf_counter() - start
            if self.recording.is_set():
                self.latencies.append(took)
                if status != 201:
                    self.refused[status] = self.refused.get(status, 0) + 1
            time.sleep(0.01)  # a steady client, not a flood


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dependants", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    opts = parser.parse_args(argv)
    workdir = new_workdir()
    envs: list[Env] = []
    atexit.register(kill_all, envs)
    env = Env(opts.db, workdir, "cascade", [], [])
    envs.append(env)
    started = time.perf_counter()
    root, last = build(env, opts.dependants)
    print(f"built {opts.dependants} dependants in {time.perf_counter() - started:.1f} s")

    poster = Poster(env.url)
    poster.start()
    time.sleep(1.0)  # the poster warm
    poster.recording.set()
    start = time.perf_counter()
    env.api.call("POST", f"/jobs/{root}/cancel", timeout=1800)
    cancel_took = time.perf_counter() - start
    while env.api.call("GET", f"/jobs/{last}")["status"] != "cancelled":
        env.check_alive()
        time.sleep(0.02)
    all_done = time.perf_counter() - start
    poster.recording.clear()
    poster.stopping.set()
    poster.join(timeout=130)
    counted = env.api.call("GET", "/stats")["by_status"]
    env.close()
    envs.clear()

    lat = poster.latencies
    print(f"\ncascade, {opts.db.split(':')[0]}, {opts.dependants} dependants")
    print(f"  cancel request answered in        {cancel_took * 1000:10.1f} ms")
    print(f"  every dependant cancelled after   {all_done:10.2f} s")
    print(f"  cancelled jobs counted            {counted.get('cancelled', 0):10d}")
    print(f"  concurrent POST /jobs             {len(lat):10d} requests")
    if lat:
        print(f"    p50                             {statistics.median(lat) * 1000:10.1f} ms")
        print(f"    p99                             {percentile(lat, 0.99) * 1000:10.1f} ms")
        print(f"    max                             {max(lat) * 1000:10.1f} ms")
    print(f"    not 201                         {poster.refused or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
