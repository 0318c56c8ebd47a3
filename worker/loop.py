"""The worker loop: lease jobs into free slots, run them in a pool, report outcomes.

One thread (the caller of :meth:`Worker.run`) talks to ``POST /lease``: each
request carries every pending outcome and asks for as many jobs as there are
free slots, so a worker never holds a job it cannot start (priority stays
strict across workers). With nothing running it long-polls; with jobs running
it asks without waiting and blocks locally instead, so a finished job is
reported at once. A heartbeat thread keeps the leases alive. One job thread
per slot runs jobs in its slot of the pool (see :mod:`taskframe.worker.pool`).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any

from taskframe.core.logs import Tally
from taskframe.core.model import Outcome
from taskframe.core.plugins import PluginSet
from taskframe.core.schemas import MAX_HEARTBEATS, MAX_LEASE_BATCH
from taskframe.worker import freshness
from taskframe.worker.client import ApiClient, ApiError, FailureStreak, Unavailable
from taskframe.worker.config import WorkerConfig
from taskframe.worker.jobs import RunningJob, describe
from taskframe.worker.outbox import Outbox, pair_answers
from taskframe.worker.pool import KILL_GRACE, ProcessSlot, ThreadSlot
from taskframe.worker.progress import ProgressSender

log = logging.getLogger("taskframe.worker")

#: Heartbeats go out at least this often (and at least three times per lease TTL).
MAX_HEARTBEAT_INTERVAL = 2.0
#: How often the heartbeat thread looks for leases while it has none.
IDLE_HEARTBEAT_CHECK = 0.25
#: While jobs run and slots are free, how long the queue may go unchecked.
BUSY_POLL = 0.2
#: How long a stopping worker keeps trying to report the last outcomes.
FLUSH_TIMEOUT = 5.0


class _LongPollInterrupted(BaseException):
    """Raised by a signal handler to abandon an idle long poll (not an Exception,
    so no library code on the way swallows it)."""


class Worker:
    """Leases jobs of the installed types and runs up to ``concurrency`` at once.

    ``run()`` blocks until ``stop()`` (thread-safe) has been called and the
    graceful shutdown is over. Its settings are a :class:`WorkerConfig`.
    """

    def __init__(
        self,
        config: WorkerConfig,
        plugins: PluginSet,
        *,
        client: ApiClient | None = None,
    ) -> None:
        self.config = config
        # ``client``: anything with ApiClient's methods (tests drive the loop with a fake).
        self.client = client or ApiClient(
            config.api_urls, token=config.token, ca_cert=config.ca_cert
        )
        self.plugins = plugins
        self.options = config.options
        self.worker_id = config.worker_id
        self.types = plugins.names()
        if config.job_types:  # --job-types: a worker dedicated to some types
            unknown = set(config.job_types) - set(self.types)
            if unknown:
                raise ValueError(f"--job-types: not installed here: {', '.join(sorted(unknown))}")
            self.types = sorted(config.job_types)
        #: --queues: lease only from these (None: every queue).
        self.queues = list(config.queues) if config.queues else None
        if not self.types:
            raise ValueError("no executor is installed: nothing to lease")
        self.concurrency = config.concurrency
        self.poll_interval = config.poll_interval
        self.heartbeat_interval = config.heartbeat_interval
        self.shutdown_grace = config.shutdown_grace
        info = {"host": socket.gethostname()[:200] or None, "slots": self.concurrency}
        self.outbox = Outbox(self.client, self.worker_id, self.types, info, self.queues)
        #: Jobs succeeded and failed, summed up at INFO every 10 s (each is a DEBUG line).
        #: Counted here rather than in ``execute``: with ``--pool process`` that runs
        #: in a child process.
        self.tally = Tally(log)
        #: Set once the worker's threads run (for embedders and tests).
        self.started = threading.Event()
        # An RLock: stop() may run in a signal handler on the thread holding it.
        self._cond = threading.Condition(threading.RLock())
        self._active: dict[str, RunningJob] = {}  # by lease id: leased, outcome not yet decided
        self._busy = 0  # job threads at work; a timed-out job holds its slot until it returns
        self._stopping = False
        self._idle_poll = False  # the main thread waits in a long poll with nothing running
        self._force = False
        self._lease_ttl: float | None = None
        self._max_result: int | None = None  # bytes of a result the server keeps
        self._jobs: queue.SimpleQueue[RunningJob | None] = queue.SimpleQueue()
        self._done = threading.Event()

    # -- control -----------------------------------------------------------

    def interrupt_idle_poll(self) -> None:
        """From a signal handler in the main thread: stop waiting in an idle long poll.

        Call after :meth:`stop`. Without it, an idle worker would exit only
        when its long poll ends (up to ``--poll-interval``).
        """
        if self._idle_poll and self._stopping:
            raise _LongPollInterrupted

    def stop(self) -> None:
        """Begin a graceful shutdown; a second call cuts the grace period short."""
        with self._cond:
            self._force = self._stopping
            self._stopping = True
            self._cond.notify_all()

    def run(self) -> None:
        """Lease and run jobs until stopped, then shut down gracefully."""
        urls, types = ",".join(self.client.urls), ",".join(self.types)
        log.info(
            "worker %s starting: urls=%s concurrency=%d pool=%s types=%s",
            *(self.worker_id, urls, self.concurrency, self.config.pool, types),
        )
        slots = self._start_slots()
        # Daemon threads: a job that ignores cancellation must not keep the process alive.
        runners = [
            threading.Thread(
                target=self._job_thread, args=(slot,), name=f"taskframe-job-{n}", daemon=True
            )
            for n, slot in enumerate(slots)
        ]
        heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="taskframe-heartbeat", daemon=True
        )
        for thread in [*runners, heartbeat]:
            thread.start()
        progress = ProgressSender(self.client, self.worker_id, self._running_jobs)
        progress.start()
        self.started.set()
        try:
            self._lease_loop()
            self._drain()
        finally:
            self._done.set()
            for _ in runners:
                self._jobs.put(None)
            if self.config.pool == "process":  # let the slots stop their children
                end = time.monotonic() + KILL_GRACE + 2.0
                for runner in runners:
                    runner.join(max(0.0, end - time.monotonic()))
            heartbeat.join(timeout=1.0)
            progress.stop()
            self.client.close()
            self.tally.flush()
            log.info("worker %s stopped", self.worker_id)

    # -- leasing -----------------------------------------------------------

    def _lease_loop(self) -> None:
        streak = FailureStreak("leasing jobs")
        queue_empty = False  # the last lease got fewer jobs than it asked for
        while True:
            with self._cond:
                self._expire()
                if self._stopping:
                    return
                free = min(self.concurrency - self._busy, MAX_LEASE_BATCH)
                running = self._busy > 0
                if not len(self.outbox) and (free <= 0 or (running and queue_empty)):
                    # Nothing to report and nothing worth asking: wait for a job to end.
                    self._cond.wait(self._wait_time(1.0 if free <= 0 else BUSY_POLL))
                    queue_empty = False
                    continue
            free = max(free, 0)
            wait = 0.0 if running else self.poll_interval
            sent = freshness.clock()
            try:
                answer = self._exchange(free, wait, idle=not running)
            except ApiError as exc:
                self._pause(streak.failure(exc), until_stop=True)
                continue
            except _LongPollInterrupted:
                # Stopping while idle: the connection is closed, so the server
                # leases nothing more to the abandoned request; ask under its
                # id for what it leased before it saw that, and give it back.
                self._start(self._reclaim())
                return
            elapsed = freshness.clock() - sent
            streak.success()
            self._note_limits(answer)
            jobs = answer.get("jobs") or []
            if not jobs and not running and answer.get("retry_after"):
                # The server has as many long-polls as it allows: ask again later.
                self._pause(float(answer["retry_after"]), until_stop=True)
            queue_empty = len(jobs) < free
            if jobs and self._lease_ttl:
                # A late answer's jobs may have been run elsewhere meanwhile: see freshness.py.
                delivery = freshness.Delivery.of(answer, elapsed, wait, self._lease_ttl)
                jobs = freshness.screen(jobs, delivery, self._send_heartbeats, self._release)
            self._start(jobs)

    def _exchange(self, free: int, wait: float, idle: bool) -> dict[str, Any]:
        """One /lease round trip; while it is an idle long poll, a signal may abandon it."""
        self._idle_poll = idle and wait > 0
        try:
            return self.outbox.exchange(free, wait)
        finally:
            self._idle_poll = False

    def _reclaim(self) -> list[dict[str, Any]]:
        """The jobs leased to an abandoned request, asked for again under its id."""
        try:
            return self.outbox.reclaim().get("jobs") or []
        except ApiError as exc:
            log.info("could not ask what the abandoned lease request got: %s", exc)
            return []

    def _start(self, jobs: list[dict[str, Any]]) -> None:
        """Hand leased jobs to the job threads; give back any this worker cannot run."""
        now = time.monotonic()
        give_back = []
        with self._cond:
            for job in jobs:
                executor = self.plugins.executors.get(job.get("type", ""))
                if self._stopping or executor is None or self._busy >= self.concurrency:
                    give_back.append(job)
                    continue
                timeout = job.get("timeout")
                running = RunningJob(job, executor, now + timeout if timeout else None)
                self._active[running.lease_id] = running
                self._busy += 1
                self._jobs.put(running)
        for job in give_back:
            log.info("giving job %s back unstarted", job.get("id"))
            if not self._release(job):
                break

    def _release(self, job: dict[str, Any]) -> bool:
        """Best-effort release; False when no server answered (do not try more now)."""
        try:
            self.client.release(job["id"], self.worker_id, job["lease_id"])
        except Unavailable as exc:
            log.warning("could not release job %s (its lease will expire): %s", job["id"], exc)
            return False
        except ApiError as exc:
            log.info("job %s was not released: %s", job["id"], exc)
        return True

    # -- running jobs ------------------------------------------------------

    def _start_slots(self) -> list[ThreadSlot] | list[ProcessSlot]:
        """One slot per job thread; with ``process``, their children started and ready."""
        if self.config.pool == "thread":
            return [ThreadSlot(self.options, self.plugins) for _ in range(self.concurrency)]
        settings = (self.options, self.config.log_level, self.config.log_format)
        slots = [ProcessSlot(*settings) for _ in range(self.concurrency)]
        for slot in slots:  # all at once: they load the plugins in parallel
            slot.start()
        if not all([slot.ready() for slot in slots]):
            for slot in slots:
                slot.close()
            raise RuntimeError("the job processes could not start (see the log above)")
        return slots

    def _job_thread(self, slot: ThreadSlot | ProcessSlot) -> None:
        try:
            while True:
                if not slot.ready():  # a replacement child failed to start: try again
                    if self._done.wait(1.0):
                        return
                    continue
                if (running := self._jobs.get()) is None:
                    return
                try:
                    outcome = slot.run(running)
                except BaseException as exc:  # a job thread must never die and lose its slot
                    outcome = (Outcome.FAILED.value, None, describe(exc), True)
                self._finish(running, *outcome)
        finally:
            slot.close()

    def _finish(
        self, running: RunningJob, status: str, result: Any, error: str | None, retryable: bool
    ) -> None:
        limit = self._max_result
        if status == Outcome.SUCCEEDED.value and limit and running.result_bytes > limit:
            # The server would fail it anyway; sending it would only cost the request.
            status, result, retryable = Outcome.FAILED.value, None, False
            error = (
                f"the result is {running.result_bytes} bytes, more than the server keeps "
                f"(--max-result {limit})"
            )
            log.warning("job %s: %s", running.job_id, error, extra=running.fields)
        with self._cond:
            self._busy -= 1
            if self._active.get(running.lease_id) is running:  # not timed out, lost or released
                del self._active[running.lease_id]
                if running.cancel_requested:
                    status, result, retryable = Outcome.CANCELLED.value, None, False
                    error = "cancelled on request" + (f" ({error})" if error else "")
                    log.info("job %s cancelled on request", running.job_id, extra=running.fields)
                completion = running.completion(status, result, error, retryable)
                self.outbox.add(completion, running.result_bytes if result is not None else 0)
                self.tally.add(f"jobs {status}")
            self._cond.notify_all()

    def _expire(self) -> None:
        """Report jobs past their deadline as failed now; their threads are told to stop."""
        now = time.monotonic()
        for running in list(self._active.values()):
            if running.deadline is not None and now >= running.deadline:
                del self._active[running.lease_id]
                running.cancel_event.set()
                error = f"timed out after {running.job['timeout']:g} s"
                log.info("job %s %s", running.job_id, error)
                self.outbox.add(running.completion(Outcome.FAILED.value, None, error, True))
                self.tally.add("jobs timed out")

    def _wait_time(self, cap: float) -> float:
        """``cap``, or less when a running job's deadline comes sooner."""
        deadlines = [r.deadline for r in self._active.values() if r.deadline is not None]
        if deadlines:
            cap = min(cap, max(0.0, min(deadlines) - time.monotonic()) + 0.001)
        return cap

    def _pause(self, seconds: float, *, until_stop: bool) -> None:
        """Back off for ``seconds`` while still enforcing deadlines."""
        end = time.monotonic() + seconds
        with self._cond:
            while (left := end - time.monotonic()) > 0 and not self._force:
                if until_stop and self._stopping:
                    return
                self._cond.wait(self._wait_time(left))
                self._expire()

    # -- heartbeats --------------------------------------------------------

    def _running_jobs(self) -> list[RunningJob]:
        with self._cond:
            return list(self._active.values())

    def _heartbeat_every(self) -> float:
        if self.heartbeat_interval:
            return float(self.heartbeat_interval)
        ttl = self._lease_ttl
        return min(MAX_HEARTBEAT_INTERVAL, ttl / 3) if ttl else MAX_HEARTBEAT_INTERVAL

    def _note_ttl(self, ttl: Any) -> None:
        if isinstance(ttl, int | float) and ttl > 0:
            self._lease_ttl = float(ttl)

    def _note_limits(self, answer: dict[str, Any]) -> None:
        """What the server announced: its lease TTL and the sizes it takes."""
        self._note_ttl(answer.get("lease_ttl"))
        max_result, max_body = answer.get("max_result"), answer.get("max_body")
        if isinstance(max_result, int) and max_result > 0:
            self._max_result = max_result
        if isinstance(max_body, int) and max_body > 0:
            self.outbox.max_body = max_body

    def _heartbeat_loop(self) -> None:
        streak = FailureStreak("heartbeats")
        delay = IDLE_HEARTBEAT_CHECK
        while not self._done.wait(delay):
            delay = self._heartbeat_every()
            with self._cond:
                active = list(self._active.values())
            leases = [{"job_id": r.job_id, "lease_id": r.lease_id} for r in active]
            # A finished job keeps its lease until its outcome is delivered, or a
            # slow delivery would let the server reap it and run it again.
            leases += self.outbox.leases()
            if not leases:  # look again soon: a new lease must not wait a whole interval
                delay = min(delay, IDLE_HEARTBEAT_CHECK)
                continue
            try:
                answers = self._send_heartbeats(leases)
            except ApiError as exc:
                delay = min(delay, streak.failure(exc))
                continue
            except Exception:  # keep heartbeating whatever happens
                if not self._done.is_set():  # (closing the sessions at exit may land here)
                    log.exception("heartbeat failed")
                continue
            streak.success()
            self._apply_heartbeats(leases, answers)

    def _send_heartbeats(self, leases: list[dict]) -> list[dict]:
        """``POST /heartbeats`` in requests within the server's limit; every answer."""
        answers: list[dict] = []
        for start in range(0, len(leases), MAX_HEARTBEATS):
            answer = self.client.heartbeats(self.worker_id, leases[start : start + MAX_HEARTBEATS])
            self._note_ttl(answer.get("lease_ttl"))
            answers += answer.get("leases") or []
        return answers

    def _apply_heartbeats(self, sent: list[dict], answers: list[dict]) -> None:
        with self._cond:
            for lease, answer in pair_answers(sent, answers):
                running = self._active.get(lease["lease_id"])
                if running is None:
                    continue  # settled meanwhile
                if not answer.get("ok"):
                    log.warning("lost the lease of job %s; stopping it unreported", lease["job_id"])
                    del self._active[running.lease_id]
                    running.cancel_event.set()
                elif answer.get("cancel_requested") and not running.cancel_requested:
                    log.info("job %s: cancel requested", lease["job_id"])
                    running.cancel_requested = True
                    running.cancel_event.set()
            self._cond.notify_all()

    # -- shutdown ----------------------------------------------------------

    def _drain(self) -> None:
        """Let running jobs finish within the grace period, reporting as they end."""
        grace = self.shutdown_grace
        grace_end = time.monotonic() + grace
        streak = FailureStreak("reporting outcomes")
        if self._active:
            log.info("stopping: up to %g s for %d running job(s)", grace, len(self._active))
        while True:
            with self._cond:
                self._expire()
                left = grace_end - time.monotonic()
                if not self._active or self._force or left <= 0:
                    break
                if not len(self.outbox):
                    self._cond.wait(self._wait_time(left))
                    continue
            try:
                self.outbox.exchange(0, 0.0)
                streak.success()
            except ApiError as exc:
                self._pause(min(streak.failure(exc), left), until_stop=False)
        with self._cond:
            unfinished = list(self._active.values())
            self._active.clear()
        for running in unfinished:
            running.cancel_event.set()
        for running in unfinished:
            log.warning("job %s did not finish in time; releasing it", running.job_id)
            if not self._release(running.job):
                break
        if not self.outbox.flush(FLUSH_TIMEOUT, streak):
            log.error(
                "%d outcome(s) unreported; they run again after their leases expire",
                len(self.outbox),
            )
