"""Intake: new jobs in, then the wake-ups, counts and plugin events they cause.

The inserting itself (idempotency keys, dependencies, shared commits) is
:class:`~taskframe.server.submission.JobInserter`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskframe.server.config import ServerConfig
from taskframe.server.storage import Row, Store
from taskframe.server.submission import JobInserter
from taskframe.server.telemetry import Telemetry
from taskframe.server.wakeups import Wakeups


class Intake:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        wakeups: Wakeups,
        telemetry: Telemetry,
        events: Any = None,
    ) -> None:
        self.inserter = JobInserter(store, config, clock)
        self.wakeups = wakeups
        self.telemetry = telemetry
        self.events = events

    def submit(self, jobs: list[dict[str, Any]]) -> list[tuple[Row, bool]]:
        """Insert validated jobs, all or nothing; see :class:`JobInserter`."""
        results = self.inserter.submit(jobs)
        created_rows = [row for row, created in results if created]
        self.wakeups.announce(created_rows)
        self.telemetry.submitted(created_rows)
        if self.events is not None:
            self.events.submitted(created_rows)
        return results

    def submit_one(self, job: dict[str, Any]) -> tuple[Row, bool]:
        """Insert one validated job, sharing a commit with concurrent submissions."""
        row, created = self.inserter.submit_one(job)
        if created:
            self.wakeups.announce([row])
            self.telemetry.submitted([row])
            if self.events is not None:
                self.events.submitted([row])
        return row, created

    def announce(self, rows: list[Row]) -> None:
        """After a commit that created ``rows`` (a schedule's jobs): wake their workers,
        count and log them like any submission."""
        self.wakeups.announce(rows)
        self.telemetry.submitted(rows)
        if self.events is not None:
            self.events.submitted(rows)

    def new_job_params(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        """The row of a new job (for those who insert it themselves: schedules)."""
        return self.inserter.new_job_params(job, now)
