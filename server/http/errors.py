"""One error body everywhere: ``{"code", "title", "description", "errors"?}``.

``code`` is one of :class:`~taskframe.core.errors.ErrorCode`: what a program reads
(the title and description are for people and may change).
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from taskframe.core.errors import ErrorCode, JobConflict, JobNotFound
from taskframe.server.storage import StoreUnavailable

log = logging.getLogger("taskframe.server")


class APIError(falcon.HTTPError):
    """An HTTP error with its code; its body may carry per-field validation messages."""

    def __init__(
        self,
        status: str,
        title: str,
        description: str | None = None,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        code: ErrorCode,
    ) -> None:
        super().__init__(status, title=title, description=description, headers=headers)
        self.errors = errors
        self.error_code = code

    def to_dict(self, obj_type: type = dict) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.error_code.value, "title": self.title}
        if self.description:
            body["description"] = self.description
        if self.errors:
            body["errors"] = self.errors
        return body


def validation_error(errors: dict[str, Any], description: str | None = None) -> APIError:
    fields = ", ".join(sorted(str(key) for key in errors))
    return APIError(
        falcon.HTTP_422,
        "Invalid request",
        description or f"the request has invalid fields: {fields}",
        errors=errors,
        code=ErrorCode.VALIDATION_FAILED,
    )


def _render(resp: falcon.Response, error: APIError) -> None:
    resp.status = error.status
    resp.media = error.to_dict()
    for name, value in dict(error.headers or {}).items():
        resp.set_header(name, value)


def _not_found(
    req: falcon.Request, resp: falcon.Response, exc: JobNotFound, params: dict[str, Any]
) -> None:
    description = f"job {exc.args[0]} does not exist"
    _render(resp, APIError(falcon.HTTP_404, "Not found", description, code=ErrorCode.NOT_FOUND))


def _conflict(
    req: falcon.Request, resp: falcon.Response, exc: JobConflict, params: dict[str, Any]
) -> None:
    _render(resp, APIError(falcon.HTTP_409, "Conflict", str(exc), code=exc.code))


def _unavailable(
    req: falcon.Request, resp: falcon.Response, exc: StoreUnavailable, params: dict[str, Any]
) -> None:
    log.warning("database unavailable for %s %s: %s", req.method, req.path, exc)
    error = APIError(
        falcon.HTTP_503,
        "Database unavailable",
        f"{exc}; nothing was changed, retry the request",
        headers={"Retry-After": "1"},
        code=ErrorCode.DATABASE_UNAVAILABLE,
    )
    _render(resp, error)


def _unexpected(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]
) -> None:
    log.exception("unexpected error in %s %s", req.method, req.path)
    error = APIError(
        falcon.HTTP_500,
        "Internal server error",
        "an unexpected error was logged by the server",
        code=ErrorCode.INTERNAL_ERROR,
    )
    _render(resp, error)


def _http_error(
    req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: dict[str, Any]
) -> None:
    """Falcon's own errors (unknown path, wrong method, ...) in our body shape."""
    if isinstance(exc, APIError):
        _render(resp, exc)
        return
    title = _sentence(str(exc.title or exc.status))
    description = exc.description or f"{req.method} {req.path}: {title}"
    headers = dict(exc.headers or {})
    code = ErrorCode.for_status(falcon.http_status_to_code(exc.status))
    _render(resp, APIError(str(exc.status), title, description, headers=headers, code=code))


def _sentence(title: str) -> str:
    """Falcon's "404 Not Found" as the API's other titles: "Not found"."""
    code, _, words = title.partition(" ")
    if not code.isdigit() or not words:
        return title
    return words[:1].upper() + words[1:].lower()


def install_error_handlers(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    # Falcon picks the most specific handler for each exception.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(JobNotFound, _not_found)
    app.add_error_handler(JobConflict, _conflict)
    app.add_error_handler(StoreUnavailable, _unavailable)
