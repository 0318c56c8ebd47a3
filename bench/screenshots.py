"""Regenerate the dashboard's screenshots in docs/images (docs/how-to/dashboard.md shows them).

    .venv/bin/python bench/screenshots.py [--out docs/images]

Starts a server on a fresh SQLite file and a worker, runs a few jobs (some fail,
one runs long and logs through its heartbeats, one waits for it), waits for the
charts' first points, then takes the overview and a job page at desktop and
phone width with Debian's Chromium (tests/integration/browser.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskframe.testing.processes import TaskframeServer, TaskframeWorker  # noqa: E402
from tests.integration.browser import (  # noqa: E402
    DESKTOP,
    PHONE,
    chromium,
    missing_browser,
    open_page,  # noqa: E402
)

SHOTS = ("overview", "job")
#: Seconds to wait for the housekeeper's rollup (written every 10 s) to show in the charts.
CHARTS_WAIT = 40.0


def seed(server: TaskframeServer) -> int:
    """Jobs of every kind; returns the id of the job page to show (a running one)."""
    for index in range(12):
        server.submit("sleep", {"duration": 0.05 * (index % 4)}, queue="default")
    for _ in range(3):
        server.submit("file", {"operation": "read", "path": "missing.txt"}, max_attempts=1)
    server.submit("sleep", {"duration": 0}, queue="reports", delay=3600)
    running = server.submit("sleep", {"duration": 600}, queue="reports")
    server.submit("sleep", {"duration": 0}, depends_on=[running["id"]])
    schedule = {"name": "nightly", "cron": "30 2 * * *", "job": {"type": "sleep", "payload": {}}}
    server.post("/schedules", {**schedule, "job": {"type": "sleep", "payload": {"duration": 0}}})
    return int(running["id"])


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {what}")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    options = parser.parse_args()
    missing = missing_browser()
    if missing:
        print(f"screenshots: {missing}", file=sys.stderr)
        return 1
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        server = TaskframeServer(str(work / "shots.db"), work / "server.log")
        worker = TaskframeWorker(server, work / "worker.log", "--worker-id", "worker-1")
        try:
            job_id = seed(server)

            def charted() -> bool:
                points = requests.get(f"{server.url}/stats/history", timeout=10).json()["points"]
                return sum(point["succeeded"] for point in points) > 0

            wait_for(charted, CHARTS_WAIT, "the charts' first points")
            wait_for(
                lambda: server.get(f"/jobs/{job_id}").json()["status"] == "running",
                30,
                "a running job",
            )
            with chromium() as browser:
                for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                    for name, view in (("overview", "#/"), ("job", f"#/jobs/{job_id}")):
                        page = open_page(browser, f"{server.url}/{view}", viewport)
                        page.wait_for_selector("main h1")
                        if name == "overview":
                            page.wait_for_selector(".chart .series.ok .dot")
                        page.wait_for_load_state("networkidle")
                        path = options.out / f"dashboard-{name}-{width}.png"
                        page.screenshot(path=str(path), full_page=name == "job")
                        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
                        page.context.close()
        finally:
            worker.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
