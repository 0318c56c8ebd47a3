"""The worker's outbox and backoff against real tiny HTTP servers: resends, splits, drops."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskframe.core.retry import BackoffPolicy
from taskframe.worker.client import ApiClient, ApiError, FailureStreak, Unavailable
from taskframe.worker.outbox import Outbox
from tests.fake_api import FakeServer, Reply, dead_url, fail_first, fake_servers, start

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    yield from fake_servers()


def completion(job_id: int) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lease_id": f"lease-{job_id}",
        "status": "succeeded",
        "result": {"n": job_id},
        "error": None,
        "retryable": True,
    }


def test_completions_are_resent_after_503_until_accepted(servers: list[FakeServer]) -> None:
    server = start(servers, fail_first(3))
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    outbox.add(completion(1))
    outbox.add(completion(2))
    streak = FailureStreak("test", BackoffPolicy(base=0.01, cap=0.05))
    assert outbox.flush(timeout=5, streak=streak)
    assert server.completions_seen() == [[1, 2]] * 4
    assert streak.failures == 0
    outbox.exchange(max_jobs=1, wait=0)
    assert server.completions_seen()[-1] == []


def test_completions_survive_a_dead_server_and_go_to_the_next_one(
    servers: list[FakeServer],
) -> None:
    server = start(servers)
    outbox = Outbox(ApiClient([dead_url()]), "w1", ["sleep"])
    outbox.add(completion(7))
    with pytest.raises(Unavailable):
        outbox.exchange(max_jobs=0, wait=0)
    assert len(outbox) == 1
    outbox.client = ApiClient([dead_url(), server.url])
    outbox.exchange(max_jobs=0, wait=0)
    assert len(outbox) == 0 and server.completions_seen() == [[7]]


def test_stale_and_gone_completions_are_dropped_others_kept(servers: list[FakeServer]) -> None:
    codes = {1: (True, 200), 2: (False, 409), 3: (False, 404), 4: (False, 500)}

    def reply(path: str, body: Any) -> Reply:
        answers = [
            {"job_id": c["job_id"], "ok": ok, "code": code, "error": None}
            for c in body["completions"]
            for ok, code in [codes[c["job_id"]]]
        ]
        return 200, {"jobs": [], "completions": answers[::-1], "lease_ttl": 30}

    server = start(servers, reply)
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    for job_id in codes:
        outbox.add(completion(job_id))
    outbox.exchange(max_jobs=0, wait=0)
    outbox.add(completion(5))
    codes[5] = (True, 200)
    outbox.exchange(max_jobs=0, wait=0)
    assert server.completions_seen() == [[1, 2, 3, 4], [4, 5]]
    assert len(outbox) == 1  # job 4 (a per-item 500) is still waiting


def test_a_refused_batch_is_split_and_a_bad_outcome_replaced(servers: list[FakeServer]) -> None:
    def reply(path: str, body: Any) -> Reply:
        if len(body["completions"]) > 1:
            return 413, {"title": "Payload Too Large"}
        if any(c["result"] == {"n": 2} for c in body["completions"]):
            return 422, {"title": "Unprocessable"}
        return FakeServer.accept_all(path, body)

    server = start(servers, reply)
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    for job_id in (1, 2, 3):
        outbox.add(completion(job_id))
    with pytest.raises(ApiError):
        outbox.exchange(max_jobs=1, wait=0)
    assert len(outbox) == 0
    sent_alone = [
        (c["job_id"], c["status"]) for _, body in server.requests[2:] for c in body["completions"]
    ]
    # After the 413 an empty probe, then one by one; job 2's refused result became a failure.
    assert server.completions_seen()[:2] == [[1, 2, 3], []]
    assert sent_alone == [(1, "succeeded"), (2, "succeeded"), (2, "failed"), (3, "succeeded")]


def test_flush_gives_up_after_its_timeout(servers: list[FakeServer]) -> None:
    outbox = Outbox(ApiClient([dead_url()]), "w1", ["sleep"])
    outbox.add(completion(1))
    began = time.monotonic()
    assert not outbox.flush(timeout=0.3, streak=FailureStreak("test", BackoffPolicy(0.01, 0.1)))
    assert time.monotonic() - began < 1.0
    assert len(outbox) == 1


def test_backoff_is_bounded_and_warns_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    streak = FailureStreak("leasing", BackoffPolicy(base=0.05, cap=5.0))
    caplog.set_level(logging.WARNING, logger="taskframe.worker")
    delays = [streak.failure(Unavailable("down")) for _ in range(40)]
    assert 0.025 <= delays[0] <= 0.05
    assert all(0.025 <= d <= 5.0 for d in delays)
    assert min(delays[-10:]) >= 2.5  # reached the cap and stays there
    assert [r.getMessage() for r in caplog.records] == [
        "leasing failed, retrying with backoff: down"
    ]
    streak.success()
    streak.failure(Unavailable("down again"))
    assert len(caplog.records) == 3  # recovery, then one warning for the new streak
