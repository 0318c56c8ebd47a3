"""The plugin tested as users run it: a real server and worker (taskframe's fixtures)."""

from __future__ import annotations

import argparse
import threading
import time

import pytest
from taskframe_example_plugin.plugin import Interrupted, ShoutPayload, shout

from taskframe.core import ExecutorContext, PermanentError


@pytest.fixture
def taskframe_worker_args() -> list[str]:
    return ["--shout-suffix", "?!"]


def test_a_shout_job_runs_end_to_end(taskframe_server, taskframe_worker):
    job = taskframe_server.run("shout", {"text": "hello", "times": 2})
    assert job["status"] == "succeeded", job
    assert job["result"] == {"shouted": "HELLO?! HELLO?!"}


def test_the_server_lists_the_plugin(taskframe_server):
    plugins = taskframe_server.get("/plugins").json()
    [mine] = [plugin for plugin in plugins["plugins"] if plugin["name"] == "shout"]
    assert mine["distribution"] == "taskframe-example-plugin"
    assert mine["job_types"] == ["shout"]
    assert "shout" not in {failure["name"] for failure in plugins["failures"]}


def test_an_invalid_payload_is_refused_at_submission(taskframe_server):
    answer = taskframe_server.post("/jobs", {"type": "shout", "payload": {"times": 0}})
    assert answer.status_code == 422
    assert set(answer.json()["errors"]["payload"]) == {"text", "times"}


def test_a_blank_text_fails_at_once(taskframe_server, taskframe_worker):
    job = taskframe_server.run("shout", {"text": "  "}, max_attempts=3)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "nothing to shout" in job["error"]


def test_the_deadline_stops_a_long_shout(taskframe_server, taskframe_worker):
    job = taskframe_server.run(
        "shout", {"text": "slow", "times": 10, "pause": 5}, timeout=0.5, max_attempts=1
    )
    # The worker reports the timeout at the deadline, or the executor returns
    # first with its own TimeoutError: either way, well before 10 x 5 s.
    assert job["status"] == "failed" and "timed out" in job["error"], job


def _context(deadline: float | None = None) -> ExecutorContext:
    options = argparse.Namespace(shout_suffix="!")
    return ExecutorContext(job_id=1, attempt=1, deadline=deadline, options=options)


def test_cancellation_interrupts_the_pause():
    context = _context()
    threading.Timer(0.1, context.cancel_event.set).start()
    payload = ShoutPayload().load({"text": "x", "times": 3, "pause": 30})
    with pytest.raises(Interrupted, match="cancelled after 1 of 3 shouts"):
        shout(payload, context)


def test_blank_text_is_permanent():
    with pytest.raises(PermanentError):
        shout(ShoutPayload().load({"text": " "}), _context(time.monotonic() + 10))
