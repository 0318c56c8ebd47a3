"""``context.logger`` of one attempt: its lines kept for the outcome and the live log.

Kept apart from the worker's own log: what a job writes is captured (the
last 64 KiB for the attempt's stored log; the lines not yet sent for the
live log), and passed on to ``taskframe.job.<type>`` up to a cap per attempt.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING

from taskframe.core import strict_json
from taskframe.core.limits import MAX_ATTEMPT_LOG

if TYPE_CHECKING:
    from taskframe.worker.jobs import RunningJob

log = logging.getLogger("taskframe.worker")

#: Bytes of one attempt's output written to the worker's own log at most; past it one
#: line says so (the attempt's stored log keeps its last 64 KiB whatever it writes).
MAX_WORKER_LOG_PER_ATTEMPT = 64 << 10

_LINE_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s")


@functools.lru_cache(maxsize=1024)
def _job_logger(job_type: str) -> logging.Logger:
    """``taskframe.job.<type>`` (looked up once: getLogger takes logging's lock)."""
    return logging.getLogger(f"taskframe.job.{job_type}")


class AttemptLogger(logging.Logger):
    """``context.logger`` of one attempt.

    Its records carry the job's fields (for JSON lines), are kept (the last
    ``limit`` characters, read by :meth:`text`) and propagate to
    ``taskframe.job.<type>`` like any logger's, up to ``passed_on`` bytes per
    attempt: a job printing 100 MB must not fill the worker's disk (see
    :meth:`finish`). One per attempt, so that
    concurrent jobs of one type never capture each other's lines; not
    registered with ``logging.getLogger``, which keeps its loggers forever.
    Capturing in :meth:`handle` rather than in a Handler keeps it cheap.
    """

    def __init__(
        self,
        running: RunningJob,
        limit: int = MAX_ATTEMPT_LOG,
        passed_on: int = MAX_WORKER_LOG_PER_ATTEMPT,
    ) -> None:
        parent = _job_logger(running.executor.name)
        super().__init__(parent.name)
        self.parent = parent
        self.fields = running.fields
        self.limit = limit
        self.passed_on = passed_on
        self._lines: deque[str] = deque()
        self._size = 0
        self._written = 0  # bytes passed on to the worker's log
        self._held_back = 0  # bytes not passed on
        self._lock = threading.Lock()
        #: Lines for the live log: not sent yet, and sent but not acknowledged; what
        #: is left of the attempt's budget (the live log is capped like the stored one).
        self._live: list[str] = []
        self._live_sending = ""
        self._live_left = limit if running.live_log else 0

    def handle(self, record: logging.LogRecord) -> None:
        record.__dict__.update(self.fields)
        try:
            line = _LINE_FORMAT.format(record) + "\n"
        except Exception:  # a bad format string must not fail the job
            line = f"{record.levelname} (unformattable: {record.msg!r})\n"
        with self._lock:
            if self._live_left > 0:
                piece = line[: self._live_left]
                self._live.append(piece)
                self._live_left -= len(piece)
            self._lines.append(line)
            self._size += len(line)
            while self._size > self.limit and len(self._lines) > 1:
                self._size -= len(self._lines.popleft())
            passed = self._written + len(line) <= self.passed_on
            first_held = not passed and not self._held_back
            if passed:
                self._written += len(line)
            else:
                self._held_back += len(line)
        if passed:
            super().handle(record)
        elif first_held:
            log.warning(
                "job %s wrote more than %d KiB of output: the rest of this attempt's output "
                "is left out of this log (its stored log keeps the last %d KiB)",
                *(self.fields["job_id"], self.passed_on >> 10, self.limit >> 10),
                extra=self.fields,
            )

    def has_live_news(self) -> bool:
        return bool(self._live)

    def take_live(self) -> str | None:
        """The lines not acknowledged by the server yet (the live log of a running job:
        at most ``limit`` characters in all for the attempt), or None."""
        with self._lock:
            if self._live:
                self._live_sending += "".join(self._live)
                self._live.clear()
            text = self._live_sending
        return _storable(text) if text else None

    def live_acked(self) -> None:
        with self._lock:
            self._live_sending = ""

    def finish(self) -> None:
        """The attempt is over: say how much of its output this log left out."""
        if self._held_back:
            log.warning(
                "job %s: %d bytes of its output were left out of this log",
                *(self.fields["job_id"], self._held_back),
                extra=self.fields,
            )

    def text(self) -> str | None:
        with self._lock:
            text = "".join(self._lines)
        # One long line keeps its end.
        return _storable(text[-self.limit :]) if text else None


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate (a file name logged
    as os.fsdecode gave it)."""
    return strict_json.encodable_text(text.replace("\x00", "\ufffd"))
