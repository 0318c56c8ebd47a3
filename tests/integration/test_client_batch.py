"""Client.batch(): submissions queued from one thread, sent in batches, each acknowledged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskframe.client import Client, ValidationError
from tests.fake_api import dead_url
from tests.integration.live import Live, live_deployment

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_deployment(tmp_path_factory)


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with Client(live.url, timeout=30) as opened:
        yield opened


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
