"""The workers seen lately, recorded from their lease and heartbeat traffic.

Shared across servers through the ``workers`` table. To keep the hot path
free of it, a server process writes a worker's row at most once per
:data:`WRITE_EVERY` seconds (sooner only when its host, types or slots
changed). A worker is *alive* while it was seen within the window
(``--worker-window``, by default three lease TTLs); ``GET /workers`` lists
the workers seen within :data:`LIST_WINDOWS` windows.

What a worker reports is bounded, so that made-up workers cannot grow
``/workers`` and ``/health`` without limit: the lease schema bounds each
field (ids, host and type names 200 characters, 1,000 types), only the
types this server has installed are kept, a server process records at most
:data:`MAX_RECORDED` worker ids an hour, and a listing holds the
:data:`MAX_LISTED` workers seen last.
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
#: Workers listed at most (the most recently seen); /health judges by them too.
MAX_LISTED = 1000
#: Distinct worker ids one server process records per hour; past it new ones are not shown.
MAX_RECORDED = 10000


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
    def __init__(
        self,
        store: Store,
        window: float,
        clock: Callable[[], float] = time.time,
        job_types: list[str] | None = None,
    ) -> None:
        self.store = store
        self.window = window
        self.clock = clock
        #: The types a worker's report is narrowed to (None: kept as reported).
        self.job_types = None if job_types is None else frozenset(job_types)
        self._full_warned = False
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
        if types is not None and self.job_types is not None:
            types = sorted(self.job_types.intersection(types))  # others cannot run here anyway
        details = (host, tuple(types or ()), slots) if types is not None else None
        now = time.monotonic()
        with self._lock:
            prune = now - self._pruned_at >= PRUNE_EVERY
            if prune:
                self._pruned_at = now
                self._written = {k: v for k, v in self._written.items() if now - v[0] < 3600}
                self._full_warned = self._full_warned and len(self._written) >= MAX_RECORDED
            last_time, last_details = self._written.get(worker_id, (float("-inf"), None))
            if worker_id not in self._written and len(self._written) >= MAX_RECORDED:
                if not self._full_warned:  # made-up ids, most likely
                    self._full_warned = True
                    log.warning(
                        "more than %d worker ids seen within an hour: new ones are not "
                        "recorded (nor shown by GET /workers) until older ones age out",
                        MAX_RECORDED,
                    )
                return
            if not prune and now - last_time < WRITE_EVERY and details in (None, last_details):
                return
            self._written[worker_id] = (now, details or last_details)
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
        """Workers seen within ``LIST_WINDOWS`` windows, by id (at most ``MAX_LISTED``)."""
        return self.listing()[0]

    def listing(self) -> tuple[list[WorkerInfo], bool]:
        """(:meth:`workers`, whether more were seen than are listed)."""
        now = self.clock()
        since = now - LIST_WINDOWS * self.window
        with self.store.reader() as tx:
            rows = tx.all("list_workers", {"since": since, "limit": MAX_LISTED + 1})
        truncated = len(rows) > MAX_LISTED
        if truncated:  # the one seen longest ago goes
            rows.remove(min(rows, key=lambda row: (row["last_seen"], row["id"])))
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
        ], truncated
