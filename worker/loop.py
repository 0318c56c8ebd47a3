"""The worker loop: one event loop leases jobs into free slots, runs them, reports outcomes.

One asyncio loop owns the worker's state and its exchanges with the server.
Each ``POST /lease`` carries every pending outcome and asks for as many jobs
as there are free slots, so a worker never holds a job it cannot start
(priority stays strict across workers). While the queue has more it asks
without waiting; once it is empty, a long poll waits at the server for the
free slots, jobs running or not, so a job submitted meanwhile starts at once.
A job that ends while that poll is open is reported at once beside it, on a
connection of its own (leasing nothing). One heartbeat request renews every
lease held and carries the jobs' progress.

The lease requests go out one at a time from the loop itself, over a
keep-alive connection of :mod:`taskframe.worker.streams` (the transport's
URL failover and TLS; no thread to hand each exchange to and back): while
one is in flight, outcomes pile up and the next request carries them all.
Heartbeats go on a connection of their own, so a slow lease request never
delays them. Rare exchanges (releases, confirming a late lease, the last
flush) and routes through a proxy use the blocking transport on a thread,
as do clients without the loop's methods (tests' fakes). Synchronous executors run in
a pool of ``concurrency`` daemon threads (or, with ``--pool process``, in a
child process per slot); ``async def`` executors run on the loop itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from taskframe.core.limits import MAX_HEARTBEATS, MAX_LEASE_BATCH
from taskframe.core.logs import Tally
from taskframe.core.model import Reported
from taskframe.core.plugins import PluginSet
from taskframe.worker import freshness
from taskframe.worker.client import ApiClient, ApiError, FailureStreak, Unavailable
from taskframe.worker.config import WorkerConfig
from taskframe.worker.heartbeat import HeartbeatPlan, apply_answers
from taskframe.worker.jobs import JobEnd, RunningJob
from taskframe.worker.outbox import Outbox
from taskframe.worker.pool import KILL_GRACE
from taskframe.worker.runner import Runner, Slot, start_slots
from taskframe.worker.streams import REPORTS
from taskframe.worker.threads import DaemonThreads

log = logging.getLogger("taskframe.worker")

#: While jobs run and the server refuses more long polls (it has as many as it
#: allows), how long the queue may go unchecked.
BUSY_POLL = 0.2
#: How long a stopping worker keeps trying to report the last outcomes.
FLUSH_TIMEOUT = 5.0
#: How often an abandoned long poll is interrupted until it has ended.
INTERRUPT_AGAIN = 0.05


class Refused(Exception):
    """The server refuses the worker's token (401/403) before it ever leased: give up."""


class Worker:
    """Leases jobs of the installed types and runs up to ``concurrency`` at once.

    ``run()`` blocks until ``stop()`` (thread-safe, and safe in a signal
    handler) has been called and the graceful shutdown is over. Its settings
    are a :class:`WorkerConfig`.
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
        self.shutdown_grace = config.shutdown_grace
        info = {"host": socket.gethostname()[:200] or None, "slots": self.concurrency}
        self.outbox = Outbox(self.client, self.worker_id, self.types, info, self.queues)
        self.heartbeat = HeartbeatPlan(config.heartbeat_interval)
        #: Jobs succeeded and failed, summed up at INFO every 10 s (each is a DEBUG line).
        #: Counted here rather than in ``execute``: with ``--pool process`` that runs
        #: in a child process.
        self.tally = Tally(log)
        #: Set once the worker runs (for embedders and tests).
        self.started = threading.Event()
        self._stopping = False
        self._force = False
        self._leased_once = False  # a lease request went through: refusals are not at start
        self._max_result: int | None = None  # bytes of a result the server keeps
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakers: set[asyncio.Future[None]] = set()  # naps in progress
        self._active: dict[str, RunningJob] = {}  # by lease id: leased, outcome not yet decided
        self._busy = 0  # slots at work; a timed-out job holds its slot until it returns
        self._polling: asyncio.Future[Any] | None = None  # an idle long poll in flight

    # -- control -----------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    def running_count(self) -> int:
        """Jobs leased and not finished (for the stop message)."""
        return len(self._active)

    def interrupt_idle_poll(self) -> None:
        """Kept for embedders: :meth:`stop` abandons an idle long poll by itself."""

    def stop(self) -> None:
        """Begin a graceful shutdown; a second call cuts the grace period short."""
        loop = self._loop
        if loop is None:
            self._on_stop()
            return
        try:
            loop.call_soon_threadsafe(self._on_stop)
        except RuntimeError:  # the loop has ended: nothing left to stop
            pass

    def _on_stop(self) -> None:
        self._force = self._stopping
        self._stopping = True
        self._wake_up()
        if self._polling is not None and self._loop is not None:
            self._loop.create_task(self._abandon(self._polling))

    async def _abandon(self, poll: asyncio.Future[Any]) -> None:
        """End the idle long poll: its connection closed, the server leases nothing
        more to it. Again until it ends: the request may not have been sent yet."""
        interrupt = getattr(self.client, "interrupt", None)
        while interrupt is not None and not poll.done():
            interrupt()
            await asyncio.wait({poll}, timeout=INTERRUPT_AGAIN)

    def run(self) -> None:
        """Lease and run jobs until stopped, then shut down gracefully.

        Raises :class:`Refused` when the server refuses the token at start,
        RuntimeError when the process pool cannot start.
        """
        urls, types = ",".join(self.client.urls), ",".join(self.types)
        log.info(
            "worker %s starting: urls=%s concurrency=%d pool=%s types=%s",
            *(self.worker_id, urls, self.concurrency, self.config.pool, types),
        )
        slots = start_slots(self.config, self.plugins)
        try:
            asyncio.run(self._main(slots))
        finally:
            for slot in slots:
                slot.close()
            self.client.close()
            self.tally.flush()
            log.info("worker %s stopped", self.worker_id)

    async def _main(self, slots: list[Slot]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        # One thread for the blocking exchanges (and for every one with a client that
        # cannot use the loop's); heartbeats have their own thread and connection: an
        # outcome held up on the way must not hold up the heartbeats that keep its
        # lease alive.
        self._http = DaemonThreads(loop, 1, "taskframe-http")
        self._beats = DaemonThreads(loop, 1, "taskframe-heartbeat")
        self._reports = DaemonThreads(loop, 1, "taskframe-reports")
        client = self.client
        #: POST /lease and POST /heartbeats, awaited on the loop.
        self._lease_call: Callable[..., Awaitable[dict[str, Any]]]
        self._beat_call: Callable[..., Awaitable[dict[str, Any]]]
        #: POST /lease with outcomes only, beside a long poll in flight.
        self._report_call: Callable[..., Awaitable[dict[str, Any]]]
        if getattr(client, "streams_ok", False):
            self._lease_call, self._beat_call = client.alease, client.aheartbeats
            self._report_call = partial(client.alease, channel=REPORTS)
        else:
            self._lease_call = partial(self._http.call, client.lease)
            self._beat_call = partial(self._beats.call, client.heartbeats)
            self._report_call = partial(self._reports.call, client.lease)
        self._runner = Runner(self.config, self.plugins, slots, loop, self._finish)
        heartbeats = loop.create_task(self._heartbeat_loop())
        self.started.set()
        try:
            await self._lease_loop()
            await self._drain()
        finally:
            heartbeats.cancel()
            self._runner.close()
            if self.config.pool == "process":  # let the slots' jobs end (killed if need be)
                end = time.monotonic() + KILL_GRACE + 2.0
                while self._busy and time.monotonic() < end:
                    await self._nap(0.05)
            for threads in (self._http, self._beats, self._reports):
                threads.close()
            self.client.close()  # while the loop runs: it closes the loop's connections

    def _wake_up(self) -> None:
        for waker in self._wakers:
            if not waker.done():
                waker.set_result(None)

    async def _nap(self, timeout: float) -> None:
        """Wait until something changes (a job ends, a stop, a cancel) or ``timeout``.

        Callers check their conditions just before, with no ``await`` between:
        nothing can change unseen in between. (A future and a timer: cheaper than
        ``wait_for`` on an event, which makes a task per nap.)
        """
        assert self._loop is not None
        waker = self._loop.create_future()
        timer = self._loop.call_later(timeout, _settle, waker)
        self._wakers.add(waker)
        try:
            await waker
        finally:
            timer.cancel()
            self._wakers.discard(waker)

    # -- leasing -----------------------------------------------------------

    async def _lease_loop(self) -> None:
        streak = FailureStreak("leasing jobs")
        queue_empty = False  # the last lease got fewer jobs than it asked for
        no_poll_until = 0.0  # the server had too many long polls: jobs running poll locally
        while True:
            self._expire()
            if self._stopping:
                return
            free = min(self.concurrency - self._busy, MAX_LEASE_BATCH)
            running = self._busy > 0
            pending = len(self.outbox)
            polls_refused = time.monotonic() < no_poll_until
            if not pending and (free <= 0 or (running and queue_empty and polls_refused)):
                # Nothing to report and nothing worth asking: wait for a job to end.
                await self._nap(self._wait_time(1.0 if free <= 0 else BUSY_POLL))
                queue_empty = False
                continue
            free = max(free, 0)
            # A long poll when idle, and while jobs run once the queue is empty (their
            # outcomes then go out beside it); without waiting while there is more.
            wait = self.poll_interval if not running or (queue_empty and not pending) else 0.0
            sent = freshness.clock()
            exchange = self.outbox.aexchange(self._lease_call, free, wait, self._isolate)
            try:
                if wait > 0:  # a task: stop() may abandon it
                    self._polling = asyncio.ensure_future(exchange)
                    if running:
                        await self._report_beside(self._polling)
                    answer = await self._polling
                else:
                    answer = await exchange
            except ApiError as exc:
                if self._stopping and isinstance(exc, Unavailable) and wait > 0:
                    # Abandoned by stop(): ask under its id for what it leased before the
                    # server saw the connection close, and give that back.
                    await self._start(await self._http.call(self._reclaim))
                    return
                self._refused_at_start(exc)
                await self._pause(streak.failure(exc), until_stop=True)
                continue
            finally:
                self._polling = None
            elapsed = freshness.clock() - sent
            self._leased_once = True
            streak.success()
            self._note_limits(answer)
            jobs = answer.get("jobs") or []
            if not jobs and answer.get("retry_after"):
                # The server has as many long polls as it allows: ask again later.
                if running:
                    no_poll_until = time.monotonic() + float(answer["retry_after"])
                else:
                    await self._pause(float(answer["retry_after"]), until_stop=True)
            queue_empty = len(jobs) < free
            ttl = self.heartbeat.lease_ttl
            if jobs and ttl:
                # A late answer's jobs may have been run elsewhere meanwhile: see freshness.py.
                delivery = freshness.Delivery.of(answer, elapsed, wait, ttl)
                if any(delivery.verdict(job) is not freshness.Verdict.START for job in jobs):
                    jobs = await self._http.call(
                        freshness.screen, jobs, delivery, self._send_heartbeats, self._release
                    )
            await self._start(jobs)

    async def _report_beside(self, poll: asyncio.Future[Any]) -> None:
        """Until ``poll`` (a long poll sent while jobs run) is answered: report each job
        that ends at once, leasing nothing, on a connection of its own."""
        poll.add_done_callback(lambda _: self._wake_up())
        streak = FailureStreak("reporting outcomes")
        while not poll.done():
            self._expire()
            if not len(self.outbox) or self._stopping:
                await self._nap(self._wait_time(1.0))
                continue
            try:
                await self.outbox.areport(self._report_call, self._isolate)
                streak.success()
            except ApiError as exc:
                await self._nap(self._wait_time(streak.failure(exc)))

    async def _isolate(self, sent: list[dict[str, Any]]) -> None:
        await self._http.call(self.outbox.isolate, sent)

    def _refused_at_start(self, exc: ApiError) -> None:
        """A 401 or 403 before any lease went through: the token will not do."""
        status = getattr(exc, "status", None)
        if status in (401, 403) and not self._leased_once:
            raise Refused(str(exc))

    def _reclaim(self) -> list[dict[str, Any]]:
        """The jobs leased to an abandoned request, asked for again under its id."""
        try:
            return self.outbox.reclaim().get("jobs") or []
        except ApiError as exc:
            log.info("could not ask what the abandoned lease request got: %s", exc)
            return []

    async def _start(self, jobs: list[dict[str, Any]]) -> None:
        """Start leased jobs in free slots; give back any this worker cannot run."""
        now = time.monotonic()
        give_back = []
        for job in jobs:
            executor = self.plugins.executors.get(job.get("type", ""))
            if self._stopping or executor is None or self._busy >= self.concurrency:
                give_back.append(job)
                continue
            timeout = job.get("timeout")
            running = RunningJob(job, executor, now + timeout if timeout else None)
            running.live_log = self.heartbeat.live_log
            self._active[running.lease_id] = running
            self._busy += 1
            self._runner.launch(running)
        if give_back:
            await self._http.call(self._give_back, give_back)

    def _give_back(self, jobs: list[dict[str, Any]]) -> None:
        for job in jobs:
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

    def _finish(self, running: RunningJob, end: JobEnd) -> None:
        limit = self._max_result
        if end.status == Reported.SUCCEEDED and limit and running.result_bytes > limit:
            # The server would fail it anyway; sending it would only cost the request.
            error = (
                f"the result is {running.result_bytes} bytes, more than the server keeps "
                f"(--max-result {limit})"
            )
            end = JobEnd.failure(error, retryable=False)
            log.warning("job %s: %s", running.job_id, error, extra=running.fields)
        self._busy -= 1
        if self._active.get(running.lease_id) is running:  # not timed out, lost or released
            del self._active[running.lease_id]
            if running.cancel_requested:
                error = "cancelled on request" + (f" ({end.error})" if end.error else "")
                end = JobEnd(Reported.CANCELLED, None, error, False)
                log.info("job %s cancelled on request", running.job_id, extra=running.fields)
            completion = running.completion(end)
            self.outbox.add(completion, running.result_bytes if end.result is not None else 0)
            self.tally.add(f"jobs {end.status.value}")
        self._wake_up()

    def _expire(self) -> None:
        """Report jobs past their deadline as failed now; they are told to stop."""
        now = time.monotonic()
        for running in list(self._active.values()):
            if running.deadline is not None and now >= running.deadline:
                del self._active[running.lease_id]
                running.cancel()
                error = f"timed out after {running.job['timeout']:g} s"
                log.info("job %s %s", running.job_id, error)
                self.outbox.add(running.completion(JobEnd.failure(error, retryable=True)))
                self.tally.add("jobs timed out")

    def _wait_time(self, cap: float) -> float:
        """``cap``, or less when a running job's deadline comes sooner."""
        deadlines = [r.deadline for r in self._active.values() if r.deadline is not None]
        if deadlines:
            cap = min(cap, max(0.0, min(deadlines) - time.monotonic()) + 0.001)
        return cap

    async def _pause(self, seconds: float, *, until_stop: bool) -> None:
        """Back off for ``seconds`` while still enforcing deadlines."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not self._force:
            if until_stop and self._stopping:
                return
            await self._nap(self._wait_time(left))
            self._expire()

    def _note_limits(self, answer: dict[str, Any]) -> None:
        """What the server announced: its lease TTL and the sizes it takes."""
        self.heartbeat.note(answer)
        max_result, max_body = answer.get("max_result"), answer.get("max_body")
        if isinstance(max_result, int) and max_result > 0:
            self._max_result = max_result
        if isinstance(max_body, int) and max_body > 0:
            self.outbox.max_body = max_body

    # -- heartbeats --------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Renew every lease held (finished jobs' too, until their outcome is
        delivered, or a slow delivery would let the server reap them and run them
        again); in between, send the jobs' progress as soon as it changes."""
        streak = FailureStreak("heartbeats")
        while True:
            await asyncio.sleep(self.heartbeat.tick())
            try:
                await self._heartbeat(streak)
            except Exception:  # keep heartbeating whatever happens: leases depend on it
                log.exception("heartbeat failed")

    async def _heartbeat(self, streak: FailureStreak) -> None:
        plan, now = self.heartbeat, time.monotonic()
        items = plan.items(list(self._active.values()), self.outbox.leases(), now)
        if not items:
            return
        try:
            answers = await self._asend_heartbeats(items)
        except ApiError as exc:
            plan.failed(now, streak.failure(exc))
            return
        streak.success()
        apply_answers(self._active, items, answers)
        self._wake_up()

    def _send_heartbeats(self, leases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /heartbeats`` in requests within the server's limit; every answer."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(leases), MAX_HEARTBEATS):
            answer = self.client.heartbeats(self.worker_id, leases[start : start + MAX_HEARTBEATS])
            answers += self._heard(answer)
        return answers

    async def _asend_heartbeats(self, leases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`_send_heartbeats` on the loop."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(leases), MAX_HEARTBEATS):
            answer = await self._beat_call(self.worker_id, leases[start : start + MAX_HEARTBEATS])
            answers += self._heard(answer)
        return answers

    def _heard(self, answer: dict[str, Any]) -> list[dict[str, Any]]:
        self.heartbeat.note(answer)
        return answer.get("leases") or []

    # -- shutdown ----------------------------------------------------------

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, reporting as they end."""
        grace = self.shutdown_grace
        grace_end = time.monotonic() + grace
        streak = FailureStreak("reporting outcomes")
        if self._active:
            log.info("stopping: up to %g s for %d running job(s)", grace, len(self._active))
        while True:
            self._expire()
            left = grace_end - time.monotonic()
            if not self._active or self._force or left <= 0:
                break
            if not len(self.outbox):
                await self._nap(self._wait_time(left))
                continue
            try:
                await self.outbox.aexchange(self._lease_call, 0, 0.0, self._isolate)
                streak.success()
            except ApiError as exc:
                await self._pause(min(streak.failure(exc), left), until_stop=False)
        unfinished = list(self._active.values())
        self._active.clear()
        for running in unfinished:
            running.cancel()
            if self._force:  # asked for: an expected ending
                log.info("job %s released: the worker was told to stop now", running.job_id)
            else:
                log.warning("job %s did not finish in time; releasing it", running.job_id)
        await self._http.call(self._give_up, [running.job for running in unfinished], streak)

    def _give_up(self, jobs: list[dict[str, Any]], streak: FailureStreak) -> None:
        """In the request thread: release the unfinished jobs, report the last outcomes."""
        for job in jobs:
            if not self._release(job):
                break
        if not self.outbox.flush(FLUSH_TIMEOUT, streak):
            log.error(
                "%d outcome(s) unreported; they run again after their leases expire",
                len(self.outbox),
            )


def _settle(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)
