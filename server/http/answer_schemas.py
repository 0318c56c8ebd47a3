"""The schemas of the API's answers: they document ``/openapi.json`` (server/http/openapi.py)
and load nothing. The schemas of what the API reads are in :mod:`taskframe.core.schemas`."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from taskframe.core.errors import ErrorCode
from taskframe.core.model import STATUSES


class ScheduleAnswerSchema(Schema):
    name = fields.String()
    cron = fields.String()
    timezone = fields.String()
    misfire = fields.String()
    paused = fields.Boolean()
    job = fields.Dict()
    next_fire_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    last_fire_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    next_fire_times = fields.List(
        fields.String(metadata={"format": "date-time"}),
        metadata={"description": "the next five (GET /schedules/{name} and answers to changes)"},
    )


class ScheduleListSchema(Schema):
    schedules = fields.List(fields.Nested(ScheduleAnswerSchema))


class QueueSchema(Schema):
    name = fields.String()
    paused = fields.Boolean()
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())


class QueueListSchema(Schema):
    queues = fields.List(fields.Nested(QueueSchema))


class LimitSchema(Schema):
    kind = fields.String(validate=validate.OneOf(["type", "queue"]))
    name = fields.String()
    max_running = fields.Integer()


class LimitListSchema(Schema):
    limits = fields.List(fields.Nested(LimitSchema))


class AttemptSchema(Schema):
    attempt = fields.Integer()
    worker_id = fields.String()
    started_at = fields.String(metadata={"format": "date-time"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    outcome = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    log = fields.String(
        allow_none=True,
        metadata={"description": "what the executor logged during the attempt (last 64 KiB)"},
    )
    traceback = fields.String(
        allow_none=True,
        metadata={"description": "where the executor raised, when it did (last 16 KiB)"},
    )


class JobProgressSchema(Schema):
    fraction = fields.Float()
    message = fields.String(allow_none=True)
    attempt = fields.Integer(metadata={"description": "the attempt that reported it"})
    updated_at = fields.String(metadata={"format": "date-time"})


class JobSchema(Schema):
    """A job as the API returns it (documentation of the output shape)."""

    id = fields.Integer()
    type = fields.String()
    payload = fields.Dict()
    priority = fields.Integer()
    status = fields.String(validate=validate.OneOf(STATUSES))
    attempts = fields.Integer()
    max_attempts = fields.Integer()
    timeout = fields.Float(allow_none=True)
    run_at = fields.String(metadata={"format": "date-time"})
    created_at = fields.String(metadata={"format": "date-time"})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    worker_id = fields.String(allow_none=True)
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    cancel_requested = fields.Boolean()
    notify_url = fields.String(allow_none=True)
    queue = fields.String()
    depends_on = fields.List(fields.Integer())
    on_dependency_failure = fields.String(allow_none=True)
    progress = fields.Nested(
        JobProgressSchema,
        allow_none=True,
        metadata={
            "description": "how far the job got, as its executor last reported "
            "(current_job().progress): null until it reports"
        },
    )
    lease_id = fields.String(metadata={"description": "only in lease answers"})
    lease_expires_at = fields.String(
        allow_none=True, metadata={"description": "only in lease answers"}
    )
    expires_in = fields.Float(
        metadata={
            "description": "only in lease answers: seconds the lease had left when the "
            "answer was made (a duration, so no clock is compared)"
        }
    )
    dependencies = fields.Dict(
        metadata={
            "description": "only in lease answers: {dependency id: its result} "
            "for the jobs in depends_on (empty without)"
        }
    )


class ErrorSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.OneOf([code.value for code in ErrorCode]),
        metadata={"description": "what went wrong, for programs: one of the error codes"},
    )
    title = fields.String(required=True)
    description = fields.String()
    errors = fields.Dict()


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.Raw(
        allow_none=True,
        metadata={"description": "newest first: an id (integer); other orders: text"},
    )


class DependantListSchema(JobListSchema):
    job_id = fields.Integer(metadata={"description": "the job whose dependants these are"})


class JobBatchSchema(Schema):
    ids = fields.List(fields.Integer(), metadata={"description": "in submission order"})
    created = fields.Integer(metadata={"description": "how many are new (others: same key)"})


class AttemptListSchema(Schema):
    job_id = fields.Integer()
    attempts = fields.List(fields.Nested(AttemptSchema))
    running = fields.Nested(
        AttemptSchema,
        allow_none=True,
        metadata={
            "description": "the attempt running now, its log so far as the worker's "
            "heartbeats sent it (null when none runs)"
        },
    )


class HeartbeatAnswerSchema(Schema):
    job_id = fields.Integer()
    cancel_requested = fields.Boolean()
    lease_ttl = fields.Float()
    live_log = fields.Boolean(
        metadata={
            "description": "true: heartbeat entries may carry the attempt's new log text "
            "as log (a server without the field would refuse it)"
        }
    )


class LeaseOutcomeSchema(Schema):
    job_id = fields.Integer()
    ok = fields.Boolean()
    code = fields.Integer()
    error = fields.String(allow_none=True)
    already_recorded = fields.Boolean(
        metadata={"description": "ok: this outcome had been recorded before (a resend)"}
    )


class LeaseAnswerSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    completions = fields.List(fields.Nested(LeaseOutcomeSchema))
    lease_ttl = fields.Float()
    retry_after = fields.Float(
        allow_none=True,
        metadata={"description": "the wait was refused (too many waiting): pause this long"},
    )
    answered_after = fields.Float(
        metadata={"description": "seconds between the request's arrival and this answer"}
    )
    max_result = fields.Integer(metadata={"description": "largest result kept, in bytes"})
    max_body = fields.Integer(metadata={"description": "largest POST /lease body, in bytes"})
    live_log = fields.Boolean(
        metadata={
            "description": "true: heartbeat entries may carry the attempt's new log text "
            "as log (a server without the field would refuse it)"
        }
    )


class HeartbeatStateSchema(Schema):
    job_id = fields.Integer()
    ok = fields.Boolean()
    cancel_requested = fields.Boolean()


class HeartbeatBatchAnswerSchema(Schema):
    leases = fields.List(fields.Nested(HeartbeatStateSchema))
    lease_ttl = fields.Float()
    live_log = fields.Boolean(
        metadata={
            "description": "true: heartbeat entries may carry the attempt's new log text "
            "as log (a server without the field would refuse it)"
        }
    )


class JobTypeSchema(Schema):
    name = fields.String()
    description = fields.String()
    payload_schema = fields.Dict()
    defaults = fields.Dict(
        metadata={
            "description": "queue, priority, max_attempts and timeout of the type, used "
            "when a submission omits them"
        }
    )


class JobTypesSchema(Schema):
    job_types = fields.List(fields.Nested(JobTypeSchema))


class HealthSchema(Schema):
    status = fields.String()
    backend = fields.String()
    schema_version = fields.Integer()
    job_types = fields.List(fields.String())
    plugin_failures = fields.Dict()
    warnings = fields.List(
        fields.String(), metadata={"description": "job types with ready jobs but no live worker"}
    )


class StatsSchema(Schema):
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    by_type = fields.Dict(
        keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.Integer())
    )
    oldest_ready_age = fields.Float(
        allow_none=True, metadata={"description": "seconds the oldest ready job has waited"}
    )
    stuck_types = fields.List(
        fields.String(), metadata={"description": "types with ready jobs and no live worker"}
    )
    workers_alive = fields.Integer()


class WorkerSchema(Schema):
    id = fields.String()
    host = fields.String(allow_none=True)
    types = fields.List(fields.String())
    slots = fields.Integer(allow_none=True)
    running = fields.Integer(metadata={"description": "jobs it runs now"})
    last_seen = fields.String(metadata={"format": "date-time"})
    alive = fields.Boolean(metadata={"description": "seen within the worker window"})


class WorkerListSchema(Schema):
    workers = fields.List(fields.Nested(WorkerSchema))
    truncated = fields.Boolean(
        metadata={"description": "more workers were seen than are listed (1000, the latest)"}
    )


class PluginSchema(Schema):
    name = fields.String()
    distribution = fields.String(allow_none=True)
    version = fields.String(allow_none=True)
    hooks = fields.List(fields.String())
    job_types = fields.List(fields.String())


class PluginFailureSchema(Schema):
    name = fields.String()
    error = fields.String()


class PluginsSchema(Schema):
    """``GET /plugins``."""

    plugins = fields.List(fields.Nested(PluginSchema))
    failures = fields.List(fields.Nested(PluginFailureSchema))
    disabled = fields.List(fields.String())


class BulkAnswerSchema(Schema):
    matched = fields.Integer(
        metadata={"description": "jobs the filter matched that the action applies to"}
    )
    changed = fields.Integer(metadata={"description": "jobs retried or cancelled (0: dry run)"})
    cancel_requested = fields.Integer(
        metadata={"description": "cancel: running jobs asked to stop (within changed)"}
    )
    skipped = fields.Integer(
        metadata={"description": "jobs that changed meanwhile, or wait for a cascade"}
    )
    dry_run = fields.Boolean()


class HistoryPointSchema(Schema):
    time = fields.String(metadata={"format": "date-time", "description": "the step's start"})
    succeeded = fields.Integer()
    failed = fields.Integer()
    depth = fields.Integer(metadata={"description": "ready jobs at the step's end (max)"})
    oldest_age = fields.Float(
        allow_none=True, metadata={"description": "seconds the oldest ready job had waited"}
    )


class HistorySchema(Schema):
    window = fields.String()
    step = fields.Integer(metadata={"description": "seconds per point"})
    points = fields.List(fields.Nested(HistoryPointSchema))
    types = fields.List(fields.String(), metadata={"description": "types with data"})
    queues = fields.List(fields.String(), metadata={"description": "queues with data"})
