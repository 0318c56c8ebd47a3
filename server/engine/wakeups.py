"""After a commit: wake whoever on this server waits on what changed.

Lease long-polls hear of new ready jobs (one waiter per job), job waiters of
finished jobs, the housekeeper's alarm of scheduled ones and its cascader of
dependants left to it. Other servers hear through ``Store.notify_change``,
which the publisher calls inside each writer's transaction (engine/publisher.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from taskframe.core import model
from taskframe.core.model import Status
from taskframe.server.engine import dependencies
from taskframe.server.engine.notify import ChangeNotifier, DueTimer, WorkKey
from taskframe.server.storage import JobRow


class Wakeups:
    def __init__(self, notifier: ChangeNotifier, due_timer: DueTimer) -> None:
        self.notifier = notifier
        self.due_timer = due_timer
        #: Seen at the last lease: some limit is set (a finished job may free a slot).
        self.limited = False
        #: Set when dependants were left to the housekeeper (see dependencies.cascade).
        self.cascade_wanted = threading.Event()

    def announce(self, rows: Iterable[JobRow]) -> None:
        """Wake one lease waiter per new ready job; set the alarm for scheduled ones."""
        ready: Counter[WorkKey] = Counter()
        for row in rows:
            if row["status"] == Status.QUEUED:
                ready[work_key(row)] += 1
            elif row["status"] == Status.SCHEDULED:
                self.due_timer.note(row["run_at"])
        if ready:
            self.notifier.work_ready(ready)

    def work_ready(self, rows: Iterable[JobRow]) -> None:
        """Wake one lease waiter per row (jobs made ready)."""
        self.notifier.work_ready(Counter(work_key(row) for row in rows))

    def ended(self, rows: Iterable[JobRow | None]) -> None:
        """After a commit that ended attempts: wake whoever waits on what changed."""
        ended = [row for row in rows if row is not None]
        finished = [row for row in ended if row["status"] in model.FINISHED]
        if finished:
            self.notifier.jobs_finished(finished)
            if self.limited:  # a slot under a limit may be free: let its waiters look
                self.work_ready(ended)
        self.announce(ended)

    def dependants_moved(self, resolution: dependencies.Resolution) -> None:
        """After a commit that readied or cancelled dependants: wake their waiters, and
        the housekeeper when some are left to it."""
        if resolution.pending:
            self.cascade_wanted.set()
        if resolution.changed:
            self.ended(resolution.changed)


def work_key(row: JobRow) -> WorkKey:
    """What a ready job needs of a lease waiter: its type, and its queue (None: unknown)."""
    return row["type"], row.get("queue")
