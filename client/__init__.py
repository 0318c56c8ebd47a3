"""taskframe.client: the Python client, the ``taskframe`` command, and the HTTP transport.

Speaks HTTP only; never imports the server or the worker (the worker imports
:mod:`taskframe.client.transport`).
"""

from __future__ import annotations

from taskframe.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TaskframeError,
    Unauthorized,
    Unavailable,
    ValidationError,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "TaskframeError",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
]
