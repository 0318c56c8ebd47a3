"""Upkeep: what the housekeeper does to jobs (reap, promote, cascade, prune).

Firing schedules is :mod:`taskframe.server.engine.schedules`'s; the threads that run
all of it are the :class:`~taskframe.server.engine.housekeeper.Housekeeper`'s.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from taskframe.core.model import Outcome
from taskframe.server.config import ServerConfig
from taskframe.server.engine import dependencies
from taskframe.server.engine.attempt_end import Ending, next_step
from taskframe.server.engine.attempts import end_attempts
from taskframe.server.engine.publisher import Publisher
from taskframe.server.storage import AttemptRecord, Store, job_rows

REAP_BATCH = 200
#: Seconds the housekeeper pauses between two cascade chunks (other writers go first).
CASCADE_PAUSE = 0.002


class Upkeep:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        rng: random.Random,
        publisher: Publisher,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.rng = rng
        self.publisher = publisher

    def reap(self, expire_leases: bool = True) -> int:
        """Fail the attempts whose lease expired or whose timeout passed.

        ``expire_leases=False`` reaps timeouts only: for a grace period after
        an outage, when workers had no server to send their heartbeats to.
        """
        now = self.clock()
        with self.publisher.transaction(now) as (tx, changes):
            params = {"now": now, "lease_cutoff": now if expire_leases else 0.0}
            rows = job_rows(tx.all("expired_attempts", {**params, "limit": REAP_BATCH}))
            history: list[AttemptRecord] = []
            endings: list[Ending] = []
            for row in rows:
                if row["deadline"] is not None and row["deadline"] < now:
                    outcome = Outcome.TIMED_OUT
                    error = f"attempt {row['attempts']} timed out after {row['timeout']:g} s"
                else:
                    outcome = Outcome.LEASE_EXPIRED
                    error = f"lease expired: worker {row['worker_id']} stopped heartbeating"
                status, run_at = next_step(row, outcome, now, self.config.backoff, self.rng)
                endings.append(Ending(row, status, outcome, run_at, row["worker_id"], error=error))
            ended = end_attempts(tx, endings, now, history)
            tx.run_set("insert_attempts", history)
            changes.attempts_ended(history, ended)
        return sum(row is not None for row in ended)

    def promote(self) -> int:
        """Make the scheduled jobs whose time came ready, in batches; return how many."""
        promoted = 0
        while True:
            now = self.clock()
            with self.publisher.transaction(now) as (tx, changes):
                rows = job_rows(
                    tx.all("promote_due", {"now": now, "limit": self.config.promote_batch})
                )
                changes.promoted = rows
            promoted += len(rows)
            if len(rows) < self.config.promote_batch:
                return promoted

    def cascade(self, stop: threading.Event | None = None) -> int:
        """Resolve the dependants left to the housekeeper, one chunk per transaction.

        Returns how many dependants moved. Each chunk commits on its own, so other
        requests interleave; a crash loses nothing (the markers are in the database).
        """
        moved = 0
        while stop is None or not stop.is_set():
            now = self.clock()
            with self.publisher.transaction(now) as (tx, changes):
                resolution = dependencies.cascade(tx, now, self.config.cascade_batch)
                if resolution is not None:
                    resolution.pending = False  # this loop goes on by itself
                    changes.moved = resolution
            if resolution is None:
                return moved
            moved += len(resolution.changed)
            time.sleep(CASCADE_PAUSE)  # let waiting writers of this process in first
        return moved

    def next_due(self) -> float | None:
        """When the earliest scheduled job becomes due (None: no job is scheduled)."""
        with self.store.reader() as tx:
            row = tx.one("next_run_at")
        return None if row is None else row["run_at"]

    def prune(self) -> int:
        """Delete finished jobs older than the retention period, in small batches."""
        if not self.config.retention:
            return 0
        before = self.clock() - self.config.retention
        pruned = 0
        while True:
            with self.store.transaction() as tx:
                rows = tx.all("prunable_jobs", {"before": before, "limit": self.config.prune_batch})
                ids = [row["id"] for row in rows]
                if ids:
                    tx.run("delete_attempts", {"ids": ids})
                    # Dependency rows go with their jobs, both ways: a later job
                    # must never inherit them (ids are not reused either, migration 8).
                    tx.run("delete_dependencies", {"ids": ids})
                    tx.run("delete_dependants", {"ids": ids})
                    tx.run("delete_dependant_links", {"ids": ids})
                    tx.run("delete_jobs", {"ids": ids})
            pruned += len(ids)
            if len(ids) < self.config.prune_batch:
                return pruned
