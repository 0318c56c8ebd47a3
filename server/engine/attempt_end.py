"""What ending an attempt decides, before anything is written: the job's next status
and run time (retry, backoff, cancel), the attempt's history row, and whether a
result is too large to keep.

Pure functions: the SQL that applies them is in :mod:`taskframe.server.engine.attempts`
(reports and releases) and :mod:`taskframe.server.engine.upkeep` (the reaper).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from taskframe.core import json_codec, model
from taskframe.core.model import Outcome, Reported, Status
from taskframe.core.retry import BackoffPolicy
from taskframe.server.engine.completions import Completion
from taskframe.server.storage import AttemptRecord, JobRow


def next_step(
    row: JobRow,
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
        cancel_requested=row["cancel_requested"],
    )
    return status, run_at


def attempts_since_retry(row: JobRow) -> int:
    """Attempts made since the last ``POST /jobs/{id}/retry`` (the backoff starts over)."""
    grant = row.get("attempt_grant") or row["max_attempts"]
    return max(1, row["attempts"] - (row["max_attempts"] - grant))


def history_row(
    row: JobRow,
    outcome: Outcome,
    now: float,
    error: str | None,
    log: str | None = None,
    traceback: str | None = None,
) -> AttemptRecord:
    """The history row of the attempt that ``row`` (as leased) was running."""
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


@dataclass(frozen=True)
class Ending:
    """How one running attempt ends: the job's next status and what the attempt leaves.

    ``row`` is the job as leased (its lease, attempt number and start);
    ``result`` is JSON text as stored; ``keep_lease`` leaves the lease id on the
    row, so that the same worker re-sending the same report is recognised as a
    resend; ``refund`` gives the attempt back (a release).
    """

    row: JobRow
    status: Status
    outcome: Outcome
    run_at: float
    worker_id: str | None
    error: str | None = None
    result: str | None = None
    keep_lease: bool = False
    refund: bool = False
    log: str | None = None
    traceback: str | None = None

    def params(self, now: float) -> dict[str, Any]:
        """The ``end_attempts`` row: the fence (id, lease, worker) and the new values."""
        return {
            "id": self.row["id"],
            "lease_id": self.row["lease_id"],
            "worker_id": self.worker_id,
            "status": self.status.value,
            "result": self.result,
            "error": self.error,
            "finished_at": now if self.status in model.FINISHED else None,
            "run_at": self.run_at,
            "new_lease_id": self.row["lease_id"] if self.keep_lease else None,
            "refund": 1 if self.refund else 0,
        }

    def history(self, now: float) -> AttemptRecord:
        return history_row(self.row, self.outcome, now, self.error, self.log, self.traceback)


def stored_result(item: Completion, max_result_bytes: int) -> tuple[Completion, str | None]:
    """(the report, its result as the JSON text to store), encoded once.

    A result past ``max_result_bytes`` as stored fails the attempt (retrying would
    not shrink it): the report comes back as a permanent failure, without result.
    """
    if item.result is None or item.status != Reported.SUCCEEDED:
        text = None if item.result is None else json_codec.dumps(item.result).decode()
        return item, text
    encoded = json_codec.dumps(item.result)
    if len(encoded) <= max_result_bytes:
        return item, encoded.decode()
    error = (
        f"the result is {len(encoded)} bytes, more than the server keeps "
        f"(--max-result {max_result_bytes})"
    )
    failed = dataclasses.replace(
        item, status=Reported.FAILED, result=None, error=error, retryable=False
    )
    return failed, None
