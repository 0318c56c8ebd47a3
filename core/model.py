"""Job statuses, attempt outcomes, and the one function that computes every next status.

The scheduler asks :func:`next_status` before each change; the SQL guards of
both backends name the same statuses (a test checks that they agree), and
``TRANSITIONS`` is derived from the function, not written twice.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """Where a job is. ``scheduled``: accepted but not due yet (a delay, or a retry's backoff).
    ``waiting``: some of the jobs it depends on have not finished yet."""

    WAITING = "waiting"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class Outcome(str, Enum):
    """How one attempt ended, as kept in the attempt history."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LEASE_EXPIRED = "lease_expired"
    TIMED_OUT = "timed_out"
    RELEASED = "released"

    def __str__(self) -> str:
        return self.value


class Reported(str, Enum):
    """How a worker reports an attempt ended (``POST /lease`` completions): the
    outcomes only a worker's report records (the others are the server's)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class Event(str, Enum):
    """What happens to a job apart from an attempt ending (that is an :class:`Outcome`)."""

    SUBMIT = "submit"
    PROMOTE = "promote"  # the housekeeper: a scheduled job became due
    LEASE = "lease"
    CANCEL = "cancel"  # a client's request
    RETRY = "retry"  # a client's request
    DEPENDENCIES_MET = "dependencies_met"  # the last dependency finished (succeeded, or "run")
    DEPENDENCY_FAILED = "dependency_failed"  # a dependency failed or was cancelled

    def __str__(self) -> str:
        return self.value


class IllegalTransition(ValueError):
    """The event does not apply to a job in this status (a conflict, or a stale worker)."""


# Kept as names for the code that reads best with them.
WAITING, SCHEDULED = Status.WAITING, Status.SCHEDULED
QUEUED, RUNNING = Status.QUEUED, Status.RUNNING
SUCCEEDED, FAILED, CANCELLED = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED
OUTCOME_SUCCEEDED, OUTCOME_FAILED = Outcome.SUCCEEDED, Outcome.FAILED
OUTCOME_CANCELLED, OUTCOME_RELEASED = Outcome.CANCELLED, Outcome.RELEASED
OUTCOME_LEASE_EXPIRED, OUTCOME_TIMED_OUT = Outcome.LEASE_EXPIRED, Outcome.TIMED_OUT

STATUSES: tuple[str, ...] = tuple(status.value for status in Status)
OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome)
REPORTED: tuple[str, ...] = tuple(reported.value for reported in Reported)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
#: Attempt endings that count as a failure (retried while attempts and retryability allow).
FAILURES = frozenset({Outcome.FAILED, Outcome.LEASE_EXPIRED, Outcome.TIMED_OUT})


def next_status(
    current: Status | str | None,
    event: Event | Outcome | str,
    *,
    due: bool = True,
    may_retry: bool = False,
    cancel_requested: bool = False,
    blocked: bool = False,
) -> Status:
    """The status a job in ``current`` moves to on ``event``; raises IllegalTransition.

    ``due``: the job's ``run_at`` has come (at submission, and for the
    re-queue after a failure, whose backoff may be zero). ``may_retry``: a
    failed attempt may be retried (attempts left and the error retryable).
    ``cancel_requested``: a client asked to cancel the running attempt, so
    whatever way it ends, the job ends cancelled (unless it succeeded).
    ``blocked``: at submission or retry, some dependencies have not finished yet.
    A client's cancel of a running job leaves it running, with the request noted.
    """
    current = None if current is None else Status(current)
    event = _event(event)
    waiting = Status.QUEUED if due else Status.SCHEDULED
    if event is Event.SUBMIT and current is None:
        return Status.WAITING if blocked else waiting
    if event is Event.DEPENDENCIES_MET and current is Status.WAITING:
        return waiting
    if event is Event.DEPENDENCY_FAILED and current is Status.WAITING:
        return Status.CANCELLED
    if event is Event.PROMOTE and current is Status.SCHEDULED:
        return Status.QUEUED
    if event is Event.LEASE and current is Status.QUEUED:
        return Status.RUNNING
    if event is Event.CANCEL and current in (Status.WAITING, Status.SCHEDULED, Status.QUEUED):
        return Status.CANCELLED
    if event is Event.CANCEL and current is Status.RUNNING:
        return Status.RUNNING  # the worker is told to stop; the attempt ends it
    if event is Event.RETRY and current in (Status.FAILED, Status.CANCELLED):
        return Status.WAITING if blocked else Status.QUEUED
    if isinstance(event, Outcome) and current is Status.RUNNING:
        return _after_attempt(event, due, may_retry, cancel_requested)
    raise IllegalTransition(f"a {current or 'new'} job cannot {event}")


def _event(event: Event | Outcome | str) -> Event | Outcome:
    if isinstance(event, Event | Outcome):
        return event
    try:
        return Event(event)
    except ValueError:
        return Outcome(event)


def _after_attempt(outcome: Outcome, due: bool, may_retry: bool, cancel_requested: bool) -> Status:
    if outcome is Outcome.SUCCEEDED:
        return Status.SUCCEEDED
    if outcome is Outcome.CANCELLED or cancel_requested:
        return Status.CANCELLED
    if outcome is Outcome.RELEASED:
        return Status.QUEUED  # given back unstarted: ready again at once
    if may_retry:
        return Status.QUEUED if due else Status.SCHEDULED
    return Status.FAILED


def may_retry(attempts: int, max_attempts: int, retryable: bool) -> bool:
    """A failed attempt is retried when it may be and attempts are left.

    ``attempts`` counts the attempts made so far, including the one that failed.
    """
    return retryable and attempts < max_attempts


def status_after_failed_attempt(
    attempts: int, max_attempts: int, retryable: bool, due: bool = False
) -> Status:
    """Where a job goes after a failed attempt: back to waiting (a retry) or ``failed``."""
    return next_status(
        Status.RUNNING,
        Outcome.FAILED,
        due=due,
        may_retry=may_retry(attempts, max_attempts, retryable),
    )


def _all_transitions() -> dict[Status, frozenset[Status]]:
    found: dict[Status, set[Status]] = {status: set() for status in Status}
    flags = [(d, r, c) for d in (True, False) for r in (True, False) for c in (True, False)]
    for current in Status:
        for event in [*Event, *Outcome]:
            for due, retry, cancel in flags:
                try:
                    new = next_status(
                        current,
                        event,
                        due=due,
                        may_retry=retry,
                        cancel_requested=cancel,
                        blocked=retry,
                    )
                except IllegalTransition:
                    continue
                if new is not current:
                    found[current].add(new)
    return {status: frozenset(targets) for status, targets in found.items()}


#: Every change of status :func:`next_status` allows (derived from it).
TRANSITIONS: dict[Status, frozenset[Status]] = _all_transitions()


def can_transition(current: str, new: str) -> bool:
    return Status(new) in TRANSITIONS.get(Status(current), frozenset())


def in_words(status: str, already: bool = False) -> str:
    """``succeeded`` -> "has (already) succeeded", ``queued`` -> "is queued": for messages."""
    if already:
        return in_words(status).replace("has ", "has already ", 1)
    finished = {
        "succeeded": "has succeeded",
        "failed": "has failed",
        "cancelled": "has been cancelled",
    }
    return finished.get(str(status), f"is {status}")
