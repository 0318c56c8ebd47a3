"""``POST /jobs/retry`` and ``POST /jobs/cancel``: every job a filter matches."""

from __future__ import annotations

import falcon

from taskframe.core import schemas
from taskframe.server.config import ServerConfig
from taskframe.server.engine.bulk import BulkActions, NothingApplies
from taskframe.server.http.errors import validation_error
from taskframe.server.http.http_io import read_json
from taskframe.server.http.resources.listing import filters_of


class BulkAction:
    """The body is a filter (as ``GET /jobs`` takes) with ``dry_run`` and ``limit``;
    the answer counts the jobs matched and changed (``dry_run``: matched only)."""

    def __init__(self, actions: BulkActions, action: str, config: ServerConfig) -> None:
        self.actions = actions
        self.action = action
        self.limit = config.max_body_bytes
        self.schema = schemas.BulkActionSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, self.schema, self.limit)
        try:
            result = self.actions.run(self.action, filters_of(body), body["limit"], body["dry_run"])
        except NothingApplies as exc:
            raise validation_error({"status": [str(exc)]}) from None
        resp.media = {
            "matched": result.matched,
            "changed": result.changed,
            "cancel_requested": result.cancel_requested,
            "skipped": result.skipped,
            "dry_run": result.dry_run,
        }
