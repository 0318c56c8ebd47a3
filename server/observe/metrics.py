"""Prometheus metrics of one server process, in a registry of its own (no globals).

Counters and histograms are updated in memory as events happen; the queue
gauges are read from the database at scrape time (:class:`QueueCollector`),
so that every server sharing a database reports the same queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskframe.server.storage import Store, StoreUnavailable, counts

#: Seconds; job run and wait times span milliseconds to hours.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0)


class Metrics:
    """Every metric the server exports; :meth:`render` answers ``GET /metrics``."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = Counter(
            "taskframe_jobs_submitted",
            "Jobs accepted (idempotent repeats not counted)",
            ["type"],
            registry=r,
        )
        self.finished = Counter(
            "taskframe_jobs_finished",
            "Jobs that reached a final status",
            ["type", "outcome"],
            registry=r,
        )
        self.retried = Counter(
            "taskframe_attempts_retried",
            "Failed attempts whose job went back to the queue for another attempt",
            ["type"],
            registry=r,
        )
        self.reaped = Counter(
            "taskframe_attempts_reaped",
            "Attempts ended by the reaper (reason: lease_expired or timed_out)",
            ["type", "reason"],
            registry=r,
        )
        self.leased = Counter("taskframe_jobs_leased", "Attempts started", ["type"], registry=r)
        self.fires_dropped = Counter(
            "taskframe_schedule_fires_dropped",
            "Fire times of schedules that gave no job: firing was late (misfire policy "
            "latest: only the latest fired) or too late (skip)",
            ["policy"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "taskframe_job_run_seconds",
            "Run time of attempts that ended (lease to outcome)",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.wait_seconds = Histogram(
            "taskframe_job_wait_seconds",
            "Time from ready (run_at) to leased, per attempt",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lease_requests = Counter(
            "taskframe_lease_requests",
            "Lease requests answered (result: jobs or empty)",
            ["result"],
            registry=r,
        )
        self.lease_seconds = Histogram(
            "taskframe_lease_request_seconds",
            "Latency of lease requests, long-poll waits included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "taskframe_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.registry.register(QueueCollector(store, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class QueueCollector(Collector):
    """Queue depth and age of the oldest ready job by type and priority, from the database."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration: the database may be down then

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "taskframe_queue_depth",
            "Ready jobs (queued and due) by type and priority",
            labels=["type", "priority"],
        )
        age = GaugeMetricFamily(
            "taskframe_oldest_ready_job_age_seconds",
            "Seconds the oldest ready job has waited, by type and priority",
            labels=["type", "priority"],
        )
        up = GaugeMetricFamily(
            "taskframe_database_up", "1 when the queue gauges could be read from the database"
        )
        now = self.clock()
        try:
            rows = counts.ready_by(counts.ready_jobs(self.store, now), "type", "priority")
        except StoreUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for row in rows:
            labels = [row["type"], str(row["priority"])]
            depth.add_metric(labels, row["count"])
            age.add_metric(labels, max(0.0, now - row["oldest_run_at"]))
        yield depth
        yield age
        yield up
