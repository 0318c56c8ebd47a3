"""marshmallow schemas of the API messages: what clients and workers send and receive.

Input schemas reject unknown fields (marshmallow's default ``RAISE``), so a
typo such as ``priorty`` is a 422 that names it instead of a silent default.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from taskframe.core import strict_json
from taskframe.core.limits import (
    MAX_ATTEMPT_LOG,
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_COMPLETIONS,
    MAX_DELAY,
    MAX_DEPENDENCIES,
    MAX_ERROR,
    MAX_HEARTBEATS,
    MAX_ID,
    MAX_ID_TEXT,
    MAX_LEASE_BATCH,
    MAX_PRIORITY,
    MAX_PROGRESS_MESSAGE,
    MAX_RETRY_AFTER,
    MAX_RUN_AT,
    MAX_SLOTS,
    MAX_TIMEOUT,
    MAX_TRACEBACK,
    MAX_TYPES,
    MAX_WAIT,
    MIN_PRIORITY,
    MIN_RUN_AT,
)
from taskframe.core.model import REPORTED, STATUSES

DEFAULT_PRIORITY = 5
DEFAULT_MAX_ATTEMPTS = 3


UNENCODABLE = "holds a lone surrogate (such as \\ud800), which UTF-8 cannot encode"


def _no_nul(value: str) -> None:
    # PostgreSQL text cannot hold NUL, and no name or key needs one.
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")


def _encodable(value: str) -> None:
    # Stored, such text would fail every answer that contains it.
    if strict_json.has_surrogate(value):
        raise ValidationError(UNENCODABLE)


def _encodable_json(value: Any) -> None:
    path = strict_json.surrogate_path(value)
    if path is not None:
        raise ValidationError(f"text at {path or 'the top'} {UNENCODABLE}")


_id_text = validate.And(validate.Length(min=1, max=MAX_ID_TEXT), _no_nul, _encodable)


def _http_url(value: str) -> None:
    """An absolute http(s) URL with a host; where it may point is the webhook's rule."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationError(f"not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValidationError("must be an http:// or https:// URL with a host")
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise ValidationError("must not contain spaces or control characters")


_job_id = validate.Range(min=1, max=MAX_ID)

DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
_QUEUE_RULE = "1 to 64 of a-z 0-9 _ . - starting with a letter or digit"
_queue_name = validate.Regexp(QUEUE_NAME, error=f"a queue name is {_QUEUE_RULE}")


def is_queue_name(value: object) -> bool:
    return type(value) is str and QUEUE_NAME.fullmatch(value) is not None


class DependencyRef(fields.Raw):
    """A job id, or ``"$N"``: the N-th job (from 0) earlier in the same batch."""

    def _deserialize(
        self, value: object, attr: str | None, data: object, **kwargs: object
    ) -> int | tuple[str, int]:
        if type(value) is int and 1 <= value <= MAX_ID:
            return value
        if type(value) is str and value.startswith("$") and value[1:].isdigit():
            return ("ref", int(value[1:]))
        raise ValidationError('a job id, or "$N" for the N-th job earlier in the batch')


#: Idempotency keys the server gives the jobs of schedules (schedule:<name>:<time>):
#: a client may not use them, or it could take a schedule's future jobs.
RESERVED_KEY_PREFIX = "schedule:"


def reserved_key(key: str) -> bool:
    return key.startswith(RESERVED_KEY_PREFIX)


def _client_key(value: str) -> None:
    if reserved_key(value):
        raise ValidationError(
            f"keys starting with {RESERVED_KEY_PREFIX!r} are reserved for schedules' jobs"
        )


def idempotency_key_errors(value: str) -> list[str]:
    """What is wrong with a client's idempotency key (the header's), if anything."""
    problems = id_text_errors(value)
    try:
        _client_key(value)
    except ValidationError as exc:
        problems += list(exc.messages)
    return problems


def id_text_errors(value: str) -> list[str]:
    """What is wrong with a name or key given outside a body (a header), if anything."""
    try:
        _id_text(value)
    except ValidationError as exc:
        return list(exc.messages)
    return []


class Text(fields.String):
    """A name the database compares: lone surrogates and NUL are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.extend([_no_nul, _encodable])


class ExecutorText(fields.String):
    """Text an executor produced: lone surrogates become U+FFFD instead of a refusal.

    A worker cannot fix its executor's output, and a refused completion
    would block every other outcome and lease riding on the same request.
    """

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return strict_json.encodable_text(super()._deserialize(value, attr, data, **kwargs))


class ExecutorJSON(fields.Raw):
    """A JSON value an executor produced, repaired like :class:`ExecutorText`."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return strict_json.encodable(value)


class SubmitJobSchema(Schema):
    """``POST /jobs``: one job to submit."""

    type = fields.String(required=True, validate=_id_text)
    payload = fields.Dict(keys=fields.String(), load_default=dict, validate=_encodable_json)
    # priority, max_attempts and queue have no load_default: an omitted one takes the
    # job type's default, else the API's (server/engine/submission.py, apply_defaults).
    priority = fields.Integer(
        strict=True,
        validate=validate.Range(MIN_PRIORITY, MAX_PRIORITY),
        metadata={
            "description": "1 (lowest) to 10 (highest); default: the type's, else "
            f"{DEFAULT_PRIORITY}"
        },
    )
    max_attempts = fields.Integer(
        strict=True,
        validate=validate.Range(1, MAX_ATTEMPTS),
        metadata={"description": f"default: the type's, else {DEFAULT_MAX_ATTEMPTS}"},
    )
    timeout = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_TIMEOUT),
        metadata={
            "description": "seconds one attempt may run; 0: no limit; "
            "absent or null: the type's timeout, else the server's --default-timeout"
        },
    )
    delay = fields.Float(
        validate=validate.Range(min=0, max=MAX_DELAY),
        metadata={"description": "seconds to hold the job back"},
    )
    run_at = fields.AwareDateTime(
        validate=validate.Range(MIN_RUN_AT, MAX_RUN_AT),
        metadata={"description": "hold the job back until then"},
    )
    idempotency_key = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.And(_id_text, _client_key),
        metadata={"description": f"not starting with {RESERVED_KEY_PREFIX!r} (schedules' own)"},
    )
    notify_url = fields.String(
        validate=validate.And(validate.Length(min=1, max=2000), _http_url, _encodable),
        metadata={
            "description": "POST the job here, signed, when it finishes "
            "(the webhook plugin; the server needs --webhook-secret)"
        },
    )

    queue = fields.String(
        validate=_queue_name,
        metadata={
            "description": f"the queue the job waits in ({_QUEUE_RULE}); default: the "
            f"type's, else {DEFAULT_QUEUE}"
        },
    )
    depends_on = fields.List(
        DependencyRef(metadata={"description": 'a job id (integer), or "$N" in a batch'}),
        validate=validate.Length(max=MAX_DEPENDENCIES),
        metadata={
            "description": 'ids of jobs that must succeed first; in a batch, "$N" is the '
            "N-th job (from 0) earlier in the same batch"
        },
    )
    on_dependency_failure = fields.String(
        validate=validate.OneOf(["cancel", "run"]),
        metadata={
            "description": "cancel (default): a failed or cancelled dependency cancels "
            "this job; run: it runs anyway once all dependencies finished"
        },
    )

    @validates_schema
    def _delay_or_run_at(self, data: dict[str, Any], **kwargs: object) -> None:
        if "delay" in data and "run_at" in data:
            raise ValidationError("give either delay or run_at, not both", "run_at")


class BatchSubmitSchema(Schema):
    """``POST /jobs/batch``: many jobs, all validated before any is written."""

    jobs = fields.List(
        fields.Nested(SubmitJobSchema), required=True, validate=validate.Length(1, MAX_BATCH)
    )


SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class ScheduleSchema(Schema):
    """``POST /schedules``: a job submitted at every fire time of a cron expression."""

    name = fields.String(
        required=True,
        validate=validate.Regexp(SCHEDULE_NAME, error="1 to 64 of A-Z a-z 0-9 _ . -"),
    )
    cron = fields.String(
        required=True,
        validate=validate.Length(max=200),
        metadata={"description": "5 fields (minute hour day month weekday), or 6: seconds last"},
    )
    timezone = fields.String(
        load_default="UTC",
        validate=validate.Length(max=100),
        metadata={"description": "an IANA zone (Europe/Paris); the cron is read in its wall time"},
    )
    job = fields.Dict(
        required=True,
        metadata={
            "description": "a job as POST /jobs takes it (no delay, run_at, "
            "idempotency_key or depends_on)"
        },
    )
    misfire = fields.String(
        load_default="latest",
        validate=validate.OneOf(["latest", "skip"]),
        metadata={
            "description": "after downtime: latest (run the latest missed time once) "
            "or skip (drop times more than 60 s late)"
        },
    )
    paused = fields.Boolean(load_default=False)


class LimitBodySchema(Schema):
    """``PUT /limits/{type|queue}/{name}``."""

    max_running = fields.Integer(required=True, strict=True, validate=validate.Range(0, MAX_SLOTS))


class ProgressSchema(Schema):
    """How far a running job got, as its executor reported it."""

    fraction = fields.Float(required=True, allow_nan=False, validate=validate.Range(0, 1))
    message = ExecutorText(
        load_default=None, allow_none=True, validate=validate.Length(max=MAX_PROGRESS_MESSAGE)
    )


class LeaseRefSchema(Schema):
    worker_id = fields.String(required=True, validate=_id_text)
    lease_id = fields.String(required=True, validate=_id_text)


def _live_log_field() -> ExecutorText:
    """A heartbeat's ``log``: optional, so that workers that send none keep working."""
    return ExecutorText(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_ATTEMPT_LOG),
        metadata={
            "description": "log text the attempt wrote since the previous heartbeat "
            "(the server keeps the last 64 KiB of the attempt's)"
        },
    )


class HeartbeatSchema(LeaseRefSchema):
    """``POST /jobs/{id}/heartbeat``."""

    progress = fields.Nested(
        ProgressSchema,
        metadata={"description": "the job's progress, when it changed since the last heartbeat"},
    )
    log = _live_log_field()


class ReleaseSchema(LeaseRefSchema):
    """``POST /jobs/{id}/release``: give a leased job back without spending an attempt."""


class CompleteSchema(LeaseRefSchema):
    """``POST /jobs/{id}/complete``: the outcome of one attempt."""

    status = fields.String(required=True, validate=validate.OneOf(REPORTED))
    result = ExecutorJSON(load_default=None, allow_none=True)
    error = ExecutorText(
        load_default=None, allow_none=True, validate=validate.Length(max=MAX_ERROR)
    )
    retryable = fields.Boolean(load_default=True)
    log = ExecutorText(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_ATTEMPT_LOG),
        metadata={"description": "what the executor logged during the attempt (its tail)"},
    )
    traceback = ExecutorText(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_TRACEBACK),
        metadata={"description": "a failed attempt's traceback (its last 16 KiB)"},
    )
    retry_after = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, MAX_RETRY_AFTER),
        metadata={
            "description": "seconds until the next attempt, if the job is retried "
            "(instead of the server's backoff)"
        },
    )


class CompletionItemSchema(CompleteSchema):
    """One outcome inside a batched lease request."""

    worker_id = Text(load_default=None)
    job_id = fields.Integer(required=True, strict=True, validate=_job_id)


class LeaseRequestSchema(Schema):
    """``POST /lease``: report finished attempts and lease up to ``max`` jobs in one trip."""

    worker_id = fields.String(required=True, validate=_id_text)
    types = fields.List(
        fields.String(validate=_id_text),  # as a job's type
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_TYPES),
        metadata={"description": f"at most {MAX_TYPES}, each 1 to {MAX_ID_TEXT} characters"},
    )
    queues = fields.List(
        fields.String(validate=_queue_name),
        load_default=None,
        allow_none=True,
        metadata={"description": "lease only from these queues (default: every queue)"},
    )
    max = fields.Integer(strict=True, load_default=1, validate=validate.Range(0, MAX_LEASE_BATCH))
    wait = fields.Float(load_default=0.0, validate=validate.Range(0, MAX_WAIT))
    completions = fields.List(
        fields.Nested(CompletionItemSchema),
        load_default=list,
        validate=validate.Length(max=MAX_COMPLETIONS),
        metadata={"description": f"at most {MAX_COMPLETIONS}"},
    )
    request_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=_id_text,
        metadata={"description": "the worker's id for this request, kept beside the leases it got"},
    )
    resent = fields.Boolean(
        load_default=False,
        metadata={
            "description": "this request (same request_id) was sent before and its answer "
            "was lost: return the jobs already leased to it instead of leasing more"
        },
    )
    host = fields.String(
        load_default=None,
        allow_none=True,
        validate=_id_text,
        metadata={"description": "the worker's host name, shown by GET /workers"},
    )
    slots = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, MAX_SLOTS),
        metadata={"description": "jobs the worker runs at once, shown by GET /workers"},
    )


class HeartbeatItemSchema(Schema):
    job_id = fields.Integer(required=True, strict=True, validate=_job_id)
    lease_id = fields.String(required=True, validate=_id_text)
    progress = fields.Nested(
        ProgressSchema,
        metadata={"description": "the job's progress, when it changed since the last heartbeat"},
    )
    log = _live_log_field()


class HeartbeatBatchSchema(Schema):
    """``POST /heartbeats``: extend every lease a worker holds in one request."""

    worker_id = fields.String(required=True, validate=_id_text)
    leases = fields.List(
        fields.Nested(HeartbeatItemSchema),
        required=True,
        validate=validate.Length(max=MAX_HEARTBEATS),
        metadata={"description": f"at most {MAX_HEARTBEATS}"},
    )


class JobFilterSchema(Schema):
    """Which jobs: the filters ``GET /jobs`` lists and the bulk actions act on."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    type = Text()
    queue = fields.String(validate=_queue_name)
    key = Text(metadata={"description": "the job with this idempotency key"})
    created_after = fields.AwareDateTime(metadata={"description": "created at or after"})
    created_before = fields.AwareDateTime(metadata={"description": "created before"})
    finished_after = fields.AwareDateTime(metadata={"description": "finished at or after"})
    finished_before = fields.AwareDateTime(metadata={"description": "finished before"})


class ListJobsQuerySchema(JobFilterSchema):
    """Query string of ``GET /jobs``."""

    sort = fields.String(
        load_default="id",
        validate=validate.OneOf(["id", "priority", "created", "finished"]),
        metadata={
            "description": "id or created: submission order; priority; finished: "
            "finished jobs only, by finish time"
        },
    )
    order = fields.String(load_default="desc", validate=validate.OneOf(["desc", "asc"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    cursor = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "next_cursor of the previous page (same filters and order)"},
    )
    full = fields.Boolean(
        load_default=False,
        metadata={"description": "whole jobs (payload and result); summaries without"},
    )


class BulkActionSchema(JobFilterSchema):
    """``POST /jobs/retry`` and ``POST /jobs/cancel``: every job the filter matches."""

    dry_run = fields.Boolean(
        load_default=False,
        metadata={"description": "only count the jobs the action would touch"},
    )
    limit = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, MAX_ID),
        metadata={"description": "act on at most this many jobs (oldest first)"},
    )


class DependantsQuerySchema(Schema):
    """Query string of ``GET /jobs/{id}/dependants``."""

    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    cursor = fields.String(validate=validate.Length(1, 200))


class HistoryQuerySchema(Schema):
    """Query string of ``GET /stats/history``."""

    window = fields.String(load_default="hour", validate=validate.OneOf(["hour", "day"]))
    type = Text()
    queue = fields.String(validate=_queue_name)


class WaitQuerySchema(Schema):
    """``?wait=S`` on ``GET /jobs/{id}`` and ``POST /jobs``: long-poll until the job finished."""

    wait = fields.Float(load_default=0.0, validate=validate.Range(0, MAX_WAIT))


class NextJobQuerySchema(Schema):
    """Query string of ``POST /next-job``."""

    worker_id = fields.String(required=True, validate=_id_text)
    types = Text(metadata={"description": "comma-separated job types"})
    queues = Text(metadata={"description": "comma-separated queues (default: all)"})
    wait = fields.Float(load_default=0.0, validate=validate.Range(0, MAX_WAIT))


# Answers: the shapes the API returns, for the OpenAPI document.
