"""Job operations for clients: read, list and wait on jobs, cancel and retry them.

Cancel and retry are one store transaction each, checked against
:func:`taskframe.core.model.next_status` (:mod:`.job_actions`, shared with the
bulk actions of :mod:`.bulk`), run in :meth:`Publisher.transaction
<taskframe.server.engine.publisher.Publisher.transaction>`, which resolves dependants and
tells other servers before the commit, and wakes, counts and tells plugins after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from taskframe.core import model
from taskframe.core.errors import JobNotFound
from taskframe.server.config import ServerConfig
from taskframe.server.engine import dependencies, job_actions
from taskframe.server.engine.listing import Listing
from taskframe.server.engine.notify import ChangeNotifier, WaitSlots
from taskframe.server.engine.publisher import Changes, Publisher
from taskframe.server.storage import (
    AttemptRow,
    JobRow,
    Row,
    Store,
    Transaction,
    job_row,
    job_rows,
)

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

    def get(self, job_id: int) -> JobRow:
        with self.store.reader() as tx:
            row = job_row(tx.one("get_job", {"id": job_id}))
        if row is None:
            raise JobNotFound(job_id)
        return row

    def wait_until_finished(self, job_id: int, wait: float) -> JobRow:
        """The job, once finished or after ``wait`` seconds, whichever is first."""
        return self.wait_for_job(job_id, wait)[0]

    def wait_for_job(self, job_id: int, wait: float) -> tuple[JobRow, bool]:
        """(the job once finished or after ``wait`` s, whether the wait was refused).

        Past the cap of waiting requests the job is answered as it is at once.
        The waiter is registered before the job is read; the commit that finishes
        the job hands it over (no second read), and only a change elsewhere or the
        end of the wait has it read again.
        """
        if wait <= 0 or self.notifier.closed:
            return self.get(job_id), False
        with self.wait_slots.slot() as may_wait:
            if not may_wait:
                row = self.get(job_id)
                return row, row["status"] not in model.FINISHED
            deadline = time.monotonic() + wait
            with self.notifier.waiting_for_job(job_id) as waiter:
                row = self.get(job_id)
                while row["status"] not in model.FINISHED and not self.notifier.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    if waiter.wait(remaining) and waiter.finished is not None:
                        row = cast("JobRow", waiter.finished)
                    else:  # a change elsewhere, or the end of the wait: as it is now
                        row = self.get(job_id)
                return row, False

    def list_jobs(
        self,
        status: str | None,
        job_type: str | None,
        limit: int,
        cursor: Any,
        full: bool = False,
        listing: Listing | None = None,
    ) -> list[JobRow]:
        """A page of jobs, newest first unless ``listing`` says otherwise (its filters,
        order and size; see server/engine/listing.py): summaries (no payload, no result)
        unless ``full``.

        A full page stops before its payloads and results pass the answer cap
        (always at least one job); the caller's cursor goes on from its last job.
        """
        if listing is None:
            listing = Listing({"status": status, "type": job_type}, limit=limit)
        with self.store.reader() as tx:
            rows = tx.all(listing.query(tx), listing.params(cursor))
            if not full:
                return job_rows(rows)  # summaries: no payload, no result
            page: list[Row] = []
            size = 0
            for row in rows:
                size += JOB_OVERHEAD + row["payload_bytes"] + (row["result_bytes"] or 0)
                if page and size > self.config.max_answer_bytes:
                    break
                page.append(row)
            if not page:
                return []
            ids = [r["id"] for r in page]
            found = {r["id"]: r for r in job_rows(tx.all("get_jobs", {"ids": ids}))}
        return [found[row["id"]] for row in page if row["id"] in found]

    def dependency_results(self, rows: list[JobRow]) -> dict[int, dict[str, Any]]:
        """{job id: {dependency id: result}} of leased ``rows`` that have dependencies."""
        with self.store.reader() as tx:
            return dependencies.results(tx, rows)

    def attempts(self, job_id: int) -> list[AttemptRow]:
        self.get(job_id)
        with self.store.reader() as tx:
            return cast("list[AttemptRow]", tx.all("list_attempts", {"job_id": job_id}))

    def cancel(self, job_id: int) -> JobRow:
        """Cancel a queued or scheduled job now; ask the worker of a running one to stop."""
        return self._on_locked(job_id, job_actions.cancel_locked, lambda c: c.cancelled)

    def retry(self, job_id: int) -> JobRow:
        """Put a failed or cancelled job back in the queue with fresh attempts (or
        waiting for its dependencies again, when they still run).

        Attempts keep their numbers for the life of the job: the retry grants
        as many attempts as the job was submitted with (``max_attempts`` grows).
        """
        return self._on_locked(job_id, job_actions.retry_locked, lambda c: c.requeued)

    def _on_locked(
        self,
        job_id: int,
        action: Callable[[Transaction, JobRow, float], JobRow],
        recorded: Callable[[Changes], list[JobRow]],
    ) -> JobRow:
        """``action`` on the job's row, locked in a published transaction; the row it
        leaves is recorded in the ``recorded`` list of the transaction's changes."""
        params = {"id": job_id, "now": self.clock()}
        with self.publisher.transaction(params["now"]) as (tx, changes):
            current = job_row(tx.one("get_job_for_update", params))
            if current is None:
                raise JobNotFound(job_id)
            recorded(changes).append(action(tx, current, params["now"]))
        return recorded(changes)[0]
