"""The scheduler: every job state change, written once above the storage interface.

Each method runs in one store transaction. Worker-facing changes are fenced:
the ``end_attempt`` and ``extend_lease`` queries only touch a row whose
``lease_id`` and status still match, so a stale worker changes nothing.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from taskframe.core import model
from taskframe.core.errors import JobConflict, JobNotFound
from taskframe.server.config import ServerConfig
from taskframe.server.notify import ChangeNotifier
from taskframe.server.storage import Row, Store, Transaction
from taskframe.server.submission import Intake

NO_CURSOR = 2**62
REAP_BATCH = 200


@dataclass(frozen=True)
class Completion:
    job_id: int
    lease_id: str
    status: str  # succeeded | failed | cancelled
    worker_id: str | None = None
    result: Any = None
    error: str | None = None
    retryable: bool = True


@dataclass(frozen=True)
class CompletionOutcome:
    job_id: int
    code: int  # 200 recorded (or already recorded), 404 unknown job, 409 stale lease
    job: Row | None = None
    error: str | None = None


class Scheduler:
    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        notifier: ChangeNotifier | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        events: Any = None,
    ) -> None:
        self.store = store
        self.config = config
        self.notifier = notifier or ChangeNotifier()
        self.clock = clock
        self.rng = rng or random.Random()
        self.intake = Intake(store, config, self.notifier, clock)
        #: Plugin lifecycle events (server/events.py), None when no plugin wants them.
        self.events = events

    # ----------------------------------------------------------------- clients

    def submit(self, jobs: list[dict[str, Any]]) -> list[tuple[Row, bool]]:
        """Insert validated jobs, all or nothing; see :class:`Intake`."""
        results = self.intake.submit(jobs)
        if self.events is not None:
            self.events.submitted([row for row, created in results if created])
        return results

    def submit_one(self, job: dict[str, Any]) -> tuple[Row, bool]:
        """Insert one validated job, sharing a commit with concurrent submissions."""
        row, created = self.intake.submit_one(job)
        if self.events is not None and created:
            self.events.submitted([row])
        return row, created

    def get(self, job_id: int) -> Row:
        with self.store.reader() as tx:
            row = tx.one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return row

    def wait_until_finished(self, job_id: int, wait: float) -> Row:
        """The job, once finished or after ``wait`` seconds, whichever is first."""
        deadline = time.monotonic() + wait
        with self.notifier.waiting():
            while True:
                generation = self.notifier.generation
                row = self.get(job_id)
                remaining = deadline - time.monotonic()
                if row["status"] in model.FINISHED or remaining <= 0 or self.notifier.closed:
                    return row
                self.notifier.wait(generation, remaining)

    def list(
        self, status: str | None, job_type: str | None, limit: int, cursor: int | None
    ) -> list[Row]:
        query = "list_jobs"
        if status and job_type:
            query = "list_jobs_by_status_and_type"
        elif status:
            query = "list_jobs_by_status"
        elif job_type:
            query = "list_jobs_by_type"
        params = {"status": status, "type": job_type, "limit": limit, "cursor": cursor or NO_CURSOR}
        with self.store.reader() as tx:
            return tx.all(query, params)

    def attempts(self, job_id: int) -> list[Row]:
        self.get(job_id)
        with self.store.reader() as tx:
            return tx.all("list_attempts", {"job_id": job_id})

    def cancel(self, job_id: int) -> Row:
        """Cancel a queued job now; ask the worker of a running one to stop."""
        params = {"id": job_id, "now": self.clock()}
        with self.store.transaction() as tx:
            row = tx.one("cancel_queued", params) or tx.one("request_cancel", params)
            if row is None:
                current = tx.one("get_job", params)
                if current is None:
                    raise JobNotFound(job_id)
                raise JobConflict(f"job {job_id} is already {current['status']}")
            self.store.notify_change(tx)  # wakes waiters on other servers
        self.notifier.notify()
        if self.events is not None:
            self.events.job_finished(row)
        return row

    def retry(self, job_id: int) -> Row:
        """Put a failed or cancelled job back in the queue with fresh attempts."""
        params = {"id": job_id, "now": self.clock()}
        with self.store.transaction() as tx:
            row = tx.one("retry_job", params)
            if row is None:
                current = tx.one("get_job", params)
                if current is None:
                    raise JobNotFound(job_id)
                raise JobConflict(
                    f"job {job_id} is {current['status']}; only failed or cancelled jobs retry"
                )
            self.store.notify_change(tx)
        self.notifier.notify()
        return row

    # ----------------------------------------------------------------- workers

    def lease(
        self,
        worker_id: str,
        types: Iterable[str],
        limit: int,
        wait: float,
        request_id: str | None = None,
        resent: bool = False,
    ) -> list[Row]:
        """Lease up to ``limit`` ready jobs, long-polling up to ``wait`` seconds for one.

        With a ``request_id`` the lease ids start with it, so that the same
        request ``resent`` after a lost answer gets those jobs back instead of
        leaving them to expire (and leasing more). Only a resend looks: the
        ordinary lease pays nothing for it.
        """
        prefix = f"{request_id}-" if request_id else secrets.token_hex(6) + "-"
        if request_id and resent:
            params = {"worker_id": worker_id, "lease_prefix": prefix}
            with self.store.reader() as tx:
                replay = tx.all("leased_by_request", params)
            if replay:
                return sorted(replay, key=lambda row: (-row["priority"], row["id"]))
        types = list(types)
        if limit <= 0 or not types:
            return []
        deadline = time.monotonic() + wait
        with self.notifier.waiting():
            while True:
                generation = self.notifier.generation
                jobs = self._lease_now(worker_id, types, limit, prefix)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0 or self.notifier.closed:
                    return jobs
                self.notifier.wait(generation, min(remaining, self._until_next_run()))

    def _lease_now(self, worker_id: str, types: list[str], limit: int, prefix: str) -> list[Row]:
        now = self.clock()
        params = {
            "worker_id": worker_id,
            "types": types,
            "limit": limit,
            "now": now,
            "lease_expires_at": now + self.config.lease_ttl,
            "lease_prefix": prefix,
        }
        with self.store.transaction() as tx:
            rows = tx.all("lease_jobs", params)
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        return rows

    def _until_next_run(self) -> float:
        """Seconds until the earliest delayed job becomes ready (a long wait if none)."""
        now = self.clock()
        with self.store.reader() as tx:
            row = tx.one("next_run_at", {"now": now})
        if row is None or row["run_at"] is None:
            return 3600.0
        return max(0.0, row["run_at"] - now)

    def complete(self, completions: list[Completion]) -> list[CompletionOutcome]:
        """Record the outcomes of attempts, each fenced by its lease id."""
        if not completions:
            return []
        now = self.clock()
        # Rows are locked in id order, as every multi-row writer does: no deadlocks.
        order = sorted(range(len(completions)), key=lambda i: completions[i].job_id)
        history: list[dict[str, Any]] = []
        with self.store.transaction() as tx:
            done = self._succeed_all(tx, [(i, completions[i]) for i in order], now, history)
            for i in order:
                if i not in done:
                    done[i] = self._complete_one(tx, completions[i], now, history)
            tx.run_many("insert_attempt", history)
            # Wakes long-polls (re-queued jobs) and job waiters on other servers.
            self.store.notify_change(tx)
        self.notifier.notify()
        if self.events is not None:
            rows = {o.job_id: o.job for o in done.values() if o.job is not None}
            self.events.attempts_finished([(rows[a["job_id"]], a) for a in history])
        return [done[i] for i in range(len(completions))]

    def _succeed_all(
        self,
        tx: Transaction,
        items: list[tuple[int, Completion]],
        now: float,
        history: list[dict[str, Any]],
    ) -> dict[int, CompletionOutcome]:
        """The hot path: every success of the batch in one guarded, batched update.

        Returns the outcomes by index; the items it could not apply (stale,
        re-sent, unknown) are left to :meth:`_complete_one`, which tells why.
        """
        successes = [(i, item) for i, item in items if item.status == model.SUCCEEDED]
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
        for (i, item), row in zip(successes, rows, strict=True):
            if row is not None:
                history.append(_attempt(row, model.OUTCOME_SUCCEEDED, now, None))
                done[i] = CompletionOutcome(item.job_id, 200, job=row)
        return done

    def _complete_one(
        self, tx: Transaction, item: Completion, now: float, history: list[dict[str, Any]]
    ) -> CompletionOutcome:
        result = None if item.result is None else json.dumps(item.result)
        if item.error is not None and "\x00" in item.error:
            # Errors quote remote bodies, which may hold NUL; PostgreSQL text cannot.
            item = replace(item, error=item.error.replace("\x00", "\ufffd"))
        row = tx.one("get_job_for_update", {"id": item.job_id})
        if row is None:
            return CompletionOutcome(item.job_id, 404, error=f"job {item.job_id} not found")
        if row["lease_id"] != item.lease_id or (
            item.worker_id is not None and row["worker_id"] != item.worker_id
        ):
            return CompletionOutcome(
                item.job_id, 409, error="stale lease: this attempt was reaped or moved on"
            )
        if row["status"] != model.RUNNING:
            return CompletionOutcome(item.job_id, 200, job=row)  # a re-sent completion
        if item.status == model.SUCCEEDED:
            status, outcome = model.SUCCEEDED, model.OUTCOME_SUCCEEDED
        elif item.status == model.CANCELLED or row["cancel_requested"]:
            status, outcome = model.CANCELLED, model.OUTCOME_CANCELLED
        else:
            status = model.status_after_failed_attempt(
                row["attempts"], row["max_attempts"], item.retryable
            )
            outcome = model.OUTCOME_FAILED
        updated = self._end_attempt(
            tx,
            row,
            status,
            outcome,
            now,
            history,
            error=item.error,
            result=result,
            keep_lease=True,
        )
        return CompletionOutcome(item.job_id, 200 if updated else 409, job=updated)

    def heartbeat(
        self, worker_id: str, leases: list[tuple[int, str]]
    ) -> list[tuple[int, bool, bool]]:
        """Extend leases; return (job_id, still held, cancel requested) for each."""
        expires = self.clock() + self.config.lease_ttl
        # Rows are locked in id order, as every multi-row writer does: no deadlocks.
        ordered = sorted(set(leases))
        params = [{"id": i, "lease_id": lease, "lease_expires_at": expires} for i, lease in ordered]
        with self.store.transaction() as tx:
            rows = tx.returning_many("extend_lease", params)
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
            if row["status"] != model.RUNNING or row["lease_id"] != lease_id:
                raise JobConflict("stale lease: this attempt was reaped or moved on")
            if row["cancel_requested"]:
                status, outcome = model.CANCELLED, model.OUTCOME_CANCELLED
            else:
                status, outcome = model.QUEUED, model.OUTCOME_RELEASED
            history: list[dict[str, Any]] = []
            updated = self._end_attempt(
                tx,
                row,
                status,
                outcome,
                now,
                history,
                error=row["error"],
                refund=outcome == model.OUTCOME_RELEASED,
            )
            tx.run_many("insert_attempt", history)
            if updated is None:
                raise JobConflict("stale lease: this attempt was reaped or moved on")
            self.store.notify_change(tx)
        self.notifier.notify()
        if self.events is not None:
            self.events.attempts_finished([(updated, history[0])])
        return updated

    # ------------------------------------------------------------ housekeeping

    def reap(self, expire_leases: bool = True) -> int:
        """Fail the attempts whose lease expired or whose timeout passed.

        ``expire_leases=False`` reaps timeouts only: for a grace period after
        an outage, when workers had no server to send their heartbeats to.
        """
        now = self.clock()
        with self.store.transaction() as tx:
            params = {"now": now, "lease_cutoff": now if expire_leases else 0.0}
            rows = tx.all("expired_attempts", {**params, "limit": REAP_BATCH})
            reaped = 0
            history: list[dict[str, Any]] = []
            ended_rows: list[Row] = []
            for row in rows:
                if row["deadline"] is not None and row["deadline"] < now:
                    outcome = model.OUTCOME_TIMED_OUT
                    error = f"attempt {row['attempts']} timed out after {row['timeout']:g} s"
                else:
                    outcome = model.OUTCOME_LEASE_EXPIRED
                    error = f"lease expired: worker {row['worker_id']} stopped heartbeating"
                if row["cancel_requested"]:
                    status = model.CANCELLED
                else:
                    status = model.status_after_failed_attempt(
                        row["attempts"], row["max_attempts"], retryable=True
                    )
                ended = self._end_attempt(tx, row, status, outcome, now, history, error=error)
                reaped += ended is not None
                if ended is not None:
                    ended_rows.append(ended)
            tx.run_many("insert_attempt", history)
            if reaped:
                self.store.notify_change(tx)
        if reaped:
            self.notifier.notify()
            if self.events is not None:
                self.events.attempts_finished(list(zip(ended_rows, history, strict=True)))
        return reaped

    def prune(self) -> int:
        """Delete finished jobs older than the retention period, in small batches."""
        if not self.config.retention:
            return 0
        before = self.clock() - self.config.retention
        pruned = 0
        while True:
            with self.store.transaction() as tx:
                rows = tx.all("prunable_jobs", {"before": before, "limit": self.config.prune_batch})
                ids = [row["id"] for row in rows]
                if ids:
                    tx.run("delete_attempts", {"ids": ids})
                    tx.run("delete_jobs", {"ids": ids})
            pruned += len(ids)
            if len(ids) < self.config.prune_batch:
                return pruned

    def _end_attempt(
        self,
        tx: Transaction,
        row: Row,
        status: str,
        outcome: str,
        now: float,
        history: list[dict[str, Any]],
        *,
        error: str | None = None,
        result: str | None = None,
        keep_lease: bool = False,
        refund: bool = False,
    ) -> Row | None:
        """Close the running attempt in ``row`` and move the job to ``status``.

        Returns the updated row, or None when the attempt had already moved on.
        The attempt's history row is appended to ``history``, for the caller
        to insert in one batch.
        ``keep_lease`` leaves the lease id on the row so that the same worker
        re-sending the same completion is recognised as a duplicate.
        """
        run_at = row["run_at"]
        if status == model.QUEUED and not refund:
            run_at = now + self.config.backoff.delay(row["attempts"], self.rng)
        elif status == model.QUEUED:
            run_at = now
        updated = tx.one(
            "end_attempt",
            {
                "id": row["id"],
                "lease_id": row["lease_id"],
                "status": status,
                "result": result,
                "error": error,
                "finished_at": now if status in model.FINISHED else None,
                "run_at": run_at,
                "new_lease_id": row["lease_id"] if keep_lease else None,
                "refund": 1 if refund else 0,
            },
        )
        if updated is not None:
            history.append(_attempt(row, outcome, now, error))
        return updated


def _attempt(row: Row, outcome: str, now: float, error: str | None) -> dict[str, Any]:
    """The history row of the attempt that ``row`` (as leased) was running."""
    return {
        "job_id": row["id"],
        "attempt": row["attempts"],
        "worker_id": row["worker_id"],
        "lease_id": row["lease_id"],
        "started_at": row["started_at"],
        "finished_at": now,
        "outcome": outcome,
        "error": error,
    }
