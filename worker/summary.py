"""The worker's INFO summary of finished jobs (each job is logged at DEBUG).

Two log lines per job cost a short job more CPU than the rest of the
worker's work on it (formatting, the handler's lock, a write each), so, as on
the server, successes are logged per job at DEBUG and summed up at INFO at
most every ``SUMMARY_EVERY`` seconds. Failures stay at WARNING, one each.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("taskframe.worker")

SUMMARY_EVERY = 10.0


class JobTally:
    """Counts outcomes by status; logs the counts when due (with the next outcome) and at exit."""

    def __init__(self, every: float = SUMMARY_EVERY) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()

    def count(self, status: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._counts[status] = self._counts.get(status, 0) + 1
            if now - self._since < self.every:
                return
        self.flush()

    def flush(self) -> None:
        """Log what was counted since the last summary (nothing if nothing was)."""
        now = time.monotonic()
        with self._lock:
            counts, since = self._counts, self._since
            self._counts, self._since = {}, now
        if counts:
            done = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            log.info(
                "in the last %.0f s: %s", now - since, done, extra={"count": sum(counts.values())}
            )
