"""The worker's side of the API: its endpoints, and backoff for repeated calls.

The worker never touches the database; everything goes through the batched
endpoints here, over the client's :class:`~taskframe.client.transport.Transport`
(URL rotation and failover, token, CA): on the worker's event loop for its
lease requests and heartbeats (:mod:`taskframe.worker.streams`), blocking
for the rest. Outcomes not yet delivered wait in the
:class:`~taskframe.worker.outbox.Outbox`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from taskframe.client.errors import ApiError, Unavailable
from taskframe.client.transport import URL_PENALTY
from taskframe.core.retry import BackoffPolicy
from taskframe.worker.streams import BEATS, LEASE, StreamTransport

log = logging.getLogger("taskframe.worker")

__all__ = ["ApiClient", "ApiError", "FailureStreak", "Unavailable"]

#: Delays between attempts while the server is unreachable.
DEFAULT_BACKOFF = BackoffPolicy(base=0.05, cap=5.0)
#: Extra read time granted beyond a long poll's ``wait``.
LONG_POLL_MARGIN = 10.0


class ApiClient(StreamTransport):
    """The worker's endpoints to one or more servers; ``a``-prefixed ones on the loop."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        penalty: BackoffPolicy = URL_PENALTY,
        token: str | None = None,
        ca_cert: str | None = None,
    ) -> None:
        super().__init__(
            urls,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            penalty=penalty,
            token=token,
            ca_cert=ca_cert,
            user_agent="taskframe-worker",
            logger=log,
        )

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
        queues: list[str] | None = None,
    ) -> dict[str, Any]:
        """``POST /lease``: report ``completions`` and lease up to ``max_jobs`` jobs.

        ``info`` (host, slots) tells the server about the worker, for ``GET /workers``;
        ``queues`` limits the lease to those queues (None: every queue).
        """
        body = lease_body(
            worker_id, types, max_jobs, wait, completions, request_id, resent, info, queues
        )
        return self.call("POST", "/lease", body=body, read_timeout=wait + LONG_POLL_MARGIN) or {}

    async def alease(
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
        *,
        channel: str = LEASE,
    ) -> dict[str, Any]:
        """:meth:`lease` on the worker's event loop, on ``channel``'s connection."""
        body = lease_body(
            worker_id, types, max_jobs, wait, completions, request_id, resent, info, queues
        )
        timeout = wait + LONG_POLL_MARGIN
        call = self.acall("POST", "/lease", body=body, read_timeout=timeout, channel=channel)
        return await call or {}

    def heartbeats(self, worker_id: str, leases: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /heartbeats``: extend every lease; learn of lost leases and cancellations."""
        body = {"worker_id": worker_id, "leases": leases}
        return self.call("POST", "/heartbeats", body=body) or {}

    async def aheartbeats(self, worker_id: str, leases: list[dict[str, Any]]) -> dict[str, Any]:
        """:meth:`heartbeats` on the loop, on a connection of their own."""
        body = {"worker_id": worker_id, "leases": leases}
        return await self.acall("POST", "/heartbeats", body=body, channel=BEATS) or {}

    def release(self, job_id: int, worker_id: str, lease_id: str) -> None:
        """``POST /jobs/{id}/release``: hand a job back without spending an attempt."""
        body = {"worker_id": worker_id, "lease_id": lease_id}
        self.call("POST", f"/jobs/{job_id}/release", body=body)

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health") or {}


def lease_body(
    worker_id: str,
    types: list[str],
    max_jobs: int,
    wait: float,
    completions: list[dict[str, Any]],
    request_id: str | None,
    resent: bool,
    info: dict[str, Any] | None,
    queues: list[str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "worker_id": worker_id,
        "types": types,
        "max": max_jobs,
        "wait": wait,
        "completions": completions,
        "request_id": request_id,
        "resent": resent,
        **(info or {}),
    }
    if queues is not None:
        body["queues"] = queues
    return body


class FailureStreak:
    """Backoff for a repeated call; one warning when a streak of failures starts, again
    every ``REPORT_EVERY`` seconds while it lasts, and one line when it ends."""

    #: Seconds between reminders that the call still fails.
    REPORT_EVERY = 30.0

    def __init__(
        self,
        what: str,
        policy: BackoffPolicy = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.policy = policy
        self.clock = clock
        self.failures = 0
        self._since = self._reported = 0.0

    def failure(self, exc: Exception) -> float:
        """Count a failure and return how long to wait before the next attempt."""
        self.failures += 1
        now = self.clock()
        # A 4xx is a bug or a misconfiguration rather than an outage: say so louder.
        level = logging.WARNING if isinstance(exc, Unavailable) else logging.ERROR
        if self.failures == 1:
            self._since = self._reported = now
            log.log(level, "%s failed, retrying with backoff: %s", self.what, exc)
        elif now - self._reported >= self.REPORT_EVERY:
            self._reported = now
            log.log(
                level,
                "%s still failing after %.0f s (%d attempts): %s",
                *(self.what, now - self._since, self.failures, exc),
            )
        return self.policy.delay(self.failures)

    def success(self) -> None:
        if self.failures:
            log.warning(
                "%s works again after %d failed attempts (%.0f s)",
                *(self.what, self.failures, self.clock() - self._since),
            )
        self.failures = 0
