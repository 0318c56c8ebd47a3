"""Queue and limit endpoints: ``/queues`` (counts, pause, resume) and ``/limits``."""

from __future__ import annotations

import falcon

from taskframe.core import schemas
from taskframe.core.errors import ErrorCode
from taskframe.server.config import ServerConfig
from taskframe.server.engine.queues import LIMIT_KINDS, Flow
from taskframe.server.http.errors import APIError, validation_error
from taskframe.server.http.http_io import read_json


def _queue_name(name: str) -> str:
    if not schemas.is_queue_name(name):
        raise validation_error({"name": [f"{name!r} is not a queue name"]})
    return name


class Queues:
    """``GET /queues``: every queue, paused or not, with its jobs counted by status."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"queues": self.flow.queues()}


class QueuePause:
    """``POST /queues/{name}/pause``: the queue keeps accepting jobs and leases none."""

    paused = True

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = self.flow.set_paused(_queue_name(name), self.paused)


class QueueResume(QueuePause):
    """``POST /queues/{name}/resume``."""

    paused = False


class Limits:
    """``GET /limits``: every concurrency limit."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"limits": self.flow.limits()}


class LimitItem:
    """``PUT|DELETE /limits/{type|queue}/{name}``: at most ``max_running`` at once."""

    schema = schemas.LimitBodySchema()

    def __init__(self, flow: Flow, config: ServerConfig) -> None:
        self.flow = flow
        self.limit = config.max_body_bytes

    def on_put(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        kind, name = _limit_key(kind, name)
        body = read_json(req, self.schema, self.limit)
        resp.media = self.flow.set_limit(kind, name, body["max_running"])

    def on_delete(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        kind, name = _limit_key(kind, name)
        if not self.flow.delete_limit(kind, name):
            raise APIError(
                falcon.HTTP_404,
                "Not found",
                f"no limit on {kind} {name!r}",
                code=ErrorCode.NOT_FOUND,
            )
        resp.status = falcon.HTTP_204


def _limit_key(kind: str, name: str) -> tuple[str, str]:
    if kind not in LIMIT_KINDS:
        raise APIError(
            falcon.HTTP_404,
            "Not found",
            f"limits are per type or queue, not {kind!r}",
            code=ErrorCode.NOT_FOUND,
        )
    if kind == "queue":
        _queue_name(name)
    elif not 1 <= len(name) <= 200 or "\x00" in name:
        raise validation_error({"name": ["a job type name is 1 to 200 characters"]})
    return kind, name
