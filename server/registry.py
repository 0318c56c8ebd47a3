"""The workers seen lately, recorded from their lease and heartbeat traffic.

Shared across servers through the ``workers`` table. To keep the hot path
free of it, a server process writes a worker's row at most once per
:data:`WRITE_EVERY` seconds (sooner only when its host, types or slots
changed). A worker is *alive* while it was seen within the window
(``--worker-window``, by default three lease TTLs); ``GET /workers`` lists
the workers seen within :data:`LIST_WINDOWS` windows.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskframe.server.storage import Store, StoreUnavailable

log = logging.getLogger("taskframe.server")

WRITE_EVERY = 1.0
#: Workers not seen for this many windows are no longer listed.
LIST_WINDOWS = 10
#: Rows of workers not seen for this long are deleted (checked once a minute).
FORGET_AFTER = 86400.0
PRUNE_EVERY = 60.0


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str | None
    types: list[str]
    slots: int | None
    running: int
    last_seen: float
    alive: bool


class WorkerRegistry:
    def __init__(self, store: Store, window: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        # worker id -> (monotonic time of the last write, what it wrote)
        self._written: dict[str, tuple[float, tuple[Any, ...] | None]] = {}
        self._pruned_at = time.monotonic()

    def seen(
        self,
        worker_id: str,
        host: str | None = None,
        types: list[str] | None = None,
        slots: int | None = None,
    ) -> None:
        """Note that ``worker_id`` spoke to us (a lease tells its details, a heartbeat not)."""
        details = (host, tuple(types or ()), slots) if types is not None else None
        now = time.monotonic()
        with self._lock:
            last_time, last_details = self._written.get(worker_id, (float("-inf"), None))
            if now - last_time < WRITE_EVERY and details in (None, last_details):
                return
            self._written[worker_id] = (now, details or last_details)
            prune = now - self._pruned_at >= PRUNE_EVERY
            if prune:
                self._pruned_at = now
                self._written = {k: v for k, v in self._written.items() if now - v[0] < 3600}
        params: dict[str, Any] = {
            "id": worker_id,
            "host": host,
            "types": json.dumps(types) if types is not None else None,
            "slots": slots,
            "now": self.clock(),
        }
        try:
            with self.store.transaction() as tx:
                tx.run("upsert_worker", params)
                if prune:
                    tx.run("prune_workers", {"before": params["now"] - FORGET_AFTER})
        except StoreUnavailable as exc:
            # Bookkeeping only: the lease itself must not fail for it.
            log.debug("could not record worker %s: %s", worker_id, exc)

    def workers(self) -> list[WorkerInfo]:
        """Workers seen within ``LIST_WINDOWS`` windows, by id."""
        now = self.clock()
        with self.store.reader() as tx:
            rows = tx.all("list_workers", {"since": now - LIST_WINDOWS * self.window})
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                types=json.loads(row["types"] or "[]"),
                slots=row["slots"],
                running=row["running"],
                last_seen=row["last_seen"],
                alive=row["last_seen"] >= now - self.window,
            )
            for row in rows
        ]
