"""The ``http`` executor: make one HTTP request with ``requests``.

Payload: ``url`` (http or https only), ``method`` (GET by default), ``headers``,
``body`` (text) or ``json`` (any JSON value, sent as ``application/json``),
``timeout`` (seconds, default 30, at most 600; capped by the job's deadline) and
``expected_status`` (a status code or a list of them; without it any 2xx or 3xx
is a success). Redirects are followed (at most 30, the ``requests`` default).

Result: ``{"status_code", "headers", "body", "body_truncated", "elapsed_ms"}``.
``body`` holds at most the first 64 KiB (65536 bytes) of the response body,
decoded with the response charset (UTF-8 when none is given, undecodable bytes
replaced); ``body_truncated`` says whether more was sent. The rest is never read.

Failures: connection errors, timeouts, 5xx, 408 and 429 are retryable; any other
unexpected status (or an invalid request) fails the job at once
(:class:`~taskframe.core.PermanentError`).
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import requests
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from taskframe.core import Executor, ExecutorContext, PermanentError, hookimpl

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
MAX_BODY = 64 * 1024
#: Client errors that mean "try again later" rather than "this request is wrong".
RETRYABLE_4XX = frozenset({408, 429})
_CHUNK = 16 * 1024


class HttpStatusError(Exception):
    """A retryable unexpected status (5xx, 408 or 429)."""


def _validate_url(value: str) -> None:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationError(f"not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError("only http and https URLs are allowed")
    if not host:
        raise ValidationError("the URL has no host")


def _validate_headers(value: dict[str, str]) -> None:
    for name, header in value.items():
        if not name or any(c in name for c in "\r\n:") or any(c in header for c in "\r\n"):
            raise ValidationError(f"invalid header {name!r}")


class StatusCodes(fields.Field):
    """One HTTP status code or a non-empty list of them, loaded as a list."""

    default_error_messages = {"invalid": "must be a status code (100-599) or a list of them"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        codes = value if isinstance(value, list) else [value]
        if not codes or not all(_is_status(code) for code in codes):
            raise self.make_error("invalid")
        return list(codes)


def _is_status(code: Any) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599


class HttpPayloadSchema(Schema):
    """Payload of an ``http`` job."""

    url = fields.String(
        required=True,
        validate=[validate.Length(max=8192), _validate_url],
        metadata={"description": "http or https URL"},
    )
    method = fields.String(
        load_default="GET",
        validate=validate.OneOf(METHODS, error="must be one of {choices}"),
    )
    headers = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        validate=_validate_headers,
        metadata={"description": "request headers, name to value"},
    )
    body = fields.String(metadata={"description": "request body as text (or use json)"})
    json = fields.Raw(allow_none=True, metadata={"description": "request body as JSON"})
    timeout = fields.Float(
        load_default=DEFAULT_TIMEOUT,
        allow_nan=False,
        validate=validate.Range(
            min=0, min_inclusive=False, max=MAX_TIMEOUT, error="must be > 0 and <= {max} seconds"
        ),
        metadata={"description": "seconds, capped by the job's deadline"},
    )
    expected_status = StatusCodes(
        metadata={"description": "status code(s) that count as success; default any 2xx/3xx"}
    )

    @pre_load
    def _upper_method(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            data = {**data, "method": data["method"].upper()}
        return data

    @validates_schema
    def _body_or_json(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "body" in data and "json" in data:
            raise ValidationError("give either body or json, not both", "json")


def run(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    """Make the request and describe the response; raise on an unexpected status."""
    method, url = payload["method"], payload["url"]
    timeout = payload["timeout"]
    left = context.time_left()
    if left is not None:
        if left <= 0:
            raise TimeoutError(f"{method} {url}: no time left before the job's deadline")
        timeout = min(timeout, left)
    if context.cancel_event.is_set():
        raise RuntimeError(f"{method} {url}: cancelled before the request was sent")
    headers = dict(payload["headers"])
    data: bytes | None = None
    if "json" in payload:
        data = json.dumps(payload["json"]).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif "body" in payload:
        data = payload["body"].encode("utf-8")

    start = time.monotonic()
    try:
        with (
            requests.Session() as session,
            session.request(
                method, url, headers=headers, data=data, timeout=timeout, stream=True
            ) as response,
        ):
            raw, truncated = _read_capped(response, context)
    except requests.exceptions.Timeout as exc:
        raise TimeoutError(f"{method} {url} timed out after {timeout:g}s: {exc}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise ConnectionError(f"{method} {url}: connection failed: {exc}") from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidHeader,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.TooManyRedirects,
    ) as exc:
        raise PermanentError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise RuntimeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    elapsed_ms = round((time.monotonic() - start) * 1000, 1)

    body = raw.decode(_charset(response), errors="replace")
    _check_status(method, url, response.status_code, payload.get("expected_status"), body)
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers),
        "body": body,
        "body_truncated": truncated,
        "elapsed_ms": elapsed_ms,
    }


def _read_capped(response: requests.Response, context: ExecutorContext) -> tuple[bytes, bool]:
    """Read at most ``MAX_BODY`` bytes of the body; say whether there was more.

    ``timeout`` bounds each socket read, not the whole download: a body
    trickling in is abandoned once the job's deadline passes.
    """
    buffer = bytearray()
    for chunk in response.iter_content(chunk_size=_CHUNK):
        if context.time_left() == 0:
            raise requests.exceptions.ReadTimeout("the job's deadline passed while reading")
        buffer += chunk
        if len(buffer) > MAX_BODY:
            return bytes(buffer[:MAX_BODY]), True
    return bytes(buffer), False


def _charset(response: requests.Response) -> str:
    """The charset the response declares if Python knows it, else UTF-8."""
    message = Message()
    message["content-type"] = response.headers.get("content-type", "")
    charset = message.get_content_charset()
    try:
        return codecs.lookup(charset).name if charset else "utf-8"
    except LookupError:
        return "utf-8"


def _check_status(
    method: str, url: str, status: int, expected: list[int] | None, body: str
) -> None:
    ok = status in expected if expected is not None else 200 <= status < 400
    if ok:
        return
    message = f"{method} {url} returned HTTP {status}"
    if expected is not None:
        message += f" (expected {', '.join(map(str, expected))})"
    if body.strip():
        message += f": {body.strip()[:200]}"
    if status >= 500 or status in RETRYABLE_4XX:
        raise HttpStatusError(message)
    raise PermanentError(message)


@hookimpl
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    """Register the ``http`` executor."""
    register(
        Executor(
            name="http",
            schema=HttpPayloadSchema(),
            run=run,
            description="Make an HTTP request; 5xx and network errors are retried.",
        )
    )
