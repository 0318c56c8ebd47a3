"""Where the worker's leased jobs run, and how their outcomes come back to its loop.

Synchronous executors run in ``concurrency`` daemon threads: in the thread
itself (``--pool thread``), or each thread driving one child process, its
slot (``--pool process``). ``async def`` executors run as tasks on the
worker's event loop (with ``--pool process`` they run in the child, on a
loop of its own). Either way the outcome is handed to ``on_done`` on the
loop, exactly once per job.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from taskframe.core.plugins import PluginSet
from taskframe.worker.config import WorkerConfig
from taskframe.worker.jobs import JobEnd, RunningJob, describe, execute_on_loop, runs_on_loop
from taskframe.worker.pool import ProcessSlot, ThreadSlot
from taskframe.worker.threads import DaemonThreads

Slot = ThreadSlot | ProcessSlot


def start_slots(config: WorkerConfig, plugins: PluginSet) -> list[Slot]:
    """One slot all threads share (it keeps no state), or a started and ready child
    process per slot; RuntimeError when those cannot start."""
    if config.pool == "thread":
        return [ThreadSlot(config.options, plugins)]
    settings = (config.options, config.log_level, config.log_format)
    slots = [ProcessSlot(*settings) for _ in range(config.concurrency)]
    for slot in slots:  # all at once: they load the plugins in parallel
        slot.start()
    if not all([slot.ready() for slot in slots]):
        for slot in slots:
            slot.close()
        raise RuntimeError("the job processes could not start (see the log above)")
    return list(slots)


class Runner:
    """Runs jobs on ``slots`` for the worker's ``loop``; ``on_done(running, outcome)``."""

    def __init__(
        self,
        config: WorkerConfig,
        plugins: PluginSet,
        slots: list[Slot],
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[RunningJob, JobEnd], None],
    ) -> None:
        self.options = config.options
        self.plugins = plugins
        self.loop = loop
        self.on_done = on_done
        self._process = config.pool == "process"
        self._free = list(slots)  # a process slot is one job's at a time
        self._threads = DaemonThreads(loop, config.concurrency, "taskframe-job")
        #: Types whose executor is ``async def``: awaited on the loop.
        self._on_loop = {
            name
            for name, executor in plugins.executors.items()
            if not self._process and runs_on_loop(executor)
        }
        self._closing = threading.Event()  # threads waiting for a child process give up

    def launch(self, running: RunningJob) -> None:
        if running.executor.name in self._on_loop:
            task = self.loop.create_task(execute_on_loop(running, self.options, self.plugins))
            running.on_cancel = task.cancel
            task.add_done_callback(lambda done: self.on_done(running, _task_outcome(done)))
            return
        slot = self._free.pop() if self._process else self._free[0]

        def then(outcome: JobEnd, _: BaseException | None) -> None:
            if self._process:
                self._free.append(slot)
            self.on_done(running, outcome)

        self._threads.submit(self._run_in_slot, (slot, running), then)

    def close(self) -> None:
        """Threads waiting for a child process give up; idle threads end."""
        self._closing.set()
        self._threads.close()

    def _run_in_slot(self, slot: Slot, running: RunningJob) -> JobEnd:
        """In a job thread; never raises (a lost outcome would hold its slot forever)."""
        try:
            while not slot.ready():  # a replacement child failed to start: try again
                if self._closing.wait(1.0):
                    return JobEnd.failure("the worker stopped", retryable=True)
            return slot.run(running)
        except BaseException as exc:
            return JobEnd.failure(describe(exc), retryable=True)


def _task_outcome(task: asyncio.Task[JobEnd]) -> JobEnd:
    if task.cancelled():  # before its attempt began
        return JobEnd.failure("the worker stopped", retryable=True)
    if (exc := task.exception()) is not None:
        return JobEnd.failure(describe(exc), retryable=True)
    return task.result()
