"""taskframe.core: the job model, the plugin API and the API message schemas.

Task authors import from here::

    from taskframe.core import task, current_job, Retry, PermanentError

Plugin authors too::

    from taskframe.core import Executor, ExecutorContext, PermanentError, add_option, hookimpl
"""

from __future__ import annotations

from taskframe.core.executor import (
    Executor,
    ExecutorContext,
    ExecutorRegistry,
    PermanentError,
    Retry,
    hookimpl,
)
from taskframe.core.hints import HintError
from taskframe.core.options import add_option
from taskframe.core.retry import BackoffPolicy
from taskframe.core.task import Task, current_job, task

__all__ = [
    "BackoffPolicy",
    "Executor",
    "ExecutorContext",
    "ExecutorRegistry",
    "HintError",
    "PermanentError",
    "Retry",
    "Task",
    "add_option",
    "current_job",
    "hookimpl",
    "task",
]
