"""The job engine, assembled from its parts: what the server's command, tests and
benchmarks build.

Every job state change is written once, above the storage interface, in the
part named for it; each part gets only what it uses:

- :class:`~taskframe.server.engine.intake.Intake`: new jobs in (submit, submit_one, announce);
- :class:`~taskframe.server.engine.attempts.Attempts`: what workers do (lease, heartbeat,
  complete, release), with :class:`~taskframe.server.engine.leasing.Leasing` for the long-poll;
- :class:`~taskframe.server.engine.job_ops.JobOps`: what clients do to jobs (get, list, wait,
  cancel, retry);
- :class:`~taskframe.server.engine.upkeep.Upkeep`: what the housekeeper does (reap, promote,
  cascade, prune), with :class:`~taskframe.server.engine.schedules.Schedules` firing schedules;
- :class:`~taskframe.server.engine.publisher.Publisher`: each write records what it changed;
  before its commit the publisher resolves dependants and tells other servers, after
  it wakes this server's waiters (:class:`~taskframe.server.engine.wakeups.Wakeups`), counts,
  logs and fires the plugins' hooks.

HTTP resources and the housekeeper get the part they use, not this. The
shortcuts (``scheduler.lease`` and so on) keep embedders' and tests' calls short.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from taskframe.server.config import ServerConfig
from taskframe.server.engine.attempts import Attempts
from taskframe.server.engine.housekeeper import Housekeeper
from taskframe.server.engine.intake import Intake
from taskframe.server.engine.job_ops import JobOps
from taskframe.server.engine.leasing import Leasing
from taskframe.server.engine.notify import ChangeNotifier, DueTimer, WaitSlots
from taskframe.server.engine.publisher import Publisher
from taskframe.server.engine.schedules import Schedules
from taskframe.server.engine.upkeep import Upkeep
from taskframe.server.engine.wakeups import Wakeups
from taskframe.server.observe.metrics import Metrics
from taskframe.server.observe.telemetry import Telemetry
from taskframe.server.storage import Store
from taskframe.server.storage.counts import DatabaseState


class Scheduler:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        notifier: ChangeNotifier | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        events: Any = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.notifier = notifier or ChangeNotifier()
        self.rng = rng = rng or random.Random()
        #: Plugin lifecycle events (server/observe/events.py), None when no plugin wants them.
        self.events = events
        #: Logs and counts every committed change (server/observe/telemetry.py; no database work).
        self.telemetry = telemetry = telemetry or Telemetry(Metrics(store, clock))
        #: Whether the database answered lately (anonymous /health tells it, reading nothing).
        self.database = DatabaseState(store, stale_after=max(10.0, 5 * config.reap_interval))
        self.due_timer = DueTimer(clock)
        self.wait_slots = WaitSlots(config.max_waiting, config.busy_retry_after, rng)
        self.wakeups = wakeups = Wakeups(self.notifier, self.due_timer)
        #: After each commit, the one place that wakes, counts, logs and tells plugins.
        self.publisher = publisher = Publisher(
            store, wakeups, telemetry, config.cascade_batch, events
        )
        self.intake = Intake(store, config, clock, publisher)
        self.attempts = Attempts(store, config, clock, rng, publisher)
        self.leasing = Leasing(self.attempts, self.notifier, self.wait_slots)
        self.jobs = JobOps(store, config, clock, self.notifier, self.wait_slots, publisher)
        self.upkeep = Upkeep(store, config, clock, rng, publisher)
        self.schedules = Schedules(store, config, clock, self.intake, self.due_timer, publisher)

        # Shortcuts: one name per operation, whichever part does it.
        self.submit, self.submit_one = self.intake.submit, self.intake.submit_one
        self.get, self.list_jobs = self.jobs.get, self.jobs.list_jobs
        self.wait_for_job = self.jobs.wait_for_job
        self.wait_until_finished = self.jobs.wait_until_finished
        self.cancel, self.retry = self.jobs.cancel, self.jobs.retry
        self.dependency_results = self.jobs.dependency_results
        self.lease, self.lease_or_busy = self.leasing.lease, self.leasing.lease_or_busy
        self.release_undelivered = self.leasing.release_undelivered
        self.complete, self.heartbeat = self.attempts.complete, self.attempts.heartbeat
        self.release = self.attempts.release
        self.reap, self.promote = self.upkeep.reap, self.upkeep.promote
        self.cascade, self.prune = self.upkeep.cascade, self.upkeep.prune
        self.next_due = self.upkeep.next_due

    def housekeeper(self) -> Housekeeper:
        """This engine's housekeeper (not started)."""
        return Housekeeper(self.upkeep, self.schedules, self.wakeups, self.database)
