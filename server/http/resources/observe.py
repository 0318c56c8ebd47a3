"""Observability endpoints: ``/metrics``, ``/stats`` and ``/workers``."""

from __future__ import annotations

from collections.abc import Callable

import falcon
from prometheus_client import CONTENT_TYPE_LATEST

from taskframe.server.observe.metrics import Metrics
from taskframe.server.observe.registry import WorkerRegistry
from taskframe.server.observe.stats import queue_stats
from taskframe.server.storage import Store
from taskframe.server.storage.representation import iso


class MetricsEndpoint:
    """``GET /metrics``: Prometheus text format."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.metrics.render()


class Stats:
    """``GET /stats``: counts by status and type, oldest ready job, stuck types."""

    def __init__(self, store: Store, registry: WorkerRegistry, clock: Callable[[], float]) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = queue_stats(self.store, self.registry, self.clock())


class Workers:
    """``GET /workers``: the workers seen lately, alive or not."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        workers, truncated = self.registry.listing()
        resp.media = {
            "truncated": truncated,
            "workers": [
                {
                    "id": worker.id,
                    "host": worker.host,
                    "types": worker.types,
                    "slots": worker.slots,
                    "running": worker.running,
                    "last_seen": iso(worker.last_seen),
                    "alive": worker.alive,
                }
                for worker in workers
            ],
        }
