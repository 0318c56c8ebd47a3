"""Bulk retry and cancel: every job a filter matches, a chunk per transaction.

``POST /jobs/retry`` and ``POST /jobs/cancel`` act on the jobs in the statuses
the action applies to (:mod:`taskframe.server.engine.job_actions`, the rules of the
single-job endpoints) that match the filter of ``GET /jobs``. Each chunk's ids
are read outside any write transaction (the listing's index, in id order),
then locked, checked again and changed in one short transaction, so that a
filter matching millions of jobs never holds the database for long; other
requests go between two chunks. ``dry_run`` only counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from taskframe.server.engine import job_actions
from taskframe.server.engine.job_ops import JobOps
from taskframe.server.engine.listing import Listing
from taskframe.server.engine.upkeep import CASCADE_PAUSE
from taskframe.server.storage import job_rows

#: Jobs changed per transaction (each a few statements: a few milliseconds).
CHUNK = 200
#: Ids read per query when only counting.
COUNT_CHUNK = 5000
ACTIONS = {"retry": job_actions.RETRYABLE, "cancel": job_actions.CANCELLABLE}


class NothingApplies(ValueError):
    """The filter's status is one the action never applies to."""


@dataclass
class BulkResult:
    matched: int = 0
    changed: int = 0
    cancel_requested: int = 0
    skipped: int = 0
    dry_run: bool = False


class BulkActions:
    def __init__(self, jobs: JobOps, chunk: int = CHUNK) -> None:
        self.jobs = jobs
        self.chunk = chunk

    def run(
        self, action: str, filters: dict[str, Any], limit: int | None, dry_run: bool
    ) -> BulkResult:
        result = BulkResult(dry_run=dry_run)
        for status in statuses(action, filters.get("status")):
            listing = Listing(
                {**filters, "status": status},
                sort="id",
                order="asc",
                limit=COUNT_CHUNK if dry_run else self.chunk,
            )
            after = 0
            while limit is None or result.matched < limit:
                with self.jobs.store.reader() as tx:
                    rows = tx.all(listing.query(tx), listing.params(after))
                ids = [row["id"] for row in rows]
                if limit is not None:
                    ids = ids[: limit - result.matched]
                if not ids:
                    break
                result.matched += len(ids)
                if not dry_run:
                    self._apply(action, ids, result)
                    time.sleep(CASCADE_PAUSE)  # let waiting writers of this process in first
                after = ids[-1]
        return result

    def _apply(self, action: str, ids: list[int], result: BulkResult) -> None:
        jobs = self.jobs
        now = jobs.clock()
        change = job_actions.cancel_many if action == "cancel" else job_actions.retry_many
        # The publisher resolves the dependants of the cancelled jobs in the transaction,
        # tells other servers, and after the commit wakes, counts, logs and tells plugins.
        with jobs.publisher.transaction(now) as (tx, changes):
            # Locked in id order and checked again: some may have moved on since.
            changed = change(tx, job_rows(tx.all("get_jobs_for_update", {"ids": ids})), now)
            if action == "cancel":
                changes.cancelled += changed
            else:
                changes.requeued += changed
        result.skipped += len(ids) - len(changed)  # moved on, or pruned meanwhile
        result.changed += len(changed)
        if action == "cancel":
            result.cancel_requested += sum(row["status"] == "running" for row in changed)


def statuses(action: str, wanted: str | None) -> list[str]:
    """The statuses ``action`` walks: those it applies to, or the filter's one."""
    applies = ACTIONS[action]
    if wanted is None:
        return list(applies)
    if wanted not in applies:
        raise NothingApplies(
            f"{action} applies to jobs that are {', '.join(applies)}; not to {wanted} ones"
        )
    return [wanted]
