"""Intake: new jobs in, then the wake-ups, counts and plugin events they cause.

The inserting itself (idempotency keys, dependencies, shared commits) is
:class:`~taskframe.server.engine.submission.JobInserter`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskframe.server.config import ServerConfig
from taskframe.server.engine.publisher import Changes, Publisher
from taskframe.server.engine.submission import JobInserter
from taskframe.server.storage import JobRow, Store, Transaction


class Intake:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        publisher: Publisher,
    ) -> None:
        self.inserter = JobInserter(store, config, clock, publisher)
        self.clock = clock
        self.publisher = publisher

    def submit(self, jobs: list[dict[str, Any]]) -> list[tuple[JobRow, bool]]:
        """Insert validated jobs, all or nothing; see :class:`JobInserter`."""
        results = self.inserter.submit(jobs)
        self._published([row for row, created in results if created])
        return results

    def submit_one(self, job: dict[str, Any]) -> tuple[JobRow, bool]:
        """Insert one validated job, sharing a commit with concurrent submissions."""
        row, created = self.inserter.submit_one(job)
        if created:
            self._published([row])
        return row, created

    def _published(self, created: list[JobRow]) -> None:
        """After the commit: each caller's new jobs are announced, counted and logged
        as its own (a shared commit logs one submission as one, not as a batch)."""
        self.publisher.submitted(created)

    def new_job_params(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        """The row of a new job, ready for :meth:`insert_new` (schedules prepare theirs)."""
        return self.inserter.new_job_params(job, now)

    def insert_new(
        self, tx: Transaction, prepared: list[dict[str, Any]], changes: Changes
    ) -> list[JobRow]:
        """Insert prepared jobs in the caller's transaction (schedules' fires); see
        :meth:`JobInserter.insert_new`."""
        return self.inserter.insert_new(tx, prepared, changes)
