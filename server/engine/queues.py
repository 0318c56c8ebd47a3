"""Queues and concurrency limits as the API manages them (the lease applies them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskframe.core.model import STATUSES
from taskframe.server.engine.publisher import Publisher
from taskframe.server.storage import Row, Store, counts

LIMIT_KINDS = ("type", "queue")


class Flow:
    def __init__(self, store: Store, publisher: Publisher, clock: Callable[[], float]) -> None:
        self.store = store
        #: Each change is recorded and published after its commit like every other write.
        self.publisher = publisher
        self.clock = clock

    def queues(self) -> list[dict[str, Any]]:
        """Every queue that holds a job or was paused, with its counts by status
        (from job_counts: no scan of the jobs table)."""
        with self.store.reader() as tx:
            by_queue = counts.by(tx, "queue")
            states = {row["name"]: row["paused"] for row in tx.all("list_queue_states")}
        names = sorted(set(by_queue) | set(states))
        found = {name: by_queue.get(name) or dict.fromkeys(STATUSES, 0) for name in names}
        return [
            {"name": name, "paused": states.get(name, False), "counts": found[name]}
            for name in names
        ]

    def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        with self.publisher.transaction(self.clock()) as (tx, changes):
            tx.run("set_queue_paused", {"name": name, "paused": 1 if paused else 0})
            # Resumed, its jobs are ready again; paused, other servers are told all the same.
            changes.routing, changes.other_servers = not paused, True
        return next(q for q in self.queues() if q["name"] == name)

    def limits(self) -> list[Row]:
        with self.store.reader() as tx:
            return tx.all("list_limits")

    def set_limit(self, kind: str, name: str, max_running: int) -> Row:
        with self.publisher.transaction(self.clock()) as (tx, changes):
            tx.run("set_limit", {"kind": kind, "name": name, "max_running": max_running})
            changes.routing = True  # a raised limit frees slots
        return {"kind": kind, "name": name, "max_running": max_running}

    def delete_limit(self, kind: str, name: str) -> bool:
        with self.publisher.transaction(self.clock()) as (tx, changes):
            deleted = tx.run("delete_limit", {"kind": kind, "name": name}) > 0
            changes.routing = True
        return deleted
