"""taskframe's own objects, built in-process for the generated pages.

Everything here is read from the installed code: the parsers of the three
commands, the Falcon app (its ``/openapi.json``), the metrics registry, the
status function. The environment's ``TASKFRAME_*`` variables are hidden while
the parsers are built, so the defaults shown are the code's, not this shell's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from taskframe.core.plugins import ENTRY_POINT_GROUP, PluginSet, load_plugins


@contextlib.contextmanager
def clean_environment() -> Iterator[None]:
    """No ``TASKFRAME_*`` variable while inside (they would become the parsers' defaults)."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("TASKFRAME_")}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


def own_plugins() -> PluginSet:
    """taskframe's built-in plugins only: another installed plugin's options stay out."""
    others = [
        ep.name
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if not ep.value.startswith("taskframe.")
    ]
    return load_plugins(disabled=others)


def server_parser(standalone: bool = False) -> argparse.ArgumentParser:
    from taskframe.server.cli import build_parser
    from taskframe.standalone import InProcessWorker

    with clean_environment():
        return build_parser(own_plugins(), InProcessWorker() if standalone else None)


def worker_parser() -> argparse.ArgumentParser:
    from taskframe.worker.cli import build_parser

    with clean_environment():
        return build_parser(own_plugins())


def client_parser() -> argparse.ArgumentParser:
    from taskframe.client.cli import build_parser

    with clean_environment():
        return build_parser()


@contextlib.contextmanager
def live_app() -> Iterator[Any]:
    """The real Falcon app on a throw-away SQLite file, as a TestClient (``.scheduler`` too)."""
    from falcon import testing

    from taskframe.server.config import ServerConfig
    from taskframe.server.engine.scheduler import Scheduler
    from taskframe.server.http.app import create_app
    from taskframe.server.storage import open_store

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(str(Path(folder) / "docs.db"))
        try:
            store.migrate()
            scheduler = Scheduler(store, ServerConfig())
            client = testing.TestClient(create_app(scheduler.config, scheduler, own_plugins()))
            client.scheduler = scheduler
            yield client
        finally:
            store.close()


def openapi_document() -> dict[str, Any]:
    """``GET /openapi.json`` as the server answers it."""
    with live_app() as client:
        answer = client.simulate_get("/openapi.json")
        if answer.status_code != 200:
            raise RuntimeError(f"GET /openapi.json answered {answer.status}: {answer.text}")
        return answer.json


def route_roles() -> dict[tuple[str, str], list[str]]:
    """(path as in the OpenAPI document, METHOD) -> the roles that may call it."""
    from taskframe.server.http.routes import ROUTES

    return {
        (route.path, method): sorted(operation.roles)
        for route in ROUTES
        for method, operation in route.methods.items()
    }


def metric_families() -> list[dict[str, Any]]:
    """Every metric ``GET /metrics`` exports: name as scraped, type, labels, help.

    Read from a real scrape after one job was submitted (so that the gauges
    read from the database have a sample to show their labels); counters and
    histograms that have no sample yet name their labels in the registry.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with live_app() as client:
        client.simulate_post("/jobs", json={"type": "sleep", "payload": {"duration": 0}})
        text = client.simulate_get("/metrics").text
        declared = {
            collector._name: list(collector._labelnames)
            for collector in vars(client.scheduler.telemetry.metrics).values()
            if hasattr(collector, "_labelnames") and hasattr(collector, "_name")
        }
    found = []
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created") and family.name[: -len("_created")] in declared:
            continue  # prometheus_client's creation time of a counter or histogram
        labels = declared.get(family.name)
        if labels is None:
            labels = sorted({key for sample in family.samples for key in sample.labels})
        name = family.name + ("_total" if family.type == "counter" else "")
        found.append(
            {"name": name, "type": family.type, "labels": labels, "help": family.documentation}
        )
    return found


def scraped_names() -> set[str]:
    """Every series name a scrape can hold (histograms add _bucket, _sum and _count)."""
    names = set()
    for family in metric_families():
        names.add(family["name"])
        if family["type"] == "histogram":
            names.update(family["name"] + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names
