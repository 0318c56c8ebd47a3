"""The Python client's queues, limits, schedules and dependencies against a real server."""

from __future__ import annotations

import pytest

from taskframe.client import Client, Limit, NotFound, Queue, Schedule, ValidationError
from tests.integration import SERVER_ARGS


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
