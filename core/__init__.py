"""taskframe.core: the job model, the plugin API and the API message schemas.

Plugin authors import from here::

    from taskframe.core import Executor, ExecutorContext, PermanentError, add_option, hookimpl
"""

from __future__ import annotations

from taskframe.core.executor import (
    Executor,
    ExecutorContext,
    ExecutorRegistry,
    PermanentError,
    hookimpl,
)
from taskframe.core.options import add_option

__all__ = [
    "Executor",
    "ExecutorContext",
    "ExecutorRegistry",
    "PermanentError",
    "add_option",
    "hookimpl",
]
