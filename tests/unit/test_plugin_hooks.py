"""Lifecycle hooks (server, after commit, off the request thread) and run hooks (worker)."""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Any

import pytest
from falcon import testing

from taskframe.core import hookimpl
from taskframe.core.plugins import load_plugins
from taskframe.plugins import sleep, webhook
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.observe.events import EventDispatcher
from taskframe.worker.jobs import RunningJob, execute
from tests.processes import wait_until
from tests.unit.test_scheduler import job


class Recorder:
    """Records every lifecycle and run event, with the thread it came on."""

    __name__ = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[str] = set()

    def _note(self, *event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)

    @hookimpl
    def taskframe_job_submitted(self, job):
        self._note("submitted", job["id"], job["status"])

    @hookimpl
    def taskframe_attempt_finished(self, job, attempt):
        self._note("attempt", job["id"], job["status"], attempt["outcome"], "lease_id" in attempt)

    @hookimpl
    def taskframe_job_finished(self, job):
        self._note("finished", job["id"], job["status"])

    @hookimpl
    def taskframe_before_run(self, job, context):
        self._note("before", job["id"], context.job_id)

    @hookimpl
    def taskframe_after_run(self, job, outcome):
        self._note("after", job["id"], outcome["status"], outcome["result"])


class Raiser:
    """Every hook raises: logged by name, never changes a job."""

    __name__ = "raiser"

    @hookimpl
    def taskframe_job_submitted(self, job):
        raise RuntimeError("submitted hook broke")

    @hookimpl
    def taskframe_job_finished(self, job):
        raise RuntimeError("finished hook broke")

    @hookimpl
    def taskframe_before_run(self, job):
        raise RuntimeError("before hook broke")

    @hookimpl
    def taskframe_after_run(self, job):
        raise AssertionError("after_run of a plugin whose before_run raised")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def events_scheduler(store, recorder):
    # The raiser first: pluggy calls later registrations first, so the recorder
    # runs after it and shows that the raise stopped nothing.
    plugins = load_plugins(extra_plugins=(sleep, Raiser(), recorder), load_entry_points=False)
    events = EventDispatcher.for_plugins(plugins)
    assert events is not None
    yield Scheduler(store, ServerConfig(), events=events)
    events.stop()


def test_no_dispatcher_without_a_lifecycle_hook() -> None:
    plugins = load_plugins(extra_plugins=(sleep,), load_entry_points=False)
    assert EventDispatcher.for_plugins(plugins) is None


def test_lifecycle_events_after_commit_from_a_background_thread(
    events_scheduler, recorder, caplog
) -> None:
    scheduler = events_scheduler
    caplog.set_level(logging.ERROR)
    [(first, _), (second, _)] = scheduler.submit([job(), job(max_attempts=2)])
    leased = {row["id"]: row for row in scheduler.lease("w1", ["sleep"], 2, wait=0)}
    scheduler.complete(
        [
            Completion(first["id"], leased[first["id"]]["lease_id"], "succeeded", "w1", result=1),
            Completion(second["id"], leased[second["id"]]["lease_id"], "failed", "w1", error="x"),
        ]
    )
    third, _ = scheduler.submit_one(job())
    scheduler.cancel(third["id"])
    expected = [
        ("submitted", first["id"], "queued"),
        ("submitted", second["id"], "queued"),
        ("attempt", first["id"], "succeeded", "succeeded", False),
        ("finished", first["id"], "succeeded"),
        # Will be retried (scheduled while it waits out its backoff): not finished.
        ("attempt", second["id"], "scheduled", "failed", False),
        ("submitted", third["id"], "queued"),
        ("finished", third["id"], "cancelled"),
    ]
    wait_until(lambda: len(recorder.events) >= len(expected), 10)
    assert recorder.events == expected
    assert recorder.threads == {"plugin-events"}
    # The raising plugin is named in the log and changed nothing.
    assert "plugin 'raiser': taskframe_job_submitted raised" in caplog.text
    assert scheduler.get(first["id"])["status"] == "succeeded"
    assert scheduler.get(second["id"])["status"] == "scheduled"


def test_a_reaped_attempt_is_an_event(events_scheduler, recorder) -> None:
    scheduler = events_scheduler
    [(row, _)] = scheduler.submit([job(max_attempts=1)])
    scheduler.lease("w1", ["sleep"], 1, wait=0)
    later = time.time() + 3600  # past the attempt's timeout
    scheduler = Scheduler(
        scheduler.store, scheduler.config, clock=lambda: later, events=scheduler.events
    )
    assert scheduler.reap() == 1
    wait_until(lambda: ("finished", row["id"], "failed") in recorder.events, 10)
    assert ("attempt", row["id"], "failed", "timed_out", False) in recorder.events


def _running(payload: dict[str, Any]) -> RunningJob:
    leased = {"id": 7, "type": "sleep", "payload": payload, "attempts": 1, "lease_id": "l"}
    plugins = load_plugins(extra_plugins=(sleep,), load_entry_points=False)
    return RunningJob(leased, plugins.executors["sleep"], None)


def test_run_hooks_wrap_the_execution_and_cannot_change_it(recorder, caplog) -> None:
    plugins = load_plugins(extra_plugins=(sleep, Raiser(), recorder), load_entry_points=False)
    outcome = execute(_running({"duration": 0}), argparse.Namespace(), plugins)
    assert outcome == ("succeeded", {"slept": 0.0}, None, True)
    assert recorder.events == [("before", 7, 7), ("after", 7, "succeeded", {"slept": 0.0})]
    assert "plugin 'raiser': taskframe_before_run raised" in caplog.text


def _api(store, *plugins_and_options: Any) -> testing.TestClient:
    *extra, options = plugins_and_options
    plugins = load_plugins(extra_plugins=(sleep, webhook, *extra), load_entry_points=False)
    plugins.configure(options, "server")
    scheduler = Scheduler(store, ServerConfig())
    return testing.TestClient(create_app(scheduler.config, scheduler, plugins))


def _webhook_options(secret: str | None) -> argparse.Namespace:
    return argparse.Namespace(
        webhook_secret=secret,
        webhook_allow="",
        webhook_deny=webhook.DEFAULT_DENY,
        webhook_attempts=3,
        webhook_timeout=5.0,
    )


SLEEP = {"type": "sleep", "payload": {"duration": 0}}


def test_notify_url_is_refused_when_webhooks_are_off(store) -> None:
    client = _api(store, _webhook_options(None))
    answer = client.simulate_post("/jobs", json={**SLEEP, "notify_url": "http://example.com/"})
    assert answer.status_code == 422
    assert "--webhook-secret" in answer.json["errors"]["notify_url"][0]
    assert client.simulate_post("/jobs", json=SLEEP).status_code == 201


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("http:///path", "http:// or https://"),
        ("http://169.254.169.254/latest", "--webhook-deny (169.254.0.0/16)"),
        ("http://[fe80::1]/", "--webhook-deny (fe80::/10)"),
    ],
)
def test_notify_url_is_checked_at_submission(store, url, problem) -> None:
    client = _api(store, _webhook_options("s3cret"))
    answer = client.simulate_post("/jobs", json={**SLEEP, "notify_url": url})
    assert answer.status_code == 422, answer.text
    assert problem in answer.json["errors"]["notify_url"][0]
    batch = client.simulate_post("/jobs/batch", json={"jobs": [{**SLEEP, "notify_url": url}]})
    assert batch.status_code == 422


def test_an_accepted_notify_url_is_stored_with_the_job(store) -> None:
    client = _api(store, _webhook_options("s3cret"))
    answer = client.simulate_post("/jobs", json={**SLEEP, "notify_url": "http://127.0.0.1:9/x"})
    assert answer.status_code == 201, answer.text
    assert client.simulate_get(answer.headers["location"]).json["notify_url"] == (
        "http://127.0.0.1:9/x"
    )


def test_get_plugins_and_health_report_failures(store) -> None:
    class Typo:
        __name__ = "typo"

        @hookimpl
        def taskframe_job_finishd(self, job):
            pass

    client = _api(store, Typo(), _webhook_options("s3cret"))
    described = client.simulate_get("/plugins").json
    names = {plugin["name"]: plugin for plugin in described["plugins"]}
    # What the webhook plugin registers itself is listed as part of it (issue 23).
    assert not [name for name in names if name.startswith("webhook.")]
    [webhook] = [p for p in names.values() if "taskframe_webhook_sender" in p["hooks"]]
    assert {"taskframe_configure", "taskframe_validate_job"} <= set(webhook["hooks"])
    assert names["taskframe.plugins.sleep"]["job_types"] == ["sleep"]
    assert described["failures"] == [
        {
            "name": "typo",
            "error": "unknown hook taskframe_job_finishd (did you mean taskframe_job_finished?)",
        }
    ]
    assert client.simulate_get("/health").json["plugin_failures"] == {
        "typo": "unknown hook taskframe_job_finishd (did you mean taskframe_job_finished?)"
    }


def test_a_dependant_cancelled_by_its_dependency_is_a_finished_event(
    events_scheduler, recorder
) -> None:
    scheduler = events_scheduler
    [(root, _), (child, _)] = scheduler.submit(
        [job(max_attempts=1), {**job(), "depends_on": [("ref", 0)]}]
    )
    [leased] = scheduler.lease("w1", ["sleep"], 2, wait=0)
    scheduler.complete([Completion(root["id"], leased["lease_id"], "failed", "w1", error="x")])
    wait_until(lambda: ("finished", child["id"], "cancelled") in recorder.events, 10)
