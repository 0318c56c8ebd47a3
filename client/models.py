"""What the client returns: jobs, attempts, job types, workers, as dataclasses.

Built from the API's JSON with ``from_json``; fields a newer server adds
land in ``extra`` (nothing is dropped), and ``raw`` keeps the JSON as
received (the CLI's ``--json`` prints it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from taskframe.core import model

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self

#: Statuses after which a job does not change (unless retried).
FINISHED = frozenset(status.value for status in model.FINISHED)  # the one list: core.model

T = TypeVar("T")


def parse_time(value: Any) -> datetime | None:
    """``2026-11-28T22:14:40.123Z`` -> an aware datetime (UTC); None stays None."""
    if not isinstance(value, str):
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


_FIELD_NAMES: dict[type, frozenset[str]] = {}  # per model class: fields() is slow


def _build(cls: type[T], data: dict[str, Any], times: tuple[str, ...] = ()) -> T:
    """``cls`` from JSON: known fields by name (times parsed), the rest in ``extra``."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        names = _FIELD_NAMES[cls] = names - {"extra", "raw"}
    known = {k: (parse_time(v) if k in times else v) for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return cls(**known, extra=extra, raw=data)  # type: ignore[call-arg]


_JOB_TIMES = ("run_at", "created_at", "started_at", "finished_at")


@dataclass(frozen=True)
class Job:
    """A job as ``GET /jobs/{id}`` shows it.

    Jobs from ``Client.list`` are the API's summaries: their ``payload`` and
    ``result`` are None (not sent); ``Client.get`` has them.
    """

    id: int
    type: str
    status: str
    payload: dict[str, Any] | None = None
    priority: int | None = None
    attempts: int = 0
    max_attempts: int | None = None
    timeout: float | None = None
    run_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    result: Any = None
    error: str | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    queue: str | None = None
    #: Ids of the jobs this one waits for (``waiting`` until they finished).
    depends_on: list[int] = field(default_factory=list)
    on_dependency_failure: str | None = None
    #: Where the server POSTs the job when it finishes (the webhook plugin).
    notify_url: str | None = None
    #: What the running (or last) attempt reported with ``current_job().progress()``:
    #: ``{"fraction", "message", "attempt", "updated_at"}``, or None.
    progress: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return _build(cls, data, _JOB_TIMES)

    @property
    def finished(self) -> bool:
        """True once the job succeeded, failed or was cancelled."""
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class TaskJob(Job):
    """A job submitted as a task (``client.submit(add, x=1)``): ``client.wait(job)``
    gives its result, or raises :class:`~taskframe.client.errors.JobFailed`."""


@dataclass(frozen=True)
class Attempt:
    """One finished attempt of a job (``GET /jobs/{id}/attempts``)."""

    attempt: int
    outcome: str | None = None
    worker_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    #: What the executor wrote to ``context.logger`` during the attempt (capped by the server).
    log: str | None = field(default=None, repr=False)
    #: Where the executor raised, when it did (its last 16 KiB).
    traceback: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return _build(cls, data, ("started_at", "finished_at"))


@dataclass(frozen=True)
class JobType:
    """An installed executor (``GET /job-types``)."""

    name: str
    description: str | None = None
    payload_schema: dict[str, Any] = field(default_factory=dict, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobType:
        return _build(cls, data)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker the servers heard from recently (``GET /workers``)."""

    id: str
    host: str | None = None
    #: The job types it runs.
    types: list[str] = field(default_factory=list)
    slots: int | None = None
    #: Jobs it runs now.
    running: int | None = None
    last_seen: datetime | None = None
    #: Seen within the liveness window.
    alive: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerInfo:
        return _build(cls, data, ("last_seen",))


@dataclass(frozen=True)
class Stats:
    """Counts of the queue (``GET /stats``)."""

    #: Jobs by status.
    by_status: dict[str, int] = field(default_factory=dict)
    #: Jobs by type, then by status.
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Seconds the oldest ready job has waited (None: no job is ready).
    oldest_ready_age: float | None = None
    #: Types with ready jobs and no live worker able to run them.
    stuck_types: list[str] = field(default_factory=list)
    workers_alive: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return _build(cls, data)


@dataclass(frozen=True)
class Batch:
    """What ``submit_many`` created: the job ids in submission order."""

    ids: list[int]
    created: int


@dataclass(frozen=True)
class Queue:
    """A queue (``GET /queues``): paused or not, its jobs counted by status."""

    name: str
    paused: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Queue:
        return _build(cls, data)


@dataclass(frozen=True)
class Limit:
    """At most ``max_running`` jobs of a type (``kind="type"``) or queue at once."""

    kind: str
    name: str
    max_running: int
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limit:
        return _build(cls, data)


@dataclass(frozen=True)
class Schedule:
    """A cron schedule: ``job`` is submitted at every fire time (``POST /schedules``)."""

    name: str
    cron: str
    timezone: str = "UTC"
    misfire: str = "latest"
    paused: bool = False
    job: dict[str, Any] = field(default_factory=dict)
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    next_fire_times: list[datetime] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        times = [parse_time(t) for t in data.get("next_fire_times") or []]
        built = _build(cls, {**data, "next_fire_times": times}, ("next_fire_at", "last_fire_at"))
        return dataclasses.replace(built, raw=data)  # the JSON as received
