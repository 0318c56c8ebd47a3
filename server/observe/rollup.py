"""The per-minute rollup behind the dashboard's charts (``GET /stats/history``).

Never from a scan of the jobs table: each server counts the jobs it saw
succeed and fail (:class:`FinishTally`, fed by the telemetry with the very
events ``taskframe_jobs_finished_total`` counts) and the housekeeper adds them
to the minute's row (``job_rollup``, migration 12), so that servers add up.
Queue depth and the oldest ready job come from ``job_counts`` and one index
step per group (server/storage/counts.py, as the metrics read them): a snapshot that
every server writes alike. Rows older than a day and an hour are deleted.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from taskframe.core import model
from taskframe.server.storage import JobRow, Store, counts
from taskframe.server.storage.representation import iso

MINUTE = 60
#: Seconds between two writes of the housekeeper (the current minute's row grows).
WRITE_EVERY = 10.0
KEEP = 86400 + 3600
#: window -> (seconds shown, seconds per point)
WINDOWS = {"hour": (3600, 60), "day": (86400, 600)}
_COUNTED = (model.SUCCEEDED, model.FAILED)


#: A tally's key: (minute the job finished in, type, queue, status).
Key = tuple[int, str, str, str]


class FinishTally:
    """Jobs succeeded and failed by the minute they finished in, type, queue and status,
    since the last :meth:`take`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[Key] = Counter()

    def add(self, rows: Iterable[JobRow]) -> None:
        found = Counter(
            (
                int(finished_at // MINUTE) * MINUTE,
                row["type"],
                row.get("queue") or "default",
                str(row["status"]),
            )
            for row in rows
            if row["status"] in _COUNTED and (finished_at := row.get("finished_at")) is not None
        )
        if found:
            with self._lock:
                self._counts.update(found)

    def take(self) -> Counter[Key]:
        with self._lock:
            taken, self._counts = self._counts, Counter()
        return taken

    def give_back(self, taken: Counter[Key]) -> None:
        """A write failed (the database was away): count them with the next one."""
        with self._lock:
            self._counts.update(taken)


def write(store: Store, tally: FinishTally, now: float) -> None:
    """Add the finishes tallied since the last write to the rows of the minutes they
    happened in, write the queue as it is now in the current minute's; delete rows past
    :data:`KEEP`."""
    minute = int(now // MINUTE) * MINUTE
    taken = tally.take()
    try:
        ready = counts.ready_by(counts.ready_jobs(store, now), "type", "queue")
        adds: dict[tuple[int, str, str], dict[str, Any]] = {}
        for (finished, job_type, queue, status), n in taken.items():
            row = adds.setdefault(
                (finished, job_type, queue),
                {"minute": finished, "type": job_type, "queue": queue, "succeeded": 0, "failed": 0},
            )
            row[status] += n
        snapshot = [
            {
                "minute": minute,
                "type": row["type"],
                "queue": row["queue"],
                "depth": row["count"],
                "oldest_run_at": row["oldest_run_at"],
            }
            for row in ready
        ]
        with store.transaction() as tx:
            tx.run("lock_rollup")
            tx.run("rollup_clear_snapshot", {"minute": minute})
            tx.run_many("rollup_add", sorted(adds.values(), key=_key))
            tx.run_many("rollup_snapshot", sorted(snapshot, key=_key))
            tx.run("rollup_prune", {"before": minute - KEEP})
    except Exception:
        tally.give_back(taken)
        raise


def _key(row: Mapping[str, Any]) -> tuple[int, str, str]:
    # Rows in key order, as every multi-row writer locks them.
    return row["minute"], row["type"], row["queue"]


def history(
    store: Store, window: str, now: float, job_type: str | None = None, queue: str | None = None
) -> dict[str, Any]:
    """The points of ``window`` (hour or day), oldest first, for one type and/or queue
    or all: jobs succeeded and failed in each step, the largest queue depth and the
    oldest ready job's largest age seen at the end of its minutes."""
    span, step = WINDOWS[window]
    end = int(now // step) * step + step
    start = end - span
    filters = {"type": job_type, "queue": queue}
    with store.reader() as tx:
        used = [name for name, value in filters.items() if value]
        rows = tx.all(tx.filtered("rollup_read", used), {"since": start, **filters})
        names = tx.all("rollup_names", {"since": start})
    minutes = {int(row["minute"]): row for row in rows}
    points = []
    for begin in range(start, end, step):
        point: dict[str, Any] = {"time": iso(begin), "succeeded": 0, "failed": 0, "depth": 0}
        ages = []
        for minute in range(begin, begin + step, MINUTE):
            seen = minutes.get(minute)
            if seen is None:
                continue
            point["succeeded"] += int(seen["succeeded"] or 0)
            point["failed"] += int(seen["failed"] or 0)
            point["depth"] = max(point["depth"], int(seen["depth"] or 0))
            if seen["oldest_run_at"] is not None:
                # As at the minute's end (or now, for the minute still running).
                ages.append(max(0.0, min(minute + MINUTE, now) - seen["oldest_run_at"]))
        point["oldest_age"] = round(max(ages), 3) if ages else None
        points.append(point)
    return {
        "window": window,
        "step": step,
        "points": points,
        "types": sorted({row["type"] for row in names}),
        "queues": sorted({row["queue"] for row in names}),
    }
