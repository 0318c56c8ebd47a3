"""The ``sleep`` executor: duration, deadline, cancellation and payload validation."""

from __future__ import annotations

import threading
import time

import pytest
from marshmallow import ValidationError

from taskframe.core import ExecutorContext, PermanentError
from taskframe.plugins import sleep


def _context(timeout: float | None = None) -> ExecutorContext:
    deadline = None if timeout is None else time.monotonic() + timeout
    return ExecutorContext(job_id=1, attempt=1, deadline=deadline)


def _load(payload: object) -> dict:
    return sleep.SleepPayloadSchema().load(payload)


def test_sleeps_for_the_duration() -> None:
    start = time.monotonic()
    result = sleep.run(_load({"duration": 0.2}), _context())
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 1.0
    assert 0.19 <= result["slept"] <= elapsed


def test_zero_duration_returns_at_once() -> None:
    payload = _load({"duration": 0})
    context = _context()
    start = time.perf_counter()
    for _ in range(10_000):
        assert sleep.run(payload, context) == {"slept": 0.0}
    assert time.perf_counter() - start < 0.5


def test_stops_at_the_deadline_with_a_retryable_error() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out") as excinfo:
        sleep.run(_load({"duration": 10}), _context(timeout=0.2))
    assert not isinstance(excinfo.value, PermanentError)
    assert 0.15 <= time.monotonic() - start < 2.0


def test_deadline_already_passed() -> None:
    with pytest.raises(TimeoutError):
        sleep.run(_load({"duration": 1}), _context(timeout=0))


def test_cancellation_from_another_thread_stops_early() -> None:
    context = _context(timeout=30)
    timer = threading.Timer(0.2, context.cancel_event.set)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(sleep.SleepCancelled, match="cancelled"):
            sleep.run(_load({"duration": 10}), context)
    finally:
        timer.cancel()
    assert 0.15 <= time.monotonic() - start < 2.0


def test_already_cancelled_returns_immediately() -> None:
    context = _context()
    context.cancel_event.set()
    start = time.monotonic()
    with pytest.raises(sleep.SleepCancelled):
        sleep.run(_load({"duration": 10}), context)
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "duration"),
        ({"duration": -1}, "duration"),
        ({"duration": 86401}, "duration"),
        ({"duration": "soon"}, "duration"),
        ({"duration": "nan"}, "duration"),
        ({"duration": 1, "extra": True}, "extra"),
    ],
)
def test_schema_errors_name_the_field(payload: dict, field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        _load(payload)
    assert list(excinfo.value.messages) == [field]


def test_schema_accepts_the_bounds() -> None:
    assert _load({"duration": 0}) == {"duration": 0.0}
    assert _load({"duration": 86400}) == {"duration": 86400.0}
