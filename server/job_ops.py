"""Job operations for clients: read, list and wait on jobs, cancel and retry them.

Cancel and retry are one store transaction each, checked against
:func:`taskframe.core.model.next_status`; after the commit they wake whoever
waits on the change (:class:`~taskframe.server.wakeups.Wakeups`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from taskframe.core import model
from taskframe.core.errors import ErrorCode, JobConflict, JobNotFound
from taskframe.core.model import Event, Status
from taskframe.server import dependencies
from taskframe.server.config import ServerConfig
from taskframe.server.notify import ChangeNotifier, WaitSlots
from taskframe.server.publisher import Publisher
from taskframe.server.storage import Row, Store, Transaction

NO_CURSOR = 2**62
# Bytes a job's JSON takes in a listing beside its payload and result.
JOB_OVERHEAD = 600


class JobOps:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        notifier: ChangeNotifier,
        wait_slots: WaitSlots,
        publisher: Publisher,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.notifier = notifier
        self.wait_slots = wait_slots
        self.publisher = publisher

    def get(self, job_id: int) -> Row:
        with self.store.reader() as tx:
            row = tx.one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return row

    def wait_until_finished(self, job_id: int, wait: float) -> Row:
        """The job, once finished or after ``wait`` seconds, whichever is first."""
        return self.wait_for_job(job_id, wait)[0]

    def wait_for_job(self, job_id: int, wait: float) -> tuple[Row, bool]:
        """(the job once finished or after ``wait`` s, whether the wait was refused).

        Past the cap of waiting requests the job is answered as it is at once.
        """
        row = self.get(job_id)
        if row["status"] in model.FINISHED or wait <= 0 or self.notifier.closed:
            return row, False
        with self.wait_slots.slot() as may_wait:
            if not may_wait:
                return row, True
            deadline = time.monotonic() + wait
            with self.notifier.waiting():
                while True:
                    generation = self.notifier.generation
                    row = self.get(job_id)
                    remaining = deadline - time.monotonic()
                    if row["status"] in model.FINISHED or remaining <= 0 or self.notifier.closed:
                        return row, False
                    self.notifier.wait_for_job(job_id, generation, remaining)

    def list_jobs(
        self,
        status: str | None,
        job_type: str | None,
        limit: int,
        cursor: int | None,
        full: bool = False,
    ) -> list[Row]:
        """A page of jobs, newest first: summaries (no payload, no result) unless ``full``.

        A full page stops before its payloads and results pass the answer cap
        (always at least one job); the caller's cursor goes on from its last job.
        """
        filters = [name for name, value in (("status", status), ("type", job_type)) if value]
        params = {"status": status, "type": job_type, "limit": limit, "cursor": cursor or NO_CURSOR}
        with self.store.reader() as tx:
            rows = tx.all(tx.filtered("list_jobs", filters), params)
            if not full:
                return rows
            page: list[Row] = []
            size = 0
            for row in rows:
                size += JOB_OVERHEAD + row["payload_bytes"] + (row["result_bytes"] or 0)
                if page and size > self.config.max_answer_bytes:
                    break
                page.append(row)
            if not page:
                return []
            found = tx.all("get_jobs", {"ids": [row["id"] for row in page]})
        return sorted(found, key=lambda row: -row["id"])

    def dependency_results(self, rows: list[Row]) -> dict[int, dict[str, Any]]:
        """{job id: {dependency id: result}} of leased ``rows`` that have dependencies."""
        with self.store.reader() as tx:
            return dependencies.results(tx, rows)

    def attempts(self, job_id: int) -> list[Row]:
        self.get(job_id)
        with self.store.reader() as tx:
            return tx.all("list_attempts", {"job_id": job_id})

    def cancel(self, job_id: int) -> Row:
        """Cancel a queued or scheduled job now; ask the worker of a running one to stop."""
        params = {"id": job_id, "now": self.clock()}
        with self.publisher.transaction(params["now"]) as (tx, changes):
            current = tx.one("get_job_for_update", params)
            if current is None:
                raise JobNotFound(job_id)
            try:
                status = model.next_status(current["status"], Event.CANCEL)
            except model.IllegalTransition:
                raise JobConflict(
                    f"job {job_id} {model.in_words(current['status'], already=True)}",
                    ErrorCode.JOB_FINISHED,
                ) from None
            query = "request_cancel" if status == Status.RUNNING else "cancel_queued"
            row = tx.one(query, params)
            if row is None:  # pragma: no cover - the row is locked (or the writer is alone)
                raise JobConflict(f"job {job_id} changed meanwhile; try again", ErrorCode.TRY_AGAIN)
            changes.cancelled.append(row)
        return row

    def retry(self, job_id: int) -> Row:
        """Put a failed or cancelled job back in the queue with fresh attempts.

        Attempts keep their numbers for the life of the job: the retry grants
        as many attempts as the job was submitted with (``max_attempts`` grows).
        """
        params = {"id": job_id, "now": self.clock()}
        with self.publisher.transaction(params["now"]) as (tx, changes):
            current = tx.one("get_job_for_update", params)
            if current is None:
                raise JobNotFound(job_id)
            pending = _unresolved_dependencies(tx, current)
            try:
                status = model.next_status(current["status"], Event.RETRY, blocked=pending > 0)
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
            row = tx.one("retry_job", params)
            if row is None:  # pragma: no cover - the row is locked (or the writer is alone)
                raise JobConflict(f"job {job_id} changed meanwhile; try again", ErrorCode.TRY_AGAIN)
            if status == Status.WAITING:  # never ahead of a dependency still to finish
                row = tx.one("start_waiting", {"id": job_id, "pending": pending}) or row
            changes.requeued.append(row)
        return row


def _unresolved_dependencies(tx: Transaction, job: Row) -> int:
    """How many of ``job``'s dependencies have not finished (edges left after a cancel)."""
    if not job.get("depends_on"):
        return 0
    found = tx.one("unresolved_dependencies", {"id": job["id"]})
    return int(found["pending"]) if found else 0
