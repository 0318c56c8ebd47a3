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
from typing import Any

from taskframe.core import cron
from taskframe.core.errors import JobConflict
from taskframe.server.scheduler import Scheduler
from taskframe.server.storage import Row

MISFIRE_GRACE = 60.0
FIRE_BATCH = 100
NEXT_SHOWN = 5


class ScheduleNotFound(Exception):
    """No schedule has this name (HTTP 404)."""


class Schedules:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store

    def create(self, spec: dict[str, Any]) -> Row:
        """Add a validated schedule; JobConflict when the name is taken."""
        now = self.scheduler.clock()
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
        with self.store.transaction() as tx:
            row = tx.one("insert_schedule", params)
            if row is None:
                raise JobConflict(f"a schedule named {spec['name']!r} exists already")
            self.store.notify_change(tx)
        self.scheduler.due_timer.note(row["next_fire_at"])  # wake this server's housekeeper
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
        next_at = cron.next_fire(row["cron"], row["timezone"], self.scheduler.clock())
        params = {"name": name, "paused": 1 if paused else 0, "next_fire_at": next_at}
        with self.store.transaction() as tx:
            changed = tx.one("set_schedule_paused", params)
        if changed is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        if not paused:
            self.scheduler.due_timer.note(next_at)
        return changed

    def fire(self) -> int:
        """Submit the jobs of due schedules; return how many were created (the housekeeper)."""
        now = self.scheduler.clock()
        due = self.next_due()
        if due is None or due > now:
            return 0  # a read, not a write lock, when nothing is due
        intake = self.scheduler.intake
        created: list[Row] = []
        with self.store.transaction() as tx:
            for row in tx.all("due_schedules", {"now": now, "limit": FIRE_BATCH}):
                latest = cron.latest_fire(row["cron"], row["timezone"], row["next_fire_at"], now)
                late = now - latest > MISFIRE_GRACE
                if not (row["misfire"] == "skip" and late):
                    job = json.loads(row["job"])
                    job["idempotency_key"] = f"schedule:{row['name']}:{cron.iso(latest)}"
                    params = intake.new_job_params(job, now)
                    params["run_at"] = min(latest, now)
                    [inserted] = tx.returning_many("insert_job", [params])
                    if inserted is not None:  # None: this time fired already
                        created.append(inserted)
                tx.run(
                    "advance_schedule",
                    {
                        "name": row["name"],
                        "previous": row["next_fire_at"],
                        "next_fire_at": cron.next_fire(row["cron"], row["timezone"], now),
                        "last_fire_at": latest,
                    },
                )
            if created:
                self.store.notify_change(tx)
        if created:
            self.scheduler.announce(created)
        return len(created)

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
        "paused": bool(row["paused"]),
        "job": json.loads(row["job"]),
        "next_fire_at": None if row["paused"] else cron.iso(row["next_fire_at"]),
        "last_fire_at": None if row["last_fire_at"] is None else cron.iso(row["last_fire_at"]),
    }
    if next_count and not row["paused"]:
        later = cron.next_fires(row["cron"], row["timezone"], row["next_fire_at"], next_count - 1)
        shown["next_fire_times"] = [cron.iso(t) for t in [row["next_fire_at"], *later]]
    return shown
