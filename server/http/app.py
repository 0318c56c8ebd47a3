"""``create_app``: the Falcon application, built from its parts (no globals).

Its routes, their resources and roles are the route table's (server/http/routes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from taskframe.core.executor import Executor
from taskframe.core.plugins import PluginSet
from taskframe.server.config import ServerConfig
from taskframe.server.engine.attempts import Attempts
from taskframe.server.engine.job_ops import JobOps
from taskframe.server.engine.leasing import Leasing
from taskframe.server.engine.queues import Flow
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.engine.submission import JobCheck
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.auth import Authenticator, TokenSet
from taskframe.server.http.auth import log as auth_log
from taskframe.server.http.errors import install_error_handlers
from taskframe.server.http.http_io import answer_handler
from taskframe.server.http.origin import OriginGuard
from taskframe.server.http.resources import apidocs, dashboard
from taskframe.server.http.routes import ROUTE_ROLES, ROUTES
from taskframe.server.http.throttle import AuthThrottle, RefusalLog
from taskframe.server.observe.http_observer import HttpObserver
from taskframe.server.observe.registry import WorkerRegistry


@dataclass(frozen=True)
class Parts:
    """What the resources are built from, each taking the parts it uses."""

    config: ServerConfig
    engine: Scheduler
    plugins: PluginSet
    registry: WorkerRegistry
    flow: Flow
    dashboard_assets: dict[str, tuple[str, bytes]]
    explorer_assets: dict[str, tuple[str, bytes]]
    check: JobCheck | None  # the plugins' job check, looked up once
    tokens: bool  # the server has tokens (anonymous /health then tells less)

    @property
    def executors(self) -> dict[str, Executor]:
        return self.plugins.executors

    def worker_parts(self) -> tuple[Attempts, Leasing, JobOps, ServerConfig, list[str]]:
        """What every worker resource is built from."""
        engine = self.engine
        return engine.attempts, engine.leasing, engine.jobs, self.config, self.plugins.names()


def create_app(
    config: ServerConfig,
    scheduler: Scheduler,
    plugins: PluginSet,
    access: AccessConfig | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The app over ``scheduler``; ``access``: tokens and Host names (None: open to all)."""
    access = access or AccessConfig()
    metrics = scheduler.telemetry.metrics
    registry = WorkerRegistry(
        scheduler.store, config.worker_alive_window, scheduler.clock, plugins.names()
    )
    middleware: list[Any] = (
        [HttpObserver(metrics, config.access_log)] if metrics is not None else []
    )
    # After the observer, so that refused requests are counted and logged too.
    tokens = access.tokens or TokenSet()
    refusals = RefusalLog(auth_log)
    # Host names matter only without tokens (a rebound page has no token to send).
    middleware.append(OriginGuard(None if tokens else access.allowed_hosts, refusals))
    limit = access.max_auth_failures
    throttle = AuthThrottle(limit) if limit > 0 else None
    middleware.append(Authenticator(tokens, ROUTE_ROLES, throttle, refusals))
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = answer_handler()
    install_error_handlers(app)
    parts = Parts(
        config,
        scheduler,
        plugins,
        registry,
        Flow(scheduler.store, scheduler.publisher, scheduler.clock),
        dashboard.load_assets(),
        apidocs.load_explorer(),
        plugins.job_check(),
        bool(access.tokens),
    )
    for route in ROUTES:
        resource = route.resource(parts)
        if resource is not None:
            app.add_route(route.template, resource)
    return app
