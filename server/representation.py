"""Database rows to the JSON shapes of the API."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from taskframe.server.storage import Row


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_json(row: Row, with_lease: bool = False) -> dict[str, Any]:
    job = {
        "id": row["id"],
        "type": row["type"],
        "payload": json.loads(row["payload"]),
        "priority": row["priority"],
        "status": row["status"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "timeout": row["timeout"],
        "run_at": iso(row["run_at"]),
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "worker_id": row["worker_id"],
        "result": None if row["result"] is None else json.loads(row["result"]),
        "error": row["error"],
        "idempotency_key": row["idempotency_key"],
        "cancel_requested": bool(row["cancel_requested"]),
    }
    if with_lease:
        job["lease_id"] = row["lease_id"]
        job["lease_expires_at"] = iso(row["lease_expires_at"])
    return job


def attempt_json(row: Row) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "worker_id": row["worker_id"],
        "lease_id": row["lease_id"],
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "outcome": row["outcome"],
        "error": row["error"],
    }
