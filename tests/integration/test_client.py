"""taskframe.client.Client against a live server and worker: every method, every error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from taskframe.client import (
    Attempt,
    Client,
    Conflict,
    Job,
    JobType,
    NotFound,
    Stats,
    TaskframeError,
    Unavailable,
    ValidationError,
    WaitTimeout,
    WorkerInfo,
)
from taskframe.core.retry import BackoffPolicy
from taskframe.worker.config import DEFAULT_CONCURRENCY
from tests.fake_api import dead_url
from tests.integration.live import LATER, Live, live_deployment
from tests.processes import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_deployment(tmp_path_factory)


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with Client(live.url, timeout=30) as opened:
        yield opened


def test_submit_wait_get_and_attempts(client: Client) -> None:
    job = client.submit("sleep", {"duration": 0.1}, priority=7, max_attempts=2)
    assert isinstance(job, Job)
    assert (job.type, job.payload, job.priority, job.max_attempts) == (
        "sleep",
        {"duration": 0.1},
        7,
        2,
    )
    assert job.status == "queued" and job.created_at is not None
    finished = client.wait(job.id, timeout=60)
    assert finished.succeeded and finished.finished
    assert finished.result["slept"] >= 0.1
    assert finished.finished_at is not None and finished.finished_at >= finished.created_at
    assert client.get(job.id) == finished
    [attempt] = client.attempts(job.id)
    assert isinstance(attempt, Attempt)
    assert (attempt.attempt, attempt.outcome) == (1, "succeeded")
    assert attempt.worker_id == finished.worker_id
    assert "sleeping 0.1 s" in attempt.log


def test_wait_reports_progress_and_times_out(client: Client) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=LATER)
    seen: list[str] = []
    with pytest.raises(WaitTimeout) as raised:
        client.wait(job.id, timeout=1.0, poll=0.3, on_update=lambda j: seen.append(j.status))
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.job.status == job.status  # not due yet: it stays where it is
    assert seen and set(seen) == {job.status}
    client.cancel(job.id)


def test_a_failed_job_is_returned_by_wait(client: Client) -> None:
    job = client.submit("file", {"operation": "read", "path": "missing.txt"}, max_attempts=1)
    finished = client.wait(job.id, timeout=60)
    assert finished.status == "failed" and not finished.succeeded
    assert finished.error
    assert [a.outcome for a in client.attempts(job.id)] == ["failed"]


def test_cancel_then_retry(client: Client) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=LATER)
    cancelled = client.cancel(job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(Conflict) as raised:
        client.cancel(job.id)  # finished: nothing to cancel
    assert raised.value.status == 409 and "cancelled" in str(raised.value)
    queued = client.retry(job.id)
    assert not queued.finished and queued.id == job.id and queued.attempts == 0


def test_retry_of_a_succeeded_job_is_a_conflict(client: Client) -> None:
    job = client.wait(client.submit("sleep", {"duration": 0}).id, timeout=60)
    with pytest.raises(Conflict):
        client.retry(job.id)
    with pytest.raises(Conflict):
        client.cancel(job.id)


def test_idempotency_key_returns_the_same_job(client: Client) -> None:
    key = f"key-{time.time_ns()}"
    first = client.submit("sleep", {"duration": 0}, idempotency_key=key, delay=LATER)
    again = client.submit("sleep", {"duration": 0}, idempotency_key=key, delay=LATER)
    assert again.id == first.id and again.idempotency_key == key
    with pytest.raises(Conflict):
        client.submit("sleep", {"duration": 1}, idempotency_key=key)
    client.cancel(first.id)


def test_submit_many_and_list_pages(client: Client) -> None:
    batch = client.submit_many(
        [{"type": "sleep", "payload": {"duration": 0}, "delay": LATER} for _ in range(7)]
    )
    assert len(batch.ids) == 7 and batch.created == 7
    assert batch.ids == sorted(batch.ids)
    held = client.get(batch.ids[0]).status  # queued, or a status for jobs not due yet
    # Pages of 3: the seven newest held jobs come from three requests, newest first.
    listed = list(client.list(status=held, type="sleep", page_size=3, limit=7))
    assert [j.id for j in listed] == batch.ids[::-1]
    assert all(isinstance(j, Job) and j.status == held for j in listed)
    assert listed[0].payload is None  # listings are summaries; get() has the payload
    assert client.get(listed[0].id).payload == {"duration": 0}
    assert len(list(client.list(status=held, limit=2))) == 2
    for job_id in batch.ids:
        client.cancel(job_id)
    cancelled = {j.id for j in client.list(status="cancelled", page_size=2)}
    assert set(batch.ids) <= cancelled


def test_job_types(client: Client) -> None:
    types = client.job_types()
    assert all(isinstance(t, JobType) for t in types)
    by_name = {t.name: t for t in types}
    assert {"sleep", "http", "file"} <= set(by_name)
    assert "duration" in by_name["sleep"].payload_schema["properties"]


def test_health(client: Client) -> None:
    assert client.health()["status"] == "ok"


def test_stats_and_workers(client: Client) -> None:
    # The shared worker may not have asked for work yet when this test runs first.
    wait_until(lambda: client.stats().workers_alive == 1, 30, message="the worker is seen")
    job = client.submit("sleep", {"duration": 0}, delay=LATER)
    stats = client.stats()
    assert isinstance(stats, Stats)
    assert stats.by_status[job.status] >= 1 and stats.by_type["sleep"][job.status] >= 1
    assert sum(stats.by_status.values()) == sum(sum(c.values()) for c in stats.by_type.values())
    assert stats.workers_alive == 1 and stats.stuck_types == []
    [worker] = client.workers()
    assert isinstance(worker, WorkerInfo) and worker.alive
    # The worker's default slots (--concurrency), whatever it is now.
    assert {"file", "http", "sleep"} <= set(worker.types) and worker.slots == DEFAULT_CONCURRENCY
    assert worker.last_seen is not None
    client.cancel(job.id)


# -- errors -------------------------------------------------------------------------


def test_bad_payload_is_a_validation_error_naming_the_field(client: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        client.submit("sleep", {"duration": -1})
    error = raised.value
    assert error.status == 422
    assert set(error.errors) == {"payload"} and "duration" in error.errors["payload"]
    [(field, message)] = error.field_messages()
    assert field == "payload.duration" and message


def test_unknown_type_and_bad_fields_are_validation_errors(client: Client) -> None:
    with pytest.raises(ValidationError) as raised:
        client.submit("nope", {})
    assert "sleep" in raised.value.errors["type"][0]  # the installed types are listed
    with pytest.raises(ValidationError) as raised:
        client.submit("sleep", {"duration": 0}, priority=99)
    assert [f for f, _ in raised.value.field_messages()] == ["priority"]


def test_bad_job_in_a_batch_names_its_index(client: Client) -> None:
    good = {"type": "sleep", "payload": {"duration": 0}, "delay": LATER}
    bad = {"type": "sleep", "payload": {"duration": "long"}}
    with pytest.raises(ValidationError) as raised:
        client.submit_many([good, bad])
    assert [f for f, _ in raised.value.field_messages()] == ["jobs.1.payload.duration"]


def test_unknown_job_is_not_found(client: Client) -> None:
    for call in (client.get, client.cancel, client.retry, client.wait):
        with pytest.raises(NotFound) as raised:
            call(10**12)
        assert raised.value.status == 404


def test_server_down_is_unavailable_after_retries() -> None:
    url = dead_url()
    with Client(url, retries=2, retry_backoff=BackoffPolicy(0.01, 0.02)) as client:
        with pytest.raises(Unavailable) as raised:
            client.get(1)
    assert raised.value.status is None and url in str(raised.value)
    assert raised.value.description == "connection refused"
    assert isinstance(raised.value, TaskframeError)


def test_bad_url_is_refused_at_once() -> None:
    with pytest.raises(ValueError):
        Client("localhost:8000")


# -- Client.batch(): submissions queued from one thread, sent in batches -------------


def test_every_future_gives_its_own_committed_job(client: Client) -> None:
    with client.batch(max_size=100, linger=0.05) as batch:
        futures = [batch.submit("sleep", {"duration": 0}, priority=1 + i % 10) for i in range(250)]
    ids = [future.result(timeout=0) for future in futures]  # all answered on leaving
    assert len(set(ids)) == 250
    for i in (0, 99, 100, 249):  # each id is the job submitted in that place
        assert client.get(ids[i]).priority == 1 + i % 10


def test_a_bad_job_fails_only_its_own_future(client: Client) -> None:
    with client.batch(linger=0.2) as batch:
        good = [batch.submit("sleep", {"duration": 0}) for _ in range(3)]
        bad = batch.submit("sleep", {"duration": -1})
        good += [batch.submit("sleep", {"duration": 0}) for _ in range(3)]
    with pytest.raises(ValidationError) as raised:
        bad.result(timeout=0)
    assert "payload.duration" in dict(raised.value.field_messages())
    assert all(client.get(future.result(timeout=0)).type == "sleep" for future in good)


def test_flush_waits_for_the_answers_and_the_batch_stays_open(client: Client) -> None:
    with client.batch(linger=30) as batch:  # only a flush or the exit sends before 30 s
        first = batch.submit("sleep", {"duration": 0})
        batch.flush()
        assert first.done() and client.get(first.result()).type == "sleep"
        second = batch.submit("sleep", {"duration": 0})
    assert second.result(timeout=0) != first.result()


def test_a_server_that_cannot_be_reached_fails_every_future() -> None:
    with Client(dead_url(), timeout=2, retries=0) as client, client.batch() as batch:
        futures = [batch.submit("sleep", {"duration": 0}) for _ in range(5)]
    for future in futures:
        assert isinstance(future.exception(timeout=0), Exception)
    with pytest.raises(RuntimeError):
        batch.submit("sleep", {"duration": 0})
