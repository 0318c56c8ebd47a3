"""HTTP transport shared by the Python client and the worker.

One or more server URLs, round robin per request, failing over at once; a
keep-alive ``requests.Session`` per thread; a bearer token on every request
and a private CA for https. Errors become the classes of
:mod:`taskframe.client.errors`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import requests

from taskframe.client.errors import TaskframeError, Unavailable, error_class
from taskframe.core.retry import BackoffPolicy

log = logging.getLogger("taskframe.client")

#: How long a URL that just failed is skipped (grows while it keeps failing).
URL_PENALTY = BackoffPolicy(base=0.5, cap=30.0)
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class Transport:
    """Talks to one or more server URLs, round robin per request, failing over at once.

    A URL that just failed is skipped for a short, growing while (unless every
    URL is failing), so a dead host does not cost a connect attempt on every
    other request. Each thread gets its own keep-alive ``requests.Session``.

    ``token`` is sent as ``Authorization: Bearer <token>``; ``ca_cert`` is the
    path of a CA bundle that https servers are verified against (instead of
    the system's).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        penalty: BackoffPolicy = URL_PENALTY,
        token: str | None = None,
        ca_cert: str | None = None,
        user_agent: str = "taskframe-client",
        logger: logging.Logger = log,
    ) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.token = token
        # Passed on each request: a session's own ``verify`` loses to
        # REQUESTS_CA_BUNDLE when the environment is trusted.
        self.verify: str | bool = ca_cert or True
        self.user_agent = user_agent
        self._log = logger
        self._penalty = penalty
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._failures = [0] * len(self.urls)
        self._down_until = [0.0] * len(self.urls)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request, trying each URL once; return the JSON answer (None for 204).

        Raises :class:`Unavailable` when no URL answered usefully and another
        :class:`TaskframeError` when a server refused the request with a 4xx.
        """
        timeout = (self.connect_timeout, read_timeout or self.read_timeout)
        last: Unavailable | None = None
        for index in self._order():
            url = self.urls[index] + path
            try:
                response = self._session().request(
                    method,
                    url,
                    json=body,
                    params=params,
                    timeout=timeout,
                    headers=headers,
                    verify=self.verify,
                )
            except _TRANSPORT_ERRORS as exc:
                reason = _reason(exc)
                last = Unavailable(f"{url}: {reason}", url=url, description=reason)
                self._mark(index, ok=False, reason=last)
                continue
            except requests.RequestException as exc:
                raise TaskframeError(f"{url}: {type(exc).__name__}: {exc}", url=url) from exc
            status = response.status_code
            if status >= 400:
                error = _error(response, url)
                if isinstance(error, Unavailable):
                    last = error
                    self._mark(index, ok=False, reason=last)
                    continue
                self._mark(index, ok=True)
                raise error
            self._mark(index, ok=True)
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                last = Unavailable(f"{url}: HTTP {status} with a body that is not JSON", status)
                continue
        assert last is not None
        raise last

    def _order(self) -> list[int]:
        """URL indexes for one request: rotated per request, healthy ones first."""
        with self._lock:
            start = next(self._counter) % len(self.urls)
            now = time.monotonic()
            rotated = [(start + i) % len(self.urls) for i in range(len(self.urls))]
            healthy = [i for i in rotated if self._down_until[i] <= now]
            resting = [i for i in rotated if self._down_until[i] > now]
        # Resting URLs are tried last, only when every healthy one failed too.
        return healthy + resting

    def _mark(self, index: int, *, ok: bool, reason: object = None) -> None:
        with self._lock:
            failures = self._failures[index]
            if ok:
                self._failures[index] = 0
                self._down_until[index] = 0.0
            else:
                self._failures[index] += 1
                pause = self._penalty.nominal(failures + 1)
                self._down_until[index] = time.monotonic() + pause
        url = self.urls[index]
        if len(self.urls) > 1 and (failures == 0) != ok:  # one line per URL failure streak
            if ok:
                self._log.info("server %s answers again", url)
            else:
                self._log.warning("server %s failed, using the others meanwhile: %s", url, reason)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.user_agent
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            # Looking up proxy variables and .netrc costs ~0.1 ms per request:
            # do it only when a proxy is configured at all. (With a token set,
            # .netrc could not replace it: requests applies .netrc only when
            # no Authorization header is given.)
            session.trust_env = _proxy_configured()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every thread's session (their pooled keep-alive connections)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def read_token_file(path: str) -> str:
    """The token held in ``path`` (surrounding whitespace removed); ValueError if unusable."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty")
    if any(c.isspace() for c in token):
        raise ValueError(f"the token file {path} holds more than one word")
    return token


def _proxy_configured() -> bool:
    return any(name.lower().endswith("_proxy") for name in os.environ)


def _reason(exc: Exception) -> str:
    """A short reason for a transport error (requests' messages nest several levels)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return f"{type(exc).__name__}: {text}"


def _error(response: requests.Response, url: str) -> TaskframeError:
    """The error for a 4xx/5xx answer, carrying the server's title, description, errors."""
    status = response.status_code
    title = description = None
    errors: dict[str, Any] | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        title = str(body["title"])
        description = body.get("description")
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else None
        detail = description or errors or ""
        summary = f"{title}: {detail}" if detail else title
    else:
        summary = response.text[:200] if body is None else str(body)[:200]
    return error_class(status)(
        f"{url}: HTTP {status} {summary}",
        status,
        url,
        title=title,
        description=description,
        errors=errors,
    )
