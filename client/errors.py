"""Errors of the taskframe API, one class per kind of answer.

Every error carries what the server said (``code``, ``title``, ``description``
and, for validation, ``errors``: the offending fields), the HTTP ``status`` and
the ``url``. Catch :class:`TaskframeError` for all of them, a status class
(:class:`Conflict`, ...) for its kind, or the class of one ``code``
(:class:`StaleLease`, ...): each subclasses its status class, so an ``except``
written for the status still catches it.
"""

from __future__ import annotations

from typing import Any

from taskframe.core.errors import ErrorCode


class TaskframeError(Exception):
    """A request failed: refused by the server (4xx) or no server answered."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str | None = None,
        *,
        title: str | None = None,
        description: str | None = None,
        errors: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.title = title
        self.description = description
        self.errors = errors or {}
        #: The body's machine-readable code (:class:`~taskframe.core.errors.ErrorCode`).
        self.code = code


#: The worker's name for any error of the API.
ApiError = TaskframeError


class Unavailable(TaskframeError):
    """No server answered usefully (connection error, timeout, 5xx): try again later."""


class BadRequest(TaskframeError):
    """400, 413, 415 and other 4xx: the request itself is wrong."""


class Unauthorized(TaskframeError):
    """401: no token, or a token the server does not know."""


class Forbidden(TaskframeError):
    """403: the token's role may not do this."""


class NotFound(TaskframeError):
    """404: no such job (or endpoint)."""


class Conflict(TaskframeError):
    """409: the job is not in a state that allows this (e.g. cancelling a finished job)."""


class ValidationError(TaskframeError):
    """422: the request names fields that are wrong; ``errors`` maps each to its messages."""

    def field_messages(self) -> list[tuple[str, str]]:
        """``[("payload.duration", "Must be ..."), ...]``: the nested errors flattened."""
        return list(_flatten(self.errors, ""))


class WaitTimeout(TaskframeError, TimeoutError):
    """``Client.wait`` gave up before the job finished; ``job`` is its last state."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message)
        self.job = job


class JobFailed(TaskframeError):
    """The job waited for failed or was cancelled (``client.wait`` of a task's job).

    ``job`` is the finished job, ``error`` its error, ``traceback`` the last
    attempt's traceback as the worker captured it (None when it did not raise).
    """

    def __init__(self, job: Any, traceback: str | None = None) -> None:
        error = job.error or job.status
        message = f"job {job.id} ({job.type}) {job.status} after {job.attempts} attempt(s): {error}"
        if traceback:
            message += "\n\nremote traceback (the last attempt):\n" + traceback.rstrip()
        super().__init__(message, title=f"job {job.status}", description=error)
        self.job = job
        self.error = job.error
        self.traceback = traceback


# -- one class per error code, each under its status's class ------------------------------


class BadJson(BadRequest):
    """400 ``bad_json``: the body is not JSON the API takes."""


class MethodNotAllowed(BadRequest):
    """405 ``method_not_allowed``."""


class LengthRequired(BadRequest):
    """411 ``length_required``."""


class PayloadTooLarge(BadRequest):
    """413 ``payload_too_large``: the body is larger than the server takes."""


class UnsupportedMediaType(BadRequest):
    """415 ``unsupported_media_type``: the body was not sent as application/json."""


class UnknownHost(BadRequest):
    """421 ``unknown_host``: the server does not answer to this Host name."""


class HeadersTooLarge(BadRequest):
    """431 ``headers_too_large``: the request line and headers are too large."""


class CrossSite(Forbidden):
    """403 ``cross_site``: a browser sent the request from another site."""


class StaleLease(Conflict):
    """409 ``stale_lease``: the attempt was reaped or moved on; the lease is not the worker's."""


class JobFinished(Conflict):
    """409 ``job_finished``: the job has finished already (cancel)."""


class NotRetryable(Conflict):
    """409 ``not_retryable``: only a failed or cancelled job can be retried."""


class TryAgain(Conflict):
    """409 ``try_again``: the job is changing meanwhile; retry shortly."""


class IdempotencyConflict(Conflict):
    """409 ``idempotency_conflict``: the key was used for a different request."""


class ScheduleExists(Conflict):
    """409 ``schedule_exists``: a schedule of this name exists already."""


class TooManySchedules(Conflict):
    """409 ``too_many_schedules``: the server holds its --max-schedules already."""


class RequestTimeout(Unavailable):
    """408 ``request_timeout``: the server did not receive the request in time."""


class RateLimited(Unavailable):
    """429 ``rate_limited``: too many bad tokens from this address."""


class InternalError(Unavailable):
    """500 ``internal_error``: a bug, logged by the server."""


class NotImplementedByServer(Unavailable):
    """501 ``not_implemented``: the request uses an HTTP feature the server lacks."""


class DatabaseUnavailable(Unavailable):
    """503 ``database_unavailable``: nothing was changed; retry."""


#: The class raised for each code of the server's error bodies.
BY_CODE: dict[ErrorCode, type[TaskframeError]] = {
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.BAD_JSON: BadJson,
    ErrorCode.UNAUTHORIZED: Unauthorized,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.CROSS_SITE: CrossSite,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.METHOD_NOT_ALLOWED: MethodNotAllowed,
    ErrorCode.REQUEST_TIMEOUT: RequestTimeout,
    ErrorCode.STALE_LEASE: StaleLease,
    ErrorCode.JOB_FINISHED: JobFinished,
    ErrorCode.NOT_RETRYABLE: NotRetryable,
    ErrorCode.TRY_AGAIN: TryAgain,
    ErrorCode.IDEMPOTENCY_CONFLICT: IdempotencyConflict,
    ErrorCode.SCHEDULE_EXISTS: ScheduleExists,
    ErrorCode.TOO_MANY_SCHEDULES: TooManySchedules,
    ErrorCode.LENGTH_REQUIRED: LengthRequired,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLarge,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaType,
    ErrorCode.HEADERS_TOO_LARGE: HeadersTooLarge,
    ErrorCode.UNKNOWN_HOST: UnknownHost,
    ErrorCode.VALIDATION_FAILED: ValidationError,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.INTERNAL_ERROR: InternalError,
    ErrorCode.NOT_IMPLEMENTED: NotImplementedByServer,
    ErrorCode.DATABASE_UNAVAILABLE: DatabaseUnavailable,
}

_CODES = {code.value: code for code in ErrorCode}
_BY_STATUS: dict[int, type[TaskframeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
}


def error_class(status: int, code: str | None = None) -> type[TaskframeError]:
    """The error class for an HTTP error status and the body's ``code``: the code's own
    class when it is one the server sends with this status (else a proxy answered)."""
    known = _CODES.get(code or "")  # None too for a newer server's code: the status decides
    if known is not None and known.status == status:
        return BY_CODE[known]
    if status >= 500 or status in (408, 429):
        return Unavailable
    return _BY_STATUS.get(status, BadRequest)


def _flatten(errors: Any, prefix: str) -> Any:
    """Marshmallow's nested error dicts as (dotted field, message) pairs."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(errors, list | tuple):
        for item in errors:
            if isinstance(item, dict | list | tuple):
                yield from _flatten(item, prefix)
            else:
                yield prefix or "request", str(item)
    else:
        yield prefix or "request", str(errors)
