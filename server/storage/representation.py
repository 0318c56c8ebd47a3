"""Database rows to the JSON shapes of the API."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from taskframe.core import strict_json
from taskframe.server.storage import AttemptRow, JobRow

# What json.dumps may have written that strict JSON readers refuse: an escaped
# lone surrogate (a pair is fine) and NaN or infinities. Text with none of
# these (nearly every row) goes into answers as it is; a false alarm (the
# words in a string) only costs a decode.
_NOT_STRICT = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|NaN|Infinity"
)


class StoredJSON:
    """JSON text as the database holds it, written into an answer without decoding it.

    Payloads and results are stored as the text ``json.dumps`` wrote; decoding
    them only to encode them again was a tenth of the lease answer's cost.
    ``server.http_io.dump_answer`` splices :attr:`text` in.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def value(self) -> Any:
        return json.loads(self.text)

    def __repr__(self) -> str:
        return f"StoredJSON({self.text!r})"


def stored_json(text: str | None) -> Any:
    """Stored JSON text for an answer: spliced when strict, else decoded and repaired."""
    if text is None:
        return None
    if _NOT_STRICT.search(text) is None:
        return StoredJSON(text)
    # Rows written before the door refused such text: U+FFFD and null instead.
    return strict_json.encodable(json.loads(text))


@functools.lru_cache(maxsize=8192)
def iso(timestamp: float | None) -> str | None:
    """``2026-11-28T22:14:40.123Z`` (milliseconds, UTC).

    Cached: the jobs of one lease or batch share their times (submitted, started,
    lease expiry), and an answer shows five per job.
    """
    if timestamp is None:
        return None
    second = math.floor(timestamp)
    return f"{_iso_second(second)}.{int((timestamp - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    # Jobs of one batch share their seconds: format each second once.
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def job_json(row: JobRow, with_lease: bool = False) -> dict[str, Any]:
    """A job as the API shows it, payload and result decoded (for plugins' hooks).

    Lease ids are secrets: only ``with_lease`` (the lease answer, to the
    worker that holds the lease) shows them.
    """
    return _job(row, with_lease, _decoded)


def job_answer(row: JobRow, with_lease: bool = False) -> dict[str, Any]:
    """:func:`job_json` for an HTTP answer: payload and result spliced in as stored."""
    return _job(row, with_lease, stored_json)


def _decoded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _job(row: JobRow, with_lease: bool, value: Callable[[str | None], Any]) -> dict[str, Any]:
    job = job_summary(row)
    job["payload"] = value(row["payload"])
    job["result"] = value(row["result"])
    job["progress"] = progress_json(row)
    if with_lease:
        job["lease_id"] = row["lease_id"]
        job["lease_expires_at"] = iso(row["lease_expires_at"])
        job["dependencies"] = {}  # the results of depends_on, filled in by the lease
    return job


#: Statuses whose progress is shown: the attempt reporting it runs, or was the last one.
_PROGRESS_SHOWN = frozenset({"running", "succeeded", "failed", "cancelled"})


def progress_json(row: JobRow) -> dict[str, Any] | None:
    """What the current (or last) attempt reported with ``progress()``, or None."""
    text = row.get("progress")
    if not text or row["status"] not in _PROGRESS_SHOWN:
        return None
    progress: dict[str, Any] = json.loads(text)
    if progress.get("attempt") != row["attempts"]:
        return None  # an earlier attempt's
    progress["updated_at"] = iso(progress.get("updated_at"))
    return progress


def job_summary(row: JobRow) -> dict[str, Any]:
    """A job in a listing: everything but its payload and result (possibly large)."""
    return {
        "id": row["id"],
        "type": row["type"],
        "priority": row["priority"],
        "status": row["status"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "timeout": row["timeout"],  # a float (the backends agree); null: no limit
        "run_at": iso(row["run_at"]),
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "worker_id": row["worker_id"],
        "error": row["error"],
        "idempotency_key": row["idempotency_key"],
        "cancel_requested": row["cancel_requested"],
        "notify_url": row.get("notify_url"),
        "queue": row.get("queue", "default"),
        "depends_on": json.loads(depends_on) if (depends_on := row.get("depends_on")) else [],
        "on_dependency_failure": row.get("on_dependency_failure"),
    }


def attempt_json(row: AttemptRow, with_lease: bool = False) -> dict[str, Any]:
    """One finished attempt; its lease id only ``with_lease`` (no endpoint asks today)."""
    attempt = {
        "attempt": row["attempt"],
        "worker_id": row["worker_id"],
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "outcome": row["outcome"],
        "error": row["error"],
        "log": row.get("log"),
        "traceback": row.get("traceback"),
    }
    if with_lease:
        attempt["lease_id"] = row["lease_id"]
    return attempt
