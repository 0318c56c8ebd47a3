"""The ``http`` executor: make one HTTP request with ``requests``.

Payload: ``url`` (http or https only), ``method`` (GET by default), ``headers``,
``body`` (text) or ``json`` (any JSON value, sent as ``application/json``),
``timeout`` (seconds, default 30, at most 600; capped by the job's deadline) and
``expected_status`` (a status code or a list of them; without it any 2xx or 3xx
is a success). Redirects are followed one hop at a time (at most 30); 307 and
308 keep the method and body, credentials are dropped when the host changes.

Result: ``{"status_code", "headers", "headers_truncated", "body",
"body_truncated", "elapsed_ms"}``. ``body`` holds at most the first 64 KiB
(65536 bytes) of the response body, decoded with the response charset (UTF-8
when none is given or it is not a text encoding Python knows, undecodable bytes
replaced); ``body_truncated`` says whether more was sent, and the rest is never
read. ``headers`` stop before their total size passes 64 KiB
(``headers_truncated``).

Where it may connect: the worker's ``--http-allow`` and ``--http-deny`` rules
(see :mod:`taskframe.plugins.http_guard`), checked against the address actually
connected to, at every hop. The environment is ignored (no ``.netrc``, no proxy
variables, no CA bundle variables); ``--http-proxy`` sets a proxy and
``--http-ca-cert`` the certificates trusted for https.

Failures: connection errors, timeouts, 5xx, 408 and 429 are retryable; a denied
target, any other unexpected status or an invalid request fails the job at once
(:class:`~taskframe.core.PermanentError`).
"""

from __future__ import annotations

import argparse
import codecs
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from taskframe.core import Executor, ExecutorContext, PermanentError, hookimpl
from taskframe.core.options import add_option
from taskframe.plugins.http_guard import (
    DEFAULT_DENY,
    Policy,
    Rules,
    TargetDenied,
    parse_rules,
    server_targets,
)

if TYPE_CHECKING:  # imported by the functions that use them: requests takes ~0.1 s to
    # import, which a worker that never runs an http job need not spend at start-up
    import requests
    from requests.structures import CaseInsensitiveDict

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
MAX_BODY = 64 * 1024
MAX_HEADERS = 64 * 1024
MAX_REDIRECTS = 30
_PORTS = {"http": 80, "https": 443}
#: Client errors that mean "try again later" rather than "this request is wrong".
RETRYABLE_4XX = frozenset({408, 429})
_CHUNK = 16 * 1024


#: RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters; a header value may hold a tab, nothing else of these.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HttpStatusError(Exception):
    """A retryable unexpected status (5xx, 408 or 429)."""


def _validate_url(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("must not contain control characters")
    _encodable(value, "utf-8")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationError(f"not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in _PORTS:
        raise ValidationError("only http and https URLs are allowed")
    if not host:
        raise ValidationError("the URL has no host")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValidationError(f"not a valid URL: {exc}") from exc


def _validate_headers(value: dict[str, str]) -> None:
    for name, header in value.items():
        if not _TOKEN.fullmatch(name):
            raise ValidationError(f"header name {name!r}: letters, digits and !#$%&'*+-.^_`|~ only")
        if _CONTROL.search(header.replace("\t", "")):
            raise ValidationError(f"header {name!r}: the value holds a control character")
        try:
            header.encode("latin-1")
        except UnicodeEncodeError:
            raise ValidationError(
                f"header {name!r}: the value must be Latin-1 text (encode other text first)"
            ) from None


def _encodable(value: str, encoding: str) -> None:
    try:
        value.encode(encoding)
    except UnicodeEncodeError as exc:
        raise ValidationError(f"cannot be encoded as {encoding}: {exc.reason}") from None


def _validate_json(value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # NaN, too deep, a surrogate
        raise ValidationError(f"not strict JSON: {exc}") from None


class StatusCodes(fields.Field):  # type: ignore[type-arg]  # generic in marshmallow 4 only
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
    body = fields.String(
        validate=lambda value: _encodable(value, "utf-8"),
        metadata={"description": "request body as text (or use json)"},
    )
    json = fields.Raw(
        allow_none=True,
        validate=_validate_json,
        metadata={"description": "request body as JSON (no NaN or Infinity)"},
    )
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


_PAYLOAD_KEYS = frozenset(HttpPayloadSchema._declared_fields)


def quick_load(payload: Any) -> dict[str, Any] | None:
    """``HttpPayloadSchema().load(payload)`` for a plainly valid payload, else None.

    The same validators run; only marshmallow's field plumbing is skipped. Anything
    unusual (a null, a number as text, both body and json) is left to the schema.
    """
    if type(payload) is not dict or not payload.keys() <= _PAYLOAD_KEYS:
        return None
    url, method = payload.get("url"), payload.get("method", "GET")
    headers, timeout = payload.get("headers", {}), payload.get("timeout", DEFAULT_TIMEOUT)
    if (
        type(url) is not str
        or len(url) > 8192
        or type(method) is not str
        or method.upper() not in METHODS
        or type(headers) is not dict
        or not all(type(k) is str and type(v) is str for k, v in headers.items())
        or (type(timeout) is not float and type(timeout) is not int)
        or not 0 < timeout <= MAX_TIMEOUT  # NaN fails this too
        or ("body" in payload and ("json" in payload or type(payload["body"]) is not str))
        or ("expected_status" in payload and _quick_codes(payload["expected_status"]) is None)
    ):
        return None
    try:
        _validate_url(url)
        _validate_headers(headers)
        if "body" in payload:
            _encodable(payload["body"], "utf-8")
        if "json" in payload:
            _validate_json(payload["json"])
    except ValidationError:
        return None
    loaded: dict[str, Any] = {"url": url, "method": method.upper(), "headers": dict(headers)}
    if "body" in payload:
        loaded["body"] = payload["body"]
    if "json" in payload:
        loaded["json"] = payload["json"]
    loaded["timeout"] = float(timeout)
    if "expected_status" in payload:
        loaded["expected_status"] = _quick_codes(payload["expected_status"])
    return loaded  # in the schema's field order: the stored JSON is the same text


def _quick_codes(value: Any) -> list[int] | None:
    codes = value if type(value) is list else [value]
    if codes and all(type(code) is int and 100 <= code <= 599 for code in codes):
        return list(codes)
    return None


def run(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    """Make the request and describe the response; raise on an unexpected status."""
    import requests
    from requests.structures import CaseInsensitiveDict

    method, url = payload["method"], payload["url"]
    if context.cancel_event.is_set():
        raise RuntimeError(f"{method} {url}: cancelled before the request was sent")
    headers = CaseInsensitiveDict(payload["headers"])
    data: bytes | None = None
    if "json" in payload:
        data = json.dumps(payload["json"], allow_nan=False).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    elif "body" in payload:
        data = payload["body"].encode("utf-8")
    request = _Request(method, url, headers, data)

    options = context.options
    policy = Policy(
        allow=parse_rules(getattr(options, "http_allow", None)),
        deny=parse_rules(getattr(options, "http_deny", DEFAULT_DENY)),
        servers=server_targets(getattr(options, "api_url", None)),
    )
    start = time.monotonic()
    try:
        with _session(policy, options) as session:
            with _follow(session, request, payload["timeout"], context, policy) as response:
                raw, truncated = _read_capped(response, context)
    except TargetDenied as exc:
        raise TargetDenied(f"{method} {request.url}: {exc}") from exc
    except requests.exceptions.Timeout as exc:
        raise TimeoutError(f"{method} {request.url} timed out: {exc}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise ConnectionError(f"{method} {request.url}: connection failed: {exc}") from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidHeader,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.TooManyRedirects,
        UnicodeError,  # a name IDNA cannot encode, text latin-1 cannot
        ValueError,  # a URL urllib3 cannot parse (a redirect's bad port...)
    ) as exc:
        raise PermanentError(f"{method} {request.url}: {type(exc).__name__}: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise RuntimeError(f"{method} {request.url}: {type(exc).__name__}: {exc}") from exc
    elapsed_ms = round((time.monotonic() - start) * 1000, 1)

    body = _decode(raw, response)
    _check_status(method, url, response.status_code, payload.get("expected_status"), body)
    stored, headers_truncated = _capped_headers(response)
    return {
        "status_code": response.status_code,
        "headers": stored,
        "headers_truncated": headers_truncated,
        "body": body,
        "body_truncated": truncated,
        "elapsed_ms": elapsed_ms,
    }


@dataclass
class _Request:
    """The request as it stands at the current hop of a redirect chain."""

    method: str
    url: str
    headers: CaseInsensitiveDict[str]
    data: bytes | None


def _session(policy: Policy, options: argparse.Namespace) -> requests.Session:
    """A session that ignores the environment (.netrc, proxy and CA bundle
    variables), connects only where ``policy`` allows, and takes its proxy and
    CA certificates from the worker's options."""
    import requests

    from taskframe.plugins.http_adapter import GuardedAdapter

    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    proxy = getattr(options, "http_proxy", None)
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    session.verify = getattr(options, "http_ca_cert", None) or True
    return session


def _follow(
    session: requests.Session,
    request: _Request,
    timeout: float,
    context: ExecutorContext,
    policy: Policy,
) -> requests.Response:
    """Send ``request`` and follow its redirects one hop at a time.

    Each hop opens its connection through the guarded adapter, so a redirect
    to a denied target is refused before anything is sent to it. The body of a
    redirect answer is never read.
    """
    import requests
    from requests.cookies import extract_cookies_to_jar

    for _hop in range(MAX_REDIRECTS + 1):
        left = context.time_left()
        if left is not None and left <= 0:
            raise requests.exceptions.Timeout("no time left before the job's deadline")
        if context.cancel_event.is_set():
            raise RuntimeError("cancelled")
        if session.proxies:  # the proxy connects, so judge the target here (best effort)
            parts = urlsplit(request.url)
            port = parts.port or _PORTS[parts.scheme.lower()]
            policy.check_resolved(parts.hostname or "", port)
        prepared = session.prepare_request(
            requests.Request(request.method, request.url, request.headers, data=request.data)
        )
        # The adapter itself: Session.send reads a redirect's whole body, even unfollowed.
        response = session.get_adapter(prepared.url or request.url).send(
            prepared,
            stream=True,
            timeout=timeout if left is None else min(timeout, left),
            verify=session.verify if session.verify is not None else True,
            proxies=session.proxies,
        )
        extract_cookies_to_jar(session.cookies, prepared, response.raw)  # type: ignore[no-untyped-call]
        location = session.get_redirect_target(response) if response.is_redirect else None
        if location is None:
            return response
        response.close()
        _redirect(session, request, response.status_code, location)
    raise requests.exceptions.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


def _redirect(session: requests.Session, request: _Request, status: int, location: str) -> None:
    """Turn ``request`` into the next hop, as browsers and ``requests`` do."""
    import requests

    target = urljoin(request.url, location)
    if urlsplit(target).scheme.lower() not in _PORTS:
        raise requests.exceptions.InvalidSchema(f"redirect to a non-http URL: {target!r}")
    if (status in (302, 303) and request.method != "HEAD") or (
        status == 301 and request.method == "POST"
    ):
        request.method = "GET"
    if status not in (307, 308):  # only these keep the method and the body
        request.data = None
        for name in ("Content-Type", "Content-Length", "Transfer-Encoding"):
            request.headers.pop(name, None)
    # Credentials stay with their host.
    if session.should_strip_auth(request.url, target):  # type: ignore[no-untyped-call]
        for name in ("Authorization", "Proxy-Authorization", "Cookie"):
            request.headers.pop(name, None)
    request.url = target


def _read_capped(response: requests.Response, context: ExecutorContext) -> tuple[bytes, bool]:
    """Read at most ``MAX_BODY`` bytes of the body; say whether there was more.

    ``timeout`` bounds each socket read, not the whole download: a body
    trickling in is abandoned once the job's deadline passes.
    """
    import requests

    buffer = bytearray()
    for chunk in response.iter_content(chunk_size=_CHUNK):
        if context.time_left() == 0:
            raise requests.exceptions.ReadTimeout("the job's deadline passed while reading")
        buffer += chunk
        if len(buffer) > MAX_BODY:
            return bytes(buffer[:MAX_BODY]), True
    return bytes(buffer), False


def _decode(raw: bytes, response: requests.Response) -> str:
    """Decode with the declared charset if it is a text encoding Python knows, else UTF-8."""
    message = Message()
    message["content-type"] = response.headers.get("content-type", "")
    charset = message.get_content_charset()
    if charset:
        try:
            if codecs.lookup(charset)._is_text_encoding:  # not base64, rot13, ...
                return raw.decode(charset, errors="replace")
        except (LookupError, UnicodeError, ValueError):
            pass  # an unknown charset, or a codec that refuses "replace" (idna)
    return raw.decode("utf-8", errors="replace")


def _capped_headers(response: requests.Response) -> tuple[dict[str, str], bool]:
    """The response headers, stopping before their total size passes ``MAX_HEADERS``."""
    stored: dict[str, str] = {}
    size = 0
    for name, value in response.headers.items():
        size += len(name) + len(value) + 4  # ": " and CRLF, as on the wire
        if size > MAX_HEADERS:
            return stored, True
        stored[name] = value
    return stored, False


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


def _rules(value: str) -> Rules:
    try:
        return parse_rules(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _proxy_url(value: str) -> str:
    if value and urlsplit(value).scheme.lower() not in _PORTS:
        raise argparse.ArgumentTypeError(f"an http:// or https:// proxy URL, not {value!r}")
    return value


@hookimpl
def taskframe_add_options(parser: argparse.ArgumentParser, role: str) -> None:
    """Add ``--http-deny``, ``--http-allow``, ``--http-ca-cert`` and ``--http-proxy``."""
    if role != "worker":
        return
    group = parser.add_argument_group("http executor")
    add_option(
        group,
        "--http-deny",
        type=_rules,
        default=DEFAULT_DENY,
        help="hosts (*.example.com for subdomains), addresses and CIDR networks the http "
        "executor must not connect to, checked against the address connected to and at "
        "every redirect; comma-separated; @default and @strict (adds loopback and private "
        "ranges) name profiles; '' denies nothing. The worker's own --api-url servers are "
        "refused whatever this says, unless --http-allow names them",
    )
    add_option(
        group,
        "--http-allow",
        type=_rules,
        help="exceptions to --http-deny, same syntax; an allowed host name is trusted "
        "whatever it resolves to",
    )
    add_option(
        group,
        "--http-ca-cert",
        help="CA certificates (PEM file or directory) the http executor trusts for https, "
        "instead of the bundled ones (REQUESTS_CA_BUNDLE is ignored)",
    )
    add_option(
        group,
        "--http-proxy",
        type=_proxy_url,
        help="proxy for the http executor's requests (the environment's proxy variables "
        "are ignored); the proxy should enforce the same rules",
    )


@hookimpl
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    """Register the ``http`` executor."""
    register(
        Executor(
            name="http",
            schema=HttpPayloadSchema(),
            run=run,
            quick_load=quick_load,
            description="Make an HTTP request; 5xx and network errors are retried.",
        )
    )
