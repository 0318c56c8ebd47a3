"""The Python client's queues, limits, schedules and dependencies against a real server."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from taskframe.client import Client, Limit, NotFound, Queue, Schedule, ValidationError
from tests.integration import SERVER_ARGS
from tests.processes import BIN


@pytest.mark.timeout(60)
def test_the_client_drives_queues_limits_schedules_and_dependencies(db_url, start_server):
    server = start_server(db_url, *SERVER_ARGS)
    with Client(server.url, timeout=30) as client:
        first = client.submit("sleep", {"duration": 0}, queue="reports", delay=3600)
        assert first.queue == "reports" and first.depends_on == []
        then = client.submit(
            "sleep", {"duration": 0}, depends_on=[first.id], on_dependency_failure="run"
        )
        assert (then.status, then.depends_on, then.on_dependency_failure) == (
            "waiting",
            [first.id],
            "run",
        )
        with pytest.raises(ValidationError) as info:
            client.submit("sleep", {"duration": 0}, depends_on=[10**9])
        assert "depends_on" in info.value.errors

        paused = client.pause_queue("reports")
        assert isinstance(paused, Queue) and paused.paused
        queues = {queue.name: queue for queue in client.queues()}
        assert queues["reports"].counts["scheduled"] == 1
        assert queues["default"].counts["waiting"] == 1
        assert not client.resume_queue("reports").paused

        assert client.set_limit("type", "sleep", 3) == Limit("type", "sleep", 3)
        assert [(x.kind, x.name, x.max_running) for x in client.limits()] == [("type", "sleep", 3)]
        client.delete_limit("type", "sleep")
        with pytest.raises(NotFound):
            client.delete_limit("type", "sleep")

        job = {"type": "sleep", "payload": {"duration": 0}}
        created = client.create_schedule("hourly", "0 * * * *", job, timezone="Europe/Paris")
        assert isinstance(created, Schedule) and len(created.next_fire_times) == 5
        assert created.next_fire_times[0].minute == 0
        assert [s.name for s in client.schedules()] == ["hourly"]
        assert client.pause_schedule("hourly").paused
        assert not client.resume_schedule("hourly").paused
        assert client.schedule("hourly").timezone == "Europe/Paris"
        with pytest.raises(ValidationError) as info:
            client.create_schedule("bad", "not cron", job)
        assert "cron" in info.value.errors
        client.delete_schedule("hourly")
        with pytest.raises(NotFound):
            client.schedule("hourly")


def taskframe(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TASKFRAME_URL": url}
    env.pop("TASKFRAME_TOKEN", None)
    command = [str(BIN / "taskframe"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.timeout(90)
def test_the_command_line_drives_queues_limits_schedules_and_dependencies(sqlite_url, start_server):
    url = start_server(sqlite_url, *SERVER_ARGS).url
    zero = ("--payload", '{"duration": 0}')
    first = taskframe(url, "submit", "sleep", *zero, "--queue", "reports", "--delay", "9", "--json")
    first_id = json.loads(first.stdout)["id"]
    after = ("--depends-on", str(first_id), "--on-dependency-failure", "run")
    done = taskframe(url, "submit", "sleep", *zero, *after)
    assert done.returncode == 0 and "waiting" in done.stdout, done.stderr
    bad = taskframe(url, "submit", "sleep", *zero, "--depends-on", "999999")
    assert bad.returncode == 1 and "depends_on" in bad.stderr

    assert taskframe(url, "pause-queue", "reports").stdout.strip() == "queue reports paused"
    table = taskframe(url, "queues").stdout.splitlines()
    assert table[0].split()[:4] == ["QUEUE", "PAUSED", "WAITING", "SCHEDULED"]
    assert table[2].split()[:4] == ["reports", "yes", "0", "1"]
    assert taskframe(url, "resume-queue", "reports").returncode == 0

    assert taskframe(url, "set-limit", "queue", "reports", "2").stdout.strip() == (
        "queue reports: at most 2"
    )
    assert taskframe(url, "limits").stdout.splitlines()[1].split() == ["queue", "reports", "2"]
    assert taskframe(url, "delete-limit", "queue", "reports").returncode == 0
    assert taskframe(url, "delete-limit", "queue", "reports").returncode == 1

    zone = ("--timezone", "Europe/Paris")
    created = taskframe(url, "create-schedule", "nightly", "30 2 * * *", "sleep", *zero, *zone)
    assert created.returncode == 0 and "next fires:" in created.stdout, created.stderr
    assert "nightly" in taskframe(url, "schedules").stdout
    assert json.loads(taskframe(url, "schedule", "nightly", "--json").stdout)["cron"] == (
        "30 2 * * *"
    )
    assert taskframe(url, "pause-schedule", "nightly").returncode == 0
    bad = taskframe(url, "create-schedule", "x", "61 * * * *", "sleep", *zero)
    assert bad.returncode == 1 and "cron" in bad.stderr
    assert taskframe(url, "delete-schedule", "nightly").returncode == 0
