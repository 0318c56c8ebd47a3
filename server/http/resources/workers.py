"""Worker endpoints: lease, heartbeat, complete and release attempts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import falcon

from taskframe.core import quick_load, schemas
from taskframe.core.errors import ErrorCode
from taskframe.core.model import Reported
from taskframe.server.config import ServerConfig
from taskframe.server.engine.attempts import Attempts
from taskframe.server.engine.completions import Completion, CompletionOutcome, CompletionResult
from taskframe.server.engine.job_ops import JobOps
from taskframe.server.engine.leasing import Leasing
from taskframe.server.http.auth import require_worker_id
from taskframe.server.http.errors import APIError
from taskframe.server.http.http_io import load_query, read_json
from taskframe.server.observe.registry import WorkerRegistry
from taskframe.server.storage import JobRow
from taskframe.server.storage.representation import job_answer

#: The enum member of each reported status (a dict lookup: cheaper than ``Reported(text)``).
_REPORTED = {reported.value: reported for reported in Reported}


def _completion(item: dict[str, Any], job_id: int, worker_id: str | None) -> Completion:
    return Completion(
        job_id=job_id,
        lease_id=item["lease_id"],
        status=_REPORTED[item["status"]],
        worker_id=worker_id,
        result=item["result"],
        error=item["error"],
        retryable=item["retryable"],
        log=item.get("log"),
        traceback=item.get("traceback"),
        retry_after=item.get("retry_after"),
    )


#: Each completion's result as the HTTP status it would get on its own.
HTTP_STATUS = {
    CompletionResult.RECORDED: 200,
    CompletionResult.UNKNOWN_JOB: 404,
    CompletionResult.STALE_LEASE: 409,
}


def _outcome_json(outcome: CompletionOutcome) -> dict[str, Any]:
    answer = {
        "job_id": outcome.job_id,
        "ok": outcome.recorded,
        "code": HTTP_STATUS[outcome.result],
        "error": outcome.error,
    }
    if outcome.already:  # a resend: the worker says so rather than "recorded"
        answer["already_recorded"] = True
    return answer


def client_gone(req: falcon.Request) -> Callable[[], bool] | None:
    """Whether the client hung up, as waitress tells with ``channel_request_lookahead``
    (see serving.py); None under another server: nothing is checked."""
    gone = req.env.get("waitress.client_disconnected")
    return gone if callable(gone) else None


def leased_json(job_ops: JobOps, rows: list[JobRow]) -> list[dict[str, Any]]:
    """Leased jobs; those with dependencies carry their results (``dependencies``).

    Each says how long its lease has left (``expires_in``, seconds: a duration
    in the server's clock, which the worker compares with its own durations).
    """
    now = job_ops.clock()
    jobs = [job_answer(row, with_lease=True) for row in rows]
    for job, row in zip(jobs, rows, strict=True):
        expires_at = row["lease_expires_at"]
        assert expires_at is not None  # a leased job's
        job["expires_in"] = round(expires_at - now, 3)
    if any(row.get("depends_on") for row in rows):
        found = job_ops.dependency_results(rows)
        for job in jobs:
            if job["id"] in found:
                job["dependencies"] = found[job["id"]]
    return jobs


class WorkerResource:
    def __init__(
        self,
        attempts: Attempts,
        leasing: Leasing,
        jobs: JobOps,
        config: ServerConfig,
        job_types: list[str],
        registry: WorkerRegistry | None = None,
    ) -> None:
        self.attempts = attempts
        self.leasing = leasing
        self.jobs = jobs
        self.registry = registry
        self.config = config
        self.limit = config.max_body_bytes * 16
        self.job_types = job_types

    def _types(self, requested: list[str] | None) -> list[str]:
        return self.job_types if requested is None else requested


class Lease(WorkerResource):
    """``POST /lease``: report finished attempts, then lease up to ``max`` jobs.

    One round trip per batch: the worker's completions ride on its next lease.
    """

    schema = schemas.LeaseRequestSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        started = time.perf_counter()
        request = read_json(req, self.schema, self.limit, quick_load.quick_load_lease_request)
        worker_id = request["worker_id"]
        require_worker_id(req, worker_id)
        types = self._types(request["types"])
        if self.registry is not None:
            self.registry.seen(worker_id, request.get("host"), types, request.get("slots"))
        outcomes = self.attempts.complete(
            [_completion(c, c["job_id"], worker_id) for c in request["completions"]]
        )
        gone = client_gone(req)
        rows, refused = self.leasing.lease_or_busy(
            worker_id,
            types,
            request["max"],
            request["wait"],
            request_id=request["request_id"],
            resent=request["resent"],
            queues=request.get("queues"),
            gone=gone,
        )
        if rows and gone is not None and gone():
            # The worker hung up (stopped, killed) while it waited: nobody reads this
            # answer, so its jobs go back now instead of expiring one lease TTL later.
            self.leasing.release_undelivered(worker_id, rows)
            rows = []
        self.attempts.telemetry.lease_request(time.perf_counter() - started, len(rows))
        if self.registry is not None and request["wait"]:
            self.registry.seen(worker_id)  # the end of a long poll counts as seen too
        resp.media = {
            "jobs": leased_json(self.jobs, rows),
            "completions": [_outcome_json(o) for o in outcomes],
            "lease_ttl": self.config.lease_ttl,
            "live_log": True,  # heartbeat entries may carry log text (server/engine/live_log.py)
            # Too many requests wait already: come back after this pause.
            "retry_after": self.leasing.wait_slots.retry_after() if refused else None,
            # Seconds from the request's arrival to this answer: the worker tells by
            # it how long the answer took to reach it (a stalled worker, say).
            "answered_after": round(time.perf_counter() - started, 4),
            # What the server takes, so that the worker checks it before sending.
            "max_result": self.config.max_result_bytes,
            "max_body": self.limit,
        }


class NextJob(WorkerResource):
    """``POST /next-job?worker_id=W[&types=a,b][&wait=S]``: lease one job, or 204.

    A POST with its parameters in the query string and no body (for curl):
    leasing changes state, so no GET (an ``<img>`` on any page could lease).
    """

    schema = schemas.NextJobQuerySchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = load_query(req, self.schema)
        require_worker_id(req, query["worker_id"])
        types = [t for t in query["types"].split(",") if t] if "types" in query else None
        queues = [q for q in query["queues"].split(",") if q] if "queues" in query else None
        gone = client_gone(req)
        rows, refused = self.leasing.lease_or_busy(
            query["worker_id"], self._types(types), 1, query["wait"], queues=queues, gone=gone
        )
        if rows and gone is not None and gone():
            self.leasing.release_undelivered(query["worker_id"], rows)
            rows = []
        if not rows:
            resp.status = falcon.HTTP_204
            if refused:
                resp.set_header("Retry-After", str(self.leasing.wait_slots.retry_after()))
            return
        resp.media = leased_json(self.jobs, rows)[0]


class Heartbeats(WorkerResource):
    """``POST /heartbeats``: extend every lease a worker holds in one request."""

    schema = schemas.HeartbeatBatchSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = read_json(req, self.schema, self.limit)
        require_worker_id(req, request["worker_id"])
        if self.registry is not None:
            self.registry.seen(request["worker_id"])
        leases = [(item["job_id"], item["lease_id"]) for item in request["leases"]]
        progress = {
            (item["job_id"], item["lease_id"]): item["progress"]
            for item in request["leases"]
            if item.get("progress")
        }
        logs = {
            (item["job_id"], item["lease_id"]): item["log"]
            for item in request["leases"]
            if item.get("log")
        }
        answers = self.attempts.heartbeat(request["worker_id"], leases, progress, logs)
        resp.media = {
            "leases": [
                {"job_id": job_id, "ok": held, "cancel_requested": cancel}
                for job_id, held, cancel in answers
            ],
            "lease_ttl": self.config.lease_ttl,
            "live_log": True,  # heartbeat entries may carry log text (server/engine/live_log.py)
        }


class JobHeartbeat(WorkerResource):
    """``POST /jobs/{id}/heartbeat``: extend one lease; 409 when it is gone."""

    schema = schemas.HeartbeatSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        request = read_json(req, self.schema, self.config.max_body_bytes)
        require_worker_id(req, request["worker_id"])
        self.jobs.get(job_id)  # 404 for an unknown job
        lease = (job_id, request["lease_id"])
        progress = {lease: request["progress"]} if request.get("progress") else None
        logs = {lease: request["log"]} if request.get("log") else None
        [(_, held, cancel)] = self.attempts.heartbeat(request["worker_id"], [lease], progress, logs)
        if not held:
            raise APIError(
                falcon.HTTP_409,
                "Conflict",
                "stale lease: the attempt moved on",
                code=ErrorCode.STALE_LEASE,
            )
        resp.media = {
            "job_id": job_id,
            "cancel_requested": cancel,
            "lease_ttl": self.config.lease_ttl,
            "live_log": True,  # heartbeat entries may carry log text (server/engine/live_log.py)
        }


class JobComplete(WorkerResource):
    """``POST /jobs/{id}/complete``: the outcome of one attempt; 409 when stale."""

    schema = schemas.CompleteSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        request = read_json(req, self.schema, self.limit)
        require_worker_id(req, request["worker_id"])
        [outcome] = self.attempts.complete([_completion(request, job_id, request["worker_id"])])
        if outcome.result is CompletionResult.UNKNOWN_JOB:
            raise APIError(falcon.HTTP_404, "Not found", outcome.error, code=ErrorCode.NOT_FOUND)
        if outcome.result is CompletionResult.STALE_LEASE:
            raise APIError(falcon.HTTP_409, "Conflict", outcome.error, code=ErrorCode.STALE_LEASE)
        assert outcome.job is not None  # a recorded completion carries its job
        resp.media = job_answer(outcome.job)


class JobRelease(WorkerResource):
    """``POST /jobs/{id}/release``: back to the queue at once, attempt not counted."""

    schema = schemas.ReleaseSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        request = read_json(req, self.schema, self.config.max_body_bytes)
        require_worker_id(req, request["worker_id"])
        resp.media = job_answer(
            self.attempts.release(job_id, request["worker_id"], request["lease_id"])
        )
