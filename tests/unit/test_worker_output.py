"""What a worker sends: executor output the server always takes, requests within its limits."""

from __future__ import annotations

import argparse
import json
import logging

import marshmallow
import pytest

from taskframe.core import schemas, strict_json
from taskframe.core.executor import Executor
from taskframe.core.plugins import load_plugins
from taskframe.worker.config import WorkerConfig
from taskframe.worker.jobs import RunningJob, execute
from taskframe.worker.loop import Worker

S = "\ud800"


class AnyPayload(marshmallow.Schema):
    class Meta:
        unknown = marshmallow.INCLUDE


def run(result_or_error) -> tuple:
    """execute() on an executor that returns (or raises) ``result_or_error``."""

    def body(payload, context):
        if isinstance(result_or_error, BaseException):
            raise result_or_error
        return result_or_error

    executor = Executor("probe", AnyPayload(), body)
    running = RunningJob({"id": 7, "lease_id": "l7", "attempts": 1, "payload": {}}, executor, None)
    return running.completion(execute(running, argparse.Namespace()))


def as_received(completion: dict) -> dict:
    """The completion as the server receives it: must encode as UTF-8 strict JSON."""
    return json.loads(json.dumps(completion, ensure_ascii=False, allow_nan=False).encode())


def test_a_result_with_lone_surrogates_is_repaired_before_it_is_sent():
    completion = as_received(run({f"name{S}": [f"b{S}d", 1, None]}))
    assert completion["status"] == "succeeded"
    assert completion["result"] == {"name\ufffd": ["b\ufffdd", 1, None]}


def test_error_text_with_lone_surrogates_is_repaired_before_it_is_sent(caplog):
    # os.fsdecode of a non-UTF-8 file name gives such text ("surrogateescape").
    # The worker's WARNING line quotes it: kept out of the test report, which
    # pytest-xdist sends between processes as UTF-8 (it failed the whole run).
    with caplog.at_level(logging.ERROR, logger="taskframe.worker"):
        completion = as_received(run(FileNotFoundError(f"no such file: b{S}d")))
    assert completion["status"] == "failed" and completion["retryable"] is True
    assert completion["error"] == "FileNotFoundError: no such file: b\ufffdd"


def test_an_attempt_log_with_lone_surrogates_is_repaired_before_it_is_sent():
    def body(payload, context):
        context.logger.propagate = False  # (not for the test's output)
        context.logger.warning("skipped b%sd", S)  # a file name as os.fsdecode gives it
        return None

    executor = Executor("probe", AnyPayload(), body)
    running = RunningJob({"id": 8, "lease_id": "l8", "attempts": 1, "payload": {}}, executor, None)
    completion = as_received(running.completion(execute(running, argparse.Namespace())))
    assert "skipped b\ufffdd" in completion["log"]


def test_a_result_nested_past_the_servers_limit_fails_the_job_without_retry():
    deep: list = []
    for _ in range(strict_json.MAX_RESULT_DEPTH - 1):
        deep = [deep]
    completion = run(deep)
    assert completion["status"] == "succeeded"
    # ... and the server takes it, inside a POST /lease body.
    strict_json.parse(json.dumps({"worker_id": "w1", "completions": [completion]}))
    for too_deep in ([deep], ((deep,),)):
        completion = run(too_deep)
        assert completion["status"] == "failed" and completion["retryable"] is False
        assert str(strict_json.MAX_RESULT_DEPTH) in completion["error"]


def test_a_result_json_cannot_write_fails_the_job_without_retry():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for result in (float("nan"), {"x": float("inf")}, {1, 2}, deep):
        completion = run(result)
        assert completion["status"] == "failed" and completion["retryable"] is False


@pytest.mark.timeout(60)
def test_heartbeats_are_sent_within_the_servers_limit(api):
    """A worker may hold more leases than one POST /heartbeats may carry (its slots
    plus the outcomes not yet delivered): it sends them in several requests."""
    worker = Worker(WorkerConfig((api.url,), "w1"), load_plugins())
    count = 2 * schemas.MAX_HEARTBEATS + 5
    leases = [{"job_id": i + 1, "lease_id": f"l{i}"} for i in range(count)]
    try:
        answers = worker._send_heartbeats(leases)
    finally:
        worker.client.close()
    assert [a["job_id"] for a in answers] == [lease["job_id"] for lease in leases]
    assert not any(a["ok"] for a in answers)  # none of these leases exists
    # Each request within the server's limit (it answered them all): three of them.
    assert api.paths("POST") == ["/heartbeats"] * 3
