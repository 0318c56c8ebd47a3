"""Which client calls are repeated when no server answered, against scripted servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskframe.client import Client, Unauthorized, Unavailable
from taskframe.core.retry import BackoffPolicy
from tests.fake_api import FakeServer, Reply, fake_servers, start

pytestmark = pytest.mark.timeout(30)

JOB = {"id": 1, "type": "sleep", "status": "queued", "payload": {}}


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    yield from fake_servers()


def flaky(failures: int, how: str) -> Callable[[str, Any], Reply]:
    """Fail the first ``failures`` requests (a 503, or a dropped connection), then answer."""
    seen: list[str] = []

    def reply(path: str, body: Any) -> Reply:
        seen.append(path)
        if len(seen) <= failures:
            if how == "drop":
                raise ConnectionResetError("dropped on purpose")  # no answer at all
            return 503, {"title": "Service Unavailable", "description": "database down"}
        if path.startswith("/jobs/batch"):
            return 201, {"ids": [1], "created": 1}
        return (201 if body is not None else 200), JOB

    return reply


def client_of(server: FakeServer, retries: int = 3) -> Client:
    return Client(server.url, retries=retries, retry_backoff=BackoffPolicy(0.01, 0.02))


@pytest.mark.parametrize("how", ["503", "drop"])
def test_reads_are_retried(servers: list[FakeServer], how: str) -> None:
    server = start(servers, flaky(2, how))
    assert client_of(server).get(1).id == 1
    assert len(server.requests) == 3


def test_retries_are_bounded(servers: list[FakeServer]) -> None:
    server = start(servers, flaky(10, "503"))
    with pytest.raises(Unavailable) as raised:
        client_of(server, retries=2).get(1)
    assert raised.value.status == 503 and raised.value.description == "database down"
    assert len(server.requests) == 3


@pytest.mark.parametrize("how", ["503", "drop"])
def test_a_submission_is_retried_only_with_an_idempotency_key(
    servers: list[FakeServer], how: str
) -> None:
    server = start(servers, flaky(1, how))
    with pytest.raises(Unavailable):
        client_of(server).submit("sleep", {})
    assert client_of(server).submit("sleep", {}).id == 1  # the server answers again
    server.reply = flaky(1, how)
    client_of(server).submit("sleep", {}, idempotency_key="k")
    assert [path for path, _ in server.requests] == ["/jobs"] * 4


def test_a_batch_is_retried_only_when_every_job_has_a_key(servers: list[FakeServer]) -> None:
    server = start(servers, flaky(1, "503"))
    jobs = [{"type": "sleep", "payload": {}, "idempotency_key": "a"}]
    assert client_of(server).submit_many(jobs).ids == [1]
    assert len(server.requests) == 2
    server.reply = flaky(1, "503")
    with pytest.raises(Unavailable):
        client_of(server).submit_many([*jobs, {"type": "sleep", "payload": {}}])
    assert len(server.requests) == 3


def test_cancel_and_retry_are_not_repeated(servers: list[FakeServer]) -> None:
    server = start(servers, flaky(1, "503"))
    with pytest.raises(Unavailable):
        client_of(server).cancel(1)
    server.reply = flaky(1, "503")
    with pytest.raises(Unavailable):
        client_of(server).retry(1)
    assert len(server.requests) == 2


def test_token_and_401(servers: list[FakeServer]) -> None:
    server = start(servers, lambda path, body: (401, {"title": "Unauthorized"}))
    with pytest.raises(Unauthorized):
        Client(server.url, token="tok").get(1)
    assert server.headers[0]["Authorization"] == "Bearer tok"
    assert len(server.requests) == 1  # refused: not retried


def test_workers_and_stats_are_typed(servers: list[FakeServer]) -> None:
    workers = {
        "workers": [
            {
                "id": "w1",
                "host": "h",
                "types": ["sleep"],
                "slots": 4,
                "running": 1,
                "last_seen": "2026-12-01T10:00:00.000Z",
                "alive": True,
                "new_field": True,
            }
        ]
    }
    answers = {"/workers": workers, "/stats": {"by_status": {"queued": 2}}}
    server = start(servers, lambda path, body: (200, answers[path]))
    client = Client(server.url)
    [worker] = client.workers()
    assert (worker.id, worker.types, worker.slots, worker.running) == ("w1", ["sleep"], 4, 1)
    assert worker.alive is True
    assert worker.last_seen is not None and worker.last_seen.hour == 10
    assert worker.extra == {"new_field": True}
    stats = client.stats()
    assert stats.by_status == {"queued": 2} and stats.stuck_types == []
