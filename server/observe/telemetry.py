"""Telemetry: the scheduler reports each committed change here, to be logged and counted.

Nothing here touches the database: counters live in memory (see
:mod:`taskframe.server.observe.metrics`), log lines go to the ``taskframe.jobs``
logger with the job's fields in ``extra`` (so JSON lines carry them).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from taskframe.core import model
from taskframe.core.logs import Tally
from taskframe.server.observe.metrics import Metrics
from taskframe.server.observe.rollup import FinishTally
from taskframe.server.storage import AttemptRecord, JobRow

log = logging.getLogger("taskframe.jobs")

#: A batch submission logs one summary line at INFO; its jobs one by one at DEBUG.
BATCH_SUMMARY_OVER = 1
#: Single submissions, leases and successes, the hot path, are logged per job at
#: DEBUG and summed up at INFO at most this often (with the next such event).
SUMMARY_EVERY = 10.0
#: Schedules named in one log line about dropped fire times.
DROPS_NAMED = 5
#: Where a failed attempt's job goes when it will be tried again (scheduled: after a backoff).
_REQUEUED = frozenset({model.QUEUED.value, model.SCHEDULED.value})
_REAPED = frozenset({model.OUTCOME_LEASE_EXPIRED.value, model.OUTCOME_TIMED_OUT.value})
_RELEASED = model.OUTCOME_RELEASED.value


def _fields(row: JobRow, **more: Any) -> dict[str, Any]:
    return {
        "job_id": row["id"],
        "type": row["type"],
        "attempt": row["attempts"],
        "worker_id": row["worker_id"],
        **more,
    }


class Telemetry:
    """Logs and counts what the scheduler did, after its transaction committed."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._tally = Tally(log, SUMMARY_EVERY)
        #: Jobs succeeded and failed, for the per-minute rollup (the same events as
        #: taskframe_jobs_finished_total): server/observe/rollup.py writes and resets them.
        self.finishes = FinishTally()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: it costs a lock and more per call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def flush(self) -> None:
        """Log the summary of leases and successes now (at shutdown)."""
        self._tally.flush()

    def submitted(self, rows: list[JobRow]) -> None:
        if self.metrics is not None:
            counter = self.metrics.submitted
            for job_type, n in Counter(row["type"] for row in rows).items():
                self._child(counter, job_type).inc(n)
        if len(rows) > BATCH_SUMMARY_OVER and log.isEnabledFor(logging.INFO):
            types = sorted({row["type"] for row in rows})
            ids = [rows[0]["id"], rows[-1]["id"]]
            log.info(
                "%d jobs submitted (ids %d..%d, types %s)",
                *(len(rows), ids[0], ids[1], ", ".join(types)),
                extra={"count": len(rows), "job_ids": ids},
            )
        elif rows:
            self._tally.add("jobs submitted", len(rows))
        if log.isEnabledFor(logging.DEBUG):
            for row in rows:
                log.debug(
                    "job %d submitted (type %s, priority %d)",
                    *(row["id"], row["type"], row["priority"]),
                    extra={"job_id": row["id"], "type": row["type"]},
                )

    def leased(self, worker_id: str, rows: list[JobRow]) -> None:
        if self.metrics is not None:
            leased, wait = self.metrics.leased, self.metrics.wait_seconds
            waits: dict[str, list[float]] = defaultdict(list)
            for row in rows:
                started_at = row["started_at"] or row["run_at"]  # a leased row has started_at
                waits[row["type"]].append(max(0.0, started_at - row["run_at"]))
            for job_type, waited in waits.items():
                self._child(leased, job_type).inc(len(waited))
                observe_all(self._child(wait, job_type), waited)
        self._tally.add("attempts leased", len(rows))
        if log.isEnabledFor(logging.DEBUG):
            for row in rows:
                log.debug(
                    "job %d leased to %s (attempt %d)",
                    *(row["id"], worker_id, row["attempts"]),
                    extra=_fields(row, lease_id=row["lease_id"]),
                )

    def lease_request(self, seconds: float, leased: int) -> None:
        if self.metrics is not None:
            self.metrics.lease_seconds.observe(seconds)
            self._child(self.metrics.lease_requests, "jobs" if leased else "empty").inc()

    def attempts_ended(
        self, history: list[AttemptRecord], rows: Iterable[JobRow | None], now: float
    ) -> None:
        """``history``: the attempt rows just written; ``rows``: the jobs as updated."""
        if not history:
            return
        jobs = {row["id"]: row for row in rows if row is not None}
        ended = [(a, jobs[a["job_id"]]) for a in history if a["job_id"] in jobs]
        if self.metrics is not None:
            self._count_ended(ended)
        succeeded = 0
        debug = log.isEnabledFor(logging.DEBUG)
        finishes = []  # the attempts that ended, for the rollup (a release is not one)
        for attempt, job in ended:
            if attempt["outcome"] != _RELEASED:
                finishes.append(job)
            if job["status"] == model.SUCCEEDED:
                succeeded += 1
                if not debug:
                    continue  # the hot path: counted above, summed up by the tally
            self._log_ended(attempt, job, now)
        self.finishes.add(finishes)
        if succeeded:
            self._tally.add("jobs succeeded", succeeded)

    def _count_ended(self, ended: list[tuple[AttemptRecord, JobRow]]) -> None:
        """The metrics of ended attempts, one update per label set of the batch: the
        loop over the attempts only groups them (a batch is mostly one kind)."""
        metrics = self.metrics
        assert metrics is not None
        kinds: dict[tuple[str, str, str], int] = {}
        ran: dict[str, list[float]] = {}
        for attempt, job in ended:
            outcome = attempt["outcome"]
            if outcome == _RELEASED:
                continue
            job_type = job["type"]
            started = attempt["started_at"]
            if started is not None:
                seconds = attempt["finished_at"] - started
                times = ran.get(job_type)
                if times is None:
                    times = ran[job_type] = []
                times.append(seconds if seconds > 0 else 0.0)
            kind = (job_type, outcome, job["status"])
            kinds[kind] = kinds.get(kind, 0) + 1
        for (job_type, outcome, status), n in kinds.items():
            if outcome in _REAPED:
                self._child(metrics.reaped, job_type, outcome).inc(n)
            if status in _REQUEUED:
                self._child(metrics.retried, job_type).inc(n)
            elif status in model.FINISHED:
                self._child(metrics.finished, job_type, status).inc(n)
        for job_type, durations in ran.items():
            observe_all(self._child(metrics.run_seconds, job_type), durations)

    def _log_ended(self, attempt: AttemptRecord, job: JobRow, now: float) -> None:
        outcome, status, job_type = attempt["outcome"], job["status"], job["type"]
        if outcome == model.OUTCOME_RELEASED:
            log.debug("job %d released by its worker", job["id"], extra=_attempt_fields(attempt))
            return
        if status == model.SUCCEEDED:
            if log.isEnabledFor(logging.DEBUG):
                number = attempt["attempt"]
                extra = {**_attempt_fields(attempt), "type": job_type}
                log.debug("job %d succeeded (attempt %d)", job["id"], number, extra=extra)
            return
        if not log.isEnabledFor(logging.INFO):
            return
        extra = {**_attempt_fields(attempt), "type": job_type}
        number, error = attempt["attempt"], attempt["error"]
        if outcome in (model.OUTCOME_LEASE_EXPIRED, model.OUTCOME_TIMED_OUT):
            log.warning("job %d attempt %d reaped: %s", job["id"], number, error, extra=extra)
        if status in _REQUEUED:
            delay = max(0.0, job["run_at"] - now)
            log.info(
                "job %d attempt %d failed, retrying in %.1f s: %s",
                *(job["id"], number, delay, error),
                extra=extra,
            )
        elif status == model.FAILED:
            log.warning(
                "job %d failed after attempt %d/%d: %s",
                *(job["id"], number, job["max_attempts"], error),
                extra=extra,
            )
        elif status == model.CANCELLED:
            log.info("job %d cancelled (attempt %d)", job["id"], number, extra=extra)

    def cancelled(self, row: JobRow) -> None:
        """A cancel request: a queued job is cancelled now, a running one is asked to stop."""
        if row["status"] == model.CANCELLED:
            if self.metrics is not None:
                self._child(self.metrics.finished, row["type"], model.CANCELLED).inc()
            log.info("job %d cancelled", row["id"], extra=_fields(row))
        else:
            log.info("job %d: cancel requested from its worker", row["id"], extra=_fields(row))

    def cancelled_many(self, rows: list[JobRow]) -> None:
        """Cancel requests: one job as :meth:`cancelled`, more counted alike and
        logged in one line (a bulk cancel may touch millions)."""
        if len(rows) <= 1:
            for row in rows:
                self.cancelled(row)
            return
        now = [row for row in rows if row["status"] == model.CANCELLED]
        if self.metrics is not None:
            for row in now:
                self._child(self.metrics.finished, row["type"], model.CANCELLED).inc()
        log.info(
            "%d jobs cancelled, %d running asked to stop (ids %d..%d)",
            *(len(now), len(rows) - len(now), rows[0]["id"], rows[-1]["id"]),
            extra={"count": len(rows)},
        )

    def fire_times_dropped(self, drops: Mapping[str, Any]) -> None:
        """Fire times the misfire policy dropped, by schedule name (``schedules.Drop``)."""
        total = sum(drop.count for drop in drops.values())
        if self.metrics is not None:
            for drop in drops.values():
                self._child(self.metrics.fires_dropped, drop.policy).inc(drop.count)
        names = sorted(drops)
        shown = ", ".join(
            f"{name} {'~' if drops[name].estimated else ''}{drops[name].count} from "
            f"{iso_second(drops[name].first)} ({drops[name].policy})"
            for name in names[:DROPS_NAMED]
        )
        more = f" and {len(names) - DROPS_NAMED} more" if len(names) > DROPS_NAMED else ""
        log.warning(
            "%d fire time(s) of %d schedule(s) dropped, firing was late: %s%s",
            *(total, len(names), shown, more),
            extra={"dropped": total, "schedules": names[:DROPS_NAMED]},
        )

    def requeued(self, row: JobRow) -> None:
        log.info("job %d queued again by request", row["id"], extra=_fields(row))

    def requeued_many(self, rows: list[JobRow]) -> None:
        if len(rows) <= 1:
            for row in rows:
                self.requeued(row)
            return
        log.info(
            "%d jobs queued again by request (ids %d..%d)",
            *(len(rows), rows[0]["id"], rows[-1]["id"]),
            extra={"count": len(rows)},
        )


def observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, one update per bucket touched.

    prometheus_client walks its buckets in Python at every ``observe``, under a
    lock: twice per job on the hot path. Its children keep their bounds and
    bucket values in attributes; a client without them gets plain observes.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) < 2 or bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    histogram._raise_if_not_observable()
    # The first bound at or above each value, as observe's loop finds it (the last is +Inf).
    for index, n in Counter(bisect_left(bounds, value) for value in values).items():
        buckets[index].inc(n)
    total.inc(sum(values))


def iso_second(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _attempt_fields(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "job_id": attempt["job_id"],
        "attempt": attempt["attempt"],
        "worker_id": attempt["worker_id"],
        "lease_id": attempt["lease_id"],
    }
