"""``GET /stats/history``: the charts' points, from the per-minute rollup."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from taskframe.core import schemas
from taskframe.server.http.http_io import load_query
from taskframe.server.observe import rollup
from taskframe.server.storage import Store


class History:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.query_schema = schemas.HistoryQuerySchema()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = load_query(req, self.query_schema)
        resp.media = rollup.history(
            self.store,
            query["window"],
            self.clock(),
            query.get("type"),
            query.get("queue"),
        )
