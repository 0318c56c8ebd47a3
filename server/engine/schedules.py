"""Recurring jobs: cron schedules fired by every server's housekeeper, once per time.

A schedule fires at most one job per fire time however many servers run:
the job's idempotency key is ``schedule:<name>:<fire time>`` and the
database's unique index on keys refuses a second one. After downtime (or
while a housekeeper was late) the ``misfire`` policy applies:

- ``latest`` (default): the latest missed time fires once; earlier ones are dropped;
- ``skip``: a time seen more than ``MISFIRE_GRACE`` seconds late is dropped.

Pausing stops firing; resuming starts again from the next time after now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskframe.core import cron
from taskframe.core.errors import ErrorCode, JobConflict
from taskframe.server.config import ServerConfig
from taskframe.server.engine.intake import Intake
from taskframe.server.engine.notify import DueTimer
from taskframe.server.engine.publisher import Publisher
from taskframe.server.storage import JobRow, Row, Store

MISFIRE_GRACE = 60.0
#: Due schedules fired per transaction (their jobs inserted in one batch).
FIRE_BATCH = 500
NEXT_SHOWN = 5
#: Missed fire times walked one by one; past that, the rest is counted from the mean period.
DROP_WALK = 64
#: Bytes a schedule's job may take as JSON: it is copied into a job at every fire time.
MAX_JOB_BYTES = 64 * 1024


@dataclass(frozen=True)
class Drop:
    """Fire times of one schedule dropped at once (counted in metrics and logged)."""

    count: int
    policy: str  # latest: the latest missed time fired instead; skip: too late, none fired
    first: float  # the first time dropped
    estimated: bool = False  # a long outage: the count past DROP_WALK is from the period


@dataclass(frozen=True)
class DueTimes:
    fire: float | None  # the time whose job is submitted now (None: skipped)
    latest: float  # the latest fire time passed
    next: float  # the next one to come
    dropped: Drop


class ScheduleNotFound(Exception):
    """No schedule has this name (HTTP 404)."""


class Schedules:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        intake: Intake,
        due_timer: DueTimer,
        publisher: Publisher,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        #: Fired jobs are prepared and inserted by the intake, like its submissions.
        self.intake = intake
        self.due_timer = due_timer
        self.publisher = publisher
        # Used by fire() only (the housekeeper's thread): fire times, prepared job rows.
        self._times = cron.FireTimes()
        self._prepared: dict[tuple[str, str], dict[str, Any]] = {}

    def create(self, spec: dict[str, Any]) -> Row:
        """Add a validated schedule; JobConflict when the name is taken."""
        now = self.clock()
        params = {
            "name": spec["name"],
            "cron": spec["cron"],
            "timezone": spec["timezone"],
            "job": json.dumps(spec["job"], separators=(",", ":")),
            "misfire": spec["misfire"],
            "paused": 1 if spec["paused"] else 0,
            "next_fire_at": cron.next_fire(spec["cron"], spec["timezone"], now),
            "created_at": now,
        }
        limit = self.config.max_schedules
        with self.publisher.transaction(now) as (tx, changes):
            tx.all("lock_schedules")
            if (tx.one("count_schedules") or {"count": 0})["count"] >= limit:
                raise JobConflict(
                    f"this server keeps at most {limit} schedules (--max-schedules {limit}); "
                    "delete one first",
                    ErrorCode.TOO_MANY_SCHEDULES,
                )
            row = tx.one("insert_schedule", params)
            if row is None:
                raise JobConflict(
                    f"a schedule named {spec['name']!r} exists already", ErrorCode.SCHEDULE_EXISTS
                )
            changes.other_servers = True  # their housekeepers wake for it
        self.due_timer.note(row["next_fire_at"])  # wake this server's housekeeper
        return row

    def get(self, name: str) -> Row:
        with self.store.reader() as tx:
            row = tx.one("get_schedule", {"name": name})
        if row is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return row

    def list(self) -> list[Row]:
        with self.store.reader() as tx:
            return tx.all("list_schedules")

    def delete(self, name: str) -> None:
        with self.store.transaction() as tx:
            if tx.run("delete_schedule", {"name": name}) == 0:
                raise ScheduleNotFound(f"no schedule named {name!r}")

    def set_paused(self, name: str, paused: bool) -> Row:
        row = self.get(name)
        # Resuming starts from now: times passed while paused are not fired.
        next_at = cron.next_fire(row["cron"], row["timezone"], self.clock())
        params = {"name": name, "paused": 1 if paused else 0, "next_fire_at": next_at}
        with self.store.transaction() as tx:
            changed = tx.one("set_schedule_paused", params)
        if changed is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        if not paused:
            self.due_timer.note(next_at)
        return changed

    def fire(self) -> int:
        """Submit the jobs of due schedules, a batch per transaction; return how many were
        created (the housekeeper). Fire times dropped by the misfire policy are counted."""
        now = self.clock()
        due = self.next_due()
        if due is None or due > now:
            return 0  # a read, not a write lock, when nothing is due
        created = 0
        while True:
            rows, seen = self._fire_batch(now)
            created += len(rows)
            if seen < FIRE_BATCH:
                return created

    def _fire_batch(self, now: float) -> tuple[Sequence[JobRow], int]:
        """Fire up to FIRE_BATCH due schedules in one transaction.

        Returns (the jobs created, how many schedules were due).
        """
        drops: dict[str, Drop] = {}
        with self.publisher.transaction(now) as (tx, changes):
            due = tx.all("due_schedules", {"now": now, "limit": FIRE_BATCH})
            jobs, advances = [], []
            for row in due:
                times = self._due_times(row, now)
                if times.fire is not None:
                    key = f"schedule:{row['name']}:{cron.iso(times.fire)}"
                    params = {**self._job_params(row, now), "idempotency_key": key}
                    jobs.append({**params, "run_at": min(times.fire, now), "created_at": now})
                if times.dropped.count:
                    drops[row["name"]] = times.dropped
                advances.append(
                    {
                        "name": row["name"],
                        "previous": row["next_fire_at"],
                        "next_fire_at": times.next,
                        "last_fire_at": times.latest,
                    }
                )
            # One batched insert by the intake, counted and published like every
            # submission (a time fired already by another server is left out).
            created = self.intake.insert_new(tx, jobs, changes)
            tx.run_many("advance_schedule", advances)
            changes.dropped = drops
        return created, len(due)

    def _job_params(self, row: Row, now: float) -> dict[str, Any]:
        """A schedule's job as a row to insert (its key, run_at and created_at aside):
        prepared once per schedule and job, not at every fire time."""
        cache_key = (row["name"], row["job"])
        params = self._prepared.get(cache_key)
        if params is None:
            if len(self._prepared) >= 2 * max(1, self.config.max_schedules):
                self._prepared.clear()
            job = json.loads(row["job"])
            # The request hash leaves the key out: the same for every fire time.
            job["idempotency_key"] = f"schedule:{row['name']}"
            params = self._prepared[cache_key] = self.intake.new_job_params(job, now)
        return params

    def _due_times(self, row: Row, now: float) -> DueTimes:
        """What a due schedule does now: which time fires, how many are dropped, the next."""
        expression, zone, first = row["cron"], row["timezone"], row["next_fire_at"]
        # The common case costs one step: the time after the due one is still to come.
        passed, latest = 1, first
        following = self._times.next_fire(expression, zone, first)
        while following <= now and passed < DROP_WALK:
            passed, latest = passed + 1, following
            following = self._times.next_fire(expression, zone, following)
        estimated = following <= now
        if estimated:  # down for long: the times past the walk are counted by their period
            period = (latest - first) / (passed - 1)
            walked, latest = latest, cron.latest_fire(expression, zone, first, now)
            passed += round((latest - walked) / period)
            following = self._times.next_fire(expression, zone, now)
        policy = row["misfire"]
        if policy == "skip" and now - latest > MISFIRE_GRACE:
            drop = Drop(passed, policy, first, estimated)  # too late: none fires
            return DueTimes(None, latest, following, drop)
        # The latest time fires; the earlier ones are dropped.
        return DueTimes(latest, latest, following, Drop(passed - 1, policy, first, estimated))

    def next_due(self) -> float | None:
        with self.store.reader() as tx:
            row = tx.one("next_schedule_fire")
        return None if row is None else row["next_fire_at"]


def schedule_json(row: Row, next_count: int = 0) -> dict[str, Any]:
    shown = {
        "name": row["name"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "misfire": row["misfire"],
        "paused": row["paused"],
        "job": json.loads(row["job"]),
        "next_fire_at": None if row["paused"] else cron.iso(row["next_fire_at"]),
        "last_fire_at": None if row["last_fire_at"] is None else cron.iso(row["last_fire_at"]),
    }
    if next_count and not row["paused"]:
        later = cron.next_fires(row["cron"], row["timezone"], row["next_fire_at"], next_count - 1)
        shown["next_fire_times"] = [cron.iso(t) for t in [row["next_fire_at"], *later]]
    return shown
