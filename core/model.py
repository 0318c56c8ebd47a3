"""Job statuses and the state machine every storage backend follows."""

from __future__ import annotations

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})

#: Allowed transitions; anything else is a bug (or a stale worker, refused with 409).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    # running -> queued: a failed attempt with attempts left, or a released lease.
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset({QUEUED}),  # manual retry
    CANCELLED: frozenset({QUEUED}),  # manual retry
}

# Outcomes of one attempt, kept in the attempt history.
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_FAILED = "failed"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_LEASE_EXPIRED = "lease_expired"
OUTCOME_TIMED_OUT = "timed_out"
OUTCOME_RELEASED = "released"


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def status_after_failed_attempt(attempts: int, max_attempts: int, retryable: bool) -> str:
    """Where a job goes after a failed attempt: back to the queue or ``failed``.

    ``attempts`` counts the attempts made so far, including the one that failed.
    """
    if retryable and attempts < max_attempts:
        return QUEUED
    return FAILED
