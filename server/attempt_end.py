"""What ending an attempt decides, before anything is written: the job's next status
and run time (retry, backoff, cancel), the attempt's history row, and whether a
result is too large to keep.

Pure functions: the SQL that applies them is in :mod:`taskframe.server.attempts`
(reports and releases) and :mod:`taskframe.server.upkeep` (the reaper).
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

from taskframe.core import model
from taskframe.core.model import Outcome, Status
from taskframe.core.retry import BackoffPolicy
from taskframe.server.completions import Completion
from taskframe.server.storage import Row


def next_step(
    row: Row,
    outcome: Outcome,
    now: float,
    backoff: BackoffPolicy,
    rng: random.Random,
    retryable: bool = True,
    retry_after: float | None = None,
) -> tuple[Status, float]:
    """The job's next status and run_at once its running attempt ends with ``outcome``.

    ``retry_after``: the executor's own delay (``Retry(after=...)``, its backoff).
    """
    may_retry = outcome in model.FAILURES and model.may_retry(
        row["attempts"], row["max_attempts"], retryable
    )
    run_at = row["run_at"]
    if may_retry and retry_after is not None:
        run_at = now + retry_after
    elif may_retry:
        run_at = now + backoff.delay(attempts_since_retry(row), rng)
    elif outcome == Outcome.RELEASED:
        run_at = now
    status = model.next_status(
        Status.RUNNING,
        outcome,
        due=run_at <= now,
        may_retry=may_retry,
        cancel_requested=bool(row["cancel_requested"]),
    )
    return status, run_at


def attempts_since_retry(row: Row) -> int:
    """Attempts made since the last ``POST /jobs/{id}/retry`` (the backoff starts over)."""
    grant = row.get("attempt_grant") or row["max_attempts"]
    return max(1, row["attempts"] - (row["max_attempts"] - grant))


def history_row(
    row: Row,
    outcome: Outcome,
    now: float,
    error: str | None,
    log: str | None = None,
    traceback: str | None = None,
) -> dict[str, Any]:
    """The history row of the attempt that ``row`` (as leased) was running."""
    if log is not None and "\x00" in log:  # PostgreSQL text cannot hold NUL
        log = log.replace("\x00", "\ufffd")
    if traceback is not None and "\x00" in traceback:
        traceback = traceback.replace("\x00", "\ufffd")
    return {
        "job_id": row["id"],
        "attempt": row["attempts"],
        "worker_id": row["worker_id"],
        "lease_id": row["lease_id"],
        "started_at": row["started_at"],
        "finished_at": now,
        "outcome": outcome.value,
        "error": error,
        "log": log,
        "traceback": traceback,
    }


def capped(item: Completion, max_result_bytes: int) -> Completion:
    """A result past ``max_result_bytes`` fails the attempt (retrying would not shrink it)."""
    if item.status != Status.SUCCEEDED or item.result is None:
        return item
    size = len(json.dumps(item.result).encode())
    if size <= max_result_bytes:
        return item
    error = (
        f"the result is {size} bytes, more than the server keeps (--max-result {max_result_bytes})"
    )
    return dataclasses.replace(
        item, status=Status.FAILED, result=None, error=error, retryable=False
    )
