"""A client's cancel and retry of one locked job row: shared by the single-job
endpoints (``POST /jobs/{id}/cancel``, ``/retry``) and the bulk ones, so that
both follow the same rules (:func:`taskframe.core.model.next_status`)."""

from __future__ import annotations

from typing import Any

from taskframe.core import model
from taskframe.core.errors import ErrorCode, JobConflict
from taskframe.core.model import Event, Status
from taskframe.server.storage import JobRow, Transaction, job_row, maybe_job_rows


def accepting(event: Event) -> tuple[str, ...]:
    """The statuses ``event`` applies to, as the state machine says."""
    found = []
    for status in Status:
        try:
            model.next_status(status, event)
        except model.IllegalTransition:
            continue
        found.append(status.value)
    return tuple(found)


#: The statuses a cancel or a retry applies to.
CANCELLABLE = accepting(Event.CANCEL)
RETRYABLE = accepting(Event.RETRY)


def cancel_locked(tx: Transaction, current: JobRow, now: float) -> JobRow:
    """Cancel a job not started yet; ask the worker of a running one to stop.

    ``current`` is the job's row as locked in ``tx``; raises JobConflict when
    the job cannot be cancelled (it finished).
    """
    job_id = current["id"]
    try:
        status = model.next_status(current["status"], Event.CANCEL)
    except model.IllegalTransition:
        raise JobConflict(
            f"job {job_id} {model.in_words(current['status'], already=True)}",
            ErrorCode.JOB_FINISHED,
        ) from None
    row = job_row(tx.one(_cancel_query(status), {"id": job_id, "now": now}))
    if row is None:  # pragma: no cover - the row is locked (or the writer is alone)
        raise JobConflict(f"job {job_id} changed meanwhile; try again", ErrorCode.TRY_AGAIN)
    return row


def _cancel_query(status: Status) -> str:
    """A job not started is cancelled now; a running one is asked to stop (its attempt
    ends it)."""
    return "request_cancel" if status == Status.RUNNING else "cancel_queued"


def cancel_many(tx: Transaction, rows: list[JobRow], now: float) -> list[JobRow]:
    """:func:`cancel_locked` for many locked rows, in two batched statements; the rows
    the state machine does not let cancel (finished meanwhile) are left out."""
    batches: dict[str, list[dict[str, Any]]] = {}
    for current in rows:
        try:
            status = model.next_status(current["status"], Event.CANCEL)
        except model.IllegalTransition:
            continue
        batches.setdefault(_cancel_query(status), []).append({"id": current["id"], "now": now})
    changed = [
        row
        for query, params in batches.items()
        for row in maybe_job_rows(tx.returning_many(query, params))
    ]
    return sorted((row for row in changed if row is not None), key=lambda row: row["id"])


def retry_locked(tx: Transaction, current: JobRow, now: float) -> JobRow:
    """Put a failed or cancelled job back in the queue with fresh attempts.

    A job cancelled while some of its dependencies still ran waits for them again
    (``waiting``), never running ahead of them. Raises JobConflict when the job
    cannot be retried, or while its dependants are still being cancelled.
    """
    job_id = current["id"]
    params = {"id": job_id, "now": now}
    try:
        model.next_status(current["status"], Event.RETRY)
    except model.IllegalTransition:
        raise JobConflict(
            f"job {job_id} {model.in_words(current['status'])}; "
            "only a failed or cancelled job can be retried",
            ErrorCode.NOT_RETRYABLE,
        ) from None
    if current["has_dependants"] and tx.one("cascade_pending", params):
        raise JobConflict(
            f"job {job_id}'s dependants are still being cancelled; try again shortly",
            ErrorCode.TRY_AGAIN,
        )
    pending = 0
    if current.get("depends_on"):  # a cancelled dependant keeps its unresolved edges
        found = tx.one("unresolved_dependencies", params)
        pending = int(found["pending"]) if found else 0
    status = model.next_status(current["status"], Event.RETRY, blocked=pending > 0)
    row = job_row(tx.one("retry_job", params))
    if row is None:  # pragma: no cover - the row is locked (or the writer is alone)
        raise JobConflict(f"job {job_id} changed meanwhile; try again", ErrorCode.TRY_AGAIN)
    if status == Status.WAITING:  # never ahead of a dependency still to finish
        row = job_row(tx.one("start_waiting", {"id": job_id, "pending": pending})) or row
    return row


def retry_many(tx: Transaction, rows: list[JobRow], now: float) -> list[JobRow]:
    """:func:`retry_locked` for many locked rows: the plain ones (no dependencies, no
    dependants) in one batched statement, the others one by one with every check;
    the rows it does not apply to are left out."""
    plain: list[dict[str, Any]] = []
    checked: list[JobRow] = []
    for current in rows:
        if current["status"] not in RETRYABLE:
            continue
        if current.get("depends_on") or current["has_dependants"]:
            checked.append(current)
        else:
            plain.append({"id": current["id"], "now": now})
    changed = [row for row in maybe_job_rows(tx.returning_many("retry_job", plain)) if row]
    for current in checked:
        try:
            changed.append(retry_locked(tx, current, now))
        except JobConflict:
            pass  # its dependants are still being cancelled: left as it is
    return sorted(changed, key=lambda row: row["id"])
