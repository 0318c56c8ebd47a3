"""A server frozen past some fire times counts and logs what it dropped (issue 18, real processes).

Before, the misfire policy dropped fire times silently: 2,000 every-second
schedules lost 60 % of theirs and nothing said so.
"""

from __future__ import annotations

import re
import signal
import time

import pytest
import requests

from tests.integration import SERVER_ARGS
from tests.processes import wait_until


def dropped(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    found = re.findall(
        r'^taskframe_schedule_fires_dropped_total\{policy="latest"\} (\S+)$', text, re.M
    )
    return float(found[0]) if found else 0.0


@pytest.mark.timeout(120)
def test_fire_times_missed_while_frozen_are_counted_and_logged(db_url, start_server):
    server = start_server(db_url, *SERVER_ARGS)
    body = {
        "name": "tick",
        "cron": "* * * * * *",
        "job": {"type": "sleep", "payload": {"duration": 0}},
    }
    answer = requests.post(f"{server.url}/schedules", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    wait_until(lambda: requests.get(f"{server.url}/jobs", timeout=30).json()["jobs"], 30)
    assert dropped(server.url) == 0
    # Frozen for about 4 s (the fault itself, not a wait): 3 or more times pass unfired.
    server.signal(signal.SIGSTOP)
    try:
        time.sleep(4.2)
    finally:
        server.signal(signal.SIGCONT)
    wait_until(lambda: dropped(server.url) >= 3, 30, message="dropped fire times counted")
    assert re.search(r"\d+ fire time\(s\) of 1 schedule\(s\) dropped.*tick", server.output())
    # One job per fired time; the dropped ones are the gaps, and they add up.
    jobs = requests.get(f"{server.url}/jobs?limit=1000", timeout=30).json()["jobs"]
    assert requests.post(f"{server.url}/schedules/tick/pause", timeout=30).status_code == 200
    keys = {job["idempotency_key"] for job in jobs}
    assert len(keys) == len(jobs)
