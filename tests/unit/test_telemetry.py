"""What the server logs of submissions: the hot path is summed up at INFO, every job at DEBUG."""

from __future__ import annotations

import logging

import pytest

from taskframe.server.telemetry import Telemetry


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
