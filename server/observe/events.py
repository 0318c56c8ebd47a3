"""Lifecycle events for plugins: queued after commit, delivered by a background thread.

The scheduler hands over rows it has already committed; this module turns
them into the API's JSON shapes and calls ``taskframe_job_submitted``,
``taskframe_attempt_finished`` and ``taskframe_job_finished`` off the
request's thread. A hook that raises is logged with its plugin's name and
changes nothing. When no plugin implements these hooks there is no
dispatcher at all (the scheduler's ``events`` is None): no cost.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from taskframe.core import model
from taskframe.core.plugins import PluginSet
from taskframe.server.storage import AttemptRecord, JobRow
from taskframe.server.storage.representation import attempt_json, job_json

log = logging.getLogger("taskframe.server.observe.events")

SUBMITTED = "taskframe_job_submitted"
ATTEMPT_FINISHED = "taskframe_attempt_finished"
JOB_FINISHED = "taskframe_job_finished"
HOOKS = (SUBMITTED, ATTEMPT_FINISHED, JOB_FINISHED)
#: Seconds a stopping server gives the thread to deliver what is queued.
DRAIN_TIMEOUT = 5.0


class EventDispatcher:
    """A queue of committed changes, drained by one thread that calls the hooks."""

    def __init__(self, plugins: PluginSet) -> None:
        self.plugins = plugins
        self._wanted = {hook: plugins.implements(hook) for hook in HOOKS}
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="plugin-events", daemon=True)

    @classmethod
    def for_plugins(cls, plugins: PluginSet) -> EventDispatcher | None:
        """A started dispatcher when some plugin implements a lifecycle hook, else None."""
        if not any(plugins.implements(hook) for hook in HOOKS):
            return None
        dispatcher = cls(plugins)
        dispatcher._thread.start()
        return dispatcher

    def stop(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    # -- called by the scheduler, after its transaction committed ----------------

    def submitted(self, rows: list[JobRow]) -> None:
        if rows and self._wanted[SUBMITTED]:
            self._queue.put(("submitted", rows))

    def attempts_finished(self, ended: list[tuple[JobRow, AttemptRecord]]) -> None:
        """``ended``: (the job's row after the attempt, the attempt's history row)."""
        if ended and (self._wanted[ATTEMPT_FINISHED] or self._wanted[JOB_FINISHED]):
            self._queue.put(("attempts", ended))

    def job_finished(self, row: JobRow) -> None:
        """A job that finished without an attempt ending (a queued job cancelled)."""
        if self._wanted[JOB_FINISHED] and row["status"] in model.FINISHED:
            self._queue.put(("finished", row))

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            kind, data = event
            try:
                self._deliver(kind, data)
            except Exception:  # a bad row must not stop the thread
                log.exception("lifecycle event %s could not be delivered", kind)

    def _deliver(self, kind: str, data: Any) -> None:
        call = self.plugins.call_each
        if kind == "submitted":
            for row in data:
                call(SUBMITTED, job=job_json(row))
        elif kind == "finished":
            call(JOB_FINISHED, job=job_json(data))
        else:
            for row, attempt in data:
                job = job_json(row)
                if self._wanted[ATTEMPT_FINISHED]:
                    shown = attempt_json(attempt)
                    shown.pop("lease_id", None)  # a worker's secret
                    call(ATTEMPT_FINISHED, job=job, attempt=shown)
                if row["status"] in model.FINISHED:
                    call(JOB_FINISHED, job=job)
