"""The scheduler: every job state change, written once above the storage interface.

Each method runs in one store transaction, and every new status comes from
:func:`taskframe.core.model.next_status`. Worker-facing changes are fenced:
the ``end_attempt`` and ``extend_lease`` queries only touch a row whose
``lease_id``, ``worker_id`` and status still match, so a stale worker (or
anyone who does not hold the lease) changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from taskframe.core import model
from taskframe.core.errors import JobConflict, JobNotFound
from taskframe.core.model import Outcome, Status
from taskframe.server import counts, dependencies, job_actions, live_log, routing
from taskframe.server.config import ServerConfig
from taskframe.server.counts import DatabaseState
from taskframe.server.listing import Listing
from taskframe.server.metrics import Metrics
from taskframe.server.notify import ChangeNotifier, DueTimer, WaitSlots, WorkKey
from taskframe.server.storage import Row, Store, Transaction
from taskframe.server.submission import Intake
from taskframe.server.telemetry import Telemetry

log = logging.getLogger("taskframe.server")

REAP_BATCH = 200
#: Seconds the housekeeper pauses between two cascade chunks (other writers go first).
CASCADE_PAUSE = 0.002
# Bytes a job's JSON takes in a listing beside its payload and result.
JOB_OVERHEAD = 600


@dataclass(frozen=True)
class Completion:
    job_id: int
    lease_id: str
    status: str  # succeeded | failed | cancelled
    worker_id: str | None = None
    result: Any = None
    error: str | None = None
    retryable: bool = True
    log: str | None = None  # what the executor logged during the attempt
    traceback: str | None = None  # where the executor raised, if it did
    retry_after: float | None = None  # seconds to the next attempt, instead of the backoff


class CompletionResult(str, Enum):
    """What became of a reported attempt (the resource maps it to HTTP)."""

    RECORDED = "recorded"  # or recorded already: a re-sent report
    UNKNOWN_JOB = "unknown_job"
    STALE_LEASE = "stale_lease"  # the lease expired, moved on, or is not the worker's


@dataclass(frozen=True)
class CompletionOutcome:
    job_id: int
    result: CompletionResult
    job: Row | None = None
    error: str | None = None
    already: bool = False
    """Recorded by an earlier report of the same attempt: this one is a resend, and
    changes nothing (``job`` is the job as it is now)."""

    @property
    def recorded(self) -> bool:
        return self.result is CompletionResult.RECORDED


class _Quiet:
    """What the intake gets as its notifier: the scheduler announces new jobs itself,
    waking only as many waiters as there are jobs ready."""

    def notify(self) -> None:
        pass


class Scheduler:
    """Every job state change, for the API resources and the housekeeper.

    Clients submit, read, list, cancel and retry jobs; workers lease them,
    renew their leases, complete or release them; the housekeeper promotes
    due jobs, reaps expired leases and timeouts and prunes old jobs. Each
    method is one store transaction (see the module docstring for fencing);
    after its commit it wakes the long-polls the change concerns.
    """

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        notifier: ChangeNotifier | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        events: Any = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.notifier = notifier or ChangeNotifier()
        self.clock = clock
        self.rng = rng or random.Random()
        self.due_timer = DueTimer(clock)
        self.wait_slots = WaitSlots(config.max_waiting)
        self.intake = Intake(store, config, _Quiet(), clock)  # type: ignore[arg-type]
        #: Plugin lifecycle events (server/events.py), None when no plugin wants them.
        self.events = events
        #: Seen at the last lease: some limit is set (a finished job may free a slot).
        self.limited = False
        #: Whether the database answered lately (anonymous /health tells it, reading nothing).
        self.database = DatabaseState(store, stale_after=max(10.0, 5 * config.reap_interval))
        #: Set when dependants were left to the housekeeper (see dependencies.cascade).
        self.cascade_wanted = threading.Event()
        #: Logs and counts every committed change (server/telemetry.py; no database work).
        self.telemetry = telemetry or Telemetry(Metrics(store, clock))

    # ----------------------------------------------------------------- clients

    def submit(self, jobs: list[dict[str, Any]]) -> list[tuple[Row, bool]]:
        """Insert validated jobs, all or nothing; see :class:`Intake`."""
        results = self.intake.submit(jobs)
        created_rows = [row for row, created in results if created]
        self._announce(created_rows)
        self.telemetry.submitted(created_rows)
        if self.events is not None:
            self.events.submitted(created_rows)
        return results

    def submit_one(self, job: dict[str, Any]) -> tuple[Row, bool]:
        """Insert one validated job, sharing a commit with concurrent submissions."""
        row, created = self.intake.submit_one(job)
        if created:
            self._announce([row])
            self.telemetry.submitted([row])
            if self.events is not None:
                self.events.submitted([row])
        return row, created

    def announce(self, rows: list[Row]) -> None:
        """After a commit that created ``rows`` (a schedule's jobs): wake their workers,
        count and log them like any submission."""
        self._announce(rows)
        self.telemetry.submitted(rows)
        if self.events is not None:
            self.events.submitted(rows)

    def _announce(self, rows: Iterable[Row]) -> None:
        """Wake one lease waiter per new ready job; set the alarm for scheduled ones."""
        ready: Counter[WorkKey] = Counter()
        for row in rows:
            if row["status"] == Status.QUEUED:
                ready[_work_key(row)] += 1
            elif row["status"] == Status.SCHEDULED:
                self.due_timer.note(row["run_at"])
        if ready:
            self.notifier.work_ready(ready)

    def get(self, job_id: int) -> Row:
        with self.store.reader() as tx:
            row = tx.one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return row

    def wait_until_finished(self, job_id: int, wait: float) -> Row:
        """The job, once finished or after ``wait`` seconds, whichever is first."""
        return self.wait_for_job(job_id, wait)[0]

    def wait_for_job(self, job_id: int, wait: float) -> tuple[Row, bool]:
        """(the job once finished or after ``wait`` s, whether the wait was refused).

        Past the cap of waiting requests the job is answered as it is at once.
        """
        row = self.get(job_id)
        if row["status"] in model.FINISHED or wait <= 0 or self.notifier.closed:
            return row, False
        with self.wait_slots.slot() as may_wait:
            if not may_wait:
                return row, True
            deadline = time.monotonic() + wait
            with self.notifier.waiting():
                while True:
                    generation = self.notifier.generation
                    row = self.get(job_id)
                    remaining = deadline - time.monotonic()
                    if row["status"] in model.FINISHED or remaining <= 0 or self.notifier.closed:
                        return row, False
                    self.notifier.wait_for_job(job_id, generation, remaining)

    def list_jobs(
        self,
        status: str | None,
        job_type: str | None,
        limit: int,
        cursor: Any,
        full: bool = False,
        listing: Listing | None = None,
    ) -> list[Row]:
        """A page of jobs, newest first unless ``listing`` says otherwise (its filters,
        order and size; see server/listing.py): summaries (no payload, no result)
        unless ``full``.

        A full page stops before its payloads and results pass the answer cap
        (always at least one job); the caller's cursor goes on from its last job.
        """
        if listing is None:
            listing = Listing({"status": status, "type": job_type}, limit=limit)
        with self.store.reader() as tx:
            rows = tx.all(listing.query(tx), listing.params(cursor))
            if not full:
                return rows
            page: list[Row] = []
            size = 0
            for row in rows:
                size += JOB_OVERHEAD + row["payload_bytes"] + (row["result_bytes"] or 0)
                if page and size > self.config.max_answer_bytes:
                    break
                page.append(row)
            if not page:
                return []
            found = {row["id"]: row for row in tx.all("get_jobs", {"ids": [r["id"] for r in page]})}
        return [found[row["id"]] for row in page if row["id"] in found]

    def dependency_results(self, rows: list[Row]) -> dict[int, dict[str, Any]]:
        """{job id: {dependency id: result}} of leased ``rows`` that have dependencies."""
        with self.store.reader() as tx:
            return dependencies.results(tx, rows)

    def attempts(self, job_id: int) -> list[Row]:
        self.get(job_id)
        with self.store.reader() as tx:
            return tx.all("list_attempts", {"job_id": job_id})

    def cancel(self, job_id: int) -> Row:
        """Cancel a queued or scheduled job now; ask the worker of a running one to stop."""
        params = {"id": job_id, "now": self.clock()}
        with self.store.transaction() as tx:
            current = tx.one("get_job_for_update", params)
            if current is None:
                raise JobNotFound(job_id)
            row = job_actions.cancel_locked(tx, current, params["now"])
            moved = self._resolve(tx, [row], params["now"])
            self.store.notify_change(tx)  # wakes waiters on other servers
        self.after_cancels([row], moved)
        return row

    def after_cancels(self, rows: list[Row], moved: dependencies.Resolution) -> None:
        """After a commit that cancelled ``rows`` (or asked their workers to stop):
        wake their waiters, count and log them, tell plugins."""
        finished = [row["id"] for row in rows if row["status"] in model.FINISHED]
        if finished:
            self.notifier.jobs_finished(finished)
        self.telemetry.cancelled_many(rows)
        self._dependants_moved(moved)
        if self.events is not None:
            for row in rows:
                self.events.job_finished(row)

    def retry(self, job_id: int) -> Row:
        """Put a failed or cancelled job back in the queue with fresh attempts (or
        waiting for its dependencies again, when they still run).

        Attempts keep their numbers for the life of the job: the retry grants
        as many attempts as the job was submitted with (``max_attempts`` grows).
        """
        params = {"id": job_id, "now": self.clock()}
        with self.store.transaction() as tx:
            current = tx.one("get_job_for_update", params)
            if current is None:
                raise JobNotFound(job_id)
            row = job_actions.retry_locked(tx, current, params["now"])
            self.store.notify_change(tx)
        self.after_retries([row])
        return row

    def after_retries(self, rows: list[Row]) -> None:
        """After a commit that queued ``rows`` again: wake their workers, log them."""
        self._announce(rows)
        self.telemetry.requeued_many(rows)

    # ----------------------------------------------------------------- workers

    def lease(
        self,
        worker_id: str,
        types: Iterable[str],
        limit: int,
        wait: float,
        request_id: str | None = None,
        resent: bool = False,
        queues: list[str] | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> list[Row]:
        """Lease up to ``limit`` ready jobs, long-polling up to ``wait`` seconds for one."""
        return self.lease_or_busy(worker_id, types, limit, wait, request_id, resent, queues, gone)[
            0
        ]

    def lease_or_busy(
        self,
        worker_id: str,
        types: Iterable[str],
        limit: int,
        wait: float,
        request_id: str | None = None,
        resent: bool = False,
        queues: list[str] | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> tuple[list[Row], bool]:
        """(leased jobs, whether a wait was refused because too many requests wait).

        Each job gets a random lease id of its own. A ``request_id`` is stored
        beside it, so that the same request ``resent`` after a lost answer
        gets those jobs back instead of leaving them to expire (and leasing
        more). Only a resend looks: the ordinary lease pays nothing for it.

        ``gone`` tells whether the requesting client has hung up: then nothing
        is leased, and a long poll ends within a second. (What was leased
        before it hung up is the caller's to release: :meth:`release_undelivered`.)
        """
        if gone is not None and gone():
            return [], False
        if request_id and resent:
            params = {"worker_id": worker_id, "lease_request": request_id}
            with self.store.reader() as tx:
                replay = tx.all("leased_by_request", params)
            if replay:
                return sorted(replay, key=lambda row: (-row["priority"], row["id"])), False
        types = list(types)
        if limit <= 0 or not types:
            return [], False
        if queues is not None and not queues:
            return [], False
        jobs = self._lease_now(worker_id, types, limit, request_id, queues)
        if jobs or wait <= 0 or self.notifier.closed:
            return jobs, False
        with self.wait_slots.slot() as may_wait:
            if not may_wait:
                return [], True
            return self._long_poll(worker_id, types, limit, wait, request_id, queues, gone), False

    def _long_poll(
        self,
        worker_id: str,
        types: list[str],
        limit: int,
        wait: float,
        request_id: str | None,
        queues: list[str] | None,
        gone: Callable[[], bool] | None,
    ) -> list[Row]:
        deadline = time.monotonic() + wait
        woken = False
        with self.notifier.waiting():
            while True:
                generation = self.notifier.generation
                if gone is not None and gone():
                    return []  # nobody would read the answer: lease nothing
                jobs = self._lease_now(worker_id, types, limit, request_id, queues)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0 or self.notifier.closed:
                    if woken and len(jobs) == limit:
                        # Woken (maybe by another process's change, of unknown size)
                        # and the batch is full: there may be more, pass the wake-up on.
                        self.notifier.work_ready({_work_key(jobs[-1]): 1})
                    return jobs
                woken = self.notifier.wait_for_work(types, generation, remaining, queues, gone)

    def _lease_now(
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
            self.limited = bool(controls.limits)
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
        items = [(i, self._capped(completions[i])) for i in order]
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
            moved = self._resolve(tx, ended, now)
            # Wakes long-polls (re-queued jobs) and job waiters on other servers.
            self.store.notify_change(tx)
        self._ended(ended)
        self.telemetry.attempts_ended(history, [o.job for o in done.values()], now)
        self._dependants_moved(moved)
        if self.events is not None:
            rows = {o.job_id: o.job for o in done.values() if o.job is not None}
            self.events.attempts_finished([(rows[a["job_id"]], a) for a in history])
        return [done[i] for i in range(len(completions))]

    def _capped(self, item: Completion) -> Completion:
        """A result past ``max_result_bytes`` fails the attempt (retrying would not shrink it)."""
        if item.status != Status.SUCCEEDED or item.result is None:
            return item
        size = len(json.dumps(item.result).encode())
        if size <= self.config.max_result_bytes:
            return item
        error = (
            f"the result is {size} bytes, more than the server keeps "
            f"(--max-result {self.config.max_result_bytes})"
        )
        return dataclasses.replace(
            item, status=Status.FAILED, result=None, error=error, retryable=False
        )

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
                history.append(_attempt(row, Outcome.SUCCEEDED, now, None, item.log))
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
        status, run_at = self._after_attempt(row, reported, now, item.retryable, item.retry_after)
        outcome = Outcome.CANCELLED if status == Status.CANCELLED else reported
        updated = self._end_attempt(
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

    def _after_attempt(
        self,
        row: Row,
        outcome: Outcome,
        now: float,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> tuple[Status, float]:
        """The job's next status and run_at once its running attempt ends with ``outcome``.

        ``retry_after``: the executor's own delay (``Retry(after=...)``, its backoff).
        """
        may_retry = outcome in model.FAILURES and model.may_retry(
            row["attempts"], row["max_attempts"], retryable
        )
        run_at = row["run_at"]
        if may_retry and retry_after is not None:
            run_at = now + retry_after
        elif may_retry:
            run_at = now + self.config.backoff.delay(_attempts_since_retry(row), self.rng)
        elif outcome == Outcome.RELEASED:
            run_at = now
        status = model.next_status(
            Status.RUNNING,
            outcome,
            due=run_at <= now,
            may_retry=may_retry,
            cancel_requested=bool(row["cancel_requested"]),
        )
        return status, run_at

    def _ended(self, rows: Iterable[Row | None]) -> None:
        """After a commit that ended attempts: wake whoever waits on what changed."""
        ended = [row for row in rows if row is not None]
        finished = [row["id"] for row in ended if row["status"] in model.FINISHED]
        if finished:
            self.notifier.jobs_finished(finished)
            if self.limited:  # a slot under a limit may be free: let its waiters look
                self.notifier.work_ready(Counter(_work_key(row) for row in ended))
        self._announce(ended)

    def _resolve(
        self, tx: Transaction, finished: Iterable[Row | None], now: float
    ) -> dependencies.Resolution:
        """Resolve the dependants of ``finished`` jobs, a chunk now and the rest later."""
        return dependencies.resolve(tx, finished, now, self.config.cascade_batch)

    def _dependants_moved(self, resolution: dependencies.Resolution) -> None:
        """After a commit that readied or cancelled dependants: wake waiters, tell plugins,
        and the housekeeper when some are left to it."""
        if resolution.pending:
            self.cascade_wanted.set()
        rows = resolution.changed
        if not rows:
            return
        self._ended(rows)
        if self.events is not None:
            for row in rows:
                if row["status"] in model.FINISHED:
                    self.events.job_finished(row)

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
        appended to what the running attempt logged so far (its live log).
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
            status, run_at = self._after_attempt(row, Outcome.RELEASED, now)
            outcome = Outcome.CANCELLED if status == Status.CANCELLED else Outcome.RELEASED
            history: list[dict[str, Any]] = []
            updated = self._end_attempt(
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
            moved = self._resolve(tx, [updated], now)
            self.store.notify_change(tx)
        self._ended([updated])
        self.telemetry.attempts_ended(history, [updated], now)
        self._dependants_moved(moved)
        if self.events is not None:
            self.events.attempts_finished([(updated, history[0])])
        return updated

    def release_undelivered(self, worker_id: str, rows: list[Row]) -> int:
        """Give back jobs leased for an answer that cannot be delivered (the worker hung
        up while its request waited): not counted as attempts. Returns how many."""
        released = 0
        for row in rows:
            try:
                self.release(row["id"], worker_id, row["lease_id"])
                released += 1
            except (JobConflict, JobNotFound):
                pass  # moved on meanwhile (cancelled, say): nothing to give back
        if released:
            log.info(
                "worker %s hung up before its lease answer: %d job(s) released unstarted",
                worker_id,
                released,
            )
        return released

    # ------------------------------------------------------------ housekeeping

    def reap(self, expire_leases: bool = True) -> int:
        """Fail the attempts whose lease expired or whose timeout passed.

        ``expire_leases=False`` reaps timeouts only: for a grace period after
        an outage, when workers had no server to send their heartbeats to.
        """
        now = self.clock()
        ended = []
        with self.store.transaction() as tx:
            params = {"now": now, "lease_cutoff": now if expire_leases else 0.0}
            rows = tx.all("expired_attempts", {**params, "limit": REAP_BATCH})
            history: list[dict[str, Any]] = []
            for row in rows:
                if row["deadline"] is not None and row["deadline"] < now:
                    outcome = Outcome.TIMED_OUT
                    error = f"attempt {row['attempts']} timed out after {row['timeout']:g} s"
                else:
                    outcome = Outcome.LEASE_EXPIRED
                    error = f"lease expired: worker {row['worker_id']} stopped heartbeating"
                status, run_at = self._after_attempt(row, outcome, now)
                ended.append(
                    self._end_attempt(
                        tx,
                        row,
                        status,
                        outcome,
                        now,
                        history,
                        run_at=run_at,
                        worker_id=row["worker_id"],
                        error=error,
                    )
                )
            tx.run_many("insert_attempt", history)
            reaped = sum(row is not None for row in ended)
            moved = self._resolve(tx, ended, now)
            if reaped:
                self.store.notify_change(tx)
        self._ended(ended)
        if reaped:
            self.telemetry.attempts_ended(history, ended, now)
        self._dependants_moved(moved)
        if self.events is not None and reaped:
            ended_rows = [row for row in ended if row is not None]
            self.events.attempts_finished(list(zip(ended_rows, history, strict=True)))
        return reaped

    def promote(self) -> int:
        """Make the scheduled jobs whose time came ready, in batches; return how many."""
        promoted = 0
        while True:
            with self.store.transaction() as tx:
                rows = tx.all(
                    "promote_due", {"now": self.clock(), "limit": self.config.promote_batch}
                )
                if rows:
                    self.store.notify_change(tx)
            if rows:
                self.notifier.work_ready(Counter(_work_key(row) for row in rows))
            promoted += len(rows)
            if len(rows) < self.config.promote_batch:
                return promoted

    def cascade(self, stop: threading.Event | None = None) -> int:
        """Resolve the dependants left to the housekeeper, one chunk per transaction.

        Returns how many dependants moved. Each chunk commits on its own, so other
        requests interleave; a crash loses nothing (the markers are in the database).
        """
        moved = 0
        while stop is None or not stop.is_set():
            with self.store.transaction() as tx:
                resolution = dependencies.cascade(tx, self.clock(), self.config.cascade_batch)
                if resolution is not None and resolution.changed:
                    self.store.notify_change(tx)
            if resolution is None:
                return moved
            resolution.pending = False  # this loop goes on by itself
            self._dependants_moved(resolution)
            moved += len(resolution.changed)
            time.sleep(CASCADE_PAUSE)  # let waiting writers of this process in first
        return moved

    def next_due(self) -> float | None:
        """When the earliest scheduled job becomes due (None: no job is scheduled)."""
        with self.store.reader() as tx:
            row = tx.one("next_run_at")
        return None if row is None else row["run_at"]

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
                    # Dependency rows go with their jobs, both ways: a later job
                    # must never inherit them (ids are not reused either, migration 8).
                    tx.run("delete_dependencies", {"ids": ids})
                    tx.run("delete_dependants", {"ids": ids})
                    tx.run("delete_dependant_links", {"ids": ids})
                    tx.run("delete_jobs", {"ids": ids})
            pruned += len(ids)
            if len(ids) < self.config.prune_batch:
                return pruned

    def _end_attempt(
        self,
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
            history.append(_attempt(row, outcome, now, error, log, traceback))
        return updated


def _work_key(row: Row) -> WorkKey:
    """What a ready job needs of a lease waiter: its type, and its queue (None: unknown)."""
    return row["type"], row.get("queue")


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


def _attempts_since_retry(row: Row) -> int:
    """Attempts made since the last ``POST /jobs/{id}/retry`` (the backoff starts over)."""
    grant = row.get("attempt_grant") or row["max_attempts"]
    return max(1, row["attempts"] - (row["max_attempts"] - grant))


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


def _attempt(
    row: Row,
    outcome: Outcome,
    now: float,
    error: str | None,
    log: str | None = None,
    traceback: str | None = None,
) -> dict[str, Any]:
    """The history row of the attempt that ``row`` (as leased) was running."""
    if log is not None and "\x00" in log:  # PostgreSQL text cannot hold NUL
        log = log.replace("\x00", "\ufffd")
    if traceback is not None and "\x00" in traceback:
        traceback = traceback.replace("\x00", "\ufffd")
    return {
        "job_id": row["id"],
        "attempt": row["attempts"],
        "worker_id": row["worker_id"],
        "lease_id": row["lease_id"],
        "started_at": row["started_at"],
        "finished_at": now,
        "outcome": outcome.value,
        "error": error,
        "log": log,
        "traceback": traceback,
    }
