"""A running attempt's log, live: what the worker sends with each heartbeat.

Each heartbeat lease entry may carry ``log``, the text the attempt wrote since
the previous heartbeat. It is appended to the job's ``live_log`` (the last
64 KiB kept), fenced by the lease like progress, and cleared when the attempt
ends: its whole log then comes with the completion, into the attempt history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskframe.server.storage import Store
from taskframe.server.storage.representation import iso


def append_params(worker_id: str, logs: Mapping[tuple[int, str], str]) -> list[dict[str, Any]]:
    """``append_live_log`` rows in id order (as every multi-row writer locks them)."""
    return [
        {"id": job_id, "lease_id": lease_id, "worker_id": worker_id, "log": text}
        for (job_id, lease_id), text in sorted(logs.items())
        if text
    ]


def running_attempt(store: Store, job_id: int) -> dict[str, Any] | None:
    """The job's running attempt with its log so far (an attempt's JSON), or None."""
    with store.reader() as tx:
        row = tx.one("get_live_log", {"id": job_id})
    if row is None:
        return None
    return {
        "attempt": row["attempts"],
        "worker_id": row["worker_id"],
        "started_at": iso(row["started_at"]),
        "finished_at": None,
        "outcome": None,
        "log": row["live_log"] or "",
    }
