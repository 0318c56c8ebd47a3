"""Running one leased job: its executor, its context, its outcome."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

from marshmallow import ValidationError

from taskframe.core import json_codec, strict_json
from taskframe.core import task as _task_module
from taskframe.core.executor import (
    Executor,
    ExecutorContext,
    PermanentError,
    Retry,
)
from taskframe.core.limits import MAX_RETRY_AFTER, MAX_TRACEBACK
from taskframe.core.logs import Tally
from taskframe.core.model import Reported
from taskframe.core.plugins import PluginSet
from taskframe.worker.aio import run_awaitable, stopped_error
from taskframe.worker.attempt_log import AttemptLogger
from taskframe.worker.follow_up import client_factory

log = logging.getLogger("taskframe.worker")

MAX_ERROR_LENGTH = 4000


class JobEnd(NamedTuple):
    """How an attempt ended, as the worker reports it (see :meth:`RunningJob.completion`)."""

    status: Reported
    result: Any
    error: str | None
    retryable: bool

    @classmethod
    def failure(cls, error: str, *, retryable: bool) -> JobEnd:
        return cls(Reported.FAILED, None, error, retryable)


@dataclass(eq=False)
class RunningJob:
    """A leased job whose outcome is not decided yet."""

    job: dict[str, Any]
    executor: Executor
    deadline: float | None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    log: str | None = None  # what the executor logged (the tail), sent with the outcome
    result_bytes: int = 0  # the size of the result's JSON, as the server measures it
    failure: BaseException | None = None  # the executor's exception, until it is logged
    attempt_logger: AttemptLogger | None = None  # context.logger of the attempt running
    #: Whether the server takes a running job's log lines with the heartbeats.
    live_log: bool = False
    #: Called by :meth:`cancel` too (a coroutine on the worker's loop is cancelled so).
    on_cancel: Callable[[], Any] | None = None
    traceback: str | None = None  # of the executor's exception, sent with the outcome
    retry_after: float | None = None  # seconds to the next attempt (Retry, the type's backoff)
    #: The latest ``context.progress()``: (fraction, message), and its version numbers:
    #: the heartbeat sends it until the server has acknowledged that version.
    progress: tuple[float, str | None] | None = None
    #: Told of each progress() too (a job process forwards it to the worker).
    progress_sink: Callable[[float, str | None], None] | None = None
    _progress_version: int = 0
    _progress_sending: int = 0
    _progress_acked: int = 0
    _fields: dict[str, Any] | None = None

    @property
    def job_id(self) -> int:
        return int(self.job["id"])

    @property
    def lease_id(self) -> str:
        return str(self.job["lease_id"])

    @property
    def fields(self) -> dict[str, Any]:
        """The job's fields for log records (``extra=``); made once, never changed.
        (Not functools.cached_property: before 3.12 it takes a lock all instances share.)"""
        made = self._fields
        if made is None:
            made = self._fields = self._make_fields()
        return made

    def _make_fields(self) -> dict[str, Any]:
        job = self.job
        return {
            "job_id": job["id"],
            "type": job.get("type"),
            "attempt": job.get("attempts"),
            "worker_id": job.get("worker_id"),
            "lease_id": job["lease_id"],
        }

    def cancel(self) -> None:
        """Tell the job to stop (cancelled, timed out, lease lost, the worker stopping)."""
        self.cancel_event.set()
        if self.on_cancel is not None:
            self.on_cancel()

    def completion(self, end: JobEnd) -> dict[str, Any]:
        """``end`` as one completion of ``POST /lease`` (the outbox's item)."""
        status, result, error, retryable = end
        # Error text quotes anything (remote bodies, file names): make it encodable.
        error = strict_json.encodable_text(error[:MAX_ERROR_LENGTH]) if error else error
        completion: dict[str, Any] = {
            "job_id": self.job_id,
            "lease_id": self.lease_id,
            "status": status.value,  # the plain string: the body stays as it was
            "retryable": retryable,
        }
        # A field left out is null to the server: without "null" in the request body,
        # its encoder need not look through the body for a NaN it would have written
        # as null (json_codec.dumps), about 3 µs per completion.
        for key, value in (("result", result), ("error", error), ("log", self.log)):
            if value is not None:
                completion[key] = value
        # Only when there is one: a success stays the message the quick path knows.
        if status != Reported.SUCCEEDED:
            if self.traceback is not None:
                completion["traceback"] = self.traceback
            if self.retry_after is not None:
                completion["retry_after"] = self.retry_after
        return completion

    def set_progress(self, fraction: float, message: str | None) -> None:
        """``context.progress()`` of the job: kept until the next heartbeat sends it."""
        self.progress = (fraction, message)
        self._progress_version += 1
        if self.progress_sink is not None:
            self.progress_sink(fraction, message)

    def has_progress_news(self) -> bool:
        return self.progress is not None and self._progress_version != self._progress_acked

    def has_news(self) -> bool:
        """A progress or log lines the server has not acknowledged yet."""
        logger = self.attempt_logger
        return self.has_progress_news() or (logger is not None and logger.has_live_news())

    def heartbeat_item(self) -> dict[str, Any]:
        """This lease in ``POST /heartbeats``, with its progress and its new log lines
        (``log``: only when the server said it takes them) if not acknowledged yet."""
        item: dict[str, Any] = {"job_id": self.job_id, "lease_id": self.lease_id}
        version, progress = self._progress_version, self.progress
        if progress is not None and version != self._progress_acked:
            item["progress"] = {"fraction": progress[0], "message": progress[1]}
            self._progress_sending = version
        if self.attempt_logger is not None and (text := self.attempt_logger.take_live()):
            item["log"] = text
        return item

    def acked(self, item: dict[str, Any]) -> None:
        """The server answered the heartbeat that carried ``item``."""
        if "progress" in item:
            self.progress_acked()
        if "log" in item and self.attempt_logger is not None:
            self.attempt_logger.live_acked()

    def progress_acked(self) -> None:
        """The server answered the heartbeat that carried the progress."""
        self._progress_acked = self._progress_sending


class Attempt:
    """One attempt from its start to its outcome, around the executor's call.

    Shared by :func:`execute` (a thread: the executor runs there) and
    :func:`execute_on_loop` (an ``async def`` executor awaited on the worker's
    event loop): the payload's validation, the context, the plugins'
    before/after hooks, the checks of the result and the log lines.
    """

    def __init__(
        self, running: RunningJob, options: argparse.Namespace, plugins: PluginSet | None
    ) -> None:
        wanted = plugins is not None and (
            plugins.implements("taskframe_before_run") or plugins.implements("taskframe_after_run")
        )
        self.running = running
        self.plugins = plugins if wanted else None
        fields = running.fields
        # DEBUG: a line per job costs the hot path too much (see docs/how-to/logs.md).
        log.debug(
            "job %s started (%s, attempt %s)",
            *(running.job_id, fields["type"], fields["attempt"]),
            extra=fields,
        )
        self.started = time.monotonic()
        self.logger = running.attempt_logger = AttemptLogger(running)
        #: Decided before the call when the payload is invalid.
        self.outcome: JobEnd | None = None
        self._hooked = False  # the before-run hooks ran: the after-run ones follow
        self._skip: Any = None  # the plugins whose before-run hook failed
        job = running.job
        executor = running.executor
        payload = job.get("payload") or {}
        # The executor's fast path first (the built-in types': proved equal to the schema).
        quick = executor.quick_load(payload) if executor.quick_load is not None else None
        try:
            self.payload = quick if quick is not None else executor.schema.load(payload)
        except ValidationError as exc:
            error = f"invalid payload: {json.dumps(exc.messages)}"
            self.outcome = JobEnd.failure(error, retryable=False)
            return
        self.context = ExecutorContext(
            job_id=running.job_id,
            attempt=job.get("attempts") or 1,
            deadline=running.deadline,
            cancel_event=running.cancel_event,
            logger=self.logger,
            options=options,
            dependency_results={int(k): v for k, v in (job.get("dependencies") or {}).items()},
            on_progress=running.set_progress,
            client_factory=client_factory(options),
        )
        if self.plugins is not None:
            self._skip = self.plugins.call_each(
                "taskframe_before_run", job=job, context=self.context
            )
            self._hooked = True

    def call(self) -> Any:
        """The executor's run: its result, or an awaitable for an ``async def`` one."""
        return self.running.executor.run(self.payload, self.context)

    def raised(self, exc: BaseException) -> None:
        running, executor = self.running, self.running.executor
        running.failure = exc
        running.traceback = traceback_text(exc)
        retryable = _retryable(executor, exc)
        if retryable:
            running.retry_after = _retry_after(executor, exc, self.context.attempt)
        self.outcome = JobEnd.failure(describe(exc), retryable=retryable)

    def returned(self, result: Any) -> None:
        self.outcome = _checked(result, self.running)

    def end(self, tally: Tally | None) -> JobEnd:
        """After the call: the after-run hooks, the attempt's log, the log lines."""
        running, outcome = self.running, self.outcome
        assert outcome is not None
        try:
            if self.plugins is not None and self._hooked:
                shown = {**outcome._asdict(), "status": outcome.status.value}
                self.plugins.call_each(
                    "taskframe_after_run", job=running.job, context=self.context, outcome=shown,
                    skip=self._skip,
                )  # fmt: skip
        finally:
            running.log = self.logger.text()
            self.logger.finish()
        _log_outcome(running, outcome, time.monotonic() - self.started)
        if tally is not None:
            tally.add(f"jobs {outcome.status.value}")
        running.failure = None  # drop the traceback's frames
        return outcome


def runs_on_loop(executor: Executor) -> bool:
    """Whether the executor's run is ``async def``: awaited on the worker's loop."""
    return inspect.iscoroutinefunction(executor.run)


def execute(
    running: RunningJob,
    options: argparse.Namespace,
    plugins: PluginSet | None = None,
    tally: Tally | None = None,
) -> JobEnd:
    """Run one job in this thread, between the plugins' before/after hooks when some
    implement them.

    Logs its start and success at DEBUG (counted in ``tally``, which sums
    them up at INFO), an unexpected failure at WARNING with the executor's
    traceback, an expected ending at INFO; what the executor writes to
    ``context.logger`` is kept in ``running.log``.
    """
    attempt = Attempt(running, options, plugins)
    if attempt.outcome is None:
        try:
            result = attempt.call()
            if inspect.isawaitable(result):  # no loop of the worker's here: one of its own
                result = run_awaitable(result, attempt.context)
        except BaseException as exc:
            attempt.raised(exc)
        else:
            attempt.returned(result)
    return attempt.end(tally)


async def execute_on_loop(
    running: RunningJob,
    options: argparse.Namespace,
    plugins: PluginSet | None,
    tally: Tally | None = None,
) -> JobEnd:
    """:func:`execute` for an ``async def`` executor, awaited in the running task, which
    the worker cancels to stop the job (``running.on_cancel``)."""
    attempt = Attempt(running, options, plugins)
    if attempt.outcome is None:
        try:
            result = attempt.call()
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            attempt.raised(stopped_error(attempt.context))
        except BaseException as exc:
            attempt.raised(exc)
        else:
            attempt.returned(result)
    return attempt.end(tally)


def _log_outcome(running: RunningJob, outcome: JobEnd, took: float) -> None:
    """Success at DEBUG; an expected ending at INFO without traceback (asked for by the
    executor, a user's cancel, a release); anything else at WARNING with its traceback."""
    error = outcome.error
    fields = running.fields
    where = (running.job_id, fields["type"], fields["attempt"])
    if outcome.status == Reported.SUCCEEDED:
        log.debug("job %s (%s, attempt %s) succeeded in %.3f s", *where, took, extra=fields)
    elif isinstance(running.failure, Retry):
        log.info("job %s (%s, attempt %s) asks to be retried: %s", *where, error, extra=fields)
    elif isinstance(running.failure, PermanentError):
        log.info("job %s (%s, attempt %s) failed for good: %s", *where, error, extra=fields)
    elif running.failure is not None and _stopped_on_purpose(running):
        log.info("job %s (%s, attempt %s) stopped when told: %s", *where, error, extra=fields)
    else:  # with the executor's traceback when it raised
        log.warning(
            "job %s (%s, attempt %s) failed in %.3f s: %s",
            *(*where, took, error),
            exc_info=running.failure,
            extra=fields,
        )


def _stopped_on_purpose(running: RunningJob) -> bool:
    """Cancelled (a user's cancel, a release, the worker stopping), not timed out."""
    if not running.cancel_event.is_set():
        return False
    return running.deadline is None or time.monotonic() < running.deadline


def _checked(result: Any, running: RunningJob) -> JobEnd:
    """A returned result as the outcome the server takes (strict JSON within its depth)."""
    # The server must get strict JSON within its depth limit, or it would
    # refuse the whole request and every outcome riding on it.
    if result is None:  # most tasks return nothing: no need to look
        running.result_bytes = 4
        return JobEnd(Reported.SUCCEEDED, None, None, True)
    try:
        # As the server encodes it to store it (UTF-8, compact), and faster than json.
        running.result_bytes = len(json_codec.dumps(result))
    except (TypeError, ValueError, RecursionError) as exc:
        return JobEnd.failure(f"the result is not JSON-serialisable: {exc}", retryable=False)
    result = strict_json.encodable(result)  # lone surrogates become U+FFFD, tuples lists
    if strict_json.depth_exceeds(result, strict_json.MAX_RESULT_DEPTH):
        depth = strict_json.MAX_RESULT_DEPTH
        return JobEnd.failure(f"the result nests deeper than {depth} levels", retryable=False)
    return JobEnd(Reported.SUCCEEDED, result, None, True)


def _retryable(executor: Executor, exc: BaseException) -> bool:
    try:
        return executor.retryable(exc)
    except Exception:  # an Executor built by hand with a bad retry_on
        log.exception("job type %s: retry_on could not be applied", executor.name)
        return True


def _retry_after(executor: Executor, exc: BaseException, attempt: int) -> float | None:
    """The delay the executor asks for: Retry(after=...), else its backoff, else None."""
    if isinstance(exc, Retry):
        return exc.after
    if executor.backoff is None:
        return None
    try:
        delay = float(executor.backoff(attempt))
    except Exception:
        log.exception("job type %s: its backoff raised; the server's applies", executor.name)
        return None
    return min(MAX_RETRY_AFTER, max(0.0, delay)) if math.isfinite(delay) else None


def traceback_text(exc: BaseException, limit: int = MAX_TRACEBACK) -> str:
    """The exception's traceback as Python prints it: the last ``limit`` characters,
    with text UTF-8 cannot encode and NUL (PostgreSQL) replaced by U+FFFD."""
    try:
        text = "".join(traceback.format_exception(type(exc), exc, _own_frames_cut(exc)))
    except Exception:  # an exception whose str() raises
        text = f"{type(exc).__name__} (its traceback could not be formatted)"
    if len(text) > limit:
        head = f"[the traceback's first {len(text) - limit} characters are cut]\n"
        text = head + text[-(limit - len(head)) :]
    return strict_json.encodable_text(text.replace("\x00", "\ufffd"))


#: taskframe's frames between the worker and the executor (not worth showing).
_WRAPPERS = frozenset({__file__, run_awaitable.__code__.co_filename, inspect.getfile(_task_module)})


def _own_frames_cut(exc: BaseException) -> TracebackType | None:
    """The traceback from the first frame after taskframe's own wrappers (the executor's)."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    last = max(
        (i for i, f in enumerate(frames) if f.tb_frame.f_code.co_filename in _WRAPPERS),
        default=-1,
    )
    if last + 1 < len(frames):
        return frames[last + 1]
    return frames[last] if frames else None  # raised by a wrapper itself (NotJSON)


def describe(exc: BaseException) -> str:
    """``"ExcType: message"`` (just the type when there is no message)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
