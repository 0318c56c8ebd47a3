"""Running one leased job: its executor, its context, its outcome."""

from __future__ import annotations

import argparse
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from taskframe.core import json_rules
from taskframe.core.executor import Executor, ExecutorContext, PermanentError
from taskframe.core.model import Status
from taskframe.core.plugins import PluginSet

log = logging.getLogger("taskframe.worker")

MAX_ERROR_LENGTH = 4000
#: (status, result, error, retryable), as reported to the server.
Outcome = tuple[str, Any, "str | None", bool]


@dataclass(eq=False)
class RunningJob:
    """A leased job whose outcome is not decided yet."""

    job: dict[str, Any]
    executor: Executor
    deadline: float | None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False

    @property
    def job_id(self) -> int:
        return self.job["id"]

    @property
    def lease_id(self) -> str:
        return self.job["lease_id"]

    def completion(self, status: str, result: Any, error: str | None, retryable: bool) -> dict:
        # Error text quotes anything (remote bodies, file names): make it encodable.
        error = json_rules.encodable_text(error[:MAX_ERROR_LENGTH]) if error else error
        ids = {"job_id": self.job_id, "lease_id": self.lease_id}
        return {**ids, "status": status, "result": result, "error": error, "retryable": retryable}


def execute(
    running: RunningJob, options: argparse.Namespace, plugins: PluginSet | None = None
) -> Outcome:
    """Run one job, between the plugins' before/after hooks when some implement them."""
    wanted = plugins is not None and (
        plugins.implements("taskframe_before_run") or plugins.implements("taskframe_after_run")
    )
    return _execute(running, options, plugins if wanted else None)


def _execute(
    running: RunningJob, options: argparse.Namespace, plugins: PluginSet | None
) -> Outcome:
    executor, job = running.executor, running.job
    try:
        payload = executor.schema.load(job.get("payload") or {})
    except ValidationError as exc:
        return Status.FAILED.value, None, f"invalid payload: {json.dumps(exc.messages)}", False
    context = ExecutorContext(
        job_id=running.job_id,
        attempt=job.get("attempts") or 1,
        deadline=running.deadline,
        cancel_event=running.cancel_event,
        logger=logging.getLogger(f"taskframe.job.{executor.name}"),
        options=options,
    )
    if plugins is None:
        return _run(executor, payload, context, running.job_id)
    failed = plugins.call_each("taskframe_before_run", job=job, context=context)
    outcome = _run(executor, payload, context, running.job_id)
    status, result, error, retryable = outcome
    shown = {"status": status, "result": result, "error": error, "retryable": retryable}
    plugins.call_each("taskframe_after_run", job=job, context=context, outcome=shown, skip=failed)
    return outcome


def _run(executor: Executor, payload: Any, context: ExecutorContext, job_id: int) -> Outcome:
    try:
        result = executor.run(payload, context)
    except PermanentError as exc:
        return Status.FAILED.value, None, describe(exc), False
    except BaseException as exc:
        log.debug("job %s raised", job_id, exc_info=True)
        return Status.FAILED.value, None, describe(exc), True
    # The server must get strict JSON within its depth limit, or it would
    # refuse the whole request and every outcome riding on it.
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return Status.FAILED.value, None, f"the result is not JSON-serialisable: {exc}", False
    result = json_rules.encodable(result)  # lone surrogates become U+FFFD, tuples lists
    if json_rules.depth_exceeds(result, json_rules.MAX_RESULT_DEPTH):
        depth = json_rules.MAX_RESULT_DEPTH
        return Status.FAILED.value, None, f"the result nests deeper than {depth} levels", False
    return Status.SUCCEEDED.value, result, None, True


def describe(exc: BaseException) -> str:
    """``"ExcType: message"`` (just the type when there is no message)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
