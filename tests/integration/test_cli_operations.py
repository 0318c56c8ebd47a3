"""``taskframe`` as an operator uses it (issue 23), a real subprocess against live servers:
pipes into ``head``, durations, flags over the environment, ``submit --wait`` with no
worker for the type, and ``retry``/``cancel`` by filter with their confirmation."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
import requests

from taskframe.client import Client
from tests.integration.live import LATER, Live, live_deployment
from tests.processes import BIN

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_deployment(tmp_path_factory)


def taskframe(url: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TASKFRAME_URL": url, **(env or {})}
    environment.pop("TASKFRAME_TOKEN", None)
    return subprocess.run(
        [str(BIN / "taskframe"), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def test_a_listing_piped_into_head_ends_quietly(live: Live) -> None:
    """Regression: the reader closing the pipe ended in a BrokenPipeError traceback."""
    with Client(live.url) as client:
        client.submit_many([{"type": "sleep", "payload": {"duration": 0}, "delay": LATER}] * 400)
    command = f"'{BIN / 'taskframe'}' list --json --limit 1000 | head -n 2"
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "TASKFRAME_URL": live.url},
    )
    assert done.stdout.splitlines()[0] == "["
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_submit_takes_durations_for_timeout_and_delay(live: Live) -> None:
    done = taskframe(
        live.url,
        "submit",
        "sleep",
        "--payload",
        '{"duration": 0}',
        "--timeout",
        "5m",
        "--delay",
        "2h",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["timeout"] == 300.0 and job["status"] == "scheduled"
    refused = taskframe(live.url, "submit", "sleep", "--timeout", "5 minutes")
    assert refused.returncode == 2 and "not a duration" in refused.stderr


def test_a_token_flag_overrides_a_token_file_in_the_environment(live: Live) -> None:
    """Regression: --token with TASKFRAME_TOKEN_FILE set was refused ("not both")."""
    env = {"TASKFRAME_TOKEN_FILE": "/nonexistent/token"}
    done = taskframe(live.url, "--token", "client-token", "types", env=env)
    assert done.returncode == 0, done.stderr
    both = taskframe(live.url, "--token", "a", "--token-file", "/x", "types")
    assert both.returncode == 2 and "not both" in both.stderr


def test_submit_wait_warns_at_once_without_a_worker_and_gives_up(start_server, tmp_path) -> None:
    server = start_server(str(tmp_path / "alone.db"))
    done = taskframe(
        server.url,
        "submit",
        "sleep",
        "--payload",
        '{"duration": 0}',
        "--wait",
        "--wait-timeout",
        "2s",
    )
    assert done.returncode == 1
    assert "warning: no live worker runs sleep jobs" in done.stderr
    assert "still queued after" in done.stderr
    assert taskframe(server.url, "submit", "sleep", "--wait-timeout", "1s").returncode == 2


def test_cancel_and_retry_by_filter_count_confirm_and_act(live: Live) -> None:
    with Client(live.url) as client:
        for _ in range(3):
            client.submit("sleep", {"duration": 0}, queue="bulk-cli", delay=LATER)
    counted = taskframe(live.url, "cancel", "--queue", "bulk-cli", "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "3 job(s) to cancel"
    unconfirmed = taskframe(live.url, "cancel", "--queue", "bulk-cli")
    assert unconfirmed.returncode == 2 and "add --yes" in unconfirmed.stderr
    done = taskframe(live.url, "cancel", "--queue", "bulk-cli", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3 job(s) cancelled"
    again = taskframe(
        live.url,
        "retry",
        "--queue",
        "bulk-cli",
        "--finished-after",
        "10m",
        "--yes",
        "--json",
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] == 3
    mixed = taskframe(live.url, "cancel", "1", "--queue", "bulk-cli")
    assert mixed.returncode == 2 and "not both" in mixed.stderr
    bare = taskframe(live.url, "retry")
    assert bare.returncode == 2 and "filters" in bare.stderr


def test_list_sorts_and_filters_on_the_server(live: Live) -> None:
    with Client(live.url) as client:
        ids = [
            client.submit("sleep", {"duration": 0}, queue="sorted-cli", priority=p, delay=LATER).id
            for p in (3, 9, 1, 7)
        ]
    done = taskframe(
        live.url, "list", "--queue", "sorted-cli", "--sort", "priority", "--limit", "3", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert [job["id"] for job in json.loads(done.stdout)] == [ids[1], ids[3], ids[0]]
    lowest = taskframe(live.url, "list", "--queue", "sorted-cli", "--sort", "priority", "--asc")
    assert lowest.stdout.splitlines()[1].split()[0] == str(ids[2])


def test_log_follows_a_running_attempt_until_the_job_finished(start_server, tmp_path) -> None:
    """Heartbeats carrying ``log`` sent over HTTP, as a worker sends them."""
    server = start_server(str(tmp_path / "log.db"))
    with Client(server.url) as client:
        job_id = client.submit("sleep", {"duration": 0}).id
    lease = requests.post(
        f"{server.url}/lease", json={"worker_id": "w-log", "types": ["sleep"]}, timeout=10
    ).json()["jobs"][0]
    beat = {"worker_id": "w-log", "lease_id": lease["lease_id"]}

    def heartbeat(text: str) -> None:
        answer = requests.post(
            f"{server.url}/jobs/{job_id}/heartbeat", json={**beat, "log": text}, timeout=10
        )
        assert answer.status_code == 200, answer.text

    heartbeat("one\n")
    so_far = taskframe(server.url, "log", str(job_id))
    assert (so_far.returncode, so_far.stdout) == (0, "one\n")
    env = {**os.environ, "TASKFRAME_URL": server.url}
    follow = subprocess.Popen(
        [str(BIN / "taskframe"), "log", str(job_id), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "one\n"
        heartbeat("two\n")
        assert follow.stdout.readline() == "two\n"
        done = requests.post(
            f"{server.url}/jobs/{job_id}/complete",
            json={**beat, "status": "succeeded", "log": "one\ntwo\nthree\n"},
            timeout=10,
        )
        assert done.status_code == 200, done.text
        rest, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert (follow.returncode, rest, err) == (0, "three\n", "")
