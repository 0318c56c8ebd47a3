"""The route table: every route of the API once, with its resource, the roles that
may call each method, and the OpenAPI operation that documents it.

``create_app`` adds the routes and gives the roles to the
:class:`~taskframe.server.http.auth.Authenticator`;
:func:`~taskframe.server.http.openapi.build_openapi`
writes the document from the same rows (an operation without a summary is not
documented: pages, files, the document itself, the metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from marshmallow import Schema

from taskframe.core import schemas
from taskframe.core.limits import MAX_ID
from taskframe.server.engine.bulk import BulkActions
from taskframe.server.http.auth import ADMIN, CLIENT, OPEN, WORKER
from taskframe.server.http.openapi import build_openapi
from taskframe.server.http.resources import (
    apidocs,
    bulk,
    dashboard,
    history,
    jobs,
    listing,
    meta,
    observe,
    workers,
)
from taskframe.server.http.resources import plugins as plugin_info
from taskframe.server.http.resources import queues as queue_resources
from taskframe.server.http.resources import schedules as schedule_resources

if TYPE_CHECKING:
    from taskframe.server.http.app import Parts

# Ids beyond what the database holds are unknown jobs (404), not errors.
JOB_ID_TEMPLATE = f"{{job_id:int(min=1, max={MAX_ID})}}"


@dataclass(frozen=True)
class Operation:
    """One method of a route: who may call it, and how the OpenAPI document shows it."""

    roles: frozenset[str]
    summary: str = ""  # empty: not in the OpenAPI document
    request: str | None = None  # the body's schema (a name of openapi.COMPONENTS)
    code: str = "200"
    response: str | None = None  # the answer's schema (None: no body)
    errors: str = ""  # error statuses beyond those every route may answer
    query: type[Schema] | None = None  # the schema its query string is loaded with
    empty: str = ""  # why it may answer 204 with no body


@dataclass(frozen=True)
class Route:
    path: str  # as the OpenAPI document writes it
    resource: Callable[[Parts], Any]  # its resource (None: not served, as /metrics without)
    methods: Mapping[str, Operation]

    @property
    def template(self) -> str:
        """The path as Falcon routes it: job ids are integers in the database's range."""
        return self.path.replace("{job_id}", JOB_ID_TEMPLATE)


def route(path: str, resource: Callable[[Parts], Any], **methods: Operation) -> Route:
    """A row of the table: ``methods`` by HTTP method (``POST=Operation(...)``)."""
    return Route(path, resource, methods)


_CLIENT = frozenset({CLIENT})
_WORKER = frozenset({WORKER})
_ADMIN = frozenset({ADMIN})
_CLIENT_OR_WORKER = frozenset({CLIENT, WORKER})
# Who may call what when tokens are configured (admin may call everything).
# A route missing here is for admin only: closed until someone decides.
ROUTES: tuple[Route, ...] = (
    route(
        "/jobs",
        lambda p: jobs.JobCollection(
            p.engine.intake, p.engine.jobs, p.executors, p.config, p.check
        ),
        POST=Operation(
            _CLIENT,
            "Submit a job (wait=S: answer once it finished)",
            "SubmitJob",
            "201",
            "Job",
            "400 413 415 409 422 503",
            schemas.WaitQuerySchema,
        ),
        GET=Operation(
            _CLIENT,
            "List jobs, newest first",
            response="JobList",
            errors="422 503",
            query=schemas.ListJobsQuerySchema,
        ),
    ),
    route(
        "/jobs/batch",
        lambda p: jobs.JobBatch(p.engine.intake, p.executors, p.config, p.check),
        POST=Operation(
            _CLIENT,
            "Submit many jobs at once",
            "BatchSubmit",
            "201",
            "JobBatch",
            "400 413 415 422",
        ),
    ),
    route(
        "/jobs/{job_id}",
        lambda p: jobs.JobItem(p.engine.jobs),
        GET=Operation(
            _CLIENT,
            "Read a job (wait=S: until it finished)",
            response="Job",
            errors="404 422",
            query=schemas.WaitQuerySchema,
        ),
    ),
    route(
        "/jobs/{job_id}/attempts",
        lambda p: jobs.JobAttempts(p.engine.jobs),
        GET=Operation(
            _CLIENT,
            "Attempt history, and the running attempt's log",
            response="AttemptList",
            errors="404",
        ),
    ),
    route(
        "/jobs/{job_id}/cancel",
        lambda p: jobs.JobCancel(p.engine.jobs),
        POST=Operation(_CLIENT, "Cancel a job", response="Job", errors="404 409"),
    ),
    route(
        "/jobs/{job_id}/retry",
        lambda p: jobs.JobRetry(p.engine.jobs),
        POST=Operation(
            _CLIENT, "Re-queue a failed or cancelled job", response="Job", errors="404 409"
        ),
    ),
    # Issue 23: every job a filter matches, a job's dependants, the charts' history.
    route(
        "/jobs/retry",
        lambda p: bulk.BulkAction(BulkActions(p.engine.jobs), "retry", p.config),
        POST=Operation(
            _CLIENT,
            "Re-queue every failed or cancelled job a filter matches (dry_run: count)",
            "BulkAction",
            response="BulkAnswer",
            errors="400 413 415 422 503",
        ),
    ),
    route(
        "/jobs/cancel",
        lambda p: bulk.BulkAction(BulkActions(p.engine.jobs), "cancel", p.config),
        POST=Operation(
            _CLIENT,
            "Cancel every job a filter matches (dry_run: count)",
            "BulkAction",
            response="BulkAnswer",
            errors="400 413 415 422 503",
        ),
    ),
    route(
        "/jobs/{job_id}/dependants",
        lambda p: listing.Dependants(p.engine.jobs),
        GET=Operation(
            _CLIENT,
            "Jobs that depend on this one",
            response="DependantList",
            errors="404 422",
            query=schemas.DependantsQuerySchema,
        ),
    ),
    route(
        "/jobs/{job_id}/heartbeat",
        lambda p: workers.JobHeartbeat(*p.worker_parts()),
        POST=Operation(
            _WORKER,
            "Extend a lease",
            "Heartbeat",
            response="HeartbeatAnswer",
            errors="400 404 409 415 422",
        ),
    ),
    route(
        "/jobs/{job_id}/complete",
        lambda p: workers.JobComplete(*p.worker_parts()),
        POST=Operation(
            _WORKER,
            "Report an attempt's outcome",
            "Complete",
            response="Job",
            errors="400 404 409 415 422",
        ),
    ),
    route(
        "/jobs/{job_id}/release",
        lambda p: workers.JobRelease(*p.worker_parts()),
        POST=Operation(
            _WORKER,
            "Give a lease back unspent",
            "Release",
            response="Job",
            errors="400 404 409 415 422",
        ),
    ),
    route(
        "/next-job",
        lambda p: workers.NextJob(*p.worker_parts()),
        POST=Operation(
            _WORKER,
            "Lease one job (204 when none); no body",
            response="Job",
            errors="415 422 503",
            query=schemas.NextJobQuerySchema,
            empty="No job ready",
        ),
    ),
    route(
        "/lease",
        lambda p: workers.Lease(*p.worker_parts(), p.registry),
        POST=Operation(
            _WORKER,
            "Report outcomes and lease jobs",
            "LeaseRequest",
            response="LeaseAnswer",
            errors="400 413 415 422",
        ),
    ),
    route(
        "/heartbeats",
        lambda p: workers.Heartbeats(*p.worker_parts(), p.registry),
        POST=Operation(
            _WORKER,
            "Extend many leases",
            "HeartbeatBatch",
            response="HeartbeatBatchAnswer",
            errors="400 415 422",
        ),
    ),
    route(
        "/job-types",
        lambda p: meta.JobTypes(p.plugins),
        GET=Operation(
            _CLIENT_OR_WORKER, "Installed job types and payload schemas", response="JobTypes"
        ),
    ),
    route(
        "/health",
        lambda p: meta.Health(
            p.engine.store,
            p.plugins,
            p.registry,
            p.engine.clock,
            p.engine.database,
            p.tokens,
        ),
        GET=Operation(
            OPEN, "Health of the server and its database", response="Health", errors="503"
        ),
    ),
    # Observability: counts and workers, no job contents; read like the job list.
    route(
        "/stats",
        lambda p: observe.Stats(p.engine.store, p.registry, p.engine.clock),
        GET=Operation(
            _CLIENT, "Job counts, oldest ready job, stuck types", response="Stats", errors="503"
        ),
    ),
    route(
        "/stats/history",
        lambda p: history.History(p.engine.store, p.engine.clock),
        GET=Operation(
            _CLIENT,
            "Jobs finished, queue depth and age per minute",
            response="History",
            errors="422",
            query=schemas.HistoryQuerySchema,
        ),
    ),
    route(
        "/workers",
        lambda p: observe.Workers(p.registry),
        GET=Operation(_CLIENT, "Workers seen lately", response="WorkerList", errors="503"),
    ),
    route(
        "/plugins",
        lambda p: plugin_info.Plugins(p.plugins),
        GET=Operation(_CLIENT_OR_WORKER, "Loaded plugins and plugin failures", response="Plugins"),
    ),
    # Queues and limits: anyone who reads jobs may look; pausing a queue or
    # setting a limit affects every client's work, so those are for admins.
    route(
        "/queues",
        lambda p: queue_resources.Queues(p.flow),
        GET=Operation(_CLIENT, "Queues with their jobs counted by status", response="QueueList"),
    ),
    route(
        "/queues/{name}/pause",
        lambda p: queue_resources.QueuePause(p.flow),
        POST=Operation(
            _ADMIN,
            "Pause a queue: it accepts jobs, leases none",
            response="Queue",
            errors="422",
        ),
    ),
    route(
        "/queues/{name}/resume",
        lambda p: queue_resources.QueueResume(p.flow),
        POST=Operation(_ADMIN, "Resume a queue", response="Queue", errors="422"),
    ),
    route(
        "/limits",
        lambda p: queue_resources.Limits(p.flow),
        GET=Operation(_CLIENT, "Concurrency limits", response="LimitList"),
    ),
    route(
        "/limits/{kind}/{name}",
        lambda p: queue_resources.LimitItem(p.flow, p.config),
        PUT=Operation(
            _ADMIN,
            "Set a limit (kind: type or queue)",
            "LimitBody",
            response="Limit",
            errors="404 422",
        ),
        DELETE=Operation(_ADMIN, "Remove a limit", code="204", errors="404 422"),
    ),
    # Schedules submit jobs and are removed like jobs are cancelled: the client role.
    route(
        "/schedules",
        lambda p: schedule_resources.ScheduleCollection(
            p.engine.schedules, p.executors, p.config, p.check
        ),
        POST=Operation(
            _CLIENT,
            "Create a cron schedule",
            "Schedule",
            "201",
            "ScheduleAnswer",
            "409 422",
        ),
        GET=Operation(_CLIENT, "List schedules", response="ScheduleList"),
    ),
    route(
        "/schedules/{name}",
        lambda p: schedule_resources.ScheduleItem(p.engine.schedules),
        GET=Operation(
            _CLIENT,
            "A schedule and its next fire times",
            response="ScheduleAnswer",
            errors="404",
        ),
        DELETE=Operation(_CLIENT, "Delete a schedule", code="204", errors="404"),
    ),
    route(
        "/schedules/{name}/pause",
        lambda p: schedule_resources.SchedulePause(p.engine.schedules),
        POST=Operation(_CLIENT, "Pause a schedule", response="ScheduleAnswer", errors="404"),
    ),
    route(
        "/schedules/{name}/resume",
        lambda p: schedule_resources.ScheduleResume(p.engine.schedules),
        POST=Operation(
            _CLIENT, "Resume a schedule from now", response="ScheduleAnswer", errors="404"
        ),
    ),
    # The API's description: any valid token (it names the installed plugins).
    route(
        "/openapi.json",
        lambda p: meta.OpenAPI(build_openapi(p.executors, ROUTES)),
        GET=Operation(frozenset({CLIENT, WORKER, ADMIN})),
    ),
    route(
        "/metrics",
        lambda p: (
            None
            if p.engine.telemetry.metrics is None
            else observe.MetricsEndpoint(p.engine.telemetry.metrics)
        ),
        GET=Operation(_CLIENT),
    ),
    # The dashboard's page and files are open; the API calls it makes need a token.
    route("/", lambda p: dashboard.DashboardPage(p.dashboard_assets), GET=Operation(OPEN)),
    route(
        dashboard.PREFIX + "/{name}",
        lambda p: dashboard.DashboardFile(p.dashboard_assets),
        GET=Operation(OPEN),
    ),
    # The API explorer likewise: its page fetches /openapi.json with the user's token.
    route(apidocs.PREFIX, lambda p: apidocs.ExplorerPage(p.explorer_assets), GET=Operation(OPEN)),
    route(
        apidocs.PREFIX + "/{name}",
        lambda p: apidocs.ExplorerFile(p.explorer_assets),
        GET=Operation(OPEN),
    ),
)

#: (Falcon URI template, METHOD) -> the roles that may call it, for the Authenticator.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    (route.template, method): operation.roles
    for route in ROUTES
    for method, operation in route.methods.items()
}
