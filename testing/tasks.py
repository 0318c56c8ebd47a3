"""Run a task in-process, the way a worker would: ``run_task(add, x=1)``.

The arguments are checked with the task's schema (a refused one raises the
:class:`~taskframe.client.errors.ValidationError` a 422 would), defaults are
filled in, and the function runs with ``current_job()`` set: ``progress()``
is recorded, ``Retry`` and failures are retried up to the type's
``max_attempts`` (without waiting: the delays asked for are recorded), and
``retry_on`` and ``PermanentError`` decide as in a worker. The result is
checked to be JSON.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError as SchemaError

from taskframe.client.errors import JobFailed, ValidationError
from taskframe.client.models import Job
from taskframe.client.typed import to_json
from taskframe.core.executor import Executor
from taskframe.core.model import Reported
from taskframe.core.schemas import DEFAULT_MAX_ATTEMPTS
from taskframe.worker.jobs import RunningJob, execute


@dataclass
class AttemptRun:
    """One attempt of :func:`run_job`."""

    attempt: int
    status: str
    error: str | None = None
    traceback: str | None = None
    #: The delay it asked for before the next attempt (``Retry(after=...)``, the backoff).
    retry_after: float | None = None
    log: str | None = None


@dataclass
class TaskRun:
    """What :func:`run_job` saw: the outcome, every attempt, every ``progress()``."""

    status: str
    result: Any = None
    error: str | None = None
    attempts: list[AttemptRun] = field(default_factory=list)
    progress: list[tuple[float, str | None]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def run_task(task: Executor, /, **arguments: Any) -> Any:
    """Run ``task`` with ``arguments`` as a worker would; its result, or
    :class:`~taskframe.client.errors.JobFailed` (with the last traceback)."""
    run = run_job(task, arguments)
    if run.succeeded:
        return run.result
    last = run.attempts[-1] if run.attempts else None
    job = Job(id=0, type=task.name, status=run.status, attempts=len(run.attempts), error=run.error)
    raise JobFailed(job, last.traceback if last else None)


def run_job(
    task: Executor,
    payload: Mapping[str, Any] | None = None,
    *,
    max_attempts: int | None = None,
    client: Any = None,
    options: argparse.Namespace | None = None,
) -> TaskRun:
    """Run every attempt of one job of ``task`` in this process; see :class:`TaskRun`.

    ``client`` is what ``current_job().client`` gives (none by default);
    ``options`` is ``context.options`` (the command line of a worker).
    """
    data = to_json(dict(payload or {}))
    try:
        task.schema.load(data)
    except SchemaError as exc:
        raise ValidationError(
            f"invalid payload for {task.name!r}: {exc.messages}",
            title="Invalid request",
            errors={"payload": exc.messages},
        ) from None
    attempts = max_attempts or task.defaults.get("max_attempts") or DEFAULT_MAX_ATTEMPTS
    timeout = task.defaults.get("timeout")
    options = options or argparse.Namespace()
    if client is not None:
        options.follow_up_client = client
    run = TaskRun(status="queued")
    for number in range(1, attempts + 1):
        job = {
            "id": 0,
            "type": task.name,
            "payload": data,
            "attempts": number,
            "max_attempts": attempts,
            "lease_id": f"local-{number}",
            "timeout": timeout,
        }
        deadline = time.monotonic() + timeout if timeout else None
        running = RunningJob(job, task, deadline)
        running.progress_sink = lambda fraction, message: run.progress.append((fraction, message))
        end = execute(running, options)
        status, error = end.status.value, end.error  # the plain string, as a Job's
        run.attempts.append(
            AttemptRun(number, status, error, running.traceback, running.retry_after, running.log)
        )
        run.status, run.result, run.error = status, end.result, error
        if end.status == Reported.SUCCEEDED or not end.retryable:
            break
    return run
