"""``Client``: the taskframe API from Python, with typed answers and typed errors."""

from __future__ import annotations

import builtins
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import quote

from taskframe.client.errors import JobFailed, Unavailable, WaitTimeout
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
from taskframe.client.transport import Transport
from taskframe.client.typed import is_task, task_payload
from taskframe.core.retry import BackoffPolicy

if TYPE_CHECKING:
    from taskframe.client.batch import BatchSubmitter

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
#: The server's cap on one long poll (``GET /jobs/{id}?wait=S``).
MAX_LONG_POLL = 60.0
#: The server's cap on one ``POST /jobs/batch``.
MAX_BATCH = 1000
#: The server's cap on one page of ``GET /jobs``.
MAX_PAGE = 1000
#: Extra read time granted beyond a long poll's ``wait``.
LONG_POLL_MARGIN = 10.0
RETRY_BACKOFF = BackoffPolicy(base=0.25, cap=4.0)
#: Seconds a bulk retry or cancel may take to answer (a million jobs: about a minute
#: and a half on SQLite, see bench/bulk.py).
BULK_READ_TIMEOUT = 3600.0


class Client:
    """A client of one taskframe deployment.

    ``url`` is a server URL, or several (a list or comma-separated): requests
    rotate over them and fail over. ``token`` is sent as a bearer token;
    ``ca_cert`` is the CA bundle that https servers are checked against;
    ``timeout`` bounds each request (connect and read); ``retries`` is how
    many more times a call that is safe to repeat (reads, and submissions
    with an idempotency key) is tried when no server answered.

    Every method raises a :class:`~taskframe.client.errors.TaskframeError`
    subclass on failure. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_cert: str | None = None,
        *,
        retries: int = 3,
        retry_backoff: BackoffPolicy = RETRY_BACKOFF,
    ) -> None:
        urls = url.split(",") if isinstance(url, str) else list(url)
        urls = [u.strip() for u in urls if u.strip()]
        for one in urls:
            if not one.startswith(("http://", "https://")):
                raise ValueError(f"{one!r} is not an http:// or https:// URL")
        self.transport = Transport(
            urls, connect_timeout=timeout, read_timeout=timeout, token=token, ca_cert=ca_cert
        )
        self.url = ",".join(self.transport.urls)
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff

    # -- jobs ------------------------------------------------------------------

    def submit(
        self,
        type: Any,
        payload: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        depends_on: Iterable[int] | None = None,
        on_dependency_failure: str | None = None,
        wait: float | None = None,
        **fields: Any,
    ) -> Job:
        """``POST /jobs``: submit one job and return it.

        With an ``idempotency_key`` the same submission can be repeated safely
        (it returns the existing job), so it is retried on connection errors.
        ``depends_on``: ids of jobs that must succeed first (the job is
        ``waiting`` until then); ``on_dependency_failure="run"`` runs it anyway.
        ``wait``: the server answers once the job finished, or after this many
        seconds (up to 60) with the job as it is then (``POST /jobs?wait=S``;
        see ``job.finished``, and :meth:`run` to wait for good).
        Extra keyword arguments are sent as they are (fields of newer servers).

        ``type`` may be a task (``client.submit(add, x=1, y=2)``): the extra
        keyword arguments (and ``payload``) are then its arguments, checked
        with the task's schema before anything is sent (a
        :class:`~taskframe.client.errors.ValidationError` as for a 422), and
        the answer is a :class:`TaskJob`, whose ``client.wait(job)`` gives the
        result. An argument named like an option above goes in ``payload``.
        """
        kind: builtins.type[Job] = Job
        if is_task(type):
            payload, fields, kind = task_payload(type, payload, fields), {}, TaskJob
            type = type.name
        body = job_body(
            type,
            payload,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            delay=delay,
            run_at=run_at,
            idempotency_key=idempotency_key,
            queue=queue,
            depends_on=None if depends_on is None else list(depends_on),
            on_dependency_failure=on_dependency_failure,
            **fields,
        )
        options: dict[str, Any] = {}
        if wait is not None and wait > 0:
            wait = min(wait, MAX_LONG_POLL)
            options["params"] = {"wait": f"{wait:.3f}"}
            options["read_timeout"] = wait + LONG_POLL_MARGIN + self.timeout
        call = functools.partial(self._call, "POST", "/jobs", body=body, **options)
        answer = self._retrying(call) if idempotency_key else call()
        return kind.from_json(answer)

    def run(
        self,
        type: Any,
        payload: dict[str, Any] | None = None,
        *,
        wait_timeout: float | None = None,
        **options: Any,
    ) -> Job:
        """Submit a job and return it once it finished (succeeded, failed or cancelled).

        One request when it finishes within a minute (``POST /jobs?wait=S``),
        long polls after that. ``type`` and ``options`` are :meth:`submit`'s
        (a task too: its arguments go in ``options``). Raises
        :class:`WaitTimeout` after ``wait_timeout`` seconds.
        """
        deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        first = MAX_LONG_POLL if wait_timeout is None else min(wait_timeout, MAX_LONG_POLL)
        job = self.submit(type, payload, wait=first, **options)
        if job.finished:
            return job
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        finished = self.wait(job.id, timeout=left)
        return builtins.type(job).from_json(finished.raw)  # a task's job stays a TaskJob

    def submit_many(self, jobs: Iterable[dict[str, Any]]) -> Batch:
        """``POST /jobs/batch``: submit jobs given as API bodies (``{"type", "payload", ...}``).

        Up to 1000 jobs go in one request, all or nothing; more are sent in
        several requests of 1000, each all or nothing. Retried on connection
        errors only when every job has an ``idempotency_key``.
        """
        bodies = [{**job, "run_at": _time_text(job["run_at"])} if "run_at" in job else job
                  for job in jobs]  # fmt: skip
        ids: list[int] = []
        created = 0
        for start in range(0, len(bodies), MAX_BATCH):
            chunk = bodies[start : start + MAX_BATCH]
            call = functools.partial(self._call, "POST", "/jobs/batch", body={"jobs": chunk})
            keyed = all(job.get("idempotency_key") for job in chunk)
            answer = self._retrying(call) if keyed else call()
            ids.extend(answer["ids"])
            created += answer["created"]
        return Batch(ids=ids, created=created)

    def batch(self, max_size: int = MAX_BATCH, linger: float = 0.005) -> BatchSubmitter:
        """A batching submitter: ``with client.batch() as b: future = b.submit(...)``.

        Jobs go out in ``POST /jobs/batch`` requests of up to ``max_size``,
        ``linger`` seconds after the first one queued at the latest; each
        future gives the job's id once the server has committed it. See
        :mod:`taskframe.client.batch`.
        """
        from taskframe.client.batch import BatchSubmitter

        return BatchSubmitter(self, max_size=max_size, linger=linger)

    def get(self, job_id: int) -> Job:
        """``GET /jobs/{id}``."""
        return Job.from_json(self._get(f"/jobs/{int(job_id)}"))

    @overload
    def wait(
        self,
        job_id: TaskJob,
        timeout: float | None = None,
        *,
        poll: float = MAX_LONG_POLL,
        on_update: Callable[[Job], None] | None = None,
    ) -> Any: ...

    @overload
    def wait(
        self,
        job_id: int | Job,
        timeout: float | None = None,
        *,
        poll: float = MAX_LONG_POLL,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job: ...

    def wait(
        self,
        job_id: int | Job,
        timeout: float | None = None,
        *,
        poll: float = MAX_LONG_POLL,
        on_update: Callable[[Job], None] | None = None,
    ) -> Any:
        """Wait until the job finished (succeeded, failed or cancelled) and return it.

        Long-polls ``GET /jobs/{id}?wait=S`` with S up to ``poll`` seconds, so
        the answer comes as soon as the job finishes. ``on_update`` is called
        with the job after each poll (for progress displays). Raises
        :class:`WaitTimeout` (a ``TimeoutError``) after ``timeout`` seconds.

        Given the :class:`TaskJob` of ``submit(task, ...)``, it returns the
        job's result instead, and raises :class:`JobFailed` (with the error and
        the last attempt's traceback) when the job failed or was cancelled.
        """
        if isinstance(job_id, TaskJob):
            job = self.wait(job_id.id, timeout, poll=poll, on_update=on_update)
            if job.succeeded:
                return job.result
            attempts = self.attempts(job.id)
            raise JobFailed(job, attempts[-1].traceback if attempts else None)
        if isinstance(job_id, Job):
            job_id = job_id.id
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = min(max(poll, 0.0), MAX_LONG_POLL)
        # A progress display learns the current state at once, not after a long poll.
        first = on_update is not None
        while True:
            left = MAX_LONG_POLL if deadline is None else deadline - time.monotonic()
            wait = 0.0 if first else max(0.0, min(poll, left))
            data = self._get(
                f"/jobs/{int(job_id)}",
                params={"wait": f"{wait:.3f}"} if wait > 0 else None,
                read_timeout=wait + LONG_POLL_MARGIN + self.timeout,
            )
            job = Job.from_json(data)
            if on_update is not None:
                on_update(job)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job.id} is still {job.status} after {timeout:g} s", job)
            if wait == 0 and not first:
                time.sleep(min(0.05, max(0.0, left)))  # the server was asked not to wait
            first = False

    def list(
        self,
        status: str | None = None,
        type: str | None = None,
        *,
        limit: int | None = None,
        page_size: int = 100,
        queue: str | None = None,
        key: str | None = None,
        sort: str | None = None,
        order: str | None = None,
    ) -> Iterator[Job]:
        """``GET /jobs``: jobs newest first, fetched page by page as they are consumed.

        They are summaries, without ``payload`` and ``result`` (use :meth:`get`).

        ``limit`` stops after that many jobs; ``page_size`` (1–1000) is the
        number fetched per request. ``queue`` and ``key`` (an idempotency key)
        filter too; ``sort`` (id, created, priority, finished) and ``order``
        (desc, asc) are applied by the server, across pages.
        """
        cursor: int | str | None = None
        seen = 0
        page_size = min(max(1, page_size), MAX_PAGE)
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            params: dict[str, Any] = {"limit": size}
            if status:
                params["status"] = status
            if type:
                params["type"] = type
            for name, value in (("queue", queue), ("key", key), ("sort", sort), ("order", order)):
                if value:
                    params[name] = value
            if cursor is not None:
                params["cursor"] = cursor
            page = self._get("/jobs", params=params)
            for data in page.get("jobs") or []:
                yield Job.from_json(data)
                seen += 1
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def cancel(self, job_id: int) -> Job:
        """``POST /jobs/{id}/cancel``: a queued job is cancelled now, a running one is
        told to stop; :class:`~taskframe.client.errors.Conflict` if it already finished."""
        return Job.from_json(self._call("POST", f"/jobs/{int(job_id)}/cancel"))

    def retry(self, job_id: int) -> Job:
        """``POST /jobs/{id}/retry``: a failed or cancelled job goes back to the queue."""
        return Job.from_json(self._call("POST", f"/jobs/{int(job_id)}/retry"))

    def bulk(
        self,
        action: str,
        *,
        dry_run: bool = False,
        limit: int | None = None,
        **filters: Any,
    ) -> dict[str, Any]:
        """``POST /jobs/retry`` or ``POST /jobs/cancel`` (``action``): every job that
        matches ``filters`` (status, type, queue, created_after, created_before,
        finished_after, finished_before; times as datetimes or ISO 8601 text).
        ``dry_run`` only counts them. The answer counts the jobs matched and changed."""
        if action not in ("retry", "cancel"):
            raise ValueError(f"action must be retry or cancel, not {action!r}")
        body: dict[str, Any] = {
            name: _time_text(value) for name, value in filters.items() if value is not None
        }
        body["dry_run"] = dry_run
        if limit is not None:
            body["limit"] = limit
        # The server works through a large match a chunk at a time: give it time.
        answer: dict[str, Any] = self._call(
            "POST", f"/jobs/{action}", body=body, read_timeout=BULK_READ_TIMEOUT
        )
        return answer

    def attempts(self, job_id: int) -> builtins.list[Attempt]:
        """``GET /jobs/{id}/attempts``: its finished attempts, oldest first."""
        answer = self._get(f"/jobs/{int(job_id)}/attempts")
        return [Attempt.from_json(item) for item in answer.get("attempts") or []]

    def running_attempt(self, job_id: int) -> Attempt | None:
        """The attempt running now with its log so far, as the worker's heartbeats
        brought it (``running`` of ``GET /jobs/{id}/attempts``), or None."""
        answer = self._get(f"/jobs/{int(job_id)}/attempts")
        running = answer.get("running")
        return Attempt.from_json(running) if running else None

    # -- the deployment --------------------------------------------------------

    def job_types(self) -> builtins.list[JobType]:
        """``GET /job-types``: the installed executors with their payload schemas."""
        answer = self._get("/job-types")
        return [JobType.from_json(item) for item in answer.get("job_types") or []]

    def stats(self) -> Stats:
        """``GET /stats``: counts by status and type, and the types no live worker runs."""
        return Stats.from_json(self._get("/stats") or {})

    def workers(self) -> builtins.list[WorkerInfo]:
        """``GET /workers``: the workers seen recently."""
        answer = self._get("/workers")
        items = answer.get("workers") if isinstance(answer, dict) else answer
        return [WorkerInfo.from_json(item) for item in items or []]

    # -- queues, limits, schedules -------------------------------------------------

    def queues(self) -> builtins.list[Queue]:
        """``GET /queues``: every queue with its jobs counted by status."""
        return [Queue.from_json(item) for item in self._get("/queues").get("queues") or []]

    def pause_queue(self, name: str) -> Queue:
        """``POST /queues/{name}/pause``: it keeps accepting jobs and leases none."""
        return Queue.from_json(self._call("POST", f"/queues/{quote(name, safe='')}/pause"))

    def resume_queue(self, name: str) -> Queue:
        """``POST /queues/{name}/resume``."""
        return Queue.from_json(self._call("POST", f"/queues/{quote(name, safe='')}/resume"))

    def limits(self) -> builtins.list[Limit]:
        """``GET /limits``."""
        return [Limit.from_json(item) for item in self._get("/limits").get("limits") or []]

    def set_limit(self, kind: str, name: str, max_running: int) -> Limit:
        """``PUT /limits/{kind}/{name}``: at most ``max_running`` of a type or queue at once."""
        path = f"/limits/{quote(kind, safe='')}/{quote(name, safe='')}"
        call = lambda: self._call("PUT", path, body={"max_running": max_running})  # noqa: E731
        return Limit.from_json(self._retrying(call))  # a PUT: safe to repeat

    def delete_limit(self, kind: str, name: str) -> None:
        """``DELETE /limits/{kind}/{name}``; NotFound when there is none."""
        self._call("DELETE", f"/limits/{quote(kind, safe='')}/{quote(name, safe='')}")

    def create_schedule(
        self,
        name: str,
        cron: str,
        job: dict[str, Any],
        *,
        timezone: str | None = None,
        misfire: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """``POST /schedules``: submit ``job`` (a ``POST /jobs`` body) at every fire time."""
        body: dict[str, Any] = {"name": name, "cron": cron, "job": job}
        for key, value in (("timezone", timezone), ("misfire", misfire), ("paused", paused)):
            if value is not None:
                body[key] = value
        return Schedule.from_json(self._call("POST", "/schedules", body=body))

    def schedules(self) -> builtins.list[Schedule]:
        """``GET /schedules``."""
        answer = self._get("/schedules")
        return [Schedule.from_json(item) for item in answer.get("schedules") or []]

    def schedule(self, name: str) -> Schedule:
        """``GET /schedules/{name}``, with its next fire times."""
        return Schedule.from_json(self._get(f"/schedules/{quote(name, safe='')}"))

    def delete_schedule(self, name: str) -> None:
        """``DELETE /schedules/{name}``."""
        self._call("DELETE", f"/schedules/{quote(name, safe='')}")

    def pause_schedule(self, name: str) -> Schedule:
        return Schedule.from_json(self._call("POST", f"/schedules/{quote(name, safe='')}/pause"))

    def resume_schedule(self, name: str) -> Schedule:
        """Resume from the next fire time after now."""
        return Schedule.from_json(self._call("POST", f"/schedules/{quote(name, safe='')}/resume"))

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return self._get("/health") or {}

    # -- plumbing --------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled keep-alive connections."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        return self.transport.call(method, path, **kw)

    def _get(self, path: str, **kw: Any) -> Any:
        return self._retrying(lambda: self._call("GET", path, **kw))

    def _retrying(self, call: Callable[[], T]) -> T:
        """Run ``call``; when no server answered, run it again (up to ``retries`` times)."""
        failures = 0
        while True:
            try:
                return call()
            except Unavailable:
                failures += 1
                if failures > self.retries:
                    raise
                time.sleep(self.retry_backoff.delay(failures))


def job_body(type: str, payload: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The ``POST /jobs`` body of one job; fields left None are not sent."""
    body: dict[str, Any] = {"type": type, "payload": {} if payload is None else payload}
    for name, value in fields.items():
        if value is not None:
            body[name] = _time_text(value) if name == "run_at" else value
    return body


def _time_text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
