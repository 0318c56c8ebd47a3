"""deploy/grafana-dashboard.json queries only metrics that GET /metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json"


def exported_series(sqlite_url: str) -> set[str]:
    store = open_store(sqlite_url)
    store.migrate()
    try:
        scheduler = Scheduler(store, ServerConfig())
        client = testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
        client.simulate_post("/jobs", json={"type": "sleep", "payload": {"duration": 0}})
        text = client.simulate_get("/metrics").text
    finally:
        store.close()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue  # prometheus_client's creation times of counters and histograms
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_every_metric_the_dashboard_queries_is_exported(sqlite_url):
    text = DASHBOARD.read_text()
    queried = set(re.findall(r"\btaskframe_[a-z_]+", text))
    exported = exported_series(sqlite_url)
    assert len(queried) >= 10, "the dashboard should cover the metrics"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
    # Counters that exist but that no one would see are a gap too.
    families = {
        name.removesuffix("_bucket") for name in exported if not name.endswith(("_sum", "_count"))
    }
    assert families - {name.removesuffix("_bucket") for name in queried} == set()


def test_the_dashboard_is_importable_json():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"] and all(panel["targets"] for panel in dashboard["panels"])
    assert {panel["id"] for panel in dashboard["panels"]} == set(
        range(1, len(dashboard["panels"]) + 1)
    )
