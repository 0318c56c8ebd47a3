"""Errors of the job model, shared by the scheduler and the API that maps them to HTTP,
and the machine-readable ``code`` every error body of the API carries."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """The ``code`` of an error body: stable, one per kind of refusal (the HTTP status
    alone does not tell, a 409 has six reasons). The client raises one exception class
    per code (:mod:`taskframe.client.errors`); the docs' table is generated from here."""

    status: int
    meaning: str

    def __new__(cls, value: str, status: int, meaning: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.meaning = meaning
        return member

    BAD_REQUEST = ("bad_request", 400, "the HTTP request itself is malformed")
    BAD_JSON = (
        "bad_json",
        400,
        "the body is not JSON the API takes (malformed, NaN or Infinity, nested too deep)",
    )
    UNAUTHORIZED = ("unauthorized", 401, "no token, or one the server does not know")
    FORBIDDEN = (
        "forbidden",
        403,
        "the token lacks the role the endpoint needs, or may not act as that worker id",
    )
    CROSS_SITE = ("cross_site", 403, "a browser sent a state-changing request from another site")
    NOT_FOUND = ("not_found", 404, "no such job, schedule, limit, path or file")
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, "the path does not take this method")
    REQUEST_TIMEOUT = (
        "request_timeout",
        408,
        "the request was not received in time (--header-timeout); the connection is closed",
    )
    STALE_LEASE = (
        "stale_lease",
        409,
        "the lease is no longer the worker's: the attempt was reaped or moved on",
    )
    JOB_FINISHED = ("job_finished", 409, "the job has finished already (cancel)")
    NOT_RETRYABLE = ("not_retryable", 409, "only a failed or cancelled job can be retried")
    TRY_AGAIN = (
        "try_again",
        409,
        "the job is changing meanwhile (its dependants are being cancelled): retry shortly",
    )
    IDEMPOTENCY_CONFLICT = (
        "idempotency_conflict",
        409,
        "the idempotency key was used for a different request",
    )
    SCHEDULE_EXISTS = ("schedule_exists", 409, "a schedule of this name exists already")
    TOO_MANY_SCHEDULES = (
        "too_many_schedules",
        409,
        "the server holds --max-schedules schedules already",
    )
    LENGTH_REQUIRED = ("length_required", 411, "the request must say its body's length")
    PAYLOAD_TOO_LARGE = ("payload_too_large", 413, "the body is larger than the server takes")
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        415,
        "the body is not sent as application/json",
    )
    HEADERS_TOO_LARGE = (
        "headers_too_large",
        431,
        "the request line and headers are larger than --max-header-size",
    )
    UNKNOWN_HOST = (
        "unknown_host",
        421,
        "the Host is not one of this server's names (no tokens; --allowed-host)",
    )
    VALIDATION_FAILED = (
        "validation_failed",
        422,
        "fields of the request are invalid; `errors` names each with its messages",
    )
    RATE_LIMITED = (
        "rate_limited",
        429,
        "too many bad tokens from this address; wait for Retry-After",
    )
    INTERNAL_ERROR = ("internal_error", 500, "a bug, logged by the server with its traceback")
    NOT_IMPLEMENTED = (
        "not_implemented",
        501,
        "the request uses an HTTP feature the server lacks (a Transfer-Encoding but chunked)",
    )
    DATABASE_UNAVAILABLE = (
        "database_unavailable",
        503,
        "the database did not answer; nothing was changed, retry (Retry-After)",
    )

    @classmethod
    def for_status(cls, status: int) -> ErrorCode:
        """The code of an error only its HTTP status describes (the web framework's own)."""
        for code in cls:
            if code.status == status:
                return code
        return cls.INTERNAL_ERROR if status >= 500 else cls.BAD_REQUEST


class JobNotFound(Exception):
    """No job has this id (HTTP 404)."""


class JobConflict(Exception):
    """The job is not in a state that allows the request (HTTP 409); ``code`` says why."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code
