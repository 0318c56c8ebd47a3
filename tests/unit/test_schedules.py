"""Cron schedules: fire times across DST, and firing with a controllable clock (both backends)."""

from __future__ import annotations

from datetime import datetime

import pytest
from falcon import testing
from hypothesis import given, settings
from hypothesis import strategies as st

from taskframe.core import cron
from taskframe.core.plugins import load_plugins
from taskframe.plugins import sleep
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.engine.schedules import MISFIRE_GRACE
from taskframe.server.http.app import create_app
from taskframe.server.observe.events import EventDispatcher
from tests.api_server import default_plugins
from tests.processes import wait_until
from tests.unit.test_concurrency import handed_over
from tests.unit.test_plugin_hooks import Recorder


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def fires(expression: str, zone: str, after: str, count: int) -> list[str]:
    return [cron.iso(t) for t in cron.next_fires(expression, zone, at(after), count)]


# -- fire times ------------------------------------------------------------------------


def test_a_wall_time_skipped_by_spring_forward_fires_once_at_the_end_of_the_gap():
    # Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never exists.
    assert fires("30 2 * * *", "Europe/Paris", "2026-03-27T12:00:00+00:00", 3) == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ]
    # Every 20 minutes: 02:00, 02:20 and 02:40 collapse into one fire at 03:00 CEST.
    assert fires("*/20 * * * *", "Europe/Paris", "2026-03-29T00:30:00+00:00", 4) == [
        "2026-03-29T00:40:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-29T01:20:00Z",
        "2026-03-29T01:40:00Z",
    ]


def test_a_wall_time_repeated_by_fall_back_fires_once():
    # Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    assert fires("30 2 * * *", "Europe/Paris", "2026-10-23T12:00:00+00:00", 3) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ]
    # From inside the repeated hour (its second pass), the next fire is 03:00 CET.
    assert fires("*/30 * * * *", "Europe/Paris", "2026-10-25T01:10:00+00:00", 1) == [
        "2026-10-25T02:00:00Z"
    ]


def test_six_fields_have_seconds_last_and_bad_input_is_refused():
    assert fires("* * * * * */15", "UTC", "2026-01-01T00:00:01+00:00", 2) == [
        "2026-01-01T00:00:15Z",
        "2026-01-01T00:00:30Z",
    ]
    for bad in ("* * *", "61 * * * *", "a b c d e", "* * * * * * * *"):
        with pytest.raises(cron.CronError):
            cron.check(bad)
    with pytest.raises(cron.CronError):
        cron.zone("Mars/Olympus")


# -- firing with a controllable clock -----------------------------------------------------


class Clock:
    def __init__(self, start: str) -> None:
        self.now = at(start)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock("2026-03-29T00:05:00+00:00")


@pytest.fixture
def client(store, clock) -> testing.TestClient:
    scheduler = Scheduler(store, ServerConfig(), clock=clock)
    return testing.TestClient(create_app(ServerConfig(), scheduler, default_plugins()))


def schedule(client, job: dict | None = None, **fields) -> dict:
    job = {"type": "sleep", "payload": {"duration": 0}, **(job or {})}
    body = {"name": "s", "cron": "0 * * * *", "job": job, **fields}
    answer = client.simulate_post("/schedules", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json


def jobs(client) -> list[dict]:
    return sorted(client.simulate_get("/jobs?full=true").json["jobs"], key=lambda j: j["id"])


def test_every_fire_time_gives_one_job_across_servers_and_dst(store, client, clock):
    created = schedule(client, timezone="Europe/Paris", job={"queue": "hourly"})
    assert created["next_fire_times"][:3] == [
        "2026-03-29T01:00:00Z",  # 02:00 CET does not exist: 03:00 CEST
        "2026-03-29T02:00:00Z",
        "2026-03-29T03:00:00Z",
    ]
    # Three servers' housekeepers on one database, each with the same clock.
    firers = [Scheduler(store, ServerConfig(), clock=clock).schedules for _ in range(3)]
    assert sum(f.fire() for f in firers) == 0  # not due yet
    for hour in ("01:00:00", "01:00:30", "02:00:00", "02:59:59", "03:00:01"):
        clock.now = at(f"2026-03-29T{hour}+00:00")
        for firer in firers:
            firer.fire()
    fired = jobs(client)
    assert [j["run_at"] for j in fired] == [
        "2026-03-29T01:00:00.000Z",
        "2026-03-29T02:00:00.000Z",
        "2026-03-29T03:00:00.000Z",
    ]
    assert {j["queue"] for j in fired} == {"hourly"}
    assert fired[0]["idempotency_key"] == "schedule:s:2026-03-29T01:00:00Z"
    shown = client.simulate_get("/schedules/s").json
    assert shown["last_fire_at"] == "2026-03-29T03:00:00Z"
    assert shown["next_fire_at"] == "2026-03-29T04:00:00Z"


@pytest.mark.parametrize("misfire", ["latest", "skip"])
def test_after_downtime_the_misfire_policy_applies(store, client, clock, misfire):
    schedule(client, misfire=misfire)
    firer = Scheduler(store, ServerConfig(), clock=clock).schedules
    clock.now = at("2026-03-29T05:30:00+00:00")  # 01:00 to 05:00 were missed
    firer.fire()
    expected = ["2026-03-29T05:00:00.000Z"] if misfire == "latest" else []
    assert [j["run_at"] for j in jobs(client)] == expected
    clock.now = at("2026-03-29T06:00:00+00:00") + MISFIRE_GRACE / 2  # late, within the grace
    firer.fire()
    assert len(jobs(client)) == len(expected) + 1


def test_paused_schedules_do_not_fire_and_resume_from_now(store, client, clock):
    schedule(client)
    assert client.simulate_post("/schedules/s/pause").json["paused"] is True
    firer = Scheduler(store, ServerConfig(), clock=clock).schedules
    clock.now = at("2026-03-29T03:30:00+00:00")
    firer.fire()
    assert jobs(client) == []
    resumed = client.simulate_post("/schedules/s/resume").json
    assert resumed["next_fire_at"] == "2026-03-29T04:00:00Z"
    listed = client.simulate_get("/schedules").json["schedules"]
    assert [s["name"] for s in listed] == ["s"]
    assert client.simulate_delete("/schedules/s").status_code == 204
    assert client.simulate_get("/schedules/s").status_code == 404
    assert client.simulate_delete("/schedules/s").status_code == 404


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* *"}, "cron"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"misfire": "all"}, "misfire"),
        ({"name": "bad name"}, "name"),
        ({"job": {"type": "sleep", "payload": {"duration": 0}, "queue": "a b"}}, "job"),
        ({"job": {"type": "nope"}}, "job"),
        ({"job": {"type": "sleep", "delay": 5}}, "job"),
        ({"job": {"type": "sleep", "payload": {"duration": -1}}}, "job"),
    ],
)
def test_bad_schedules_are_422_naming_the_field(client, fields, named):
    job = {"type": "sleep", "payload": {"duration": 0}}
    body = {"name": "s", "cron": "0 * * * *", "job": job}
    body.update(fields)
    answer = client.simulate_post("/schedules", json=body)
    assert answer.status_code == 422, answer.text
    assert named in answer.json["errors"]


def test_a_schedule_name_is_taken_once(client):
    schedule(client)
    job = {"type": "sleep", "payload": {"duration": 0}}
    body = {"name": "s", "cron": "0 * * * *", "job": job}
    assert client.simulate_post("/schedules", json=body).status_code == 409


@pytest.mark.timeout(60)
def test_jobs_fired_by_a_schedule_are_published_like_every_submission(store, client, clock):
    """Inserted by the intake: counted (/stats, metrics), a waiting lease woken, and
    the plugins' taskframe_job_submitted fired, after the commit."""
    schedule(client)
    recorder = Recorder()
    plugins = load_plugins(extra_plugins=(sleep, recorder), load_entry_points=False)
    events = EventDispatcher.for_plugins(plugins)
    scheduler = Scheduler(store, ServerConfig(), clock=clock, events=events)
    try:
        metrics = scheduler.telemetry.metrics
        assert metrics is not None
        clock.now = at("2026-03-29T01:00:00+00:00")
        fired: list[int] = []
        leased = handed_over(scheduler, "default", lambda: fired.append(scheduler.schedules.fire()))
        assert fired == [1] and [row["status"] for row in leased] == ["running"]
        labels = {"type": "sleep"}
        assert metrics.registry.get_sample_value("taskframe_jobs_submitted_total", labels) == 1
        stats = client.simulate_get("/stats").json
        assert stats["by_status"]["running"] == 1 and stats["by_type"]["sleep"]["running"] == 1
        wait_until(lambda: recorder.events, 10, message="the submitted event")
        assert recorder.events == [("submitted", leased[0]["id"], "queued")]
    finally:
        assert events is not None
        events.stop()


def test_a_client_cannot_claim_a_schedules_future_key(store, client, clock):
    schedule(client)
    key = "schedule:s:2026-03-29T01:00:00Z"
    forged = {"type": "sleep", "payload": {"duration": 99}, "idempotency_key": key}
    answer = client.simulate_post("/jobs", json=forged)
    assert answer.status_code == 422, answer.text
    assert "idempotency_key" in answer.json["errors"]
    answer = client.simulate_post("/jobs/batch", json={"jobs": [forged]})
    assert answer.status_code == 422, answer.text
    plain = {"type": "sleep", "payload": {"duration": 99}}
    answer = client.simulate_post("/jobs", json=plain, headers={"Idempotency-Key": key})
    assert answer.status_code == 422, answer.text
    assert "Idempotency-Key" in answer.json["errors"]
    clock.now = at("2026-03-29T01:00:00+00:00")
    assert Scheduler(store, ServerConfig(), clock=clock).schedules.fire() == 1
    [fired] = jobs(client)
    assert fired["idempotency_key"] == key and fired["payload"] == {"duration": 0}


# -- bounds, batches and dropped fire times (issue 18) -------------------------------------


def every_second(name: str = "s", **fields) -> dict:
    job = {"type": "sleep", "payload": {"duration": 0}, "priority": 5, "max_attempts": 3}
    spec = {"name": name, "cron": "* * * * * *", "timezone": "UTC", "job": job}
    return {"misfire": "latest", "paused": False, **spec, **fields}


def dropped(scheduler: Scheduler, policy: str) -> float:
    metrics = scheduler.telemetry.metrics
    assert metrics is not None
    value = metrics.registry.get_sample_value(
        "taskframe_schedule_fires_dropped_total", {"policy": policy}
    )
    return value or 0.0


def test_the_number_of_schedules_is_bounded(store, clock):
    app_config = ServerConfig(max_schedules=3)
    scheduler = Scheduler(store, app_config, clock=clock)
    client = testing.TestClient(create_app(app_config, scheduler, default_plugins()))
    for n in range(3):
        schedule(client, name=f"s{n}")
    job = {"type": "sleep", "payload": {"duration": 0}}
    answer = client.simulate_post(
        "/schedules", json={"name": "s3", "cron": "0 * * * *", "job": job}
    )
    assert answer.status_code == 409, answer.text
    assert "--max-schedules 3" in answer.json["description"]
    assert client.simulate_delete("/schedules/s0").status_code == 204
    schedule(client, name="s3")  # room again


def test_a_schedules_job_is_bounded_in_size(client):
    big = {"type": "sleep", "payload": {"duration": 0, "pad": "x" * 70_000}}
    answer = client.simulate_post("/schedules", json={"name": "s", "cron": "0 * * * *", "job": big})
    assert answer.status_code == 422, answer.text
    assert "job" in answer.json["errors"] and "65536" in answer.json["errors"]["job"][0]


@pytest.mark.timeout(120)
def test_every_due_schedule_fires_in_one_round_of_batches(store, clock):
    scheduler = Scheduler(store, ServerConfig(max_schedules=1200), clock=clock)
    schedules = scheduler.schedules
    for n in range(1200):
        schedules.create(every_second(f"s{n:04d}"))
    clock.now += 1
    assert schedules.fire() == 1200
    assert dropped(scheduler, "latest") == 0


def test_a_late_fire_counts_and_logs_the_times_it_drops(store, clock, caplog):
    scheduler = Scheduler(store, ServerConfig(), clock=clock)
    schedules = scheduler.schedules
    first = schedules.create(every_second())["next_fire_at"]
    clock.now = first + 5.5  # the housekeeper was 5 s late: 6 times passed
    with caplog.at_level("WARNING", logger="taskframe.jobs"):
        assert schedules.fire() == 1  # the latest one
    assert dropped(scheduler, "latest") == 5
    [record] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "5 fire time(s) of 1 schedule(s) dropped" in record.getMessage()
    assert f"s 5 from {cron.iso(first)} (latest)" in record.getMessage()
    clock.now += 1  # on time again: nothing dropped
    assert schedules.fire() == 1
    assert dropped(scheduler, "latest") == 5


def test_after_a_long_outage_the_dropped_times_are_counted_too(store, clock):
    scheduler = Scheduler(store, ServerConfig(), clock=clock)
    schedules = scheduler.schedules
    first = schedules.create(every_second("late"))["next_fire_at"]
    assert cron.iso(first) == "2026-03-29T00:05:01Z"
    schedules.create(every_second("hourly", cron="0 * * * *", misfire="skip"))
    clock.now = at("2026-03-29T01:01:10+00:00")  # down for an hour
    # "late" fires its latest time and drops the 3369 before (00:05:01 to 01:01:09);
    # "hourly" is 70 s past 01:00, beyond the grace of skip: dropped, none fired.
    assert schedules.fire() == 1
    assert dropped(scheduler, "latest") == 3369
    assert dropped(scheduler, "skip") == 1


SHARED_TIMES = cron.FireTimes()  # one for every example: its caches are exercised too


@settings(max_examples=300, deadline=None)
@given(
    expression=st.sampled_from(
        ["* * * * * *", "*/7 * * * *", "30 2 * * *", "0 */3 * * 1-5", "15 10 1 * * 30"]
    ),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
    after=st.floats(1.7e9, 1.8e9) | st.integers(1_700_000_000, 1_800_000_000).map(float),
)
def test_fire_times_of_the_housekeeper_are_those_of_next_fire(expression, zone, after):
    """cron.FireTimes (parsed once, results kept) gives what cron.next_fire gives."""
    assert SHARED_TIMES.next_fire(expression, zone, after) == cron.next_fire(
        expression, zone, after
    )
