"""Submit and wait in one request (``POST /jobs?wait=S``): the client, the command, a real
server and worker; the server's request counters show how many requests it took."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
import requests

from taskframe.client import Client, WaitTimeout
from tests.integration.live import LATER, Live, live_deployment
from tests.processes import BIN

pytestmark = pytest.mark.timeout(120)

_COUNTER = re.compile(
    r'^taskframe_http_requests_total\{method="(\w+)",route="([^"]+)",status="(\d+)"\} (\S+)$'
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_deployment(tmp_path_factory)


def requests_served(url: str) -> dict[tuple[str, str], int]:
    """{(method, route): requests answered so far} from ``GET /metrics``."""
    counts: dict[tuple[str, str], int] = {}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        match = _COUNTER.match(line)
        if match:
            key = (match[1], match[2])
            counts[key] = counts.get(key, 0) + int(float(match[4]))
    return counts


def served_since(url: str, before: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The client's requests since ``before`` (the worker's leases left out)."""
    after = requests_served(url)
    changed = {key: after[key] - before.get(key, 0) for key in after if key[1].startswith("/jobs")}
    return {key: count for key, count in changed.items() if count}


def test_run_takes_one_request_from_submission_to_result(live: Live) -> None:
    before = requests_served(live.url)
    with Client(live.url) as client:
        job = client.run("sleep", {"duration": 0.2}, priority=7)
    assert job.succeeded and job.result["slept"] >= 0.2 and job.priority == 7
    assert served_since(live.url, before) == {("POST", "/jobs"): 1}


def test_submit_with_a_wait_answers_the_job_as_it_is_after_it(live: Live) -> None:
    with Client(live.url) as client:
        job = client.submit("sleep", {"duration": 0}, delay=LATER, wait=0.2)
        assert job.status == "scheduled" and not job.finished
        with pytest.raises(WaitTimeout):
            client.run("sleep", {"duration": 0}, delay=LATER, wait_timeout=0.3)


def test_a_repeated_keyed_run_answers_the_finished_job(live: Live) -> None:
    with Client(live.url) as client:
        first = client.run("sleep", {"duration": 0}, idempotency_key="run-once")
        again = client.run("sleep", {"duration": 0}, idempotency_key="run-once")
    assert first.succeeded and again.id == first.id and again.attempts == 1


def test_the_command_s_submit_wait_of_a_short_job_is_one_request(live: Live) -> None:
    before = requests_served(live.url)
    env = {**os.environ, "TASKFRAME_URL": live.url}
    env.pop("TASKFRAME_TOKEN", None)
    done = subprocess.run(
        [str(BIN / "taskframe"), "submit", "sleep", "--payload", '{"duration": 0}', "--wait"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["slept"] >= 0
    assert "submitted" in done.stderr and ": succeeded (" in done.stderr
    assert served_since(live.url, before) == {("POST", "/jobs"): 1}
