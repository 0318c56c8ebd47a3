"""``@task``: a plain function as a job type.

::

    from taskframe.core import task, current_job

    @task(queue="images", max_attempts=5)
    def resize(path: str, width: int = 800) -> dict:
        \"\"\"Resize one image.\"\"\"
        current_job().progress(0.5, "decoded")
        ...
        return {"path": path, "width": width}

The payload is the function's keyword arguments; its schema comes from the
type hints (:mod:`taskframe.core.hints`), its description from the
docstring, and the result is the return value, which must be JSON. A
:class:`Task` is an :class:`~taskframe.core.executor.Executor` like any
other: load its module with ``--tasks MODULE`` or publish it through the
``taskframe`` entry-point group; calling it runs the function directly.
"""

from __future__ import annotations

import contextvars
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from taskframe.core import limits, schemas
from taskframe.core.executor import (
    BackoffCallable,
    Executor,
    ExecutorContext,
    PermanentError,
)
from taskframe.core.hints import payload_schema
from taskframe.core.limits import MAX_RETRY_AFTER
from taskframe.core.retry import BackoffPolicy

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[ExecutorContext | None] = contextvars.ContextVar(
    "taskframe_current_job", default=None
)


def current_job() -> ExecutorContext:
    """The running job's context: ``job_id``, ``attempt``, ``logger``, ``progress()``,
    ``client`` (to submit follow-up jobs), ``cancel_event``, ``time_left()``.

    Only inside a task run by a worker or by :func:`taskframe.testing.run_task`.
    """
    context = _current.get()
    if context is None:
        raise RuntimeError(
            "current_job() works only while a task runs (in a worker, or in "
            "taskframe.testing.run_task)"
        )
    return context


class NotJSON(PermanentError):
    """A task returned something that is not JSON (retrying would not change it)."""


@dataclass(frozen=True)
class Task(Executor):
    """A job type made from a function by :func:`task`; call it to run the function."""

    function: Callable[..., Any] = field(kw_only=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


@overload
def task(function: F, /) -> Task: ...


@overload
def task(
    function: None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    backoff: float | BackoffPolicy | BackoffCallable | None = None,
    retry_on: type[BaseException] | Iterable[type[BaseException]] | None = None,
) -> Callable[[F], Task]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    backoff: float | BackoffPolicy | BackoffCallable | None = None,
    retry_on: type[BaseException] | Iterable[type[BaseException]] | None = None,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Make ``function`` a job type; ``@task`` or ``@task(name=..., ...)``.

    :param name: the job type (default: the function's name).
    :param queue: priority: max_attempts: timeout: the type's defaults, used when a
        submission omits them (shown by ``GET /job-types``).
    :param backoff: the delay before the next attempt after a failure the function
        raised: seconds, a :class:`~taskframe.core.retry.BackoffPolicy`, or a
        callable taking the number of the failed attempt (default: the server's).
    :param retry_on: only these exceptions are retried; any other fails the job at once.

    A hint that cannot come from JSON raises :class:`~taskframe.core.hints.HintError`
    here, naming the function and the parameter.
    """

    def make(function: Callable[..., Any]) -> Task:
        return _make_task(
            function,
            name=name,
            defaults=_defaults(function, queue, priority, max_attempts, timeout),
            backoff=_backoff(function, backoff),
            retry_on=_retry_on(function, retry_on),
        )

    return make if function is None else make(function)


def _make_task(
    function: Callable[..., Any],
    *,
    name: str | None,
    defaults: dict[str, Any],
    backoff: BackoffCallable | None,
    retry_on: tuple[type[BaseException], ...] | None,
) -> Task:
    if not callable(function) or isinstance(function, Task):
        raise TypeError(f"@task decorates a function, not {function!r}")
    owner = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
    name = function.__name__ if name is None else name
    from taskframe.core.plugins import NAME_PATTERN  # plugins imports this module's users

    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{owner}: job type name {name!r} is invalid: it must match [a-z][a-z0-9_.-]* "
            "(give @task(name=...))"
        )
    schema = payload_schema(function, owner)
    return Task(
        name=name,
        schema=schema,
        run=_runner(function, name),
        description=inspect.getdoc(function) or "",
        defaults=defaults,
        retry_on=retry_on,
        backoff=backoff,
        function=function,
    )


def _runner(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The executor's run: the function with the payload as keyword arguments.

    An ``async def`` function gives an ``async def`` run, which the worker
    awaits (:func:`taskframe.worker.aio.run_awaitable`).
    """
    if inspect.iscoroutinefunction(function):

        async def run_async(payload: dict[str, Any], context: ExecutorContext) -> Any:
            token = _current.set(context)
            try:
                result = await function(**payload)
            finally:
                _current.reset(token)
            return checked_result(result, name)

        return run_async

    def run(payload: dict[str, Any], context: ExecutorContext) -> Any:
        token = _current.set(context)
        try:
            result = function(**payload)
        finally:
            _current.reset(token)
        return checked_result(result, name)

    return run


def checked_result(result: Any, name: str) -> Any:
    """``result`` if it is JSON; else :class:`NotJSON` naming the type (and where it is)."""
    problem = json_problem(result)
    if problem is not None:
        raise NotJSON(
            f"task {name!r} returned {problem}, which is not JSON (return str, int, "
            "float, bool, None, and lists and dicts with str keys of those)"
        )
    return result


def json_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Where ``value`` stops being JSON: ``"a datetime at result['when']"``, or None."""
    where = f" at result{path}" if path else ""
    if depth > 200:
        return f"a structure nested too deep{where}"
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"the float {value!r}{where}"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = json_problem(item, f"{path}[{index}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key of type {type(key).__name__}{where}"
            problem = json_problem(item, f"{path}[{key!r}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return f"a {type(value).__name__}{where}"


def _defaults(
    function: Callable[..., Any],
    queue: str | None,
    priority: int | None,
    max_attempts: int | None,
    timeout: float | None,
) -> dict[str, Any]:
    """The type's submission defaults, checked as the API checks them."""
    owner = getattr(function, "__qualname__", repr(function))
    found: dict[str, Any] = {}
    if queue is not None:
        if not schemas.is_queue_name(queue):
            raise ValueError(f"{owner}: queue {queue!r} is not a queue name")
        found["queue"] = queue
    for key, value, low, high in (
        ("priority", priority, limits.MIN_PRIORITY, limits.MAX_PRIORITY),
        ("max_attempts", max_attempts, 1, limits.MAX_ATTEMPTS),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{owner}: {key} must be an integer from {low} to {high}")
        found[key] = value
    if timeout is not None:
        if not _seconds(timeout, 7 * 86400):
            raise ValueError(f"{owner}: timeout must be 0 to {7 * 86400} seconds")
        found["timeout"] = float(timeout)
    return found


def _seconds(value: Any, high: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= high
    )


def _backoff(
    function: Callable[..., Any], backoff: float | BackoffPolicy | BackoffCallable | None
) -> BackoffCallable | None:
    owner = getattr(function, "__qualname__", repr(function))
    if backoff is None:
        return None
    if isinstance(backoff, BackoffPolicy):
        return backoff.delay
    if isinstance(backoff, int | float) and not isinstance(backoff, bool):
        if not _seconds(backoff, MAX_RETRY_AFTER):
            raise ValueError(f"{owner}: backoff must be 0 to {MAX_RETRY_AFTER:g} seconds")
        fixed = float(backoff)
        return lambda attempt: fixed
    if callable(backoff):
        return backoff
    raise TypeError(f"{owner}: backoff takes seconds, a BackoffPolicy or a callable")


def _retry_on(
    function: Callable[..., Any],
    retry_on: type[BaseException] | Iterable[type[BaseException]] | None,
) -> tuple[type[BaseException], ...] | None:
    if retry_on is None:
        return None
    kinds = (retry_on,) if isinstance(retry_on, type) else tuple(retry_on)
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            owner = getattr(function, "__qualname__", repr(function))
            raise TypeError(f"{owner}: retry_on takes exception classes, not {kind!r}")
    return kinds
