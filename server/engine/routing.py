"""The routed lease: named queues, paused queues and concurrency limits.

The plain ``lease_jobs`` query serves a worker of every queue while no queue
is paused and no limit is set (the common case, unchanged). Otherwise this
module picks the jobs in Python, in the same transaction:

1. On PostgreSQL the limit rows of the types and queues in play are locked
   (``FOR UPDATE``, in key order), so counting the running jobs and leasing
   are atomic across servers; SQLite serialises writers already.
2. Free slots per limited type and queue = limit - running.
3. Candidates in ready order (priority, then id), paused queues and saturated
   types/queues excluded in SQL, so a limited job never blocks work behind it.
   When a pick fills a limit, the query runs again without that type or queue;
   it runs at most once per limit in play, plus once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskframe.server.storage import JobRow, Row, Transaction, job_rows


@dataclass(frozen=True)
class Controls:
    """What the lease must respect beyond type and ready order (read in its transaction)."""

    paused: frozenset[str] = frozenset()
    limits: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> Controls:
        paused = frozenset(row["name"] for row in rows if row["kind"] == "paused")
        limits = {
            (row["kind"], row["name"]): row["max_running"]
            for row in rows
            if row["kind"] != "paused"
        }
        return cls(paused, limits)

    @property
    def none(self) -> bool:
        return not self.paused and not self.limits


def lease_routed(
    tx: Transaction,
    lease_params: Callable[[], dict[str, Any]],
    types: list[str],
    queues: list[str] | None,
    controls: Controls,
    limit: int,
) -> list[JobRow]:
    """Lease up to ``limit`` jobs of ``types`` from ``queues`` (None: all) under ``controls``.

    ``lease_params()`` gives the lease's parameters, its time included: it is
    called once the limits are locked, so that a job's ``started_at`` is never
    earlier than the count that allowed it (the job times then show the limit).
    """
    served = None if queues is None else [q for q in queues if q not in controls.paused]
    if served is not None and not served:
        return []
    in_play = sorted(
        key
        for key in controls.limits
        if (key[0] == "type" and key[1] in types)
        or (key[0] == "queue" and (served is None or key[1] in served))
    )
    if in_play:
        tx.all(
            "lock_limits",
            {"kinds": [kind for kind, _ in in_play], "names": [name for _, name in in_play]},
        )
    params = lease_params()
    free = {}
    for kind, name in in_play:
        counted = tx.one(f"count_running_by_{kind}", {"name": name})
        running = counted["count"] if counted else 0
        free[kind, name] = max(0, controls.limits[kind, name] - running)
    picked: list[int] = []
    while len(picked) < limit:
        wanted = limit - len(picked)
        query = {
            "types": types,
            "queues": served or [],
            "excluded_queues": sorted(
                controls.paused | {n for (k, n), f in free.items() if k == "queue" and f <= 0}
            ),
            "excluded_types": sorted(n for (k, n), f in free.items() if k == "type" and f <= 0),
            "picked": picked,
            "limit": wanted,
        }
        name = "lease_candidates" if served is None else "lease_candidates_in_queues"
        rows = tx.all(name, query)
        refill = False
        for row in rows:
            keys = [key for key in (("type", row["type"]), ("queue", row["queue"])) if key in free]
            if any(free[key] <= 0 for key in keys):
                refill = True  # a limit filled in this pass: ask again without it
                break
            for key in keys:
                free[key] -= 1
            picked.append(row["id"])
        if not refill and len(rows) < wanted:
            break  # nothing more is ready
    if not picked:
        return []
    return job_rows(tx.all("lease_picked", {**params, "ids": picked}))
