"""``Client.batch()``: queued submissions sent as ``POST /jobs/batch`` to the real app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskframe.client import Client, Unavailable, ValidationError
from taskframe.client.batch import BatchSubmitter
from taskframe.core.retry import BackoffPolicy
from tests.api_server import Mounted
from tests.fake_api import dead_url

pytestmark = pytest.mark.timeout(30)

SLOW = 30.0  # a linger no test waits out: batches leave when full, flushed or closed


@pytest.fixture
def client(api: Mounted) -> Iterator[Client]:
    with Client(api.url, timeout=10) as opened:
        yield opened


def test_every_future_gives_its_own_committed_job(client: Client, api: Mounted) -> None:
    with client.batch(linger=SLOW) as batch:
        futures = [batch.submit("sleep", {"duration": n}, priority=n + 1) for n in range(5)]
    ids = [future.result(timeout=0) for future in futures]  # answered when the block ends
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert api.paths("POST") == ["/jobs/batch"]  # one request for all five
    for n, job_id in enumerate(ids):
        job = client.get(job_id)
        assert (job.payload, job.priority) == ({"duration": n}, n + 1)


def test_a_full_batch_leaves_without_waiting_for_the_linger(client: Client, api: Mounted) -> None:
    with client.batch(max_size=2, linger=SLOW) as batch:
        first = [batch.submit("sleep", {"duration": 0}) for _ in range(2)]
        assert first[1].result(timeout=10) > first[0].result(timeout=10)  # sent when full
        rest = [batch.submit("sleep", {"duration": 0}) for _ in range(3)]
    assert [f.result(timeout=0) for f in rest] == sorted(f.result() for f in rest)
    assert api.paths("POST") == ["/jobs/batch"] * 3  # 2, 2 and the last one at close


def test_a_lone_job_leaves_after_the_linger(client: Client, api: Mounted) -> None:
    with client.batch(linger=0.05) as batch:
        future = batch.submit("sleep", {"duration": 0})
        job_id = future.result(timeout=10)  # nobody flushed: the linger sent it
        assert client.get(job_id).status == "queued"


def test_a_bad_job_fails_only_its_own_future(client: Client, api: Mounted) -> None:
    with client.batch(linger=SLOW) as batch:
        good = batch.submit("sleep", {"duration": 0})
        bad = batch.submit("sleep", {"duration": -1})
        also_good = batch.submit("sleep", {"duration": 1}, queue="other")
    with pytest.raises(ValidationError) as raised:
        bad.result(timeout=0)
    # Sent alone, its error names its own field, not its place in the batch.
    assert raised.value.field_messages() == [
        ("payload.duration", "must be between 0 and 86400.0 seconds")
    ]
    assert client.get(good.result(timeout=0)).status == "queued"
    assert client.get(also_good.result(timeout=0)).queue == "other"
    # The batch was refused whole, then each of its jobs went alone.
    assert api.paths("POST") == ["/jobs/batch", "/jobs", "/jobs", "/jobs"]


@pytest.mark.parametrize("max_size", [1, 1000])
def test_a_bad_jobs_error_names_its_own_fields_however_the_batch_was_cut(
    client: Client, api: Mounted, max_size: int
) -> None:
    """Alone in its batch (max_size 1, or the last one at close), a bad job's future
    got the batch's error, naming ``jobs.0.payload.duration``; in a batch of several,
    ``payload.duration``. The same job must get the same error."""
    with client.batch(max_size=max_size, linger=SLOW) as batch:
        bad = batch.submit("sleep", {"duration": -1})
    with pytest.raises(ValidationError) as raised:
        bad.result(timeout=0)
    assert raised.value.field_messages() == [
        ("payload.duration", "must be between 0 and 86400.0 seconds")
    ]
    assert api.paths("POST") == ["/jobs/batch", "/jobs"]


def test_flush_waits_for_the_answers_and_the_batch_stays_open(client: Client) -> None:
    batch = client.batch(linger=SLOW)
    try:
        first = batch.submit("sleep", {"duration": 0})
        batch.flush()
        assert first.done() and first.result() >= 1
        second = batch.submit("sleep", {"duration": 0})
        batch.flush()
        assert second.result(timeout=0) == first.result() + 1
    finally:
        batch.close()
    with pytest.raises(RuntimeError, match="this batch is closed"):
        batch.submit("sleep", {"duration": 0})


def test_a_server_that_cannot_be_reached_fails_every_future() -> None:
    client = Client(dead_url(), retries=0, retry_backoff=BackoffPolicy(0.01, 0.01))
    with client, client.batch(linger=SLOW) as batch:
        futures = [batch.submit("sleep", {"duration": 0}) for _ in range(3)]
    for future in futures:
        with pytest.raises(Unavailable, match="connection refused"):
            future.result(timeout=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_size": 0}, "max_size must be between 1 and 1000"),
        ({"max_size": 1001}, "max_size must be between 1 and 1000"),
        ({"linger": -0.1}, "linger must be ≥ 0 seconds"),
    ],
)
def test_bad_settings_are_refused(options: dict, message: str) -> None:
    with Client(dead_url()) as client, pytest.raises(ValueError, match=message):
        BatchSubmitter(client, **options)
