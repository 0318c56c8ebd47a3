"""Outcomes not yet delivered: kept until the server answers for each one.

A request that fails with a connection error, a timeout or a 5xx may or may
not have happened, so nothing it carried is forgotten: pending completions
stay here until the server answers for each one (``ok``, or 409/404 which
mean the attempt is no longer ours to report). The outbox speaks to any
object with the :class:`LeaseClient` method (the worker's ``ApiClient``, or a
test's fake).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any, Protocol

from taskframe.client.errors import ApiError, Unavailable
from taskframe.core.model import Outcome
from taskframe.worker.client import DEFAULT_BACKOFF, FailureStreak

log = logging.getLogger("taskframe.worker")

__all__ = ["LeaseClient", "Outbox", "pair_answers"]

#: Completions sent in one request at most (keeps bodies well under size limits).
MAX_COMPLETIONS_PER_REQUEST = 500
#: Characters of attempt logs sent in one request at most (each log is up to 64 KiB):
#: even escaped as \uXXXX in JSON, they stay under the server's 16 MiB body limit.
MAX_LOG_CHARS_PER_REQUEST = 2 << 20
# Per-completion codes that mean "not ours any more": drop it, never resend.
_GONE = frozenset({404, 409})


class LeaseClient(Protocol):
    """What the outbox needs of a client: ``POST /lease``."""

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
        queues: list[str] | None = None,
    ) -> dict[str, Any]: ...


class Outbox:
    """Outcomes waiting to be reported, sent with each ``POST /lease`` until settled.

    Thread-safe: job threads add, the lease loop sends. An item goes only once
    the server recorded it (``ok``) or refused it for good (404/409, or another
    4xx for that item); after a lost request everything is sent again, which is
    safe because a duplicate completion is ``ok``.
    """

    def __init__(
        self,
        client: LeaseClient,
        worker_id: str,
        types: list[str],
        info: dict[str, Any] | None = None,
        queues: list[str] | None = None,
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.types = types
        self.info = info
        self.queues = queues  # None: every queue
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
        # Queues only when chosen: clients written before queues keep working.
        routing = {} if self.queues is None else {"queues": self.queues}
        return self.client.lease(
            self.worker_id,
            self.types,
            max_jobs,
            wait,
            completions,
            request_id,
            resent,
            self.info,
            **routing,
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
