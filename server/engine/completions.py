"""What a worker reports of an attempt, and what became of the report."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from taskframe.core.model import Reported
from taskframe.server.storage import JobRow


@dataclass(frozen=True)
class Completion:
    job_id: int
    lease_id: str
    status: Reported
    worker_id: str | None = None
    result: Any = None
    error: str | None = None
    retryable: bool = True
    log: str | None = None  # what the executor logged during the attempt
    traceback: str | None = None  # where the executor raised, if it did
    retry_after: float | None = None  # seconds to the next attempt, instead of the backoff


class CompletionResult(str, Enum):
    """What became of a reported attempt (the resource maps it to HTTP)."""

    RECORDED = "recorded"  # or recorded already: a re-sent report
    UNKNOWN_JOB = "unknown_job"
    STALE_LEASE = "stale_lease"  # the lease expired, moved on, or is not the worker's


@dataclass(frozen=True)
class CompletionOutcome:
    job_id: int
    result: CompletionResult
    job: JobRow | None = None
    error: str | None = None
    already: bool = False
    """Recorded by an earlier report of the same attempt: this one is a resend, and
    changes nothing (``job`` is the job as it is now)."""

    @property
    def recorded(self) -> bool:
        return self.result is CompletionResult.RECORDED
