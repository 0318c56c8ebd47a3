"""Where a job runs: a slot of the worker's pool (a thread, or a child process).

Each of the worker's job threads owns one slot and runs one job at a time in
it. A :class:`ThreadSlot` runs the executor right there, so a job that ignores
its cancel event holds the slot until it returns. A :class:`ProcessSlot` keeps
one child process: the job runs in the child (so CPU-bound executors use
every core), a timed-out, cancelled or abandoned job is killed once it has
ignored its cancel event for ``KILL_GRACE`` seconds, and a child that dies
fails that attempt alone; the slot then starts a new child.

Children come from the ``forkserver`` context (``spawn`` where it is missing):
forking the worker itself, which runs threads, could copy a lock held by
another thread into the child. Each child loads the plugins once at start and
finds executors by job type, as the worker does.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from taskframe.core.logs import configure_logging
from taskframe.core.plugins import PluginSet, disabled_plugins, load_plugins
from taskframe.core.task_modules import module_names
from taskframe.worker.jobs import JobEnd, RunningJob, execute

log = logging.getLogger("taskframe.worker")

#: Seconds a job in a child process gets to honour its cancel event before the kill.
KILL_GRACE = 0.5
#: How often a waiting slot looks at the job's cancel event.
CANCEL_CHECK = 0.05
#: Seconds a new child gets to load the plugins and say it is ready.
START_TIMEOUT = 60.0
#: A child's message carrying a job's progress() (outcomes start with their JobEnd).
PROGRESS = "progress"
#: A child forwards a job's progress at most this often (the rest waits for the next).
PROGRESS_INTERVAL = 0.2


class ThreadSlot:
    """Runs the job in the calling thread."""

    def __init__(self, options: argparse.Namespace, plugins: PluginSet | None = None) -> None:
        self.options = options
        self.plugins = plugins

    def start(self) -> None:
        pass

    def ready(self, timeout: float = START_TIMEOUT) -> bool:
        return True

    def run(self, running: RunningJob) -> JobEnd:
        return execute(running, self.options, self.plugins)

    def close(self) -> None:
        pass


def _context() -> Any:  # a ForkServerContext, or a SpawnContext: both make Processes
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        # The fork server imports these once; each child then starts in milliseconds.
        context.set_forkserver_preload(["taskframe.worker.pool"])
        return context
    return multiprocessing.get_context("spawn")


class ProcessSlot:
    """One child process that runs jobs one at a time; replaced when it dies or is killed."""

    def __init__(self, options: argparse.Namespace, log_level: str, log_format: str) -> None:
        self.options = options
        self.log_settings = (log_level, log_format)
        self._context = _context()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._cancel: Any = None  # a multiprocessing.Event shared with the child
        self._lifeline: Connection | None = None
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start a child (without waiting for it: see :meth:`ready`)."""
        parent_end, child_end = self._context.Pipe()
        # Only this worker holds the lifeline's write end: the child sees EOF on it
        # when the worker is gone, even while its main thread is busy with a job.
        lifeline, self._lifeline = self._context.Pipe(duplex=False)
        self._cancel = self._context.Event()
        self._process = self._context.Process(
            target=child_main,
            args=(child_end, lifeline, self._cancel, self.options, *self.log_settings),
            name="taskframe-job-process",
            daemon=True,  # killed by multiprocessing's exit handler should the worker skip close()
        )
        self._process.start()
        child_end.close()
        lifeline.close()
        self._conn = parent_end
        self._ready = False

    def ready(self, timeout: float = START_TIMEOUT) -> bool:
        """Wait until the child has loaded the plugins; False if it died or took too long."""
        if self._ready:
            return True
        if self._process is None or self._conn is None:
            self.start()
        assert self._conn is not None and self._process is not None
        try:
            if self._conn.poll(timeout) and self._conn.recv() == "ready":
                self._ready = True
                return True
        except (EOFError, OSError):
            pass
        log.error("a job process did not start (exit code %s)", self._process.exitcode)
        self._discard()
        return False

    def run(self, running: RunningJob) -> JobEnd:
        """Run the job in the child; kill the child if the job is cancelled and ignores it."""
        if not self.ready():
            return JobEnd.failure("the job's process could not be started", retryable=True)
        assert self._conn is not None and self._process is not None
        self._cancel.clear()
        try:
            self._conn.send((running.job, running.executor.name, running.deadline))
        except (OSError, ValueError) as exc:  # the child died while idle
            self._discard()
            return JobEnd.failure(f"the job's process is gone: {exc}", retryable=True)
        kill_at: float | None = None
        while True:
            ready = wait([self._conn, self._process.sentinel], timeout=CANCEL_CHECK)
            if self._conn in ready:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    message = None  # died while answering: the sentinel tells how
                if message is None:
                    return JobEnd.failure(self._died(), retryable=True)
                if message[0] != PROGRESS:  # what _run_one returned
                    end: JobEnd
                    end, running.log, running.traceback = message[:3]
                    running.retry_after, running.result_bytes = message[3:]
                    return end
                running.set_progress(*message[1:])
            elif ready:
                return JobEnd.failure(self._died(), retryable=True)
            if running.cancel_event.is_set():
                now = time.monotonic()
                if kill_at is None:
                    self._cancel.set()  # the executor's context.cancel_event
                    kill_at = now + KILL_GRACE
                elif now >= kill_at:
                    log.warning(
                        "job %s ignored its cancel event for %g s: killing its process (pid %s)",
                        *(running.job_id, KILL_GRACE, self.pid),
                        extra=running.fields,
                    )
                    self._discard()
                    return JobEnd.failure("killed: it did not stop when cancelled", retryable=True)

    def close(self) -> None:
        """Ask the child to exit; kill it if it does not within a second."""
        if self._conn is not None:
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                pass
        if self._process is not None:
            self._process.join(1.0)
        self._discard()

    def _died(self) -> str:
        process = self._process
        assert process is not None
        process.join(1.0)
        code = process.exitcode
        self._discard()
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return f"the job's process died ({how})"

    def _discard(self) -> None:
        """Kill the child (if alive) and forget it; :meth:`ready` starts the next one."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5.0)
        for conn in (self._conn, self._lifeline):
            if conn is not None:
                conn.close()
        self._process = self._conn = self._lifeline = None
        self._ready = False


# -- in the child ------------------------------------------------------------------


def child_main(
    conn: Connection,
    lifeline: Connection,
    cancel: Any,
    options: argparse.Namespace,
    log_level: str,
    log_format: str,
) -> None:
    """A child's life: load the plugins once, then run the jobs the slot sends, one at a time."""
    # The worker decides when its jobs stop: a Ctrl-C or a SIGTERM sent to the
    # whole process group must not kill jobs that the shutdown grace lets finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_worker(lifeline)
    configure_logging(log_level, log_format)
    # The same plugins as the worker's: its --disable-plugins, its options.
    plugins = load_plugins(
        disabled=disabled_plugins(getattr(options, "disable_plugins", None)),
        tasks=module_names(getattr(options, "tasks", None)),
    )
    plugins.configure(options, "worker")
    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the worker is gone
            return
        if message is None:
            return
        job, job_type, deadline = message
        forward = _ProgressForwarder(conn)
        outcome = _run_one(plugins, job_type, job, deadline, cancel, options, forward)
        forward.flush()
        conn.send(outcome)


def _run_one(
    plugins: PluginSet,
    job_type: str,
    job: dict[str, Any],
    deadline: float | None,
    cancel: Any,
    options: argparse.Namespace,
    forward: Callable[[float, str | None], None] | None = None,
) -> tuple[JobEnd, str | None, str | None, float | None, int]:
    """The job's end, and what its RunningJob learned: log, traceback, retry_after,
    result_bytes (the worker's RunningJob gets them)."""
    executor = plugins.executors.get(job_type)
    if executor is None:  # installed in the worker but failed to load here
        error = f"job type {job.get('type')!r} is not available in the job process"
        return JobEnd.failure(error, retryable=True), None, None, None, 0
    running = RunningJob(job, executor, deadline, cancel_event=cancel, progress_sink=forward)
    end = execute(running, options, plugins)  # its before/after hooks run here too
    return end, running.log, running.traceback, running.retry_after, running.result_bytes


class _ProgressForwarder:
    """Sends a job's progress() to the worker, at most every PROGRESS_INTERVAL seconds;
    the latest one held back goes before the outcome (:meth:`flush`)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sent_at = 0.0
        self.pending: tuple[float, str | None] | None = None

    def __call__(self, fraction: float, message: str | None) -> None:
        self.pending = (fraction, message)
        if time.monotonic() - self.sent_at >= PROGRESS_INTERVAL:
            self.flush()

    def flush(self) -> None:
        if self.pending is not None:
            self.conn.send((PROGRESS, *self.pending))
            self.pending = None
            self.sent_at = time.monotonic()


def _exit_with_worker(lifeline: Connection) -> None:
    """A child whose worker died (a ``kill -9``) exits, even in the middle of a job.

    Its parent is the fork server, which lives as long as any child does, so
    the parent pid tells nothing: the lifeline's EOF does.
    """

    def watch() -> None:
        try:
            lifeline.recv()  # nothing is ever sent: returns only by EOF
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="taskframe-worker-watch", daemon=True).start()
