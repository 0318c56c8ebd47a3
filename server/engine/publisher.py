"""One after-commit publisher: a transaction records what it changed, and one place
tells everyone who needs to know.

Every write that changes jobs runs in :meth:`Publisher.transaction`, and records
its changes on the :class:`Changes` it gets (jobs submitted, attempts ended,
jobs cancelled, retried, promoted, leased). Before the commit, in the same
transaction, the publisher resolves the dependants of the jobs that finished
and tells other servers (``Store.notify_change``: PostgreSQL delivers it at
commit). After the commit it wakes this server's long-polls and alarms
(:class:`~taskframe.server.engine.wakeups.Wakeups`), counts and logs the changes
(telemetry) and fires the plugins' lifecycle hooks. Nothing is published for a
transaction that rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from taskframe.core import model
from taskframe.server.engine import dependencies
from taskframe.server.engine.wakeups import Wakeups
from taskframe.server.observe.telemetry import Telemetry
from taskframe.server.storage import AttemptRecord, JobRow, Store, Transaction


@dataclass
class Changes:
    """What one transaction changed, recorded as it goes (see :class:`Publisher`)."""

    now: float
    #: Jobs created (client submissions and schedules' fires alike).
    submitted: list[JobRow] = field(default_factory=list)
    #: Attempts that ended (their history rows) and the jobs as they were left.
    history: list[AttemptRecord] = field(default_factory=list)
    ended: list[JobRow] = field(default_factory=list)
    #: Clients' cancels (one, or a bulk action's chunk): the jobs cancelled, or
    #: running with their cancel requested.
    cancelled: list[JobRow] = field(default_factory=list)
    #: Clients' retries: the jobs queued (or waiting) again.
    requeued: list[JobRow] = field(default_factory=list)
    #: Scheduled jobs that became due.
    promoted: list[JobRow] = field(default_factory=list)
    #: Jobs leased to a worker (worker id, rows): counted, nobody else to tell.
    leased: tuple[str, list[JobRow]] | None = None
    #: Schedules' fire times dropped by their misfire policy.
    dropped: Mapping[str, Any] = field(default_factory=dict)
    #: Dependants moved on (resolved in the transaction, before its commit).
    moved: dependencies.Resolution = field(default_factory=dependencies.Resolution)
    #: Set by a writer whose change the others must hear of though it recorded no row.
    other_servers: bool = False
    #: A queue resumed or a limit changed: jobs may be leasable that were not, so every
    #: lease waiter looks again, on this server and (being told) on the others.
    routing: bool = False

    def attempts_ended(self, history: list[AttemptRecord], rows: list[JobRow | None]) -> None:
        self.history += history
        self.ended += [row for row in rows if row is not None]

    def finished(self) -> list[JobRow]:
        """Jobs that reached a final status here: their dependants move on."""
        return [row for row in (*self.ended, *self.cancelled) if row["status"] in model.FINISHED]

    def heard_elsewhere(self) -> bool:
        """Whether other servers' waiters may care (anything but a lease changed)."""
        return bool(
            self.other_servers
            or self.routing
            or self.submitted
            or self.ended
            or self.cancelled
            or self.requeued
            or self.promoted
            or self.moved.changed
        )


class Publisher:
    def __init__(
        self,
        store: Store,
        wakeups: Wakeups,
        telemetry: Telemetry,
        cascade_batch: int,
        events: Any = None,
    ) -> None:
        self.store = store
        self.wakeups = wakeups
        self.telemetry = telemetry
        self.cascade_batch = cascade_batch
        #: Plugin lifecycle events (server/observe/events.py), None when no plugin wants them.
        self.events = events

    @contextmanager
    def transaction(self, now: float) -> Iterator[tuple[Transaction, Changes]]:
        """A write transaction and the record of its changes, published after its commit."""
        changes = Changes(now)
        with self.store.transaction() as tx:
            yield tx, changes
            self.before_commit(tx, changes)
        self.publish(changes)

    def before_commit(self, tx: Transaction, changes: Changes) -> None:
        """In the transaction: dependants of finished jobs move on (a chunk now, the rest
        to the housekeeper), and other servers are told (delivered at commit)."""
        finished = changes.finished()
        if finished:
            changes.moved = dependencies.resolve(tx, finished, changes.now, self.cascade_batch)
        if changes.heard_elsewhere():
            self.store.notify_change(tx)

    def submitted(self, rows: list[JobRow]) -> None:
        """After the commit of new jobs, and nothing else: what :meth:`publish` does
        for them (a submission's, without a whole :class:`Changes` to look through)."""
        self.wakeups.announce(rows)
        self.telemetry.submitted(rows)
        if self.events is not None:
            self.events.submitted(rows)

    def publish(self, changes: Changes) -> None:
        """After the commit: wake, count, log and tell the plugins."""
        wakeups, telemetry, events = self.wakeups, self.telemetry, self.events
        if changes.leased is not None:
            telemetry.leased(*changes.leased)
        if changes.submitted:
            self.submitted(changes.submitted)
        if changes.history:
            wakeups.ended(changes.ended)
            telemetry.attempts_ended(changes.history, changes.ended, changes.now)
            if events is not None:
                rows = {row["id"]: row for row in changes.ended}
                events.attempts_finished([(rows[a["job_id"]], a) for a in changes.history])
        if changes.cancelled:
            finished = [row for row in changes.cancelled if row["status"] in model.FINISHED]
            if finished:
                wakeups.notifier.jobs_finished(finished)
            telemetry.cancelled_many(changes.cancelled)  # a bulk cancel logs one line
            if events is not None:
                for row in changes.cancelled:
                    events.job_finished(row)
        if changes.requeued:
            wakeups.announce(changes.requeued)
            telemetry.requeued_many(changes.requeued)
        if changes.promoted:
            wakeups.work_ready(changes.promoted)
        if changes.dropped:
            telemetry.fire_times_dropped(changes.dropped)
        if changes.routing:
            wakeups.notifier.changed()
        wakeups.dependants_moved(changes.moved)
        if events is not None:
            for row in changes.moved.changed:
                if row["status"] in model.FINISHED:
                    events.job_finished(row)
