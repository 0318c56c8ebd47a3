"""The worker's side of leases and outcomes: late lease answers, what the server takes,
outcomes already recorded (issues 24.1, 24.3 and 18.4)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from taskframe.worker.client import ApiClient
from taskframe.worker.freshness import Delivery, Verdict
from taskframe.worker.outbox import BODY_RESERVE, Outbox
from tests.fake_api import FakeServer, fake_servers, start
from tests.processes import wait_until
from tests.unit import test_worker_loop
from tests.unit.test_worker_loop import FakeClient

pytestmark = pytest.mark.timeout(60)

# The worker on a fake client: the loop tests' own fixtures.
gates, plugins, run = test_worker_loop.gates, test_worker_loop.plugins, test_worker_loop.run


@pytest.fixture
def servers():
    yield from fake_servers()


# -- late lease answers (issue 24.1) ----------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "answered_after", "expires_in", "verdict"),
    [
        (0.05, 0.0, 30.0, Verdict.START),  # an immediate answer
        (20.0, 19.99, 30.0, Verdict.START),  # a long poll answered when a job came
        (3.0, 0.5, 30.0, Verdict.CONFIRM),  # 2.5 s unaccounted for: ask first
        (25.0, 0.5, 30.0, Verdict.LATE),  # at most 5.5 s of 30 left
        (40.0, 0.1, 30.0, Verdict.LATE),  # surely expired
        (0.05, 0.0, 5.0, Verdict.LATE),  # a replayed lease with little left
    ],
)
def test_a_lease_answer_that_came_late_is_confirmed_or_given_back(
    elapsed, answered_after, expires_in, verdict
):
    delivery = Delivery.of({"answered_after": answered_after}, elapsed, 30.0, 30.0)
    assert delivery.verdict({"expires_in": expires_in}) is verdict


def test_without_the_servers_timing_the_requested_wait_is_assumed():
    delivery = Delivery.of({}, elapsed=12.0, wait=10.0, ttl=30.0)
    assert delivery.delay == 2.0 and delivery.verdict({}) is Verdict.CONFIRM


#: The lease TTL of SlowAnswers: short, so that a late answer takes little real time
#: (the verdicts compare delays with shares of the TTL when it is under 4 s).
SLOW_TTL = 1.0


class SlowAnswers(FakeClient):
    """Answers each lease ``delay`` s late as if frozen after the server answered (the
    server says it answered at once); heartbeats find leases held unless ``lost``."""

    def __init__(self, delay: float, lost: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.lost = lost
        self.heartbeat_calls: list[list[int]] = []

    def lease(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = super().lease(*args, **kwargs)
        if answer["jobs"]:
            time.sleep(self.delay)
        for job in answer["jobs"]:
            job["expires_in"] = SLOW_TTL
        return {**answer, "lease_ttl": SLOW_TTL, "answered_after": 0.0}

    def heartbeats(self, worker_id, leases) -> dict[str, Any]:
        self.heartbeat_calls.append([lease["job_id"] for lease in leases])
        answer = super().heartbeats(worker_id, leases)
        if self.lost:
            answer["leases"] = [{**a, "ok": False} for a in answer["leases"]]
        return answer


def test_a_job_whose_lease_answer_came_too_late_is_given_back_unstarted(gates, run):
    """Before: the worker started it (another worker may have run it meanwhile)."""
    gates.gate.set()
    slow = SlowAnswers(delay=0.8 * SLOW_TTL)  # less than a quarter of the lease left
    run(slow, concurrency=1)
    job_id = slow.add("block", {})
    wait_until(lambda: job_id in slow.released, message="the job to be given back")
    assert not gates.started.acquire(timeout=0.5), "the job started"
    assert job_id not in slow.outcomes


def test_a_delayed_job_starts_once_a_heartbeat_confirms_its_lease(gates, run):
    gates.gate.set()
    held = SlowAnswers(delay=0.4 * SLOW_TTL)  # over a quarter late, over half left
    run(held, concurrency=1)
    job_id = held.add("block", {})
    assert held.outcome(job_id)["status"] == "succeeded"
    assert held.heartbeat_calls[0] == [job_id]  # confirmed before it ran


def test_a_delayed_job_whose_lease_is_gone_is_not_started(gates, run):
    lost = SlowAnswers(delay=0.4 * SLOW_TTL, lost=True)
    run(lost, concurrency=1)
    job_id = lost.add("block", {})
    wait_until(lambda: [job_id] in lost.heartbeat_calls, message="the confirmation")
    assert not gates.started.acquire(timeout=0.5), "the job started"
    assert job_id not in lost.outcomes and job_id not in lost.released


# -- what the server takes (issue 18.4) ------------------------------------------------


def completion(job_id: int, result: Any = None, **fields: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lease_id": f"l{job_id}",
        "status": "succeeded",
        "result": result,
        "error": None,
        "retryable": True,
        "log": None,
        **fields,
    }


def test_an_outcome_too_large_for_any_request_is_reported_failed_before_sending(servers):
    server = start(servers)
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    outbox.max_body = 200_000
    big = "x" * 300_000
    outbox.add(completion(1, big), result_bytes=len(json.dumps(big)))
    outbox.add(completion(2, "small"), result_bytes=7)
    outbox.exchange(0, 0.0)
    [(path, body)] = server.requests
    sent = {c["job_id"]: c for c in body["completions"]}
    assert sent[2]["status"] == "succeeded"
    assert sent[1]["status"] == "failed" and sent[1]["result"] is None
    assert sent[1]["retryable"] is False
    assert "more than the server takes in one request (200000 bytes)" in sent[1]["error"]
    assert len(outbox) == 0


def test_outcomes_are_split_into_requests_within_the_body_limit(servers):
    server = start(servers)
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    outbox.max_body = BODY_RESERVE + 250_000
    chunk = "y" * 100_000
    for job_id in range(1, 6):
        outbox.add(completion(job_id, chunk), result_bytes=len(json.dumps(chunk)))
    assert outbox.flush(timeout=10)
    sizes = [len(json.dumps(body)) for _, body in server.requests]
    assert [len(body["completions"]) for _, body in server.requests] == [2, 2, 1]
    assert max(sizes) < outbox.max_body


def test_a_413_for_a_batch_fails_the_oversized_outcome_alone(servers):
    """The worker's estimate was wrong (or the server's limit changed): the 413 that
    refuses the batch isolates the item it cannot take; the others are delivered."""

    def reply(path: str, body: Any) -> tuple[int, Any]:
        if any(len(json.dumps(c["result"])) > 10_000 for c in body["completions"]):
            return 413, {"title": "Request body too large", "description": "too large"}
        return FakeServer.accept_all(path, body)

    server = start(servers, reply)
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    outbox.add(completion(1, "ok"))
    outbox.add(completion(2, "z" * 20_000))  # its size not told: not caught before
    outbox.add(completion(3, "ok"))
    with pytest.raises(Exception, match="413"):
        outbox.exchange(0, 0.0)
    assert len(outbox) == 0
    delivered = {c["job_id"]: c for _, body in server.requests for c in body["completions"]}
    assert delivered[1]["status"] == delivered[3]["status"] == "succeeded"
    assert delivered[2]["status"] == "failed" and delivered[2]["result"] is None
    assert "413" in delivered[2]["error"]


# -- outcomes recorded already (issue 24.3) --------------------------------------------


def test_an_outcome_the_server_had_recorded_already_is_logged_as_such(servers, caplog):
    def reply(path: str, body: Any) -> tuple[int, Any]:
        status, answer = FakeServer.accept_all(path, body)
        for item in answer["completions"]:
            item["already_recorded"] = True
        return status, answer

    server = start(servers, reply)
    outbox = Outbox(ApiClient([server.url]), "w1", ["sleep"])
    outbox.add(completion(4, status="failed", error="boom"))
    with caplog.at_level(logging.DEBUG, logger="taskframe.worker"):
        outbox.exchange(0, 0.0)
    assert len(outbox) == 0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", "the failed outcome of job 4 was already recorded") in lines
    assert not [line for line in lines if "refused" in line[1] or line[0] == "WARNING"]


# -- a stopping worker's abandoned long poll (issue 18.3) ------------------------------


class Interrupted(BaseException):
    """What the worker's signal handler raises to abandon a long poll."""


def test_a_stopping_worker_asks_again_for_what_its_abandoned_request_got():
    calls: list[dict[str, Any]] = []
    leased = {"id": 9, "lease_id": "l9", "type": "sleep"}

    class Client:
        def lease(self, worker_id, types, max_jobs, wait, completions, request_id=None,
                  resent=False, info=None) -> dict[str, Any]:  # fmt: skip
            calls.append({"max": max_jobs, "wait": wait, "id": request_id, "resent": resent})
            if len(calls) == 1:
                raise Interrupted  # the server leased job 9 to it meanwhile
            return {"jobs": [leased] if resent else [], "completions": []}

    outbox = Outbox(Client(), "w1", ["sleep"])
    with pytest.raises(Interrupted):
        outbox.exchange(4, 30.0)
    assert outbox.reclaim()["jobs"] == [leased]
    first, again = calls
    assert again == {"max": 0, "wait": 0.0, "id": first["id"], "resent": True}
    assert outbox.reclaim() == {}  # answered: nothing more to ask
