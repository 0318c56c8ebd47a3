"""Whether a leased job may still be started: its lease may have expired on the way.

A lease answer can reach the worker late: the worker was frozen (``SIGSTOP``,
a long GC pause, a VM freeze) while its request was parked on the server, or
the network held the answer. Meanwhile the lease may have expired and another
worker may have run the job. The fence refuses the late worker's outcome, but
the work itself would run twice; so a worker does not start a job whose lease
may be gone.

Only durations are compared, never clocks: the server says how long it held
the request (``answered_after``) and how long each lease had left when it
answered (``expires_in``); the worker knows how long the round trip took on
its own clock. What the server did not account for (``delay``) may all have
passed after the answer was written, so the lease has at least
``expires_in - delay`` seconds left. A job with too little left is given back
unstarted; a job whose answer was delayed noticeably is confirmed with a
heartbeat first (which also renews its lease), and started only if the lease
is still held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from taskframe.client.errors import ApiError

log = logging.getLogger("taskframe.worker")

#: The worker's clock for these durations: CLOCK_BOOTTIME keeps counting while the
#: machine sleeps (CLOCK_MONOTONIC may not), so a suspended worker knows it was away.
clock: Callable[[], float] = (
    (lambda: time.clock_gettime(time.CLOCK_BOOTTIME))
    if hasattr(time, "CLOCK_BOOTTIME")
    else time.monotonic
)

#: A delay (beyond what the server held the request) past which a job is confirmed
#: before it starts: seconds, or a quarter of the lease TTL when that is shorter.
CONFIRM_AFTER = 1.0
#: A job whose lease has less than this share of its TTL left is given back unstarted.
LATE_SHARE = 0.25


class Verdict(str, Enum):
    START = "start"
    CONFIRM = "confirm"  # heartbeat first: start only if the lease is still held
    LATE = "late"  # give it back unstarted: the lease may be gone


@dataclass(frozen=True)
class Delivery:
    """How one lease answer arrived."""

    elapsed: float
    """Seconds from sending the request to reading its answer (the worker's clock)."""
    answered_after: float
    """Seconds the server says it held the request."""
    ttl: float
    """The lease TTL the server announced."""

    @classmethod
    def of(cls, answer: dict[str, Any], elapsed: float, wait: float, ttl: float) -> Delivery:
        """From a lease answer; a server that does not say how long it held the
        request held it at most the ``wait`` asked for."""
        held = answer.get("answered_after")
        if not isinstance(held, int | float) or held < 0:
            held = min(elapsed, wait)
        return cls(elapsed, float(held), ttl)

    @property
    def delay(self) -> float:
        """Time the answer spent where the server cannot see it (network, a frozen worker)."""
        return max(0.0, self.elapsed - self.answered_after)

    def left(self, job: dict[str, Any]) -> float:
        """The least time the job's lease may have left now."""
        expires_in = job.get("expires_in")
        if not isinstance(expires_in, int | float):
            expires_in = self.ttl  # an older server: a lease is made just before answering
        return float(expires_in) - self.delay

    def verdict(self, job: dict[str, Any]) -> Verdict:
        if self.left(job) < LATE_SHARE * self.ttl:
            return Verdict.LATE
        if self.delay > min(CONFIRM_AFTER, self.ttl / 4):
            return Verdict.CONFIRM
        return Verdict.START


def screen(
    jobs: list[dict[str, Any]],
    delivery: Delivery,
    heartbeats: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    give_back: Callable[[dict[str, Any]], bool],
) -> list[dict[str, Any]]:
    """The ``jobs`` of one lease answer that may start.

    Late ones are given back (``give_back(job)``: False when no server answered,
    then the rest are left to expire); delayed ones start only if
    ``heartbeats(leases)`` (answers ``{"job_id", "ok"}`` per lease) finds their
    leases still held.
    """
    verdicts = {job["id"]: delivery.verdict(job) for job in jobs}
    for job in jobs:
        if verdicts[job["id"]] is Verdict.LATE:
            log.warning(
                "job %s: its lease answer came %.1f s late (at most %.1f s of the lease "
                "left): giving it back unstarted",
                *(job["id"], delivery.delay, max(0.0, delivery.left(job))),
            )
            if not give_back(job):
                break
    unsure = [job for job in jobs if verdicts[job["id"]] is Verdict.CONFIRM]
    held = _confirm(unsure, delivery, heartbeats) if unsure else set()
    return [job for job in jobs if verdicts[job["id"]] is Verdict.START or job["id"] in held]


def _confirm(
    jobs: list[dict[str, Any]],
    delivery: Delivery,
    heartbeats: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> set[int]:
    """Ids of ``jobs`` whose leases a heartbeat (which renews them) finds still held."""
    leases = [{"job_id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
    sent = clock()
    try:
        answers = heartbeats(leases)
    except ApiError as exc:
        log.warning("cannot confirm %d delayed lease(s), not starting them: %s", len(jobs), exc)
        return set()
    if clock() - sent > (1 - LATE_SHARE) * delivery.ttl:
        answers = []  # so slow that the renewed leases may be gone again
    by_id = {answer.get("job_id"): answer for answer in answers}
    held = {job["id"] for job in jobs if by_id.get(job["id"], {}).get("ok")}
    for job in jobs:
        if job["id"] not in held:
            log.warning(
                "job %s: its lease answer came %.1f s late and the lease is gone: not started",
                *(job["id"], delivery.delay),
            )
    return held
