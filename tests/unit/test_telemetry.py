"""What the server logs of submissions: the hot path is summed up at INFO, every job at DEBUG."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from taskframe.server.observe.metrics import DURATION_BUCKETS
from taskframe.server.observe.telemetry import Telemetry, observe_all


def _row(job_id: int) -> dict:
    return {"id": job_id, "type": "sleep", "priority": 0, "status": "queued"}


def test_single_submissions_are_summed_up_at_info(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry()
    with caplog.at_level(logging.INFO, logger="taskframe.jobs"):
        for job_id in range(1, 4):
            telemetry.submitted([_row(job_id)])
        telemetry.flush()
    messages = [record.getMessage() for record in caplog.records]
    assert not any(message.startswith("job ") for message in messages)
    assert len(messages) == 1 and "3 jobs submitted" in messages[0]


def test_every_submission_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry()
    with caplog.at_level(logging.DEBUG, logger="taskframe.jobs"):
        telemetry.submitted([_row(7)])
        telemetry.submitted([_row(8), _row(9)])
    messages = [record.getMessage() for record in caplog.records]
    assert "job 7 submitted (type sleep, priority 0)" in messages
    assert "2 jobs submitted (ids 8..9, types sleep)" in messages
    assert "job 9 submitted (type sleep, priority 0)" in messages


@settings(max_examples=100)
@given(st.lists(st.floats(min_value=0, max_value=1e5) | st.sampled_from(DURATION_BUCKETS)))
def test_observing_a_batch_counts_what_one_observe_each_counts(values):
    """observe_all updates each bucket once per batch: the same samples as observe."""
    registry = CollectorRegistry()
    one = Histogram("one", "h", ["type"], buckets=DURATION_BUCKETS, registry=registry)
    batch = Histogram("batch", "h", ["type"], buckets=DURATION_BUCKETS, registry=registry)
    one_child = one.labels("t")
    for value in values:
        one_child.observe(value)
    observe_all(batch.labels("t"), values)

    def samples(name):
        return {
            (s.name.removeprefix(name), tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect()
            if metric.name == name
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    one_samples, batch_samples = samples("one"), samples("batch")
    assert one_samples.keys() == batch_samples.keys()
    for key, value in one_samples.items():  # the sum may differ in its last bits
        assert batch_samples[key] == (pytest.approx(value) if key[0] == "_sum" else value)
