"""The operators' routes of issue 23: bulk retry and cancel, a job's dependants, the
charts' history. Kept together so that the app adds them in one place."""

from __future__ import annotations

import falcon

from taskframe.server.auth import CLIENT
from taskframe.server.bulk import BulkActions
from taskframe.server.config import ServerConfig
from taskframe.server.resources.bulk import BulkAction
from taskframe.server.resources.history import History
from taskframe.server.resources.listing import Dependants
from taskframe.server.scheduler import Scheduler


def route_roles(job: str) -> dict[tuple[str, str], frozenset[str]]:
    """Who may call these routes (``job``: the app's job path template).
    Bulk actions are the client's, as the single-job cancel and retry are."""
    client = frozenset({CLIENT})
    return {
        ("/jobs/retry", "POST"): client,
        ("/jobs/cancel", "POST"): client,
        (job + "/dependants", "GET"): client,
        ("/stats/history", "GET"): client,
    }


def add_routes(app: falcon.App, scheduler: Scheduler, config: ServerConfig, job: str) -> None:
    jobs = scheduler.jobs
    actions = BulkActions(jobs)
    app.add_route("/jobs/retry", BulkAction(actions, "retry", config))
    app.add_route("/jobs/cancel", BulkAction(actions, "cancel", config))
    app.add_route(job + "/dependants", Dependants(jobs))
    app.add_route("/stats/history", History(scheduler.store, scheduler.clock))
