"""What a worker reports with its lease is bounded, and so is what /workers and /health show."""

from __future__ import annotations

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.observe import registry as registry_module
from taskframe.server.observe.registry import WorkerRegistry
from tests.api_server import default_plugins

# ``store``: conftest's, a fresh SQLite file and a fresh PostgreSQL schema.


@pytest.fixture
def client(store) -> testing.TestClient:
    scheduler = Scheduler(store, ServerConfig())
    return testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("types", ["t" * 201]),
        ("types", [""]),
        ("types", [f"type-{n}" for n in range(1001)]),
        ("host", "h" * 201),
        ("slots", 100_001),
        ("slots", -1),
        ("worker_id", "w" * 201),
    ],
)
def test_an_oversized_report_is_422_naming_the_field(client, field, value):
    body = {"worker_id": "w1", "max": 0, field: value}
    answer = client.simulate_post("/lease", json=body)
    assert answer.status_code == 422, answer.text
    assert list(answer.json["errors"]) == [field]


def test_only_installed_types_are_kept_and_listed(client):
    report = ["sleep", "http", *(f"{n:03d}" + "x" * 196 for n in range(998))]
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 0, "types": report})
    assert answer.status_code == 200, answer.text
    [worker] = client.simulate_get("/workers").json["workers"]
    assert worker["types"] == ["http", "sleep"]


def test_the_listing_keeps_the_workers_seen_last(store, monkeypatch):
    monkeypatch.setattr(registry_module, "MAX_LISTED", 5)
    now = [1000.0]
    registry = WorkerRegistry(store, 60, lambda: now[0], ["sleep"])
    for n in range(8):
        registry.seen(f"w{n}", "host", ["sleep"], 1)
        now[0] += 1
    workers, truncated = registry.listing()
    assert truncated and [w.id for w in workers] == ["w3", "w4", "w5", "w6", "w7"]
    assert registry.workers() == workers


def test_a_server_records_a_bounded_number_of_worker_ids(store, monkeypatch, caplog):
    monkeypatch.setattr(registry_module, "MAX_RECORDED", 3)
    registry = WorkerRegistry(store, 60, job_types=["sleep"])
    for n in range(10):
        registry.seen(f"fake-{n}", None, ["sleep"], 1)
    registry.seen("fake-0")  # one it knows is still recorded
    assert [w.id for w in registry.workers()] == ["fake-0", "fake-1", "fake-2"]
    assert caplog.text.count("more than 3 worker ids seen within an hour") == 1
