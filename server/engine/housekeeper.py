"""Background housekeeping of a server process: reaping, pruning, promoting, change watching."""

from __future__ import annotations

import logging
import threading
import time

from taskframe.server.engine.schedules import Schedules
from taskframe.server.engine.upkeep import Upkeep
from taskframe.server.engine.wakeups import Wakeups
from taskframe.server.observe import rollup
from taskframe.server.storage import StoreUnavailable, counts
from taskframe.server.storage.counts import DatabaseState

log = logging.getLogger("taskframe.server")
PRUNE_EVERY = 60.0
#: Reap intervals without reaching the database that count as an outage.
OUTAGE_AFTER = 5
#: Shortest sleep of the promoter between two rounds.
MIN_PROMOTE_SLEEP = 0.005


class Housekeeper:
    """Runs the reaper every ``reap_interval``, the pruner every minute, the charts'
    rollup every 10 s (server/observe/rollup.py), and the promoter whenever a scheduled job
    becomes due.

    Every server process runs one; the fenced queries make that safe.
    """

    def __init__(
        self, upkeep: Upkeep, schedules: Schedules, wakeups: Wakeups, database: DatabaseState
    ) -> None:
        self.upkeep = upkeep
        self.schedules = schedules
        self.wakeups = wakeups
        #: Recorded at every reap (anonymous /health answers from it).
        self.database = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="housekeeper", daemon=True)
        self._promoter = threading.Thread(target=self._promote, name="promoter", daemon=True)
        self._cascader = threading.Thread(target=self._cascade, name="cascader", daemon=True)

    def start(self) -> None:
        notifier = self.wakeups.notifier
        self.upkeep.store.watch_changes(notifier.changed, notifier.has_waiters)
        self._thread.start()
        self._promoter.start()
        self._cascader.start()

    def stop(self) -> None:
        self._stop.set()
        self.wakeups.due_timer.stop()
        self.wakeups.cascade_wanted.set()
        self._thread.join(timeout=5)
        self._promoter.join(timeout=5)
        self._cascader.join(timeout=5)

    def _promote(self) -> None:
        """Promote due jobs and fire due schedules, then sleep until the next is due.

        A job scheduled here for sooner moves the alarm forward (the wake-ups
        note it); jobs other servers schedule are seen within a reap interval.
        """
        upkeep = self.upkeep
        interval = upkeep.config.reap_interval
        while not self._stop.is_set():
            alarm = upkeep.clock() + interval
            try:
                promoted = upkeep.promote()
                if promoted:
                    log.debug("promoted %d scheduled job(s)", promoted)
                fired = self.schedules.fire()
                if fired:
                    log.debug("fired %d scheduled job(s)", fired)
                due = min(
                    (t for t in (upkeep.next_due(), self.schedules.next_due()) if t is not None),
                    default=None,
                )
                if due is not None:
                    # A due job left (locked by another server's promoter): not a busy loop.
                    alarm = min(alarm, max(due, upkeep.clock() + MIN_PROMOTE_SLEEP))
            except StoreUnavailable as exc:
                log.warning("promoting skipped: %s", exc)
            except Exception:
                log.exception("promoting failed; will try again")
            self.wakeups.due_timer.sleep_until(alarm)

    def _cascade(self) -> None:
        """Resolve the dependants that finishing jobs left over, as soon as they are left
        (by this process) or within a reap interval (by another, or before a crash)."""
        wanted = self.wakeups.cascade_wanted
        while not self._stop.is_set():
            wanted.wait(self.upkeep.config.reap_interval)
            wanted.clear()
            try:
                moved = self.upkeep.cascade(self._stop)
                if moved:
                    log.info("resolved %d dependant(s) of finished jobs", moved)
            except StoreUnavailable as exc:
                log.warning("resolving dependants skipped: %s", exc)
            except Exception:
                log.exception("resolving dependants failed; will try again")

    def _run(self) -> None:
        interval = self.upkeep.config.reap_interval
        # A short retention is kept to within about itself, never pruned more than once a minute.
        prune_every = min(PRUNE_EVERY, max(self.upkeep.config.retention, interval))
        since_prune = prune_every  # prune once at start
        since_tidy = 0.0
        since_rollup = rollup.WRITE_EVERY  # the charts' first point at start
        reaped_at = None  # monotonic time of the last reap that reached the database
        grace_until = 0.0
        while not self._stop.wait(interval):
            now = time.monotonic()
            if reaped_at is None or now - reaped_at > OUTAGE_AFTER * interval:
                # This server just started, or could not reach the database: the
                # workers could not heartbeat either. Give them one lease TTL to
                # renew before their leases count as expired.
                grace_until = now + self.upkeep.config.lease_ttl
            try:
                reaped = self.upkeep.reap(expire_leases=now >= grace_until)
                reaped_at = time.monotonic()
                self.database.record()  # anonymous /health answers from this
                since_tidy += interval  # counts gone to zero are forgotten once a minute
                tidy = since_tidy >= PRUNE_EVERY
                counts.fold(self.upkeep.store, drop_empty=tidy)
                since_tidy = 0.0 if tidy else since_tidy
                if reaped:
                    log.info("reaped %d expired attempt(s)", reaped)
                since_rollup += interval
                if since_rollup >= rollup.WRITE_EVERY:
                    since_rollup = 0.0
                    upkeep = self.upkeep
                    rollup.write(upkeep.store, upkeep.publisher.telemetry.finishes, upkeep.clock())
                since_prune += interval
                if since_prune >= prune_every:
                    since_prune = 0.0
                    pruned = self.upkeep.prune()
                    if pruned:
                        log.info("pruned %d finished job(s) past retention", pruned)
            except StoreUnavailable as exc:
                self.database.record(str(exc))
                log.warning("housekeeping skipped: %s", exc)
            except Exception:
                log.exception("housekeeping failed; will try again")
