"""Client endpoints: submit, read, list, cancel and retry jobs."""

from __future__ import annotations

from typing import Any

import falcon

from taskframe.core import model, quick_load, schemas
from taskframe.core.executor import Executor
from taskframe.server.config import ServerConfig
from taskframe.server.engine import live_log
from taskframe.server.engine.dependencies import MissingDependencies
from taskframe.server.engine.intake import Intake
from taskframe.server.engine.job_ops import JobOps
from taskframe.server.engine.submission import JobCheck, job_errors, jobs_errors
from taskframe.server.http.errors import validation_error
from taskframe.server.http.http_io import load_query, read_json
from taskframe.server.http.resources.listing import list_page, listing_of
from taskframe.server.storage.representation import attempt_json, job_answer

WAIT_QUERY = schemas.WaitQuerySchema()


class JobCollection:
    """``POST /jobs[?wait=S]`` submits one job; ``GET /jobs`` lists them, newest first
    or as ``sort`` and ``order`` say (server/http/resources/listing.py).

    With ``wait``, the answer comes once the job finished (or after S seconds,
    with the job as it is then), as ``GET /jobs/{id}?wait=S`` would answer:
    one request from submission to result.
    """

    def __init__(
        self,
        intake: Intake,
        jobs: JobOps,
        executors: dict[str, Executor],
        config: ServerConfig,
        check: JobCheck | None = None,
    ) -> None:
        self.intake = intake
        self.jobs = jobs
        self.executors = executors
        self.check = check
        self.limit = config.max_body_bytes
        self.schema = schemas.SubmitJobSchema()
        self.query_schema = schemas.ListJobsQuerySchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Only ``wait`` is read from the query (other parameters were always ignored).
        wait = load_query(req, WAIT_QUERY, only="wait")["wait"] if req.query_string else 0.0
        job = read_json(
            req, self.schema, self.limit, quick_load.quick_load_submit, self._payload_errors
        )
        header_key = req.get_header("Idempotency-Key")
        if header_key:
            problems = schemas.idempotency_key_errors(header_key)
            if problems:
                raise validation_error({"Idempotency-Key": problems})
            if job["idempotency_key"] not in (None, header_key):
                raise validation_error(
                    {"idempotency_key": ["differs from the Idempotency-Key header"]}
                )
            job["idempotency_key"] = header_key
        errors = job_errors(job, self.executors, self.check)
        errors.update(reference_errors(job, 0, single=True))
        if errors:
            raise validation_error(errors)
        if "depends_on" in job:
            # Its own transaction: a missing dependency must not fail a shared commit.
            try:
                [(row, created)] = self.intake.submit([job])
            except MissingDependencies as exc:
                raise validation_error(exc.errors) from None
        else:
            row, created = self.intake.submit_one(job)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.location = f"/jobs/{row['id']}"
        if wait > 0 and row["status"] not in model.FINISHED:
            # Committed already: the job is the client's whatever the wait brings.
            row, refused = self.jobs.wait_for_job(row["id"], wait)
            if refused:
                resp.set_header("Retry-After", str(self.jobs.wait_slots.retry_after()))
        resp.media = job_answer(row)

    def _payload_errors(self, body: dict[str, Any]) -> dict[str, Any]:
        """With an invalid envelope, the type's and payload's problems too, where usable."""
        job_type, payload = body.get("type"), body.get("payload", {})
        if not isinstance(job_type, str) or not isinstance(payload, dict):
            return {}
        return job_errors({"type": job_type, "payload": payload}, self.executors)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = load_query(req, self.query_schema)
        resp.media = list_page(self.jobs, listing_of(query), query.get("cursor"), query["full"])


class JobBatch:
    """``POST /jobs/batch``: all jobs are validated before any is written."""

    def __init__(
        self,
        intake: Intake,
        executors: dict[str, Executor],
        config: ServerConfig,
        check: JobCheck | None = None,
    ) -> None:
        self.intake = intake
        self.executors = executors
        self.check = check
        self.limit = config.max_body_bytes * 16
        self.schema = schemas.BatchSubmitSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        jobs = read_json(req, self.schema, self.limit, quick_load.quick_load_batch)["jobs"]
        problems = jobs_errors(jobs, self.executors, self.check)
        for index, job in enumerate(jobs):
            if "depends_on" in job:
                found = reference_errors(job, index)
                if found:
                    problems[index] = {**problems.get(index, {}), **found}
        errors = {str(index): problems[index] for index in sorted(problems)}
        if errors:
            raise validation_error({"jobs": errors}, f"{len(errors)} job(s) are invalid")
        try:
            results = self.intake.submit(jobs)
        except MissingDependencies as exc:
            raise validation_error({"jobs": exc.errors}) from None
        resp.status = falcon.HTTP_201
        # Ids only: echoing a thousand full jobs would cost more than storing them.
        resp.media = {
            "ids": [row["id"] for row, _ in results],
            "created": sum(created for _, created in results),
        }


def reference_errors(job: dict[str, Any], index: int, single: bool = False) -> dict[str, list[str]]:
    """``"$N"`` in ``depends_on`` must name a job earlier in the same batch."""
    bad = [
        f"${dep[1]} does not name a job before this one in the batch"
        for dep in job.get("depends_on", ())
        if isinstance(dep, tuple) and (single or dep[1] >= index)
    ]
    if single and bad:
        bad = ['"$N" references work only in POST /jobs/batch']
    return {"depends_on": bad} if bad else {}


class JobItem:
    """``GET /jobs/{id}[?wait=S]``: with ``wait``, answers once the job finished."""

    def __init__(self, jobs: JobOps) -> None:
        self.jobs = jobs

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        wait = load_query(req, WAIT_QUERY)["wait"]
        row, refused = self.jobs.wait_for_job(job_id, wait)
        if refused:
            # Too many requests wait already: the job as it is, and when to ask again.
            resp.set_header("Retry-After", str(self.jobs.wait_slots.retry_after()))
        resp.media = job_answer(row)


class JobAttempts:
    """``GET /jobs/{id}/attempts``: every finished attempt, oldest first, and the
    running one with its log so far (``running``, null when none runs)."""

    def __init__(self, jobs: JobOps) -> None:
        self.jobs = jobs

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        rows = self.jobs.attempts(job_id)
        resp.media = {
            "job_id": job_id,
            "attempts": [attempt_json(row) for row in rows],
            "running": live_log.running_attempt(self.jobs.store, job_id),
        }


class JobCancel:
    def __init__(self, jobs: JobOps) -> None:
        self.jobs = jobs

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        resp.media = job_answer(self.jobs.cancel(job_id))


class JobRetry:
    def __init__(self, jobs: JobOps) -> None:
        self.jobs = jobs

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        resp.media = job_answer(self.jobs.retry(job_id))
