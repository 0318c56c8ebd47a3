"""Plain-text output of the ``taskframe`` command: aligned tables and key/value blocks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from taskframe.client.models import Attempt, Job, JobType, Queue, Schedule, Stats, WorkerInfo
from taskframe.core import model

#: Longest cell shown in a table; the rest is cut with an ellipsis.
MAX_CELL = 60


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns left-aligned and padded to their widest cell, two spaces apart."""
    cells = [[cell_text(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def cell_text(value: Any) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = time_text(value)
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value) or "-"
    elif isinstance(value, dict):
        text = compact(value)
    else:
        text = str(value)
    text = " ".join(text.split())  # one line per row, whatever the cell holds
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def time_text(value: datetime | None) -> str:
    """``2026-12-01 13:55:13`` (UTC, as the servers' clock gives it)."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def job_block(job: Job) -> str:
    """A job as ``name: value`` lines, for ``get`` and ``wait``."""
    fields: list[tuple[str, Any]] = [
        ("id", job.id),
        ("type", job.type),
        ("status", job.status + (" (cancel requested)" if job.cancel_requested else "")),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("created", time_text(job.created_at)),
        ("run at", time_text(job.run_at)),
        ("started", time_text(job.started_at)),
        ("finished", time_text(job.finished_at)),
        ("worker", job.worker_id),
        ("key", job.idempotency_key),
        ("payload", compact(job.payload)),
        ("result", None if job.result is None else compact(job.result)),
        ("error", job.error),
        ("progress", progress_text(job.progress)),
    ]
    fields += list(job.extra.items())
    return key_values(fields)


def key_values(fields: Iterable[tuple[str, Any]]) -> str:
    fields = [(name, value) for name, value in fields if value is not None]
    width = max((len(name) for name, _ in fields), default=0) + 1
    lines = []
    for name, value in fields:
        text = compact(value) if isinstance(value, dict | list) else str(value)
        lines.append(f"{name + ':':<{width}} {text}")
    return "\n".join(lines)


def jobs_table(jobs: Iterable[Job]) -> str:
    headers = ("ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "FINISHED", "ERROR")
    rows = (
        (
            j.id,
            j.type,
            j.status,
            j.priority,
            f"{j.attempts}/{j.max_attempts}",
            j.created_at,
            j.finished_at,
            j.error,
        )
        for j in jobs
    )
    return table(headers, rows)


def attempts_text(attempts: Sequence[Attempt]) -> str:
    headers = ("ATTEMPT", "OUTCOME", "WORKER", "STARTED", "FINISHED", "ERROR")
    rows = [
        (a.attempt, a.outcome, a.worker_id, a.started_at, a.finished_at, a.error) for a in attempts
    ]
    text = table(headers, rows)
    # Each attempt's own log (what the executor wrote) and traceback below the table.
    for attempt in attempts:
        if attempt.log:
            lines = "\n".join("  " + line for line in attempt.log.splitlines())
            text += f"\n\nlog of attempt {attempt.attempt}:\n{lines}"
        if attempt.traceback:
            lines = "\n".join("  " + line for line in attempt.traceback.splitlines())
            text += f"\n\ntraceback of attempt {attempt.attempt}:\n{lines}"
    return text


BAR_WIDTH = 20


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#########-----------]  45%`` (ASCII: any terminal's encoding shows it)."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction * 100:3.0f}%"


def progress_text(progress: dict[str, Any] | None) -> str | None:
    """A job's ``progress`` as a bar and its message, or None without one."""
    if not progress or not isinstance(progress.get("fraction"), int | float):
        return None
    message = progress.get("message")
    return progress_bar(progress["fraction"]) + (f" {message}" if message else "")


def types_table(types: Iterable[JobType]) -> str:
    return table(("TYPE", "DESCRIPTION"), ((t.name, t.description) for t in types))


def workers_table(workers: Iterable[WorkerInfo]) -> str:
    headers = ("WORKER", "HOST", "TYPES", "SLOTS", "RUNNING", "LAST SEEN", "ALIVE")
    rows = (
        (w.id, w.host, w.types, w.slots, w.running, w.last_seen, _yes_no(w.alive)) for w in workers
    )
    return table(headers, rows)


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


def stats_text(stats: Stats) -> str:
    """Jobs by type (a column per status, a total row), then the queue's health."""
    statuses = list(stats.by_status) or sorted({s for c in stats.by_type.values() for s in c})
    rows: list[list[Any]] = [
        [name, *(counts.get(s, 0) for s in statuses)] for name, counts in stats.by_type.items()
    ]
    rows.append(["(all)", *(stats.by_status.get(s, 0) for s in statuses)])
    text = table(["TYPE", *(s.upper() for s in statuses)], rows)
    age = stats.oldest_ready_age
    facts: list[tuple[str, Any]] = [
        ("oldest ready job", "-" if age is None else f"{age:.1f} s"),
        ("workers alive", stats.workers_alive),
        ("types with no live worker", ", ".join(stats.stuck_types) or "none"),
        *stats.extra.items(),
    ]
    return text + "\n\n" + key_values(facts)


_QUEUE_COUNTS = model.STATUSES  # every status, in the order of the lifecycle


def queues_table(queues: Iterable[Queue]) -> str:
    headers = ("QUEUE", "PAUSED", *(status.upper() for status in _QUEUE_COUNTS))
    rows = (
        (q.name, _yes_no(q.paused), *(q.counts.get(status, 0) for status in _QUEUE_COUNTS))
        for q in queues
    )
    return table(headers, rows)


def schedules_table(schedules: Iterable[Schedule]) -> str:
    headers = ("SCHEDULE", "CRON", "TIMEZONE", "TYPE", "PAUSED", "NEXT FIRE", "LAST FIRE")
    rows = (
        (
            s.name,
            s.cron,
            s.timezone,
            s.job.get("type"),
            _yes_no(s.paused),
            s.next_fire_at,
            s.last_fire_at,
        )
        for s in schedules
    )
    return table(headers, rows)


def schedule_block(schedule: Schedule) -> str:
    fields: list[tuple[str, Any]] = [
        ("name", schedule.name),
        ("cron", schedule.cron),
        ("timezone", schedule.timezone),
        ("misfire", schedule.misfire),
        ("paused", _yes_no(schedule.paused)),
        ("job", compact(schedule.job)),
        ("last fire", time_text(schedule.last_fire_at)),
        ("next fires", ", ".join(time_text(t) for t in schedule.next_fire_times) or "-"),
    ]
    return key_values(fields)
