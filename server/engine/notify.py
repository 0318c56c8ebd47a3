"""Wake-ups for long-polls, and the housekeeper's alarm clock for jobs not yet due.

A waiter registers before it looks at the database, looks, then sleeps until
woken: a change committed while it looked wakes it (it looks again), and no
other change does. Wake-ups are targeted: ``work_ready`` wakes as many lease
waiters (serving that job type in that queue) as there are new ready jobs, and
``jobs_finished`` only the clients waiting on those jobs, handing them the job
as committed (they answer without reading it again). A change made by
another process, whose details we do not know, wakes every job waiter and one
lease waiter per kind (set of types and queues). A lease waiter that leaves
with a wake-up it did not use (it came while its lease ran), or with a full
batch after a wake-up (there may be more), passes one wake-up on.

A lease waiter may say how to tell that its client has gone (``gone``: the
connection was closed): such a waiter stops waiting within
:data:`GONE_CHECK` seconds, and a wake-up never counts it as woken, so the
work goes to a live waiter instead of an answer nobody reads.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

#: How often a waiting request looks whether its client has gone.
GONE_CHECK = 0.5
#: The queues a lease waiter serves: a set of names, or None for every queue.
Queues = frozenset[str] | None
#: What lease waiters are grouped by: the job types and the queues they serve.
LeaseKey = tuple[frozenset[str], Queues]
#: ``work_ready`` counts: ready jobs by (type, queue); a None queue matches every waiter.
WorkKey = tuple[str, str | None]
#: Waiters by what they wait for (a LeaseKey, or a job id); dicts keep arrival order (FIFO).
Registry = dict[Hashable, dict["Waiter", None]]


class Waiter:
    """One waiting request, registered under ``key`` while it waits and while it looks."""

    __slots__ = (
        "_notifier",
        "_registry",
        "key",
        "event",
        "gone",
        "unused",
        "woken",
        "cause",
        "finished",
    )

    def __init__(
        self,
        notifier: ChangeNotifier,
        registry: Registry,
        key: Hashable,
        gone: Callable[[], bool] | None = None,
    ) -> None:
        self._notifier = notifier
        self._registry = registry
        self.key = key
        self.event = threading.Event()
        self.gone = gone
        #: A counted wake-up came since the waiter last looked (it has not acted on it).
        self.unused = False
        #: It was woken (counted) at least once.
        self.woken = False
        #: What the last counted wake-up was for (None: a change of unknown size elsewhere).
        self.cause: WorkKey | None = None
        #: A job waiter's job as the commit that finished it left it (None: read it).
        self.finished: Mapping[str, Any] | None = None

    def wait(self, timeout: float) -> bool:
        """Sleep until woken, or ``timeout``, or the client has gone; False unless woken.
        Woken, the waiter is registered again before the caller looks."""
        gone = self.gone
        if gone is None:
            woken = self.event.wait(timeout)
        else:
            deadline = time.monotonic() + timeout
            woken = False
            while (left := deadline - time.monotonic()) > 0:
                if self.event.wait(min(left, GONE_CHECK)):
                    woken = not gone()
                    break
                if gone():
                    break
        if woken:
            self._notifier._arm(self)
        return woken


class ChangeNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lease_waiters: Registry = {}
        self._job_waiters: Registry = {}
        self._waiting = 0
        self.closed = False

    # -- telling -------------------------------------------------------------

    def work_ready(self, counts: Mapping[WorkKey, int]) -> None:
        """``counts[type, queue]`` jobs became ready there: wake that many lease waiters
        that serve them (a None queue: any queue)."""
        if not self._lease_waiters:
            return  # nobody waits (read without the lock: a waiter registers, then looks)
        with self._lock:
            for work, count in counts.items():
                job_type, queue = work
                for key in list(self._lease_waiters):
                    if count <= 0:
                        break
                    if _serves(key, job_type, queue):
                        count -= self._wake(self._lease_waiters, key, count, work)

    def jobs_finished(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Wake the clients waiting on these jobs (rows as committed), handing each its job."""
        if not self._job_waiters:
            return
        with self._lock:
            for row in rows:
                group = self._job_waiters.get(row["id"])
                if group is not None:
                    for waiter in group:
                        waiter.finished = row
                    self._wake(self._job_waiters, row["id"], len(group))

    def changed(self) -> None:
        """Something changed (in another process): wake the job waiters, one lease waiter a kind."""
        with self._lock:
            for job_id in list(self._job_waiters):
                self._wake(self._job_waiters, job_id, len(self._job_waiters[job_id]))
            for key in list(self._lease_waiters):
                self._wake(self._lease_waiters, key, 1)

    notify = changed

    def close(self) -> None:
        """Server shutdown: wake every waiter now and make later waits return at once."""
        with self._lock:
            self.closed = True
            for registry in (self._lease_waiters, self._job_waiters):
                for key in list(registry):
                    self._wake(registry, key, len(registry[key]))

    def _wake(
        self, registry: Registry, key: Hashable, count: int, cause: WorkKey | None = None
    ) -> int:
        """Wake up to ``count`` waiters of ``key``, oldest first; those whose client
        has gone are woken too (to leave) but not counted."""
        group = registry[key]
        woken = 0
        while group and woken < count:
            waiter = next(iter(group))
            del group[waiter]
            if waiter.gone is None or not waiter.gone():
                woken += 1
                waiter.unused = waiter.woken = True
                waiter.cause = cause
            waiter.event.set()
        if not group:
            del registry[key]
        return woken

    # -- waiting -------------------------------------------------------------

    def has_waiters(self) -> bool:
        return self._waiting > 0

    def lease_waiters(self) -> int:
        """Lease long-polls registered now (asleep, or looking after a wake-up)."""
        with self._lock:
            return sum(len(group) for group in self._lease_waiters.values())

    @contextmanager
    def waiting_for_work(
        self,
        types: Iterable[str],
        queues: Iterable[str] | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> Iterator[Waiter]:
        """A lease waiter for work of ``types`` in ``queues`` (None: any), registered for
        the block: look for work in it, then :meth:`Waiter.wait`. Leaving, it passes on
        a wake-up it did not use, or one after which it leased a full batch (``full``)."""
        key = (frozenset(types), None if queues is None else frozenset(queues))
        waiter = Waiter(self, self._lease_waiters, key, gone)
        with self._registered(waiter):
            yield waiter

    def pass_on(self, waiter: Waiter, full: bool) -> None:
        """After a lease waiter left (``full``: it leased a full batch): hand a wake-up it
        did not use, or one that may stand for more work, to the next waiter."""
        if not (waiter.unused or (waiter.woken and full)) or self.closed:
            return
        if waiter.cause is not None:
            self.work_ready({waiter.cause: 1})
        else:  # a change of unknown size elsewhere: the next waiter of the same kind looks
            with self._lock:
                if waiter.key in self._lease_waiters:
                    self._wake(self._lease_waiters, waiter.key, 1)

    @contextmanager
    def waiting_for_job(self, job_id: int) -> Iterator[Waiter]:
        """A waiter on ``job_id``, registered for the block: read the job in it, then
        :meth:`Waiter.wait` until it may have finished."""
        waiter = Waiter(self, self._job_waiters, job_id)
        with self._registered(waiter):
            yield waiter

    @contextmanager
    def _registered(self, waiter: Waiter) -> Iterator[None]:
        """Count a waiter (so cross-process watchers poll fast) and register it."""
        with self._lock:
            self._waiting += 1
        self._arm(waiter)
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1
                group = waiter._registry.get(waiter.key)
                if group is not None and waiter in group:
                    del group[waiter]
                    if not group:
                        del waiter._registry[waiter.key]

    def _arm(self, waiter: Waiter) -> None:
        """(Re-)register ``waiter`` before it looks; once closed, it is woken at once."""
        with self._lock:
            waiter.unused = False
            if self.closed:
                waiter.event.set()
                return
            waiter.event.clear()
            waiter._registry.setdefault(waiter.key, {})[waiter] = None


def _serves(key: Hashable, job_type: str, queue: str | None) -> bool:
    types, queues = cast(LeaseKey, key)
    return job_type in types and (queues is None or queue is None or queue in queues)


class WaitSlots:
    """At most ``limit`` requests may long-poll at once; the rest answer at once.

    Each waiting request holds a server thread: past the cap, waiting would
    starve every other request.
    """

    def __init__(
        self, limit: int, busy_retry_after: float = 5.0, rng: random.Random | None = None
    ) -> None:
        self.limit = limit
        self.busy_retry_after = busy_retry_after
        self._rng = rng or random.Random()
        self._free = threading.BoundedSemaphore(limit) if limit > 0 else None

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """True when the caller may wait (a slot is held for the block)."""
        if self._free is None or not self._free.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            self._free.release()

    def retry_after(self) -> int:
        """Whole seconds (as Retry-After wants) a request refused a wait should pause, jittered."""
        return max(1, round(self.busy_retry_after * self._rng.uniform(0.5, 1.5)))


class DueTimer:
    """When the housekeeper should next promote scheduled jobs.

    It sleeps until the earliest known ``run_at``; a job submitted (or a retry
    scheduled) for an earlier time moves the alarm forward at once.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._condition = threading.Condition()
        self._alarm = float("inf")
        self._stopped = False

    def note(self, run_at: float) -> None:
        with self._condition:
            if run_at < self._alarm:
                self._alarm = run_at
                self._condition.notify_all()

    def sleep_until(self, alarm: float) -> None:
        """Sleep until ``alarm`` (clock time) or an earlier :meth:`note`, or :meth:`stop`."""
        with self._condition:
            # A note made since the last wake-up (while promoting) still counts.
            self._alarm = min(self._alarm, alarm)
            while not self._stopped:
                left = self._alarm - self.clock()
                if left <= 0:
                    break
                self._condition.wait(left)
            self._alarm = float("inf")

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
