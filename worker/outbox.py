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
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from taskframe.client.errors import ApiError, Unavailable
from taskframe.core.model import Reported
from taskframe.worker.client import DEFAULT_BACKOFF, FailureStreak
from taskframe.worker.jobs import MAX_ERROR_LENGTH

log = logging.getLogger("taskframe.worker")

__all__ = ["LeaseClient", "Outbox", "pair_answers"]

#: Completions sent in one request at most (keeps bodies well under size limits).
MAX_COMPLETIONS_PER_REQUEST = 500
#: The largest ``POST /lease`` body until the server says (its default: 16 × 1 MiB).
DEFAULT_MAX_BODY = 16 << 20
#: Bytes of a request body left for what is not a completion (ids, types, info).
BODY_RESERVE = 64 << 10
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


#: :meth:`LeaseClient.lease` as a coroutine function (the worker's, on its loop).
AsyncLease = Callable[..., Awaitable[dict[str, Any]]]


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
        #: The largest body the server takes on ``POST /lease`` (its lease answers say).
        self.max_body = DEFAULT_MAX_BODY
        self._items: list[dict[str, Any]] = []
        self._sizes: dict[int, int] = {}  # by id() of an item: its estimated bytes in a body
        self._lock = threading.Lock()
        self._request_id: str | None = None
        self._resent = False  # the request under _request_id may have leased jobs already

    def add(self, completion: dict[str, Any], result_bytes: int = 0) -> None:
        """Queue ``completion``; ``result_bytes``: its result's JSON size, when known."""
        with self._lock:
            self._items.append(completion)
            self._sizes[id(completion)] = _estimate(completion, result_bytes)

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
        sent, request_id, resent = self._begin()
        try:
            answer = self._lease(max_jobs, wait, sent, request_id, resent)
        except ApiError as exc:
            if self._failed(sent, exc):
                self.isolate(sent)
            raise
        return self._answered(sent, answer)

    async def aexchange(
        self,
        lease: AsyncLease,
        max_jobs: int,
        wait: float,
        isolate: Callable[[list[dict[str, Any]]], Awaitable[None]],
    ) -> dict[str, Any]:
        """:meth:`exchange` on the worker's loop: ``lease`` takes :meth:`LeaseClient.lease`'s
        arguments; ``isolate(sent)`` runs :meth:`isolate` (blocking: in a thread)."""
        sent, request_id, resent = self._begin()
        try:
            answer = await lease(*self._lease_args(max_jobs, wait, sent, request_id, resent))
        except ApiError as exc:
            if self._failed(sent, exc):
                await isolate(sent)
            raise
        return self._answered(sent, answer)

    async def areport(
        self, lease: AsyncLease, isolate: Callable[[list[dict[str, Any]]], Awaitable[None]]
    ) -> None:
        """Report the pending outcomes, leasing nothing, while a long poll is in flight:
        that poll keeps its request id (a report leases nothing, so needs none)."""
        sent = self._next_batch()
        try:
            answer = await lease(*self._lease_args(0, 0.0, sent, None, False))
        except ApiError as exc:
            if not isinstance(exc, Unavailable) and sent:
                await isolate(sent)
            raise
        self._settle(sent, answer.get("completions") or [])

    def _begin(self) -> tuple[list[dict[str, Any]], str, bool]:
        # Kept until an answer arrives: a request whose answer was lost is
        # re-sent with the same id and gets back the jobs it had leased.
        self._request_id = self._request_id or secrets.token_hex(8)
        return self._next_batch(), self._request_id, self._resent

    def _failed(self, sent: list[dict[str, Any]], exc: ApiError) -> bool:
        """After a failed request: whether its completions need :meth:`isolate`."""
        if isinstance(exc, Unavailable):
            self._resent = True
            return False
        self._request_id, self._resent = None, False
        return bool(sent)

    def _answered(self, sent: list[dict[str, Any]], answer: dict[str, Any]) -> dict[str, Any]:
        self._request_id, self._resent = None, False
        self._settle(sent, answer.get("completions") or [])
        return answer

    def reclaim(self) -> dict[str, Any]:
        """After a lease request was abandoned unanswered (the worker stops): send it
        again under its id, leasing nothing new; the answer holds the jobs the
        abandoned request had leased, if any."""
        if self._request_id is None:
            return {}
        self._resent = True
        return self.exchange(0, 0.0)

    def _next_batch(self) -> list[dict[str, Any]]:
        """The first items that fit one request body; an item too large to fit alone
        is replaced by a failure that says so (it could never be delivered)."""
        budget = self.max_body - BODY_RESERVE
        with self._lock:
            batch: list[dict[str, Any]] = []
            total = 0
            for item in self._items[:MAX_COMPLETIONS_PER_REQUEST]:
                size = self._sizes.get(id(item), 0)
                if size > budget:
                    item = self._replace(item, _too_large(item, size, self.max_body))
                    size = self._sizes[id(item)]
                if batch and total + size > budget:
                    break
                batch.append(item)
                total += size
            return batch

    def _replace(self, item: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Put ``new`` where ``item`` was, if it still is (under the lock)."""
        if self._sizes.pop(id(item), None) is not None:  # sizes are kept for items held
            self._items = [new if x is item else x for x in self._items]
            self._sizes[id(new)] = _estimate(new, 0)
        return new

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
        completions: list[dict[str, Any]],
        request_id: str | None = None,
        resent: bool = False,
    ) -> dict[str, Any]:
        return self.client.lease(*self._lease_args(max_jobs, wait, completions, request_id, resent))

    def _lease_args(
        self,
        max_jobs: int,
        wait: float,
        completions: list[dict[str, Any]],
        request_id: str | None,
        resent: bool,
    ) -> tuple[Any, ...]:
        args = (self.worker_id, self.types, max_jobs, wait, completions, request_id, resent)
        # Queues only when chosen: clients written before queues keep working.
        return (*args, self.info) if self.queues is None else (*args, self.info, self.queues)

    def _settle(self, sent: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
        done = []
        for item, answer in pair_answers(sent, answers):
            code = answer.get("code")
            if answer.get("ok"):
                if answer.get("already_recorded"):
                    # A resend (its first answer was lost, say to a server crash).
                    log.info(
                        "the %s outcome of job %s was already recorded",
                        *(item["status"], item["job_id"]),
                    )
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
            for key in gone:
                self._sizes.pop(key, None)

    def isolate(self, sent: list[dict[str, Any]]) -> None:
        """Send refused completions alone; one still refused becomes a plain failure
        that says why (a 413: too large), and one refused even so is dropped.

        An empty request first checks that the completions are the problem at
        all: if it is refused too (a bad worker id, say), nothing is dropped.
        """
        try:
            self._lease(0, 0.0, [])
        except ApiError:
            return
        for item in sent:
            attempt = item
            while True:
                try:
                    answer = self._lease(0, 0.0, [attempt])
                except Unavailable:
                    return  # the rest stays for the next round trip
                except ApiError as exc:
                    log.error("server refused the outcome of job %s: %s", item["job_id"], exc)
                    if attempt is item:
                        attempt = _plain_failure(item, f"the server refused it: {exc}")
                        continue
                    self._remove([item])
                    break
                with self._lock:  # no-op unless the plain failure got through
                    if attempt is not item:
                        self._replace(item, attempt)
                self._settle([attempt], answer.get("completions") or [])
                break


def _estimate(completion: dict[str, Any], result_bytes: int) -> int:
    """Bytes ``completion`` may take in a JSON body: its result as measured, and its
    text escaped at worst (\\n: 2 bytes; a non-ASCII character as \\uXXXX: 6)."""
    size = 200 + result_bytes
    for key in ("log", "error", "traceback"):
        text = completion.get(key)
        if text:
            size += len(text) * (2 if text.isascii() else 6)
    return size


def _plain_failure(item: dict[str, Any], error: str) -> dict[str, Any]:
    """``item`` as a failure without its result: what the server can always take."""
    plain = {**item, "status": Reported.FAILED.value, "result": None, "retryable": False}
    plain["error"] = error[:MAX_ERROR_LENGTH]
    return plain


def _too_large(item: dict[str, Any], size: int, max_body: int) -> dict[str, Any]:
    error = (
        f"the outcome is about {size} bytes, more than the server takes in one request "
        f"({max_body} bytes)"
    )
    log.warning("job %s: %s; reporting it failed without its result", item["job_id"], error)
    plain = _plain_failure(item, error)
    if _estimate(plain, 0) > max_body - BODY_RESERVE:
        plain["log"] = None  # (only with a --max-body far below a log's 64 KiB)
        plain.pop("traceback", None)
    return plain


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
