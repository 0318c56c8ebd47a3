"""The worker's HTTP client: URL rotation and failover, pending completions, backoff.

The worker never touches the database; everything goes through the batched
endpoints here. A request that fails with a connection error, a timeout or a
5xx may or may not have happened, so nothing it carried is forgotten: pending
completions stay in the :class:`Outbox` until the server answers for each one
(``ok``, or 409/404 which mean the attempt is no longer ours to report).
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

import requests

from taskframe.core.model import Outcome
from taskframe.core.retry import BackoffPolicy

log = logging.getLogger("taskframe.worker")

#: Delays between attempts while the server is unreachable.
DEFAULT_BACKOFF = BackoffPolicy(base=0.05, cap=5.0)
#: How long a URL that just failed is skipped (grows while it keeps failing).
URL_PENALTY = BackoffPolicy(base=0.5, cap=30.0)
#: Completions sent in one request at most (keeps bodies well under size limits).
MAX_COMPLETIONS_PER_REQUEST = 500
#: Characters of attempt logs sent in one request at most (each log is up to 64 KiB):
#: even escaped as \uXXXX in JSON, they stay under the server's 16 MiB body limit.
MAX_LOG_CHARS_PER_REQUEST = 2 << 20
#: Extra read time granted beyond a long poll's ``wait``.
LONG_POLL_MARGIN = 10.0
# Per-completion codes that mean "not ours any more": drop it, never resend.
_GONE = frozenset({404, 409})
# Whole-request statuses treated like a server being down: fail over and back off.
_RETRY_STATUSES = frozenset({408, 429})
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class ApiError(Exception):
    """The server refused a request (4xx): retrying it unchanged will not help."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class Unavailable(ApiError):
    """No server answered usefully (connection error, timeout, 5xx): try again later."""


class ApiClient:
    """Talks to one or more server URLs, round robin per request, failing over at once.

    A URL that just failed is skipped for a short, growing while (unless every
    URL is failing), so a dead host does not cost a connect attempt on every
    other request. Each thread gets its own keep-alive ``requests.Session``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        penalty: BackoffPolicy = URL_PENALTY,
    ) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._penalty = penalty
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._failures = [0] * len(self.urls)
        self._down_until = [0.0] * len(self.urls)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    # -- transport ---------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        """Send one request, trying each URL once; return the JSON answer (None for 204).

        Raises :class:`Unavailable` when no URL answered usefully and
        :class:`ApiError` when a server refused the request with a 4xx.
        """
        timeout = (self.connect_timeout, read_timeout or self.read_timeout)
        last: Unavailable | None = None
        for index in self._order():
            url = self.urls[index] + path
            try:
                response = self._session().request(
                    method, url, json=body, params=params, timeout=timeout
                )
            except _TRANSPORT_ERRORS as exc:
                last = Unavailable(f"{url}: {type(exc).__name__}: {exc}", url=url)
                self._mark(index, ok=False, reason=last)
                continue
            except requests.RequestException as exc:
                raise ApiError(f"{url}: {type(exc).__name__}: {exc}", url=url) from exc
            status = response.status_code
            if status >= 500 or status in _RETRY_STATUSES:
                last = Unavailable(f"{url}: HTTP {status} {_describe(response)}", status, url)
                self._mark(index, ok=False, reason=last)
                continue
            self._mark(index, ok=True)
            if status >= 400:
                raise ApiError(f"{url}: HTTP {status} {_describe(response)}", status, url)
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
                log.info("server %s answers again", url)
            else:
                log.warning("server %s failed, using the others meanwhile: %s", url, reason)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "taskframe-worker"
            # Looking up proxy variables and .netrc costs ~0.1 ms per request:
            # do it only when a proxy is configured at all.
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

    # -- endpoints ---------------------------------------------------------

    def lease(
        self,
        worker_id: str,
        types: list[str],
        max_jobs: int,
        wait: float,
        completions: list[dict[str, Any]],
        request_id: str | None = None,
        resent: bool = False,
        info: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /lease``: report ``completions`` and lease up to ``max_jobs`` jobs.

        ``info`` (host, slots) tells the server about the worker, for ``GET /workers``.
        """
        body = {
            "worker_id": worker_id,
            "types": types,
            "max": max_jobs,
            "wait": wait,
            "completions": completions,
            "request_id": request_id,
            "resent": resent,
            **(info or {}),
        }
        return self.call("POST", "/lease", body=body, read_timeout=wait + LONG_POLL_MARGIN) or {}

    def heartbeats(self, worker_id: str, leases: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /heartbeats``: extend every lease; learn of lost leases and cancellations."""
        body = {"worker_id": worker_id, "leases": leases}
        return self.call("POST", "/heartbeats", body=body) or {}

    def release(self, job_id: int, worker_id: str, lease_id: str) -> None:
        """``POST /jobs/{id}/release``: hand a job back without spending an attempt."""
        body = {"worker_id": worker_id, "lease_id": lease_id}
        self.call("POST", f"/jobs/{job_id}/release", body=body)

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health") or {}


def _proxy_configured() -> bool:
    return any(name.lower().endswith("_proxy") for name in os.environ)


def _describe(response: requests.Response) -> str:
    """The error title/description of a response, or the start of its body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "title" in body:
        detail = body.get("description") or body.get("errors") or ""
        return f"{body['title']}: {detail}" if detail else str(body["title"])
    return str(body)[:200]


class FailureStreak:
    """Backoff for a repeated call; one warning per streak of failures, not per attempt."""

    def __init__(self, what: str, policy: BackoffPolicy = DEFAULT_BACKOFF) -> None:
        self.what = what
        self.policy = policy
        self.failures = 0

    def failure(self, exc: Exception) -> float:
        """Count a failure and return how long to wait before the next attempt."""
        self.failures += 1
        if self.failures == 1:
            # A 4xx is a bug or a misconfiguration rather than an outage: say so louder.
            level = logging.WARNING if isinstance(exc, Unavailable) else logging.ERROR
            log.log(level, "%s failed, retrying with backoff: %s", self.what, exc)
        return self.policy.delay(self.failures)

    def success(self) -> None:
        if self.failures:
            log.warning("%s works again after %d failed attempts", self.what, self.failures)
        self.failures = 0


class Outbox:
    """Outcomes waiting to be reported, sent with each ``POST /lease`` until settled.

    Thread-safe: job threads add, the lease loop sends. An item goes only once
    the server recorded it (``ok``) or refused it for good (404/409, or another
    4xx for that item); after a lost request everything is sent again, which is
    safe because a duplicate completion is ``ok``.
    """

    def __init__(
        self,
        client: ApiClient,
        worker_id: str,
        types: list[str],
        info: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.types = types
        self.info = info
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._request_id: str | None = None
        self._resent = False  # the request under _request_id may have leased jobs already

    def add(self, completion: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(completion)

    def __len__(self) -> int:
        return len(self._items)

    def leases(self) -> list[dict[str, Any]]:
        """Leases of outcomes not delivered yet: heartbeats keep them alive meanwhile."""
        with self._lock:
            return [{"job_id": i["job_id"], "lease_id": i["lease_id"]} for i in self._items]

    def exchange(self, max_jobs: int, wait: float) -> dict[str, Any]:
        """One ``POST /lease`` carrying the pending completions; returns the answer.

        Raises :class:`Unavailable` (the completions stay) or :class:`ApiError`;
        when a 4xx refuses a batch, its completions are retried one by one so
        that one bad outcome cannot block the others.
        """
        with self._lock:
            sent = _log_budget(self._items[:MAX_COMPLETIONS_PER_REQUEST])
        # Kept until an answer arrives: a request whose answer was lost is
        # re-sent with the same id and gets back the jobs it had leased.
        self._request_id = self._request_id or secrets.token_hex(8)
        try:
            answer = self._lease(max_jobs, wait, sent, self._request_id, self._resent)
        except Unavailable:
            self._resent = True
            raise
        except ApiError:
            self._request_id, self._resent = None, False
            if sent:
                self._isolate(sent)
            raise
        self._request_id, self._resent = None, False
        self._settle(sent, answer.get("completions") or [])
        return answer

    def flush(self, timeout: float, streak: FailureStreak | None = None) -> bool:
        """Report everything pending (leasing nothing) for up to ``timeout`` seconds.

        Returns True when nothing is left. Used at shutdown.
        """
        streak = streak or FailureStreak("reporting outcomes")
        deadline = time.monotonic() + timeout
        while len(self):
            before = len(self)
            try:
                self.exchange(0, 0.0)
                streak.success()
                delay = 0.0 if len(self) < before else DEFAULT_BACKOFF.base
            except ApiError as exc:
                delay = streak.failure(exc)
            left = deadline - time.monotonic()
            if not len(self) or left <= 0:
                break
            time.sleep(min(delay, left))
        return not len(self)

    def _lease(
        self,
        max_jobs: int,
        wait: float,
        completions: list[dict],
        request_id: str | None = None,
        resent: bool = False,
    ) -> dict[str, Any]:
        return self.client.lease(
            self.worker_id, self.types, max_jobs, wait, completions, request_id, resent, self.info
        )

    def _settle(self, sent: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
        done = []
        for item, answer in pair_answers(sent, answers):
            code = answer.get("code")
            if answer.get("ok"):
                done.append(item)
            elif code in _GONE or (isinstance(code, int) and 400 <= code < 500):
                log.warning(
                    "server refused the %s outcome of job %s (%s: %s); dropping it",
                    *(item["status"], item["job_id"], code, answer.get("error")),
                )
                done.append(item)
        self._remove(done)

    def _remove(self, items: list[dict[str, Any]]) -> None:
        gone = {id(item) for item in items}
        with self._lock:
            self._items = [item for item in self._items if id(item) not in gone]

    def _isolate(self, sent: list[dict[str, Any]]) -> None:
        """Send refused completions alone; one still refused becomes a plain failure.

        An empty request first checks that the completions are the problem at
        all: if it is refused too (a bad worker id, say), nothing is dropped.
        """
        try:
            self._lease(0, 0.0, [])
        except ApiError:
            return
        for item in sent:
            plain = {**item, "status": Outcome.FAILED.value, "result": None, "retryable": False}
            plain["error"] = "the server refused this attempt's outcome (see the worker log)"
            for attempt in (item, plain):
                try:
                    answer = self._lease(0, 0.0, [attempt])
                except Unavailable:
                    return  # the rest stays for the next round trip
                except ApiError as exc:
                    log.error("server refused the outcome of job %s: %s", item["job_id"], exc)
                    continue
                with self._lock:  # no-op unless the plain failure got through
                    self._items = [attempt if x is item else x for x in self._items]
                self._settle([attempt], answer.get("completions") or [])
                break
            else:
                self._remove([item])


def _log_budget(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first items whose logs fit in one request (at least one item)."""
    total = 0
    for count, item in enumerate(items):
        total += len(item.get("log") or "")
        if total > MAX_LOG_CHARS_PER_REQUEST and count:
            return items[:count]
    return items


def pair_answers(
    sent: list[dict[str, Any]], answers: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Match per-item answers to what was sent: by position, else by ``job_id``."""
    if len(answers) == len(sent) and all(
        a.get("job_id") == s["job_id"] for a, s in zip(answers, sent, strict=True)
    ):
        return list(zip(sent, answers, strict=True))
    by_id = {a.get("job_id"): a for a in answers}
    return [(s, by_id[s["job_id"]]) for s in sent if s["job_id"] in by_id]
