"""``GET /stats/history``: the charts' points, from the per-minute rollup."""

from __future__ import annotations

import falcon

from taskframe.core import schemas
from taskframe.server import rollup
from taskframe.server.http_io import load_query
from taskframe.server.scheduler import Scheduler


class History:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.query_schema = schemas.HistoryQuerySchema()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = load_query(req, self.query_schema)
        resp.media = rollup.history(
            self.scheduler.store,
            query["window"],
            self.scheduler.clock(),
            query.get("type"),
            query.get("queue"),
        )
