"""Errors of the taskframe API, one class per kind of answer.

Every error carries what the server said (``title``, ``description`` and, for
validation, ``errors``: the offending fields), the HTTP ``status`` and the
``url``. Catch :class:`TaskframeError` for all of them.
"""

from __future__ import annotations

from typing import Any


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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.title = title
        self.description = description
        self.errors = errors or {}


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


_BY_STATUS: dict[int, type[TaskframeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
}


def error_class(status: int) -> type[TaskframeError]:
    """The error class for an HTTP error status."""
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
