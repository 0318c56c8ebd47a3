"""The public plugin API: what an executor is and what it receives when it runs."""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import marshmallow
import pluggy

from taskframe.core.limits import MAX_PROGRESS_MESSAGE, MAX_RETRY_AFTER

#: Decorator for plugin hook implementations (``@hookimpl def taskframe_...``).
hookimpl = pluggy.HookimplMarker("taskframe")


class PermanentError(Exception):
    """Raised by an executor to fail the job at once, without further attempts."""


class Retry(Exception):  # noqa: N818 - ``raise Retry(after=30)`` reads as meant
    """Raised by an executor to end this attempt and run the next one ``after`` seconds.

    It counts as an attempt: when it was the last one the job fails, with
    ``reason`` as its error. ``after=None`` leaves the delay to the usual backoff.
    """

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        if after is not None:
            if isinstance(after, bool) or not isinstance(after, int | float):
                raise TypeError(f"Retry(after=...) takes seconds, not {type(after).__name__}")
            if not (math.isfinite(after) and 0 <= after <= MAX_RETRY_AFTER):
                raise ValueError(f"Retry(after=...) must be 0 to {MAX_RETRY_AFTER:g} seconds")
        self.after = None if after is None else float(after)
        self.reason = str(reason)
        when = "with the usual backoff" if after is None else f"in {after:g} s"
        super().__init__(f"{reason or 'retry requested'} (next attempt {when})")


@dataclass
class ExecutorContext:
    """Everything an executor may need besides its payload.

    ``deadline`` is a ``time.monotonic()`` value (or None for no timeout); an
    executor should stop by then. ``cancel_event`` is set when the job is
    cancelled, times out or the worker shuts down: long-running executors
    check it (or wait on it) and return early. ``dependency_results`` holds
    the results of the jobs given in ``depends_on``, by id.
    """

    job_id: int
    attempt: int
    deadline: float | None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("taskframe.job"))
    options: argparse.Namespace = field(default_factory=argparse.Namespace)
    #: The results of the jobs this one depends on, by job id (empty without dependencies).
    dependency_results: dict[int, Any] = field(default_factory=dict)
    #: Where :meth:`progress` reports (the worker sends it with its heartbeats).
    on_progress: Callable[[float, str | None], None] | None = field(default=None, repr=False)
    #: Makes the client of :attr:`client` (set by the worker; None: no server to talk to).
    client_factory: Callable[[], Any] | None = field(default=None, repr=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job got: ``fraction`` from 0 to 1, and a short message.

        Shown by ``GET /jobs/{id}`` as ``progress``, by ``taskframe wait`` and
        the dashboard. Cheap to call often: the worker sends the latest value
        with its next heartbeat (every two seconds at most).
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress() takes a fraction from 0 to 1, not {fraction!r}")
        if not math.isfinite(fraction):
            raise ValueError(f"progress() takes a fraction from 0 to 1, not {fraction!r}")
        fraction = min(1.0, max(0.0, float(fraction)))
        if message is not None:
            message = str(message)[:MAX_PROGRESS_MESSAGE]
        if self.on_progress is not None:
            self.on_progress(fraction, message)

    @property
    def client(self) -> Any:
        """A :class:`taskframe.client.Client` of the worker's servers, to submit follow-up jobs.

        It sends the worker's ``--client-token`` (``TASKFRAME_CLIENT_TOKEN``),
        else the worker's own token: with tokens configured, that token needs
        the ``client`` role (a ``client,worker`` token, say).
        """
        if self.client_factory is None:
            raise RuntimeError("no client here: this job does not run in a worker")
        return self.client_factory()

    def time_left(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancellation or the deadline.

        Returns True when the full time was slept, False when interrupted.
        """
        left = self.time_left()
        if left is not None and left < seconds:
            self.cancel_event.wait(left)
            return False
        return not self.cancel_event.wait(seconds)


RunCallable = Callable[[dict[str, Any], ExecutorContext], Any]
#: Seconds before the next attempt, given the number of the attempt that failed.
BackoffCallable = Callable[[int], float]
#: A payload loaded as its schema would (a fresh dict), or None: not plainly valid.
QuickLoadCallable = Callable[[Any], "dict[str, Any] | None"]
#: The submission fields a job type may give defaults for (used when a client omits them).
DEFAULT_FIELDS = ("queue", "priority", "max_attempts", "timeout")


@dataclass(frozen=True)
class Executor:
    """A job type: its name, its payload schema and the callable that runs it.

    ``run(payload, context)`` receives the payload as loaded by ``schema`` and
    returns a JSON-serialisable result (``run`` may be ``async def``). Raise
    :class:`PermanentError` to fail without retry, :class:`Retry` to have the
    next attempt at a time of your choosing; any other exception is a
    retryable failure, unless ``retry_on`` is given: then only those
    exceptions are retried. ``backoff`` (seconds after the n-th attempt
    failed) replaces the server's backoff for failures that the executor
    raises. ``defaults`` gives the type's ``queue``, ``priority``,
    ``max_attempts`` and ``timeout`` when a submission omits them.
    """

    name: str
    schema: marshmallow.Schema
    run: RunCallable
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    retry_on: tuple[type[BaseException], ...] | None = None
    backoff: BackoffCallable | None = None
    #: A fast path for plainly valid payloads: exactly what ``schema.load`` returns,
    #: or None to leave the payload to the schema (which then names the problems).
    #: The built-in types have one, proved equal to their schemas by property tests.
    quick_load: QuickLoadCallable | None = field(default=None, compare=False)

    def retryable(self, exc: BaseException) -> bool:
        """Whether a failure raising ``exc`` may be retried."""
        if isinstance(exc, Retry):
            return True
        if isinstance(exc, PermanentError):
            return False
        return self.retry_on is None or isinstance(exc, self.retry_on)


class ExecutorRegistry:
    """What ``taskframe_register_executors`` receives: ``register.add(executor)``.

    Calling it (``register(executor)``) does the same, so plugins written for
    the earlier bare-callable form keep working. A rejected executor (a bad
    name, a schema class instead of an instance, a run that is not callable,
    a name already taken) is reported under the plugin's name; the plugin's
    other executors still load.
    """

    def __init__(self, accept: Callable[[Executor], None]) -> None:
        self._accept = accept

    def add(self, executor: Executor) -> None:
        """Contribute one job type."""
        self._accept(executor)

    def __call__(self, executor: Executor) -> None:
        self._accept(executor)
