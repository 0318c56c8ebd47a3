"""Leasing with a wait: the long-poll a worker's lease request may hold.

It leases through :class:`~taskframe.server.engine.attempts.Attempts` (the SQL), waits
for a wake-up (:mod:`.notify`) while nothing is ready, and refuses the wait past
the cap of waiting requests (``--max-waiting``). A client that hung up gets
nothing leased; jobs leased for an answer it can no longer read go back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from taskframe.core.errors import JobConflict, JobNotFound
from taskframe.server.engine.attempts import Attempts
from taskframe.server.engine.notify import ChangeNotifier, WaitSlots
from taskframe.server.storage import JobRow

log = logging.getLogger("taskframe.server")


class Leasing:
    def __init__(self, attempts: Attempts, notifier: ChangeNotifier, wait_slots: WaitSlots) -> None:
        self.attempts = attempts
        self.notifier = notifier
        self.wait_slots = wait_slots

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
    ) -> list[JobRow]:
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
    ) -> tuple[list[JobRow], bool]:
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
            replay = self.attempts.replay(worker_id, request_id)
            if replay:
                return replay, False
        types = list(types)
        if limit <= 0 or not types:
            return [], False
        if queues is not None and not queues:
            return [], False
        if wait <= 0 or self.notifier.closed:
            return self.attempts.lease_now(worker_id, types, limit, request_id, queues), False
        with self.wait_slots.slot() as may_wait:
            if not may_wait:
                jobs = self.attempts.lease_now(worker_id, types, limit, request_id, queues)
                return jobs, not jobs
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
    ) -> list[JobRow]:
        """Lease once, then once per wake-up for work this request serves.

        The waiter is registered before the first look, so that a job made ready
        meanwhile wakes it. A look not prompted by a wake-up (the first, the last at
        the end of the wait) reads before it writes: a worker back for more usually
        finds nothing, and a read takes no write lock."""
        deadline = time.monotonic() + wait
        jobs: list[JobRow] = []
        woken = hung_up = False
        with self.notifier.waiting_for_work(types, queues, gone) as waiter:
            while True:
                if gone is not None and gone():
                    hung_up = True  # nobody would read the answer: lease nothing
                    break
                look = self.attempts.lease_now if woken else self.attempts.lease_if_ready
                jobs = look(worker_id, types, limit, request_id, queues)
                if jobs or deadline - time.monotonic() <= 0 or self.notifier.closed:
                    break
                woken = waiter.wait(deadline - time.monotonic())
        # A wake-up this request had and will not use goes to the next waiter.
        self.notifier.pass_on(waiter, full=hung_up or len(jobs) == limit)
        return jobs

    def release_undelivered(self, worker_id: str, rows: list[JobRow]) -> int:
        """Give back jobs leased for an answer that cannot be delivered (the worker hung
        up while its request waited): not counted as attempts. Returns how many."""
        released = 0
        for row in rows:
            try:
                self.attempts.release(row["id"], worker_id, row["lease_id"] or "")
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
