"""Attempts: what workers do to jobs (lease, long-poll, heartbeat, complete, release).

Each call is one store transaction. Worker-facing changes are fenced: the
``end_attempts`` and ``extend_lease`` queries only touch a row whose
``lease_id``, ``worker_id`` and status still match, so a stale worker (or
anyone who does not hold the lease) changes nothing. A batch of completions
is one ``end_attempts`` statement (each row fenced inside it) and one
``insert_attempts``: no statement per job, no round trip per job. Every new status comes
from :func:`taskframe.core.model.next_status` (see :mod:`.attempt_end`).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from taskframe.core import model
from taskframe.core.errors import ErrorCode, JobConflict, JobNotFound
from taskframe.core.model import Outcome, Reported, Status
from taskframe.server.config import ServerConfig
from taskframe.server.engine import live_log, routing
from taskframe.server.engine.attempt_end import Ending, next_step, stored_result
from taskframe.server.engine.completions import Completion, CompletionOutcome, CompletionResult
from taskframe.server.engine.publisher import Publisher
from taskframe.server.storage import (
    AttemptRecord,
    JobRow,
    Store,
    Transaction,
    counts,
    job_row,
    job_rows,
)

log = logging.getLogger("taskframe.server")
STALE = "stale lease: this attempt was reaped or moved on"


class Attempts:
    """Leases jobs to workers and records how their attempts end.

    Each write records what it changed; the :class:`Publisher` resolves dependants
    and tells other servers before the commit, and after it wakes, counts and tells
    the plugins.
    """

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        rng: random.Random,
        publisher: Publisher,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.rng = rng
        self.publisher = publisher
        self.telemetry = publisher.telemetry  # the lease resource times its requests

    def replay(self, worker_id: str, request_id: str) -> list[JobRow]:
        """The jobs leased to an earlier send of request ``request_id`` (a resend after
        a lost answer gets them back instead of leasing more), in lease order."""
        params = {"worker_id": worker_id, "lease_request": request_id}
        with self.store.reader() as tx:
            replay = job_rows(tx.all("leased_by_request", params))
        return sorted(replay, key=lambda row: (-row["priority"], row["id"]))

    def lease_if_ready(
        self,
        worker_id: str,
        types: list[str],
        limit: int,
        request_id: str | None,
        queues: list[str] | None = None,
    ) -> list[JobRow]:
        """:meth:`lease_now`, unless a read (no write lock, no transaction) finds no
        queued job of ``types`` in ``queues``: then nothing could be leased. What
        another request makes ready after this read wakes the caller's waiter."""
        params = {"types": types, "queues": queues}
        with self.store.reader() as tx:
            if not (tx.one("any_queued", params) or {}).get("found"):
                return []
        return self.lease_now(worker_id, types, limit, request_id, queues)

    def lease_now(
        self,
        worker_id: str,
        types: list[str],
        limit: int,
        request_id: str | None,
        queues: list[str] | None = None,
    ) -> list[JobRow]:

        def lease_params() -> dict[str, Any]:
            now = self.clock()
            return {
                "worker_id": worker_id,
                "types": types,
                "limit": limit,
                "now": now,
                "lease_expires_at": now + self.config.lease_ttl,
                # A secret per attempt: nobody can guess the lease of another's job.
                "lease_ids": lease_ids(limit),
                "lease_request": request_id,
            }

        params = lease_params()
        with self.publisher.transaction(params["now"]) as (tx, changes):
            # Paused queues and limits (two tiny tables, usually empty): when there
            # are none and every queue is served, the plain lease runs as it always did.
            controls = routing.Controls.from_rows(tx.all("lease_controls"))
            self.publisher.wakeups.limited = bool(controls.limits)
            if controls.none and queues is None:
                rows = job_rows(tx.all("lease_jobs", params))
            else:
                rows = routing.lease_routed(tx, lease_params, types, queues, controls, limit)
            if rows:
                counts.moved(tx, rows, Status.QUEUED.value, Status.RUNNING.value)  # not by triggers
                changes.leased = (worker_id, rows)
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        return rows

    def complete(self, completions: list[Completion]) -> list[CompletionOutcome]:
        """Record the outcomes of attempts, each fenced by its lease and worker id."""
        if not completions:
            return []
        now = self.clock()
        # Every row of the batch is locked first, in id order, as every
        # multi-row writer does (heartbeats too): no deadlocks.
        order = sorted(range(len(completions)), key=lambda i: completions[i].job_id)
        items = [(i, *stored_result(completions[i], self.config.max_result_bytes)) for i in order]
        history: list[AttemptRecord] = []
        done: dict[int, CompletionOutcome] = {}
        with self.publisher.transaction(now) as (tx, changes):
            ids = sorted({item.job_id for _, item, _ in items})
            locked = job_rows(tx.all("get_jobs_for_update", {"ids": ids}))
            rows = {row["id"]: row for row in locked}
            endings: list[tuple[int, Ending]] = []
            for i, item, result in items:
                row = rows.get(item.job_id)
                if row is None:
                    done[i] = CompletionOutcome(
                        item.job_id,
                        CompletionResult.UNKNOWN_JOB,
                        error=f"job {item.job_id} does not exist",
                    )
                elif row["lease_id"] != item.lease_id or row["worker_id"] != item.worker_id:
                    # Stale, or a resend of an outcome recorded before the job moved on.
                    done[i] = _already(row) if _reported(tx, item) else _stale(item.job_id)
                elif row["status"] != Status.RUNNING:
                    done[i] = _already(row)  # a re-sent completion: recorded already
                else:
                    endings.append((i, self._ending(row, item, result, now)))
            ended_rows = end_attempts(tx, [ending for _, ending in endings], now, history)
            for (i, ending), updated in zip(endings, ended_rows, strict=True):
                if updated is not None:  # else reported twice in this batch, or moved on
                    done[i] = CompletionOutcome(
                        ending.row["id"], CompletionResult.RECORDED, updated
                    )
            succeeded = [row for row in ended_rows if row and row["status"] == Status.SUCCEEDED]
            counts.moved(tx, succeeded, Status.RUNNING.value, Status.SUCCEEDED.value)
            for i, item, _ in items:
                if i not in done:  # the same attempt twice in one batch: the first counted
                    done[i] = self._resent(tx, item)
            tx.run_set("insert_attempts", history)
            # Only outcomes recorded now move dependants on (a resend of one recorded
            # before finds its edges consumed anyway: dependencies.py).
            changes.attempts_ended(history, ended_rows)
        return [done[i] for i in range(len(completions))]

    def _ending(self, row: JobRow, item: Completion, result: str | None, now: float) -> Ending:
        """How the attempt in ``row`` ends as its worker reported (``result``: stored text)."""
        if item.status == Reported.SUCCEEDED:
            return Ending(
                row, _SUCCEEDED, Outcome.SUCCEEDED, row["run_at"], item.worker_id,
                result=result, keep_lease=True, log=item.log,
            )  # fmt: skip
        error = item.error  # NUL in it: the store replaces it (storage.base.without_nul)
        reported = Outcome.CANCELLED if item.status == Reported.CANCELLED else Outcome.FAILED
        status, run_at = next_step(
            row, reported, now, self.config.backoff, self.rng, item.retryable, item.retry_after
        )
        outcome = Outcome.CANCELLED if status == Status.CANCELLED else reported
        return Ending(
            row, status, outcome, run_at, item.worker_id, error=error, result=result,
            keep_lease=True, log=item.log, traceback=item.traceback,
        )  # fmt: skip

    def _resent(self, tx: Transaction, item: Completion) -> CompletionOutcome:
        row = job_row(tx.one("get_job", {"id": item.job_id}))
        if row is not None and row["lease_id"] == item.lease_id and row["status"] != Status.RUNNING:
            return _already(row)
        return _stale(item.job_id)

    def heartbeat(
        self,
        worker_id: str,
        leases: list[tuple[int, str]],
        progress: Mapping[tuple[int, str], dict[str, Any]] | None = None,
        logs: Mapping[tuple[int, str], str] | None = None,
    ) -> list[tuple[int, bool, bool]]:
        """Extend leases; return (job_id, still held, cancel requested) for each.

        ``progress``: by (job id, lease id), what the job reported (fraction, message),
        stored with the job in the same transaction, fenced like the lease.
        ``logs``: likewise, the log text each attempt wrote since its last heartbeat,
        appended to what the running attempt logged so far (server/engine/live_log.py).
        """
        now = self.clock()
        expires = now + self.config.lease_ttl
        # Rows are locked in id order, as every multi-row writer does: no deadlocks.
        ordered = sorted(set(leases))
        params = [
            {"id": i, "lease_id": lease, "worker_id": worker_id, "lease_expires_at": expires}
            for i, lease in ordered
        ]
        with self.store.transaction() as tx:
            rows = tx.returning_many("extend_lease", params)
            if progress:
                tx.run_many("set_progress", _progress_params(worker_id, progress, now))
            if logs:
                tx.run_many("append_live_log", live_log.append_params(worker_id, logs))
        answers = {
            key: (row is not None, bool(row and row["cancel_requested"]))
            for key, row in zip(ordered, rows, strict=True)
        }
        return [(job_id, *answers[job_id, lease_id]) for job_id, lease_id in leases]

    def release(self, job_id: int, worker_id: str, lease_id: str) -> JobRow:
        """Give a leased job back to the queue at once; the attempt is not counted."""
        now = self.clock()
        with self.publisher.transaction(now) as (tx, changes):
            row = job_row(tx.one("get_job_for_update", {"id": job_id}))
            if row is None:
                raise JobNotFound(job_id)
            if (
                row["status"] != Status.RUNNING
                or row["lease_id"] != lease_id
                or row["worker_id"] != worker_id
            ):
                raise JobConflict(STALE, ErrorCode.STALE_LEASE)
            status, run_at = next_step(row, Outcome.RELEASED, now, self.config.backoff, self.rng)
            outcome = Outcome.CANCELLED if status == Status.CANCELLED else Outcome.RELEASED
            history: list[AttemptRecord] = []
            ending = Ending(
                row, status, outcome, run_at, worker_id, error=row["error"],
                refund=outcome == Outcome.RELEASED,
            )  # fmt: skip
            [updated] = end_attempts(tx, [ending], now, history)
            tx.run_set("insert_attempts", history)
            if updated is None:
                raise JobConflict(STALE, ErrorCode.STALE_LEASE)
            changes.attempts_ended(history, [updated])
        return updated


def end_attempts(
    tx: Transaction, endings: list[Ending], now: float, history: list[AttemptRecord]
) -> list[JobRow | None]:
    """Close the running attempts of ``endings`` in one statement, each row fenced.

    Returns each job's updated row, or None where its attempt had already moved on
    (or the same job came earlier in ``endings``: the first one counts). The history
    rows of the attempts closed are appended to ``history``, for the caller to
    insert in one batch.
    """
    first: dict[int, Ending] = {}
    for ending in endings:
        first.setdefault(ending.row["id"], ending)
    updated = {
        row["id"]: row
        for row in job_rows(tx.run_set("end_attempts", [e.params(now) for e in first.values()]))
    }
    ended: list[JobRow | None] = []
    for ending in endings:
        row = updated.pop(ending.row["id"], None) if first[ending.row["id"]] is ending else None
        if row is not None:
            history.append(ending.history(now))
        ended.append(row)
    return ended


def lease_ids(count: int) -> list[str]:
    """``count`` random lease ids of 128 bits, from one read of the system's randomness
    (``secrets.token_hex`` once per id was a system call per leased job)."""
    text = secrets.token_hex(16 * count)
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]


#: Where a reported success takes a job (asked once: the same for every job).
_SUCCEEDED = model.next_status(Status.RUNNING, Outcome.SUCCEEDED)
#: Attempt outcomes that only a worker's report records.
_REPORTED = frozenset({Outcome.SUCCEEDED.value, Outcome.FAILED.value, Outcome.CANCELLED.value})


def _reported(tx: Transaction, item: Completion) -> bool:
    """Whether the attempt under ``item``'s lease ended with a report of its worker
    (the job has moved on since, so the row no longer shows that lease)."""
    for attempt in tx.all("list_attempts", {"job_id": item.job_id}):
        if attempt["lease_id"] == item.lease_id and attempt["worker_id"] == item.worker_id:
            return attempt["outcome"] in _REPORTED
    return False


def _already(row: JobRow) -> CompletionOutcome:
    return CompletionOutcome(row["id"], CompletionResult.RECORDED, job=row, already=True)


def _stale(job_id: int) -> CompletionOutcome:
    return CompletionOutcome(
        job_id,
        CompletionResult.STALE_LEASE,
        error=STALE,
    )


def _progress_params(
    worker_id: str, progress: Mapping[tuple[int, str], dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    """``set_progress`` rows, in id order as every multi-row writer locks them."""
    return [
        {
            "id": job_id,
            "lease_id": lease_id,
            "worker_id": worker_id,
            "progress": json.dumps(
                {"fraction": item["fraction"], "message": item.get("message"), "updated_at": now}
            ),
        }
        for (job_id, lease_id), item in sorted(progress.items())
    ]
