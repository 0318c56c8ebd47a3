"""Wake-ups for long-polls, and the housekeeper's alarm clock for jobs not yet due.

Waiters note the generation, check the database, then wait for a wake-up; a
change made meanwhile moves the generation, so they check again at once
instead of sleeping through it. Wake-ups are targeted: ``work_ready`` wakes as
many lease waiters (serving those job types) as there are new ready jobs, and
``jobs_finished`` only the clients waiting on those jobs. A change made by
another process, whose details we do not know, wakes every job waiter and one
lease waiter per set of job types; a waiter that then leases a full batch
passes the wake-up on (see the scheduler).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class ChangeNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        # Lease waiters by the job types they serve; dicts keep arrival order (FIFO).
        self._lease_waiters: dict[frozenset[str], dict[_Waiter, None]] = {}
        self._job_waiters: dict[int, dict[_Waiter, None]] = {}
        self._waiting = 0
        self.closed = False

    @property
    def generation(self) -> int:
        return self._generation

    # -- telling -------------------------------------------------------------

    def work_ready(self, counts: Mapping[str, int]) -> None:
        """``counts[type]`` jobs of that type became ready: wake that many lease waiters."""
        with self._lock:
            self._generation += 1
            for job_type, count in counts.items():
                for types in list(self._lease_waiters):
                    if count <= 0:
                        break
                    if job_type in types:
                        count -= self._wake(self._lease_waiters, types, count)

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
        group = registry[key]
        woken = 0
        while group and woken < count:
            waiter = next(iter(group))
            del group[waiter]
            waiter.event.set()
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

    def wait_for_work(self, types: Iterable[str], generation: int, timeout: float) -> bool:
        """Sleep until woken for work of one of ``types``, or ``timeout``; False on timeout."""
        return self._wait(self._lease_waiters, frozenset(types), generation, timeout)

    def wait_for_job(self, job_id: int, generation: int, timeout: float) -> bool:
        """Sleep until ``job_id`` may have finished, or ``timeout``; False on timeout."""
        return self._wait(self._job_waiters, job_id, generation, timeout)

    def _wait(self, registry: dict, key: object, generation: int, timeout: float) -> bool:
        waiter = _Waiter()
        with self._lock:
            if self._generation != generation or self.closed:
                return True  # something changed since the caller looked: look again
            registry.setdefault(key, {})[waiter] = None
        try:
            return waiter.event.wait(timeout)
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

    def __init__(self, limit: int) -> None:
        self.limit = limit
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
