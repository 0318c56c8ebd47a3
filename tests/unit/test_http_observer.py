"""taskframe_http_requests: every request counted once under its labels, whatever the
counter's children cached (server/observe/http_observer.py); the real app over SQLite."""

from __future__ import annotations

import pytest
from falcon import testing
from prometheus_client import generate_latest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

JOB = {"type": "sleep", "payload": {"duration": 0}}


@pytest.fixture
def scheduler(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    yield Scheduler(store, ServerConfig())
    store.close()


def counted(scheduler: Scheduler, method: str, route: str, status: str) -> float:
    metrics = scheduler.telemetry.metrics
    assert metrics is not None
    value = metrics.registry.get_sample_value(
        "taskframe_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def test_each_request_is_counted_under_its_own_labels(scheduler: Scheduler):
    client = testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
    for _ in range(3):
        assert client.simulate_post("/jobs", json=JOB).status_code == 201
    assert client.simulate_post("/jobs", json={"type": "sleep"}).status_code == 422
    for job_id in (1, 2, 99):
        client.simulate_get(f"/jobs/{job_id}")
    for method in ("BREW", "FETCH"):  # methods outside the set are all "other"
        client.simulate_request(method, "/jobs")
    client.simulate_get("/no/such/path")
    assert counted(scheduler, "POST", "/jobs", "201") == 3
    assert counted(scheduler, "POST", "/jobs", "422") == 1
    assert counted(scheduler, "GET", "/jobs/{job_id}", "200") == 2
    assert counted(scheduler, "GET", "/jobs/{job_id}", "404") == 1
    assert counted(scheduler, "other", "/jobs", "400") == 2
    assert counted(scheduler, "GET", "unmatched", "404") == 1
    metrics = scheduler.telemetry.metrics
    assert metrics is not None
    text = generate_latest(metrics.registry).decode()
    assert "BREW" not in text and "FETCH" not in text
