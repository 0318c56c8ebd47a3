"""Attempts: what workers do to jobs (lease, long-poll, heartbeat, complete, release).

Each call is one store transaction. Worker-facing changes are fenced: the
``end_attempt`` and ``extend_lease`` queries only touch a row whose
``lease_id``, ``worker_id`` and status still match, so a stale worker (or
anyone who does not hold the lease) changes nothing. Every new status comes
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
from taskframe.core.errors import JobConflict, JobNotFound
from taskframe.core.model import Outcome, Status
from taskframe.server import counts, dependencies, routing
from taskframe.server.attempt_end import capped, history_row, next_step
from taskframe.server.completions import Completion, CompletionOutcome, CompletionResult
from taskframe.server.config import ServerConfig
from taskframe.server.storage import Row, Store, Transaction
from taskframe.server.telemetry import Telemetry
from taskframe.server.wakeups import Wakeups

log = logging.getLogger("taskframe.server")


class Attempts:
    """Leases jobs to workers and records how their attempts end.

    After each commit it wakes the long-polls the change concerns (:class:`Wakeups`),
    counts it (telemetry) and tells the plugins (events).
    """

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        rng: random.Random,
        wakeups: Wakeups,
        telemetry: Telemetry,
        events: Any = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.rng = rng
        self.wakeups = wakeups
        self.telemetry = telemetry
        self.events = events

    def replay(self, worker_id: str, request_id: str) -> list[Row]:
        """The jobs leased to an earlier send of request ``request_id`` (a resend after
        a lost answer gets them back instead of leasing more), in lease order."""
        params = {"worker_id": worker_id, "lease_request": request_id}
        with self.store.reader() as tx:
            replay = tx.all("leased_by_request", params)
        return sorted(replay, key=lambda row: (-row["priority"], row["id"]))

    def lease_now(
        self,
        worker_id: str,
        types: list[str],
        limit: int,
        request_id: str | None,
        queues: list[str] | None = None,
    ) -> list[Row]:

        def lease_params() -> dict[str, Any]:
            now = self.clock()
            return {
                "worker_id": worker_id,
                "types": types,
                "limit": limit,
                "now": now,
                "lease_expires_at": now + self.config.lease_ttl,
                # A secret per attempt: nobody can guess the lease of another's job.
                "lease_ids": [secrets.token_hex(16) for _ in range(limit)],
                "lease_request": request_id,
            }

        params = lease_params()
        with self.store.transaction() as tx:
            # Paused queues and limits (two tiny tables, usually empty): when there
            # are none and every queue is served, the plain lease runs as it always did.
            controls = routing.Controls.from_rows(tx.all("lease_controls"))
            self.wakeups.limited = bool(controls.limits)
            if controls.none and queues is None:
                rows = tx.all("lease_jobs", params)
            else:
                rows = routing.lease_routed(tx, lease_params, types, queues, controls, limit)
            counts.moved(tx, rows, Status.QUEUED.value, Status.RUNNING.value)  # not by the triggers
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        if rows:
            self.telemetry.leased(worker_id, rows)
        return rows

    def complete(self, completions: list[Completion]) -> list[CompletionOutcome]:
        """Record the outcomes of attempts, each fenced by its lease and worker id."""
        if not completions:
            return []
        now = self.clock()
        # Every row of the batch is locked first, in id order, as every
        # multi-row writer does (heartbeats too): no deadlocks.
        order = sorted(range(len(completions)), key=lambda i: completions[i].job_id)
        items = [(i, capped(completions[i], self.config.max_result_bytes)) for i in order]
        history: list[dict[str, Any]] = []
        done: dict[int, CompletionOutcome] = {}
        with self.store.transaction() as tx:
            ids = sorted({item.job_id for _, item in items})
            rows = {row["id"]: row for row in tx.all("get_jobs_for_update", {"ids": ids})}
            successes, others = [], []
            for i, item in items:
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
                elif item.status == Status.SUCCEEDED:
                    successes.append((i, item))
                else:
                    others.append((i, item))
            done.update(self._succeed_all(tx, successes, now, history))
            for i, item in others:
                outcome = self._complete_one(tx, rows[item.job_id], item, now, history)
                if outcome is not None:  # else it moved on meanwhile: answered as re-sent below
                    done[i] = outcome
            for i, item in items:
                if i not in done:  # the same attempt twice in one batch: the first counted
                    done[i] = self._resent(tx, item)
            tx.run_many("insert_attempt", history)
            # Only outcomes recorded now move dependants on (a resend of one recorded
            # before finds its edges consumed anyway: dependencies.py).
            ended = [o.job for o in done.values() if o.recorded and not o.already]
            moved = dependencies.resolve(tx, ended, now, self.config.cascade_batch)
            # Wakes long-polls (re-queued jobs) and job waiters on other servers.
            self.store.notify_change(tx)
        self.wakeups.ended(ended)
        self.telemetry.attempts_ended(history, [o.job for o in done.values()], now)
        self.wakeups.dependants_moved(moved)
        if self.events is not None:
            rows = {o.job_id: o.job for o in done.values() if o.job is not None}
            self.events.attempts_finished([(rows[a["job_id"]], a) for a in history])
        return [done[i] for i in range(len(completions))]

    def _succeed_all(
        self,
        tx: Transaction,
        successes: list[tuple[int, Completion]],
        now: float,
        history: list[dict[str, Any]],
    ) -> dict[int, CompletionOutcome]:
        """The hot path: every success of the batch in one guarded, batched update."""
        params = [
            {
                "id": item.job_id,
                "lease_id": item.lease_id,
                "worker_id": item.worker_id,
                "result": None if item.result is None else json.dumps(item.result),
                "now": now,
            }
            for _, item in successes
        ]
        done = {}
        rows = tx.returning_many("succeed_attempt", params)
        counts.moved(tx, [r for r in rows if r], Status.RUNNING.value, Status.SUCCEEDED.value)
        for (i, item), row in zip(successes, rows, strict=True):
            if row is not None:
                history.append(history_row(row, Outcome.SUCCEEDED, now, None, item.log))
                done[i] = CompletionOutcome(item.job_id, CompletionResult.RECORDED, job=row)
        return done

    def _complete_one(
        self, tx: Transaction, row: Row, item: Completion, now: float, history: list[dict[str, Any]]
    ) -> CompletionOutcome | None:
        result = None if item.result is None else json.dumps(item.result)
        error = item.error
        if error is not None and "\x00" in error:
            # Errors quote remote bodies, which may hold NUL; PostgreSQL text cannot.
            error = error.replace("\x00", "\ufffd")
        reported = Outcome.CANCELLED if item.status == Status.CANCELLED else Outcome.FAILED
        status, run_at = next_step(
            row, reported, now, self.config.backoff, self.rng, item.retryable, item.retry_after
        )
        outcome = Outcome.CANCELLED if status == Status.CANCELLED else reported
        updated = end_attempt(
            tx,
            row,
            status,
            outcome,
            now,
            history,
            run_at=run_at,
            worker_id=item.worker_id,
            error=error,
            result=result,
            keep_lease=True,
            log=item.log,
            traceback=item.traceback,
        )
        return (
            None
            if updated is None
            else CompletionOutcome(item.job_id, CompletionResult.RECORDED, job=updated)
        )

    def _resent(self, tx: Transaction, item: Completion) -> CompletionOutcome:
        row = tx.one("get_job", {"id": item.job_id})
        if row is not None and row["lease_id"] == item.lease_id and row["status"] != Status.RUNNING:
            return _already(row)
        return _stale(item.job_id)

    def heartbeat(
        self,
        worker_id: str,
        leases: list[tuple[int, str]],
        progress: Mapping[tuple[int, str], dict[str, Any]] | None = None,
    ) -> list[tuple[int, bool, bool]]:
        """Extend leases; return (job_id, still held, cancel requested) for each.

        ``progress``: by (job id, lease id), what the job reported (fraction, message),
        stored with the job in the same transaction, fenced like the lease.
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
        answers = {
            key: (row is not None, bool(row and row["cancel_requested"]))
            for key, row in zip(ordered, rows, strict=True)
        }
        return [(job_id, *answers[job_id, lease_id]) for job_id, lease_id in leases]

    def release(self, job_id: int, worker_id: str, lease_id: str) -> Row:
        """Give a leased job back to the queue at once; the attempt is not counted."""
        now = self.clock()
        with self.store.transaction() as tx:
            row = tx.one("get_job_for_update", {"id": job_id})
            if row is None:
                raise JobNotFound(job_id)
            if (
                row["status"] != Status.RUNNING
                or row["lease_id"] != lease_id
                or row["worker_id"] != worker_id
            ):
                raise JobConflict("stale lease: this attempt was reaped or moved on")
            status, run_at = next_step(row, Outcome.RELEASED, now, self.config.backoff, self.rng)
            outcome = Outcome.CANCELLED if status == Status.CANCELLED else Outcome.RELEASED
            history: list[dict[str, Any]] = []
            updated = end_attempt(
                tx,
                row,
                status,
                outcome,
                now,
                history,
                run_at=run_at,
                worker_id=worker_id,
                error=row["error"],
                refund=outcome == Outcome.RELEASED,
            )
            tx.run_many("insert_attempt", history)
            if updated is None:
                raise JobConflict("stale lease: this attempt was reaped or moved on")
            moved = dependencies.resolve(tx, [updated], now, self.config.cascade_batch)
            self.store.notify_change(tx)
        self.wakeups.ended([updated])
        self.telemetry.attempts_ended(history, [updated], now)
        self.wakeups.dependants_moved(moved)
        if self.events is not None:
            self.events.attempts_finished([(updated, history[0])])
        return updated


def end_attempt(
    tx: Transaction,
    row: Row,
    status: Status,
    outcome: Outcome,
    now: float,
    history: list[dict[str, Any]],
    *,
    run_at: float,
    worker_id: str | None,
    error: str | None = None,
    result: str | None = None,
    keep_lease: bool = False,
    refund: bool = False,
    log: str | None = None,
    traceback: str | None = None,
) -> Row | None:
    """Close the running attempt in ``row`` and move the job to ``status``.

    Returns the updated row, or None when the attempt had already moved on.
    The attempt's history row is appended to ``history``, for the caller
    to insert in one batch.
    ``keep_lease`` leaves the lease id on the row so that the same worker
    re-sending the same completion is recognised as a duplicate.
    """
    updated = tx.one(
        "end_attempt",
        {
            "id": row["id"],
            "lease_id": row["lease_id"],
            "worker_id": worker_id,
            "status": status.value,
            "result": result,
            "error": error,
            "finished_at": now if status in model.FINISHED else None,
            "run_at": run_at,
            "new_lease_id": row["lease_id"] if keep_lease else None,
            "refund": 1 if refund else 0,
        },
    )
    if updated is not None:
        history.append(history_row(row, outcome, now, error, log, traceback))
    return updated


#: Attempt outcomes that only a worker's report records.
_REPORTED = frozenset({Outcome.SUCCEEDED.value, Outcome.FAILED.value, Outcome.CANCELLED.value})


def _reported(tx: Transaction, item: Completion) -> bool:
    """Whether the attempt under ``item``'s lease ended with a report of its worker
    (the job has moved on since, so the row no longer shows that lease)."""
    for attempt in tx.all("list_attempts", {"job_id": item.job_id}):
        if attempt["lease_id"] == item.lease_id and attempt["worker_id"] == item.worker_id:
            return attempt["outcome"] in _REPORTED
    return False


def _already(row: Row) -> CompletionOutcome:
    return CompletionOutcome(row["id"], CompletionResult.RECORDED, job=row, already=True)


def _stale(job_id: int) -> CompletionOutcome:
    return CompletionOutcome(
        job_id,
        CompletionResult.STALE_LEASE,
        error="stale lease: this attempt was reaped or moved on",
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
