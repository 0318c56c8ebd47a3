"""``Client`` against the real app over real HTTP (an in-process server, a real SQLite file).

Each test gets a fresh database; a job is run by leasing and completing it
over HTTP as a worker would (``run_as_worker``).
"""

from __future__ import annotations

import dataclasses
import threading
import types
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from taskframe.client import (
    Client,
    Conflict,
    JobFailed,
    NotFound,
    TaskframeError,
    Unavailable,
    ValidationError,
    WaitTimeout,
)
from taskframe.client.api import job_body
from taskframe.client.models import Job, TaskJob
from taskframe.core.plugins import load_plugins
from taskframe.core.retry import BackoffPolicy
from taskframe.core.task import task
from taskframe.core.task_modules import TasksPlugin
from tests.api_server import ApiServer, Mounted, lease_as_worker, migrated_copy, run_as_worker
from tests.fake_api import dead_url
from tests.processes import wait_until

pytestmark = pytest.mark.timeout(30)

LATER = 3600.0  # a delay that keeps a job off the lease path for the whole test


@pytest.fixture
def client(api: Mounted) -> Iterator[Client]:
    with Client(api.url, timeout=10) as opened:
        yield opened


# -- submitting --------------------------------------------------------------------


def test_submit_sends_every_field_and_returns_the_typed_job(client: Client) -> None:
    run_at = datetime.now(timezone.utc) + timedelta(hours=1)
    job = client.submit(
        "sleep",
        {"duration": 0.5},
        priority=7,
        max_attempts=2,
        timeout=9,
        run_at=run_at,
        idempotency_key="key-1",
        queue="reports",
    )
    assert (job.type, job.payload, job.priority) == ("sleep", {"duration": 0.5}, 7)
    assert (job.max_attempts, job.timeout) == (2, 9)
    assert (job.queue, job.idempotency_key) == ("reports", "key-1")
    assert job.status == "scheduled" and not job.finished and not job.succeeded
    # Times are aware datetimes (UTC); the server keeps milliseconds.
    assert job.run_at is not None and job.run_at.tzinfo is not None
    assert abs((job.run_at - run_at).total_seconds()) < 0.001
    assert job.created_at is not None and job.created_at <= job.run_at
    # Fields the model does not name are kept in extra, not dropped; raw is the JSON.
    named = {field.name for field in dataclasses.fields(Job)}
    assert job.extra == {k: v for k, v in job.raw.items() if k not in named}
    assert job.raw["id"] == job.id and job.raw["run_at"].endswith("Z")


def test_the_same_idempotency_key_returns_the_same_job(client: Client, api: Mounted) -> None:
    first = client.submit("sleep", {"duration": 0}, idempotency_key="once", delay=LATER)
    again = client.submit("sleep", {"duration": 0}, idempotency_key="once", delay=LATER)
    assert again.id == first.id
    assert len(list(client.list())) == 1
    assert api.paths("POST") == ["/jobs", "/jobs"]


def test_depends_on_holds_a_job_until_its_dependency_succeeded(
    client: Client, api: Mounted
) -> None:
    root = client.submit("sleep", {"duration": 0})
    child = client.submit(
        "sleep", {"duration": 0}, depends_on=iter([root.id]), on_dependency_failure="run"
    )
    assert child.status == "waiting"
    assert child.depends_on == [root.id] and child.on_dependency_failure == "run"
    assert run_as_worker(api.url)["id"] == root.id
    assert client.get(child.id).status == "queued"


def test_a_bad_payload_is_a_validation_error_naming_the_field(client: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        client.submit("sleep", {"duration": -1})
    error = raised.value
    assert error.status == 422 and error.url is not None and error.url.endswith("/jobs")
    assert error.field_messages() == [("payload.duration", "must be between 0 and 86400.0 seconds")]
    assert "payload" in str(error)


def test_unknown_types_and_unknown_fields_are_validation_errors(client: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        client.submit("nope")
    [(name, message)] = raised.value.field_messages()
    assert name == "type" and message.startswith("unknown job type 'nope'; installed types:")
    # Keyword arguments the client does not know are sent as they are: the server judges.
    with pytest.raises(ValidationError) as raised:
        client.submit("sleep", {"duration": 0}, colour="blue")
    assert [name for name, _ in raised.value.field_messages()] == ["colour"]


def test_a_body_that_is_not_json_is_refused_before_sending(client: Client, api: Mounted) -> None:
    with pytest.raises(TaskframeError, match="not valid JSON"):
        client.submit("sleep", {"duration": float("nan")})
    assert api.requests == []


def test_job_body_leaves_out_what_is_none_and_writes_times_as_text() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert job_body("sleep") == {"type": "sleep", "payload": {}}
    assert job_body("sleep", {"duration": 1}, priority=None, run_at=when, queue="q") == {
        "type": "sleep",
        "payload": {"duration": 1},
        "run_at": "2030-01-02T03:04:05+00:00",
        "queue": "q",
    }


# -- batches -----------------------------------------------------------------------


def test_submit_many_keeps_the_order_and_splits_past_a_thousand(
    client: Client, api: Mounted
) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    jobs = [{"type": "sleep", "payload": {"duration": i % 5}} for i in range(1001)]
    jobs[1000]["run_at"] = when  # a datetime is sent as ISO text
    batch = client.submit_many(jobs)
    assert batch.created == 1001 and len(batch.ids) == 1001
    assert batch.ids == sorted(batch.ids)  # in submission order
    assert api.paths("POST") == ["/jobs/batch", "/jobs/batch"]  # 1000, then 1
    last = client.get(batch.ids[-1])
    assert last.status == "scheduled" and last.payload == {"duration": 0}
    assert client.get(batch.ids[3]).payload == {"duration": 3}


def test_a_batch_with_existing_keys_creates_only_the_new_jobs(client: Client) -> None:
    first = client.submit("sleep", {"duration": 0}, idempotency_key="a", delay=LATER)
    batch = client.submit_many(
        [
            {"type": "sleep", "payload": {"duration": 0}, "idempotency_key": "a", "delay": LATER},
            {"type": "sleep", "payload": {"duration": 0}, "idempotency_key": "b", "delay": LATER},
        ]
    )
    assert batch.created == 1 and batch.ids[0] == first.id and batch.ids[1] != first.id


def test_a_bad_job_refuses_its_whole_batch_naming_its_index(client: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        client.submit_many(
            [{"type": "sleep", "payload": {"duration": 0}}, {"type": "sleep", "payload": {}}]
        )
    assert raised.value.field_messages() == [
        ("jobs.1.payload.duration", "Missing data for required field.")
    ]
    assert list(client.list()) == []  # all or nothing


# -- reading and waiting -------------------------------------------------------------


def test_get_of_an_unknown_job_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as raised:
        client.get(999)
    assert raised.value.status == 404
    assert (raised.value.title, raised.value.description) == ("Not found", "job 999 does not exist")


def test_wait_long_polls_until_a_worker_finishes_the_job(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0})
    seen: list[str] = []

    def worker() -> None:
        # Once the client sits in its long poll, the completion must wake it.
        wait_until(api.scheduler.notifier.has_waiters, 10, 0.01, "the client's long poll")
        run_as_worker(api.url, result={"slept": 0})

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        done = client.wait(job.id, timeout=20, on_update=lambda j: seen.append(j.status))
    finally:
        thread.join(10)
    assert done.succeeded and done.finished and done.result == {"slept": 0}
    assert done.attempts == 1 and done.worker_id == "w1"
    assert done.started_at is not None and done.finished_at is not None
    # The progress callback learnt the state at once, then the end.
    assert seen[0] == "queued" and seen[-1] == "succeeded"
    polls = [p for p in api.paths() if p.startswith(f"/jobs/{job.id}")]
    assert polls[0] == f"/jobs/{job.id}"  # the first look does not wait
    assert all("wait=" in p for p in polls[1:])


def test_run_submits_and_waits_in_one_request_when_the_job_is_short(
    client: Client, api: Mounted
) -> None:
    def worker() -> None:  # finishes the job while the submission waits for it
        wait_until(api.scheduler.notifier.has_waiters, 10, 0.01, "the submission's wait")
        run_as_worker(api.url, result={"slept": 0})

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        done = client.run("sleep", {"duration": 0}, wait_timeout=20)
    finally:
        thread.join(10)
    assert done.succeeded and done.result == {"slept": 0}
    [submission] = [path for path in api.paths("POST") if path.split("?")[0] == "/jobs"]
    assert submission.startswith("/jobs?wait=") and api.paths() == []  # nothing polled


def test_run_goes_on_waiting_past_the_submission_and_gives_up_in_time(
    client: Client, api: Mounted
) -> None:
    with pytest.raises(WaitTimeout) as raised:
        client.run("sleep", {"duration": 0}, delay=LATER, wait_timeout=0.3)
    assert raised.value.job.status == "scheduled"
    assert [path.split("?")[0] for path in api.paths("POST")] == ["/jobs"]


def test_wait_returns_a_failed_job_with_its_error(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, max_attempts=1)
    run_as_worker(api.url, "failed", error="boom")
    done = client.wait(job.id, timeout=5)
    assert (done.status, done.error, done.finished, done.succeeded) == (
        "failed",
        "boom",
        True,
        False,
    )


def test_wait_gives_up_with_the_jobs_last_state(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=LATER)
    with pytest.raises(WaitTimeout) as raised:
        client.wait(job.id, timeout=0.3, poll=0.1)
    assert isinstance(raised.value, TimeoutError)
    assert str(raised.value) == f"job {job.id} is still scheduled after 0.3 s"
    assert raised.value.job.id == job.id and raised.value.job.status == "scheduled"
    assert any("wait=0.1" in p for p in api.paths())


def test_wait_without_long_polls_asks_again_and_again(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=LATER)
    with pytest.raises(WaitTimeout):
        client.wait(job.id, timeout=0.3, poll=0)
    polls = api.paths()
    assert len(polls) >= 3 and all(p == f"/jobs/{job.id}" for p in polls)


def test_list_pages_newest_first_and_filters(client: Client, api: Mounted) -> None:
    ids = [client.submit("sleep", {"duration": 0}, delay=LATER).id for _ in range(5)]
    failing = client.submit("file", {"operation": "read", "path": "x"}, max_attempts=1)
    run_as_worker(api.url, "failed", error="no such file", types=("file",))

    api.requests.clear()
    listed = list(client.list(type="sleep", page_size=2))
    assert [j.id for j in listed] == ids[::-1]
    assert all(j.payload is None and j.result is None for j in listed)  # summaries
    assert len(api.paths()) == 3  # pages of 2, 2 and 1
    assert "type=sleep" in api.paths()[0] and "limit=2" in api.paths()[0]

    api.requests.clear()
    assert [j.id for j in client.list(limit=3, page_size=2)] == [failing.id, ids[4], ids[3]]
    assert [p.split("limit=")[1].split("&")[0] for p in api.paths()] == ["2", "1"]

    [failed] = client.list(status="failed")
    assert (failed.id, failed.error) == (failing.id, "no such file")
    assert list(client.list(status="running")) == []
    assert list(client.list(limit=0)) == []


# -- steering jobs -------------------------------------------------------------------


def test_cancel_then_retry_and_conflicts(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=LATER)
    cancelled = client.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished
    with pytest.raises(Conflict) as raised:
        client.cancel(job.id)
    assert raised.value.status == 409 and "cancelled" in (raised.value.description or "")
    assert client.retry(job.id).status == "queued"

    leased = run_as_worker(api.url)
    assert leased["id"] == job.id
    with pytest.raises(Conflict, match="succeeded"):
        client.retry(job.id)
    with pytest.raises(NotFound):
        client.cancel(12345)


def test_cancelling_a_running_job_asks_its_worker(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0})
    assert lease_as_worker(api.url)["id"] == job.id
    asked = client.cancel(job.id)
    assert asked.status == "running" and asked.cancel_requested


def test_attempts_carry_outcome_worker_and_log(client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, max_attempts=2)
    run_as_worker(api.url, "failed", error="first try", log="line 1\nline 2")
    assert client.get(job.id).status in ("queued", "scheduled")  # retried with a backoff
    with pytest.raises(NotFound, match="job 999 does not exist"):
        client.attempts(999)
    [attempt] = client.attempts(job.id)
    assert (attempt.attempt, attempt.outcome, attempt.worker_id) == (1, "failed", "w1")
    assert attempt.error == "first try" and attempt.log == "line 1\nline 2"
    assert attempt.started_at is not None and attempt.finished_at >= attempt.started_at


# -- the deployment ---------------------------------------------------------------------


def test_job_types_stats_workers_and_health(client: Client, api: Mounted) -> None:
    types = {t.name: t for t in client.job_types()}
    assert {"file", "http", "sleep"} <= set(types)
    assert "duration" in types["sleep"].payload_schema["properties"]
    assert types["sleep"].description

    client.submit("sleep", {"duration": 0})
    client.submit("sleep", {"duration": 0})
    stats = client.stats()
    assert stats.by_status["queued"] == 2 and stats.by_type["sleep"]["queued"] == 2
    assert stats.stuck_types == ["sleep"] and stats.workers_alive == 0
    assert stats.oldest_ready_age is not None and stats.oldest_ready_age >= 0

    run_as_worker(api.url, worker_id="w-7")
    [worker] = client.workers()
    assert (worker.id, worker.host, worker.types, worker.alive) == (
        "w-7",
        "test-host",
        ["sleep"],
        True,
    )
    assert worker.last_seen is not None and worker.last_seen.tzinfo is not None
    assert client.stats().workers_alive == 1

    health = client.health()
    assert health["status"] == "ok" and "sleep" in health["job_types"]


def test_queues_pause_and_resume(client: Client) -> None:
    client.submit("sleep", {"duration": 0}, queue="reports")
    paused = client.pause_queue("reports")
    assert (paused.name, paused.paused) == ("reports", True)
    queues = {q.name: q for q in client.queues()}
    assert queues["reports"].paused and queues["reports"].counts["queued"] == 1
    assert client.resume_queue("reports").paused is False
    # A name is quoted into one path segment; the server names what is wrong with it.
    with pytest.raises(ValidationError) as raised:
        client.pause_queue("Bad Name")
    assert raised.value.field_messages() == [("name", "'Bad Name' is not a queue name")]


def test_limits_set_list_and_delete(client: Client) -> None:
    limit = client.set_limit("type", "sleep", 2)
    assert (limit.kind, limit.name, limit.max_running) == ("type", "sleep", 2)
    client.set_limit("queue", "reports", 0)
    assert {(x.kind, x.name, x.max_running) for x in client.limits()} == {
        ("type", "sleep", 2),
        ("queue", "reports", 0),
    }
    client.delete_limit("type", "sleep")
    assert [x.name for x in client.limits()] == ["reports"]
    with pytest.raises(NotFound, match="no limit on type 'sleep'"):
        client.delete_limit("type", "sleep")
    with pytest.raises(ValidationError) as raised:
        client.set_limit("type", "sleep", -1)
    assert [name for name, _ in raised.value.field_messages()] == ["max_running"]


def test_schedules_from_creation_to_deletion(client: Client) -> None:
    job = {"type": "sleep", "payload": {"duration": 0}}
    made = client.create_schedule(
        "nightly", "30 2 * * *", job, timezone="Europe/Paris", misfire="skip", paused=True
    )
    assert (made.name, made.cron, made.timezone, made.misfire, made.paused) == (
        "nightly", "30 2 * * *", "Europe/Paris", "skip", True,
    )  # fmt: skip
    assert made.job["type"] == "sleep" and made.raw["name"] == "nightly"
    assert client.resume_schedule("nightly").paused is False
    shown = client.schedule("nightly")
    # Five next fire times, a day apart, at 02:30 in Paris.
    assert len(shown.next_fire_times) == 5
    assert all(t.tzinfo is not None for t in shown.next_fire_times)
    assert shown.next_fire_at == shown.next_fire_times[0]
    assert shown.next_fire_times[1] - shown.next_fire_times[0] == timedelta(days=1)
    assert shown.raw["next_fire_times"][0].endswith("Z")  # raw: the JSON as received
    assert client.pause_schedule("nightly").paused is True
    assert [s.name for s in client.schedules()] == ["nightly"]

    with pytest.raises(ValidationError) as raised:
        client.create_schedule("other", "not a cron", job)
    assert [name for name, _ in raised.value.field_messages()] == ["cron"]
    with pytest.raises(Conflict):
        client.create_schedule("nightly", "0 * * * *", job)

    client.delete_schedule("nightly")
    assert client.schedules() == []
    with pytest.raises(NotFound, match="no schedule named 'nightly'"):
        client.schedule("nightly")


# -- URLs and connections -----------------------------------------------------------


def test_several_urls_fail_over_to_the_one_that_answers(api: Mounted) -> None:
    dead = dead_url()
    with Client([dead, api.url], retries=0) as client:
        assert client.url == f"{dead},{api.url}"
        for _ in range(3):
            assert client.health()["status"] == "ok"
    with Client(f" {api.url} , ", retries=0) as client:  # blanks and empty parts are dropped
        assert client.url == api.url and client.health()["status"] == "ok"


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://example.org", "http://a, localhost"])
def test_a_url_that_is_not_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
        Client(url)


def test_no_server_is_unavailable_after_the_retries() -> None:
    url = dead_url()
    with Client(url, retries=2, retry_backoff=BackoffPolicy(0.01, 0.01)) as client:
        with pytest.raises(Unavailable) as raised:
            client.stats()
    assert raised.value.status is None and raised.value.description == "connection refused"
    assert raised.value.url == f"{url}/stats"


def test_close_ends_the_connections_and_a_later_call_opens_new_ones(
    client: Client, api: Mounted
) -> None:
    client.health()
    [connection] = client.transport._connections
    client.close()
    assert connection.sock is None
    assert client.health()["status"] == "ok"


# -- tasks: typed submission and results ------------------------------------------


@task(max_attempts=1)
def add(x: int, y: int = 1) -> int:
    """Add two numbers."""
    return x + y


@pytest.fixture
def with_add(api_server: ApiServer, sqlite_template: Path, tmp_path: Path) -> Iterator[Mounted]:
    """An app that has the ``add`` task installed (as ``--tasks`` would install it)."""
    module = types.ModuleType("client_test_tasks")
    plugins = load_plugins(extra_plugins=(TasksPlugin(module, [add]),), disabled=[])
    db = migrated_copy(sqlite_template, tmp_path / "tasks.db")
    yield api_server.mount(db, plugins=plugins)
    api_server.unmount()


def test_a_task_is_submitted_with_its_arguments_and_waited_for_its_result(
    with_add: Mounted,
) -> None:
    with Client(with_add.url) as client:
        job = client.submit(add, x=2)
        assert isinstance(job, TaskJob) and job.type == "add"
        # The server filled in the default argument, and the task's default max_attempts.
        assert (job.payload, job.max_attempts) == ({"x": 2, "y": 1}, 1)
        run_as_worker(with_add.url, result=3, types=("add",))
        assert client.wait(job, timeout=10) == 3  # the result, not the job


def test_a_tasks_arguments_are_checked_before_anything_is_sent(with_add: Mounted) -> None:
    with Client(with_add.url) as client, pytest.raises(ValidationError) as raised:
        client.submit(add, x="two")
    assert [name for name, _ in raised.value.field_messages()] == ["payload.x"]
    assert with_add.requests == []


def test_a_failed_tasks_wait_raises_with_the_remote_traceback(with_add: Mounted) -> None:
    with Client(with_add.url) as client:
        job = client.submit(add, x=1)
        trace = 'Traceback (most recent call last):\n  File "t.py"\nValueError: bad'
        run_as_worker(
            with_add.url, "failed", error="ValueError: bad", traceback=trace, types=("add",)
        )
        with pytest.raises(JobFailed) as raised:
            client.wait(job, timeout=10)
    failed = raised.value
    assert (failed.error, failed.job.status) == ("ValueError: bad", "failed")
    assert failed.traceback == trace
    assert str(failed).startswith(f"job {job.id} (add) failed after 1 attempt(s): ValueError: bad")
    assert "remote traceback (the last attempt):" in str(failed)
