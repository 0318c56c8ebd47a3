"""``create_app``: the Falcon application, built from its parts (no globals)."""

from __future__ import annotations

from typing import Any

import falcon

from taskframe.core.plugins import PluginSet
from taskframe.core.schemas import MAX_ID
from taskframe.server.auth import ADMIN, CLIENT, OPEN, WORKER, Authenticator, TokenSet
from taskframe.server.auth import log as auth_log
from taskframe.server.config import ServerConfig
from taskframe.server.errors import install_error_handlers
from taskframe.server.flow import Flow
from taskframe.server.http_io import answer_handler
from taskframe.server.http_observer import HttpObserver
from taskframe.server.openapi import build_openapi
from taskframe.server.origin import OriginGuard
from taskframe.server.registry import WorkerRegistry
from taskframe.server.resources import apidocs, dashboard, jobs, meta, observe, workers
from taskframe.server.resources import flow as flow_resources
from taskframe.server.resources import plugins as plugin_info
from taskframe.server.resources import schedules as schedule_resources
from taskframe.server.scheduler import Scheduler
from taskframe.server.throttle import AuthThrottle, RefusalLog

# Ids beyond what the database holds are unknown jobs (404), not errors.
JOB = f"/jobs/{{job_id:int(min=1, max={MAX_ID})}}"

_CLIENT = frozenset({CLIENT})
_WORKER = frozenset({WORKER})
_ADMIN = frozenset({ADMIN})
# Who may call what when tokens are configured (admin may call everything).
# A route missing here is for admin only: closed until someone decides.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("/jobs", "POST"): _CLIENT,
    ("/jobs", "GET"): _CLIENT,
    ("/jobs/batch", "POST"): _CLIENT,
    (JOB, "GET"): _CLIENT,
    (JOB + "/attempts", "GET"): _CLIENT,
    (JOB + "/cancel", "POST"): _CLIENT,
    (JOB + "/retry", "POST"): _CLIENT,
    ("/lease", "POST"): _WORKER,
    ("/next-job", "POST"): _WORKER,
    ("/heartbeats", "POST"): _WORKER,
    (JOB + "/heartbeat", "POST"): _WORKER,
    (JOB + "/complete", "POST"): _WORKER,
    (JOB + "/release", "POST"): _WORKER,
    ("/job-types", "GET"): frozenset({CLIENT, WORKER}),
    # The API's description: any valid token (it names the installed plugins).
    ("/openapi.json", "GET"): frozenset({CLIENT, WORKER, ADMIN}),
    ("/health", "GET"): OPEN,
    # Observability: counts and workers, no job contents; read like the job list.
    ("/stats", "GET"): _CLIENT,
    ("/workers", "GET"): _CLIENT,
    ("/metrics", "GET"): _CLIENT,
    ("/plugins", "GET"): frozenset({CLIENT, WORKER}),
    # Queues and limits: anyone who reads jobs may look; pausing a queue or
    # setting a limit affects every client's work, so those are for admins.
    ("/queues", "GET"): _CLIENT,
    ("/queues/{name}/pause", "POST"): _ADMIN,
    ("/queues/{name}/resume", "POST"): _ADMIN,
    ("/limits", "GET"): _CLIENT,
    ("/limits/{kind}/{name}", "PUT"): _ADMIN,
    ("/limits/{kind}/{name}", "DELETE"): _ADMIN,
    # Schedules submit jobs and are removed like jobs are cancelled: the client role.
    ("/schedules", "GET"): _CLIENT,
    ("/schedules", "POST"): _CLIENT,
    ("/schedules/{name}", "GET"): _CLIENT,
    ("/schedules/{name}", "DELETE"): _CLIENT,
    ("/schedules/{name}/pause", "POST"): _CLIENT,
    ("/schedules/{name}/resume", "POST"): _CLIENT,
    # The dashboard's page and files are open; the API calls it makes need a token.
    ("/", "GET"): OPEN,
    ("/dashboard/{name}", "GET"): OPEN,
    # The API explorer likewise: its page fetches /openapi.json with the user's token.
    ("/docs", "GET"): OPEN,
    ("/docs/{name}", "GET"): OPEN,
}


def create_app(config: ServerConfig, scheduler: Scheduler, plugins: PluginSet) -> falcon.App:
    metrics = scheduler.telemetry.metrics
    registry = WorkerRegistry(
        scheduler.store, config.worker_alive_window, scheduler.clock, plugins.names()
    )
    middleware: list[Any] = (
        [HttpObserver(metrics, config.access_log)] if metrics is not None else []
    )
    # After the observer, so that refused requests are counted and logged too.
    tokens = config.tokens or TokenSet()
    refusals = RefusalLog(auth_log)
    # Host names matter only without tokens (a rebound page has no token to send).
    middleware.append(OriginGuard(None if tokens else config.allowed_hosts, refusals))
    limit = config.max_auth_failures
    throttle = AuthThrottle(limit) if limit > 0 else None
    middleware.append(Authenticator(tokens, ROUTE_ROLES, throttle, refusals))
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = answer_handler()
    install_error_handlers(app)
    executors = plugins.executors
    job_types = plugins.names()

    check = plugins.job_check()
    intake, job_ops = scheduler.intake, scheduler.jobs
    app.add_route("/jobs", jobs.JobCollection(intake, job_ops, executors, config, check))
    app.add_route("/jobs/batch", jobs.JobBatch(intake, executors, config, check))
    app.add_route(JOB, jobs.JobItem(job_ops))
    app.add_route(JOB + "/attempts", jobs.JobAttempts(job_ops))
    app.add_route(JOB + "/cancel", jobs.JobCancel(job_ops))
    app.add_route(JOB + "/retry", jobs.JobRetry(job_ops))

    parts = (scheduler.attempts, scheduler.leasing, job_ops, config, job_types)
    app.add_route("/lease", workers.Lease(*parts, registry))
    app.add_route("/next-job", workers.NextJob(*parts))
    app.add_route("/heartbeats", workers.Heartbeats(*parts, registry))
    app.add_route(JOB + "/heartbeat", workers.JobHeartbeat(*parts))
    app.add_route(JOB + "/complete", workers.JobComplete(*parts))
    app.add_route(JOB + "/release", workers.JobRelease(*parts))

    flow = Flow(scheduler.store, scheduler.notifier)
    app.add_route("/queues", flow_resources.Queues(flow))
    app.add_route("/queues/{name}/pause", flow_resources.QueuePause(flow))
    app.add_route("/queues/{name}/resume", flow_resources.QueueResume(flow))
    app.add_route("/limits", flow_resources.Limits(flow))
    app.add_route("/limits/{kind}/{name}", flow_resources.LimitItem(flow, config))

    schedules = scheduler.schedules
    app.add_route(
        "/schedules", schedule_resources.ScheduleCollection(schedules, executors, config, check)
    )
    app.add_route("/schedules/{name}", schedule_resources.ScheduleItem(schedules))
    app.add_route("/schedules/{name}/pause", schedule_resources.SchedulePause(schedules))
    app.add_route("/schedules/{name}/resume", schedule_resources.ScheduleResume(schedules))

    health = meta.Health(
        scheduler.store, plugins, registry, scheduler.clock, scheduler.database, bool(config.tokens)
    )
    app.add_route("/health", health)
    app.add_route("/job-types", meta.JobTypes(plugins))
    app.add_route("/plugins", plugin_info.Plugins(plugins))
    app.add_route("/openapi.json", meta.OpenAPI(build_openapi(executors)))
    if metrics is not None:
        app.add_route("/metrics", observe.MetricsEndpoint(metrics))
    app.add_route("/stats", observe.Stats(scheduler.store, registry, scheduler.clock))
    app.add_route("/workers", observe.Workers(registry))

    assets = dashboard.load_assets()
    app.add_route("/", dashboard.DashboardPage(assets))
    app.add_route(dashboard.PREFIX + "/{name}", dashboard.DashboardFile(assets))
    explorer = apidocs.load_explorer()
    app.add_route(apidocs.PREFIX, apidocs.ExplorerPage(explorer))
    app.add_route(apidocs.PREFIX + "/{name}", apidocs.ExplorerFile(explorer))
    return app
