"""taskframe.client: the Python client, the ``taskframe`` command, and the HTTP transport.

Speaks HTTP only; never imports the server or the worker (the worker imports
:mod:`taskframe.client.transport`)::

    from taskframe.client import Client

    with Client("http://127.0.0.1:8000") as client:
        job = client.submit("sleep", {"duration": 1})
        print(client.wait(job.id, timeout=30).status)
"""

from __future__ import annotations

from taskframe.client.api import Client
from taskframe.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    JobFailed,
    NotFound,
    TaskframeError,
    Unauthorized,
    Unavailable,
    ValidationError,
    WaitTimeout,
)
from taskframe.client.models import (
    Attempt,
    Batch,
    Job,
    JobType,
    Limit,
    Queue,
    Schedule,
    Stats,
    TaskJob,
    WorkerInfo,
)

__all__ = [
    "Attempt",
    "BadRequest",
    "Batch",
    "Client",
    "Conflict",
    "Forbidden",
    "Job",
    "JobFailed",
    "JobType",
    "Limit",
    "NotFound",
    "Queue",
    "Schedule",
    "Stats",
    "TaskJob",
    "TaskframeError",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "WaitTimeout",
    "WorkerInfo",
]
