"""What each ``POST /heartbeats`` carries, when it goes, and what its answer changes.

Every lease held is renewed every ``--heartbeat-interval`` (default: two
seconds, or a third of the lease TTL when that is shorter). That is too slow
for a job of a few seconds to show a moving progress bar, so in between, at
every ``NEWS_TICK``, the leases whose job has news (a progress or log lines
not yet acknowledged) go on their own (renewing them early is harmless). A value not
acknowledged (a failed request) goes again; only the latest value counts, so
a job calling ``progress()`` in a tight loop costs one item per tick.

A heartbeat entry carries the job's log lines written since the last
acknowledged one as ``log`` (the live log; at most the stored log's cap,
64 KiB, per attempt in all), when the server announces ``"live_log": true``
in its lease or heartbeat answers: a server that does not know the field
would refuse the whole request.
"""

from __future__ import annotations

import logging
from typing import Any

from taskframe.worker.jobs import RunningJob
from taskframe.worker.outbox import pair_answers

log = logging.getLogger("taskframe.worker")

#: Heartbeats go out at least this often (and at least three times per lease TTL).
MAX_HEARTBEAT_INTERVAL = 2.0
#: Seconds between looks for news (and for new leases, while none is held).
NEWS_TICK = 0.25


class HeartbeatPlan:
    """When the next heartbeat is due, and which leases it carries."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval  # None: from the lease TTL
        self.lease_ttl: float | None = None
        #: The server takes a running job's new log lines in its heartbeat entries.
        self.live_log = False
        self._due = 0.0  # time.monotonic() of the next full heartbeat

    def note(self, answer: dict[str, Any]) -> None:
        """What a lease or heartbeat answer announced: the lease TTL, and whether it
        takes live log lines (``"live_log": true``; a server that does not would refuse
        the field)."""
        if "live_log" in answer:
            self.live_log = answer["live_log"] is True
        ttl = answer.get("lease_ttl")
        if isinstance(ttl, int | float) and ttl > 0:
            self.lease_ttl = float(ttl)

    def every(self) -> float:
        if self.interval:
            return float(self.interval)
        ttl = self.lease_ttl
        return min(MAX_HEARTBEAT_INTERVAL, ttl / 3) if ttl else MAX_HEARTBEAT_INTERVAL

    def tick(self) -> float:
        return min(NEWS_TICK, self.every())

    def items(
        self, active: list[RunningJob], delivering: list[dict[str, Any]], now: float
    ) -> list[dict[str, Any]]:
        """Every lease when a heartbeat is due, else those whose job has news.

        ``delivering``: the leases of finished jobs whose outcome is not delivered yet.
        """
        if now >= self._due and (active or delivering):
            self._due = now + self.every()
            return [running.heartbeat_item() for running in active] + delivering
        return [running.heartbeat_item() for running in active if running.has_news()]

    def failed(self, now: float, retry_in: float) -> None:
        """The heartbeat failed: try again in ``retry_in`` seconds if that is sooner."""
        self._due = min(self._due, now + retry_in)


def apply_answers(
    active: dict[str, RunningJob], sent: list[dict[str, Any]], answers: list[dict[str, Any]]
) -> None:
    """A lost lease stops its job unreported; a cancel request stops it, reported cancelled."""
    for lease, answer in pair_answers(sent, answers):
        running = active.get(lease["lease_id"])
        if running is None:
            continue  # settled meanwhile
        if not answer.get("ok"):
            log.warning("lost the lease of job %s; stopping it unreported", lease["job_id"])
            del active[running.lease_id]
            running.cancel()
            continue
        running.acked(lease)
        if answer.get("cancel_requested") and not running.cancel_requested:
            log.info("job %s: cancel requested", lease["job_id"])
            running.cancel_requested = True
            running.cancel()
