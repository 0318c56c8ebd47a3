"""The public plugin API: what an executor is and what it receives when it runs."""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import marshmallow
import pluggy

#: Decorator for plugin hook implementations (``@hookimpl def taskframe_...``).
hookimpl = pluggy.HookimplMarker("taskframe")


class PermanentError(Exception):
    """Raised by an executor to fail the job at once, without further attempts."""


@dataclass
class ExecutorContext:
    """Everything an executor may need besides its payload.

    ``deadline`` is a ``time.monotonic()`` value (or None for no timeout); an
    executor should stop by then. ``cancel_event`` is set when the job is
    cancelled, times out or the worker shuts down: long-running executors
    check it (or wait on it) and return early.
    """

    job_id: int
    attempt: int
    deadline: float | None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("taskframe.job"))
    options: argparse.Namespace = field(default_factory=argparse.Namespace)

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


@dataclass(frozen=True)
class Executor:
    """A job type: its name, its payload schema and the callable that runs it.

    ``run(payload, context)`` receives the payload as loaded by ``schema`` and
    returns a JSON-serialisable result. Raise :class:`PermanentError` to fail
    without retry; any other exception is a retryable failure.
    """

    name: str
    schema: marshmallow.Schema
    run: RunCallable
    description: str = ""


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
