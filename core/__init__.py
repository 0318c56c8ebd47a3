"""taskframe.core: the job model, the plugin API and the API message schemas.

Plugin authors import from here::

    from taskframe.core import Executor, ExecutorContext, PermanentError, hookimpl
"""

from __future__ import annotations

from taskframe.core.executor import Executor, ExecutorContext, PermanentError, hookimpl

__all__ = ["Executor", "ExecutorContext", "PermanentError", "hookimpl"]
