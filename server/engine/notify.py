"""Wake-ups for long-polls, and the housekeeper's alarm clock for jobs not yet due.

Waiters note the generation, check the database, then wait for a wake-up; a
change made meanwhile moves the generation, so they check again at once
instead of sleeping through it. Wake-ups are targeted: ``work_ready`` wakes as
many lease waiters (serving that job type in that queue) as there are new
ready jobs, and ``jobs_finished`` only the clients waiting on those jobs. A
change made by another process, whose details we do not know, wakes every job
waiter and one lease waiter per kind (set of types and queues); a waiter that
then leases a full batch passes the wake-up on (see server/engine/leasing.py).

A lease waiter may say how to tell that its client has gone (``gone``: the
connection was closed): such a waiter stops waiting within
:data:`GONE_CHECK` seconds, and a wake-up never counts it as woken, so the
work goes to a live waiter instead of an answer nobody reads.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: How often a waiting request looks whether its client has gone.
GONE_CHECK = 0.5
#: The queues a lease waiter serves: a set of names, or None for every queue.
Queues = frozenset[str] | None
#: What lease waiters are grouped by: the job types and the queues they serve.
LeaseKey = tuple[frozenset[str], Queues]
#: ``work_ready`` counts: ready jobs by (type, queue); a None queue matches every waiter.
WorkKey = tuple[str, str | None]


class _Waiter:
    __slots__ = ("event", "gone")

    def __init__(self, gone: Callable[[], bool] | None = None) -> None:
        self.event = threading.Event()
        self.gone = gone


def _serves(key: LeaseKey, job_type: str, queue: str | None) -> bool:
    types, queues = key
    return job_type in types and (queues is None or queue is None or queue in queues)


class ChangeNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        # Lease waiters by the job types and queues they serve; dicts keep arrival order (FIFO).
        self._lease_waiters: dict[LeaseKey, dict[_Waiter, None]] = {}
        self._job_waiters: dict[int, dict[_Waiter, None]] = {}
        self._waiting = 0
        self.closed = False

    @property
    def generation(self) -> int:
        return self._generation

    # -- telling -------------------------------------------------------------

    def work_ready(self, counts: Mapping[WorkKey, int]) -> None:
        """``counts[type, queue]`` jobs became ready there: wake that many lease waiters
        that serve them (a None queue: any queue)."""
        with self._lock:
            self._generation += 1
            for (job_type, queue), count in counts.items():
                for key in list(self._lease_waiters):
                    if count <= 0:
                        break
                    if _serves(key, job_type, queue):
                        count -= self._wake(self._lease_waiters, key, count)

    def jobs_finished(self, job_ids: Iterable[int]) -> None:
        """Wake the clients waiting on these jobs."""
        with self._lock:
            self._generation += 1
            for job_id in job_ids:
                if job_id in self._job_waiters:
                    self._wake(self._job_waiters, job_id, len(self._job_waiters[job_id]))

    def changed(self) -> None:
        """Something changed (in another process): wake the job waiters, one lease waiter a kind."""
        with self._lock:
            self._generation += 1
            for job_id in list(self._job_waiters):
                self._wake(self._job_waiters, job_id, len(self._job_waiters[job_id]))
            for types in list(self._lease_waiters):
                self._wake(self._lease_waiters, types, 1)

    notify = changed

    def close(self) -> None:
        """Server shutdown: wake every waiter now and make later waits return at once."""
        with self._lock:
            self.closed = True
            self._generation += 1
            registries: tuple[dict[Any, dict[_Waiter, None]], ...] = (
                self._lease_waiters,
                self._job_waiters,
            )
            for registry in registries:
                for key in list(registry):
                    self._wake(registry, key, len(registry[key]))

    def _wake(self, registry: dict[Any, dict[_Waiter, None]], key: Any, count: int) -> int:
        """Wake up to ``count`` waiters of ``key``, oldest first; those whose client
        has gone are woken too (to leave) but not counted."""
        group = registry[key]
        woken = 0
        while group and woken < count:
            waiter = next(iter(group))
            del group[waiter]
            waiter.event.set()
            if waiter.gone is None or not waiter.gone():
                woken += 1
        if not group:
            del registry[key]
        return woken

    # -- waiting -------------------------------------------------------------

    def has_waiters(self) -> bool:
        return self._waiting > 0

    def lease_waiters(self) -> int:
        """Lease long-polls asleep now (not counting those woken and not yet back)."""
        with self._lock:
            return sum(len(group) for group in self._lease_waiters.values())

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Count a waiter (so cross-process watchers poll fast) for the block's duration."""
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    def wait_for_work(
        self,
        types: Iterable[str],
        generation: int,
        timeout: float,
        queues: Iterable[str] | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> bool:
        """Sleep until woken for work of one of ``types`` in one of ``queues`` (None:
        any), or ``timeout``, or the client has ``gone``; False unless woken."""
        key = (frozenset(types), None if queues is None else frozenset(queues))
        return self._wait(self._lease_waiters, key, generation, timeout, gone)

    def wait_for_job(self, job_id: int, generation: int, timeout: float) -> bool:
        """Sleep until ``job_id`` may have finished, or ``timeout``; False on timeout."""
        return self._wait(self._job_waiters, job_id, generation, timeout)

    def _wait(
        self,
        registry: dict[Any, dict[_Waiter, None]],
        key: object,
        generation: int,
        timeout: float,
        gone: Callable[[], bool] | None = None,
    ) -> bool:
        waiter = _Waiter(gone)
        with self._lock:
            if self._generation != generation or self.closed:
                return True  # something changed since the caller looked: look again
            registry.setdefault(key, {})[waiter] = None
        try:
            if gone is None:
                return waiter.event.wait(timeout)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if waiter.event.wait(min(left, GONE_CHECK)):
                    return not gone()
                if gone():
                    return False
            return False
        finally:
            with self._lock:
                group = registry.get(key)
                if group is not None and waiter in group:
                    del group[waiter]
                    if not group:
                        del registry[key]


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
