"""Schedule endpoints: ``/schedules`` (create, list) and ``/schedules/{name}`` (read,
delete, pause, resume)."""

from __future__ import annotations

import json
from typing import Any

import falcon
from marshmallow import ValidationError

from taskframe.core import cron, schemas
from taskframe.core.errors import ErrorCode
from taskframe.core.executor import Executor
from taskframe.server.config import ServerConfig
from taskframe.server.engine.schedules import (
    MAX_JOB_BYTES,
    NEXT_SHOWN,
    ScheduleNotFound,
    Schedules,
    schedule_json,
)
from taskframe.server.engine.submission import JobCheck, job_errors
from taskframe.server.http.errors import APIError, validation_error
from taskframe.server.http.http_io import read_json

#: Fields of a job that make no sense for one submitted at every fire time.
NOT_IN_SCHEDULES = ("delay", "run_at", "idempotency_key", "depends_on")


def _not_found(exc: ScheduleNotFound) -> APIError:
    return APIError(falcon.HTTP_404, "Not found", str(exc), code=ErrorCode.NOT_FOUND)


class ScheduleCollection:
    def __init__(
        self,
        schedules: Schedules,
        executors: dict[str, Executor],
        config: ServerConfig,
        check: JobCheck | None = None,
    ) -> None:
        self.schedules = schedules
        self.executors = executors
        self.check = check
        self.limit = config.max_body_bytes
        self.schema = schemas.ScheduleSchema()
        self.job_schema = schemas.SubmitJobSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        spec = read_json(req, self.schema, self.limit)
        errors: dict[str, Any] = {}
        try:
            cron.check(spec["cron"])
            cron.next_fire(spec["cron"], "UTC", 0.0)
        except (cron.CronError, ValueError, KeyError) as exc:
            errors["cron"] = [str(exc)]
        try:
            cron.zone(spec["timezone"])
        except cron.CronError as exc:
            errors["timezone"] = [str(exc)]
        job_problems: Any = {
            name: ["not allowed in a schedule's job"]
            for name in NOT_IN_SCHEDULES
            if name in spec["job"]
        }
        size = len(json.dumps(spec["job"], separators=(",", ":")).encode())
        if size > MAX_JOB_BYTES:
            job_problems = [
                f"{size} bytes as JSON, more than a schedule's job may take ({MAX_JOB_BYTES}): "
                "it is stored again at every fire time"
            ]
        if not job_problems:
            try:
                job = self.job_schema.load(spec["job"])
            except ValidationError as exc:
                job_problems = exc.messages
            else:
                job_problems = job_errors(job, self.executors, self.check)
                job.pop("idempotency_key", None)
                spec["job"] = job
        if job_problems:
            errors["job"] = job_problems
        if errors:
            raise validation_error(errors)
        row = self.schedules.create(spec)
        resp.status = falcon.HTTP_201
        resp.location = f"/schedules/{row['name']}"
        resp.media = schedule_json(row, NEXT_SHOWN)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"schedules": [schedule_json(row) for row in self.schedules.list()]}


class ScheduleItem:
    def __init__(self, schedules: Schedules) -> None:
        self.schedules = schedules

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            resp.media = schedule_json(self.schedules.get(name), NEXT_SHOWN)
        except ScheduleNotFound as exc:
            raise _not_found(exc) from None

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            self.schedules.delete(name)
        except ScheduleNotFound as exc:
            raise _not_found(exc) from None
        resp.status = falcon.HTTP_204


class SchedulePause:
    paused = True

    def __init__(self, schedules: Schedules) -> None:
        self.schedules = schedules

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            resp.media = schedule_json(self.schedules.set_paused(name, self.paused), NEXT_SHOWN)
        except ScheduleNotFound as exc:
            raise _not_found(exc) from None


class ScheduleResume(SchedulePause):
    paused = False
