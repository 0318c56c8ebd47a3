"""Endpoints for anyone: health, installed job types, the OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import falcon

from taskframe.core.plugins import PluginSet
from taskframe.server.http.openapi import payload_json_schema
from taskframe.server.observe.registry import WorkerRegistry
from taskframe.server.observe.stats import stuck_warnings
from taskframe.server.storage import Store, StoreUnavailable
from taskframe.server.storage.counts import DatabaseState


class Health:
    """``GET /health``: ``warnings`` names the job types no live worker can run.

    With tokens configured, an anonymous caller learns only whether the server
    and its database are up: that answer comes from ``database`` (what the
    housekeeper saw last), reading nothing from the database.
    """

    def __init__(
        self,
        store: Store,
        plugins: PluginSet,
        registry: WorkerRegistry | None = None,
        clock: Callable[[], float] = time.time,
        database: DatabaseState | None = None,
        tokens: bool = False,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.registry = registry
        self.clock = clock
        self.database = database or DatabaseState(store, 0.0)
        self.tokens = tokens

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.tokens and getattr(req.context, "principal", None) is None:
            error = self.database.current()
            resp.status = falcon.HTTP_503 if error else falcon.HTTP_200
            resp.media = {"status": "unavailable" if error else "ok"}
            return
        body: dict[str, Any] = {
            "status": "ok",
            "backend": self.store.backend,
            "job_types": self.plugins.names(),
            "plugin_failures": self.plugins.failures,
            "warnings": [],
        }
        try:
            self.store.ping()
            self.database.record()
            if self.registry is not None:
                body["warnings"] = stuck_warnings(self.store, self.registry, self.clock())
        except StoreUnavailable as exc:
            self.database.record(str(exc))
            resp.status = falcon.HTTP_503
            body.update(status="unavailable", error=str(exc))
        resp.media = body


class JobTypes:
    """``GET /job-types``: each installed executor with its payload's JSON schema."""

    def __init__(self, plugins: PluginSet) -> None:
        self.body = {
            "job_types": [
                {
                    "name": executor.name,
                    "description": executor.description,
                    "payload_schema": payload_json_schema(executor),
                    "defaults": dict(executor.defaults),
                }
                for executor in sorted(plugins.executors.values(), key=lambda e: e.name)
            ]
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.body


class OpenAPI:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
