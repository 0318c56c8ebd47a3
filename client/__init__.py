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
    BadJson,
    BadRequest,
    Conflict,
    CrossSite,
    DatabaseUnavailable,
    Forbidden,
    HeadersTooLarge,
    IdempotencyConflict,
    InternalError,
    JobFailed,
    JobFinished,
    LengthRequired,
    MethodNotAllowed,
    NotFound,
    NotImplementedByServer,
    NotRetryable,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    ScheduleExists,
    StaleLease,
    TaskframeError,
    TooManySchedules,
    TryAgain,
    Unauthorized,
    Unavailable,
    UnknownHost,
    UnsupportedMediaType,
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
    "BadJson",
    "BadRequest",
    "Batch",
    "Client",
    "Conflict",
    "CrossSite",
    "DatabaseUnavailable",
    "Forbidden",
    "HeadersTooLarge",
    "IdempotencyConflict",
    "InternalError",
    "Job",
    "JobFailed",
    "JobFinished",
    "JobType",
    "LengthRequired",
    "Limit",
    "MethodNotAllowed",
    "NotFound",
    "NotImplementedByServer",
    "NotRetryable",
    "PayloadTooLarge",
    "Queue",
    "RateLimited",
    "RequestTimeout",
    "Schedule",
    "ScheduleExists",
    "StaleLease",
    "Stats",
    "TaskJob",
    "TaskframeError",
    "TooManySchedules",
    "TryAgain",
    "Unauthorized",
    "Unavailable",
    "UnknownHost",
    "UnsupportedMediaType",
    "ValidationError",
    "WaitTimeout",
    "WorkerInfo",
]
