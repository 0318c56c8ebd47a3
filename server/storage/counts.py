"""Job counts without scanning the jobs table, and the database state /health reports.

The counts (``job_counts``, migration 9) are kept in the transaction of every
change: in place on SQLite (one writer at a time), as delta rows on
PostgreSQL, folded here by the housekeeper (see the migration for why).
Triggers count every change but three, which their statements' callers count
once per batch, a trigger per row costing ~30 % more SQLite work per job:
inserts (:func:`added`), and the hot path's moves from queued to running and
running to succeeded (:func:`moved`). Reading them costs the same with
ten jobs or ten million. The oldest ready job of each type and priority is one
step into an index (``jobs_queued_age``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from taskframe.core import model
from taskframe.server.storage import JobRow, Row, Store, StoreUnavailable, Transaction


@dataclass(frozen=True)
class Counts:
    """Jobs counted by (type, queue, status, priority), as one snapshot read them."""

    rows: list[Row]


def moved(tx: Transaction, rows: Iterable[JobRow], source: str, target: str) -> None:
    """Count ``rows`` moved from ``source`` to ``target`` in ``tx``: one statement per
    (type, queue, priority). The hot path's two moves (queued to running, running to
    succeeded) are counted this way; the triggers skip them (migration 9)."""
    groups = Counter((row["type"], row["queue"], row["priority"]) for row in rows)
    moves = [
        {"type": t, "queue": q, "priority": p, "source": source, "target": target, "n": n}
        for (t, q, p), n in groups.items()
    ]
    tx.run_many("count_moves", moves)


def added(tx: Transaction, rows: Iterable[JobRow]) -> None:
    """Count jobs just inserted in ``tx`` (with the status they were inserted with):
    one statement per (type, queue, status, priority). Every insert of a job is
    counted this way, not by a trigger per row (migration 9)."""
    groups = Counter((row["type"], row["queue"], row["status"], row["priority"]) for row in rows)
    adds = [
        {"type": t, "queue": q, "status": s, "priority": p, "n": n}
        for (t, q, s, p), n in groups.items()
    ]
    tx.run_many("count_adds", adds)


def read(tx: Transaction) -> Counts:
    """Every count (tests compare them with a GROUP BY over the jobs)."""
    return Counts([{**row, "count": int(row["count"])} for row in tx.all("job_counts")])


def by(tx: Transaction, key: str) -> dict[str, dict[str, int]]:
    """{type or queue: {status: jobs}}, every status present (zeros included)."""
    found: dict[str, dict[str, int]] = {}
    for row in tx.all(f"counts_by_{key}"):
        counted = found.setdefault(row["name"], dict.fromkeys(model.STATUSES, 0))
        counted[row["status"]] = int(row["count"])
    return dict(sorted(found.items()))


def by_status(per_type: dict[str, dict[str, int]]) -> dict[str, int]:
    found = dict.fromkeys(model.STATUSES, 0)
    for counted in per_type.values():
        for status, count in counted.items():
            found[status] = found.get(status, 0) + count
    return found


def ready_jobs(store: Store, now: float) -> list[dict[str, Any]]:
    """Ready jobs by type, queue and priority with the oldest run_at (counts and an index)."""
    with store.reader() as tx:
        rows = tx.all("ready_by_type_and_priority", {"now": now})
    return [{**row, "count": int(row["count"])} for row in rows if row["oldest_run_at"] is not None]


def ready_by(rows: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """:func:`ready_jobs` rows added up by ``keys`` (such as type and priority): the
    counts summed, the oldest run_at the earliest."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        found = merged.get(key)
        if found is None:
            merged[key] = {
                **{k: row[k] for k in keys},
                "count": row["count"],
                "oldest_run_at": row["oldest_run_at"],
            }
        else:
            found["count"] += row["count"]
            found["oldest_run_at"] = min(found["oldest_run_at"], row["oldest_run_at"])
    return list(merged.values())


def fold(store: Store, drop_empty: bool = False) -> None:
    """Fold the counts' deltas (PostgreSQL); ``drop_empty``: forget counts that reached zero."""
    with store.transaction() as tx:
        tx.run("fold_job_counts")
        if drop_empty:
            tx.run("drop_empty_counts")


class DatabaseState:
    """Whether the database answered lately, as the housekeeper and full /health saw it.

    Anonymous ``GET /health`` answers from this: it reads nothing from the
    database, however often it is called.
    """

    def __init__(
        self, store: Store, stale_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: float | None = None
        self._error: str | None = None

    def record(self, error: str | None = None) -> None:
        with self._lock:
            self._seen, self._error = self.clock(), error

    def current(self) -> str | None:
        """None when the database answered (lately), else why not.

        Known for ``stale_after`` seconds; only before the first record, or when
        no housekeeper ran for that long, is the database pinged (once).
        """
        with self._lock:
            if self._seen is not None and self.clock() - self._seen <= self.stale_after:
                return self._error
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            self.record(str(exc))
            return str(exc)
        self.record()
        return None
