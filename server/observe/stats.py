"""What ``GET /stats`` and the health warnings tell: the queue as the database holds it.

Counts come from ``job_counts`` and the oldest ready job from an index
(server/storage/counts.py): no read here scans the jobs table.
"""

from __future__ import annotations

from typing import Any

from taskframe.server.observe.registry import WorkerInfo, WorkerRegistry
from taskframe.server.storage import Store, counts


def ready_jobs(store: Store, now: float) -> list[dict[str, Any]]:
    """Ready jobs (queued and due) counted by type and priority, with the oldest run_at."""
    return counts.ready_jobs(store, now)


def stuck_types(ready: list[dict[str, Any]], workers: list[WorkerInfo]) -> dict[str, int]:
    """{type: ready jobs} for the types that have ready jobs but no live worker to run them."""
    served = {job_type for worker in workers if worker.alive for job_type in worker.types}
    stuck: dict[str, int] = {}
    for row in ready:
        if row["type"] not in served:
            stuck[row["type"]] = stuck.get(row["type"], 0) + row["count"]
    return dict(sorted(stuck.items()))


def stuck_warnings(store: Store, registry: WorkerRegistry, now: float) -> list[str]:
    stuck = stuck_types(ready_jobs(store, now), registry.workers())
    return [
        f"job type {job_type!r} has {count} queued jobs and no live worker can run it"
        for job_type, count in stuck.items()
    ]


def queue_stats(store: Store, registry: WorkerRegistry, now: float) -> dict[str, Any]:
    with store.reader() as tx:
        by_type = counts.by(tx, "type")
    ready = ready_jobs(store, now)
    workers = registry.workers()
    oldest = min((row["oldest_run_at"] for row in ready), default=None)
    return {
        "by_status": counts.by_status(by_type),
        "by_type": by_type,
        "oldest_ready_age": None if oldest is None else round(max(0.0, now - oldest), 3),
        "stuck_types": list(stuck_types(ready, workers)),
        "workers_alive": sum(worker.alive for worker in workers),
    }
