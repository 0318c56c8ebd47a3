"""Sends the jobs' ``progress()`` to the server, soon after they report it.

Heartbeats go out every two seconds (or a third of the lease TTL): too
slowly for a job of a few seconds to show a moving bar. So a thread of its
own looks at the running jobs every ``PROGRESS_TICK`` seconds and sends the
news, if any, in one ``POST /heartbeats`` carrying only the leases with news
(extending those leases is harmless). A value not acknowledged (a failed
request) goes again at the next tick; only the latest value counts, so a job
calling ``progress()`` in a tight loop costs one item per tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from taskframe.core.schemas import MAX_HEARTBEATS
from taskframe.worker.jobs import RunningJob
from taskframe.worker.outbox import pair_answers

log = logging.getLogger("taskframe.worker")

#: Seconds between looks for progress news.
PROGRESS_TICK = 0.5


class ProgressSender:
    """The thread that reports progress; ``start()``, then ``stop()`` at shutdown."""

    def __init__(
        self, client: Any, worker_id: str, running: Callable[[], list[RunningJob]]
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.running = running
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskframe-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_TICK):
            try:
                self.send_news()
            except Exception as exc:  # never stop reporting: the next tick tries again
                log.debug("progress not sent: %s", exc)

    def send_news(self) -> int:
        """Send the progress not yet acknowledged; return how many jobs had news."""
        jobs = {job.lease_id: job for job in self.running() if job.has_progress_news()}
        if not jobs:
            return 0
        items = [job.heartbeat_item() for job in jobs.values()]
        for start in range(0, len(items), MAX_HEARTBEATS):
            sent = items[start : start + MAX_HEARTBEATS]
            answer = self.client.heartbeats(self.worker_id, sent)
            for item, state in pair_answers(sent, answer.get("leases") or []):
                if state.get("ok"):
                    jobs[item["lease_id"]].progress_acked()
        return len(jobs)
