"""The webhook outbox (server/engine/outbox.py) over each backend: rows written in the
transaction that finishes a job, claims, retries, limits per receiver.

The sender is a stand-in for the plugin's HTTP (it records what it is asked to
send); the database is real.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from taskframe.core.webhooks import Delivery, DeliveryOutcome, DeliveryResult, OutboxSettings
from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.outbox import Outbox, origin
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.observe.metrics import Metrics
from tests.processes import wait_until
from tests.unit.test_scheduler import Clock, job, raw_connection

HOOK = "http://receiver.example:8080/hook"


class Sender:
    """Records deliveries; those to a gated receiver wait until the gate opens."""

    def __init__(
        self, settings: OutboxSettings, outcome: DeliveryOutcome = DeliveryOutcome.DELIVERED
    ):
        self.settings = settings
        self.outcome = outcome
        self.delivered: list[Delivery] = []
        self.gates: dict[str, threading.Event] = {}
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def start(self, server_port: int | None) -> None:
        self.server_port = server_port

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        name = origin(delivery.url)
        with self._lock:
            self.in_flight[name] += 1
            self.most_in_flight[name] = max(self.most_in_flight[name], self.in_flight[name])
        gate = self.gates.get(name)
        if gate is not None:
            gate.wait(30)
        with self._lock:
            self.in_flight[name] -= 1
            self.delivered.append(delivery)
        return DeliveryResult(self.outcome, "stand-in")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler(store, clock) -> Scheduler:
    config = ServerConfig(lease_ttl=30.0, default_timeout=300.0)
    return Scheduler(store, config, clock=clock, rng=random.Random(7))


def outbox_rows(db_url: str) -> list[dict[str, Any]]:
    with raw_connection(db_url) as connection:
        cursor = connection.execute("SELECT * FROM webhook_outbox ORDER BY id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def submit(scheduler: Scheduler, **fields: Any) -> dict[str, Any]:
    [(row, created)] = scheduler.submit([job(**fields)])
    assert created
    return row


def run_and_report(scheduler: Scheduler, status: str, **fields: Any) -> None:
    [row] = scheduler.lease("w1", ["sleep"], 1, wait=0)
    completion = Completion(row["id"], row["lease_id"], status, worker_id="w1", **fields)
    [outcome] = scheduler.complete([completion])
    assert outcome.recorded


def test_every_way_a_job_finishes_writes_one_outbox_row(scheduler, clock, db_url):
    succeeded = submit(scheduler, notify_url=HOOK + "/1")
    run_and_report(scheduler, "succeeded", result={"ok": 1})
    failed = submit(scheduler, notify_url=HOOK + "/2")
    run_and_report(scheduler, "failed", error="boom", retryable=False)
    cancelled = submit(scheduler, notify_url=HOOK + "/3", delay=60)
    scheduler.cancel(cancelled["id"])
    silent = submit(scheduler)  # no notify_url: no row
    run_and_report(scheduler, "succeeded")
    reaped = submit(scheduler, notify_url=HOOK + "/4", max_attempts=1)
    root = submit(scheduler, max_attempts=1, delay=1)  # its dependant goes with it
    dependant = submit(scheduler, notify_url=HOOK + "/5", depends_on=[root["id"]])
    scheduler.lease("w1", ["sleep"], 1, wait=0)  # leases `reaped`
    clock.advance(120)
    scheduler.promote()
    scheduler.lease("w1", ["sleep"], 1, wait=0)  # leases `root`
    clock.advance(120)
    assert scheduler.reap() == 2
    retried = submit(scheduler, notify_url=HOOK + "/6", max_attempts=2)
    run_and_report(scheduler, "failed", error="once")  # back to the queue: not finished
    clock.advance(600)
    scheduler.promote()
    run_and_report(scheduler, "succeeded")

    rows = outbox_rows(db_url)
    by_job = {row["job_id"]: row for row in rows}
    assert len(rows) == len(by_job) == 6
    expected = {
        succeeded["id"]: "succeeded",
        failed["id"]: "failed",
        cancelled["id"]: "cancelled",
        reaped["id"]: "failed",
        dependant["id"]: "cancelled",
        retried["id"]: "succeeded",
    }
    assert {job_id: row["status"] for job_id, row in by_job.items()} == expected
    assert silent["id"] not in by_job and root["id"] not in by_job
    for job_id, row in by_job.items():
        finished = scheduler.get(job_id)
        assert row["finished_at"] == finished["finished_at"] == row["next_attempt_at"]
        assert row["url"] == finished["notify_url"]
        assert len(row["delivery_id"]) == 32 and row["claim"] is None and row["body"] is None
    # A job retried by a client that finishes again is a new delivery.
    scheduler.retry(failed["id"])
    run_and_report(scheduler, "succeeded")
    again = [row for row in outbox_rows(db_url) if row["job_id"] == failed["id"]]
    assert [row["status"] for row in again] == ["failed", "succeeded"]
    assert again[0]["delivery_id"] != again[1]["delivery_id"]


def test_claims_are_disjoint_across_servers_and_a_lapsed_claim_comes_back(scheduler, store, clock):
    for _ in range(20):
        job_row = submit(scheduler, notify_url=HOOK, delay=60)
        scheduler.cancel(job_row["id"])
    settings = OutboxSettings(timeout=5.0)
    servers = [Outbox(store, Sender(settings), clock=clock) for _ in range(4)]
    claimed: list[list[int]] = [[] for _ in servers]

    def claim_all(number: int) -> None:
        while True:
            _, rows = servers[number]._claim(3, [])
            if not rows:
                return
            claimed[number].extend(row["job_id"] for row in rows)

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    every = [job_id for ids in claimed for job_id in ids]
    assert len(every) == len(set(every)) == 20
    # Rows claimed by a server that died come back once the claim lapsed.
    assert servers[0]._claim(50, []) == (0, [])
    clock.advance(settings.timeout + 60)
    count, rows = servers[1]._claim(50, [])
    assert count == len(rows) == 20
    body = json.loads(rows[0]["body"])
    assert body["id"] == rows[0]["job_id"] and body["status"] == "cancelled"


def test_retries_back_off_and_a_delivery_is_dropped_after_its_attempts(
    scheduler, store, clock, db_url
):
    job_row = submit(scheduler, notify_url=HOOK, delay=60)
    scheduler.cancel(job_row["id"])
    outbox = Outbox(store, Sender(OutboxSettings(attempts=3)), clock=clock)
    retry = DeliveryResult(DeliveryOutcome.RETRY, "503")
    delays = []
    for attempt in (1, 2):
        _, [row] = outbox._claim(5, [])
        assert row["attempts"] == attempt - 1
        outbox._record(row, retry)
        [stored] = outbox_rows(db_url)
        assert stored["attempts"] == attempt and stored["last_error"] == "503"
        delays.append(stored["next_attempt_at"] - clock())
        assert outbox._claim(5, []) == (0, [])  # not due yet
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0]
    _, [row] = outbox._claim(5, [])
    outbox._record(row, retry)
    assert outbox_rows(db_url) == []  # the third failure drops it


def test_a_finish_superseded_before_it_was_sent_is_dropped(scheduler, store, clock, db_url):
    job_row = submit(scheduler, notify_url=HOOK, max_attempts=1)
    run_and_report(scheduler, "failed", error="boom")
    scheduler.retry(job_row["id"])  # before any server claimed the delivery
    outbox = Outbox(store, Sender(OutboxSettings()), clock=clock)
    assert outbox._claim(5, []) == (1, [])
    assert outbox_rows(db_url) == []
    run_and_report(scheduler, "succeeded")
    _, [row] = outbox._claim(5, [])
    assert json.loads(row["body"])["status"] == "succeeded"


def test_a_delivery_older_than_max_age_is_dropped(scheduler, store, clock, db_url):
    job_row = submit(scheduler, notify_url=HOOK, delay=60)
    scheduler.cancel(job_row["id"])
    outbox = Outbox(store, Sender(OutboxSettings(max_age=3600)), clock=clock)
    clock.advance(3601)
    assert outbox._claim(5, []) == (1, [])
    assert outbox_rows(db_url) == []


@pytest.mark.timeout(60)
def test_a_slow_receiver_holds_at_most_its_share_of_the_senders(scheduler, store, db_url):
    scheduler = Scheduler(store, scheduler.config, clock=time.time)  # real threads, real time
    slow, fast = "http://slow.example/hook", "http://fast.example:81/hook"
    sender = Sender(OutboxSettings(senders=4, per_origin=2))
    gate = sender.gates[origin(slow)] = threading.Event()
    for url in [slow] * 6 + [fast] * 5:
        job_row = submit(scheduler, notify_url=url, delay=60)
        scheduler.cancel(job_row["id"])
    metrics = Metrics(store)
    outbox = Outbox(store, sender)
    outbox.start(metrics, server_port=None)
    try:
        wait_until(
            lambda: sum(d.url == fast for d in sender.delivered) == 5,
            timeout=20,
            message="the fast receiver's five deliveries",
        )
        assert sender.in_flight[origin(slow)] == 2  # two senders on the slow one, no more
        gate.set()
        wait_until(lambda: len(sender.delivered) == 11, timeout=20, message="every delivery")
        wait_until(lambda: outbox_rows(db_url) == [], timeout=20, message="an empty outbox")
    finally:
        gate.set()
        outbox.stop()
    assert sender.most_in_flight[origin(slow)] == 2
    assert len({d.id for d in sender.delivered}) == 11
    text = metrics.render().decode()
    assert 'taskframe_webhook_deliveries_total{outcome="delivered"} 11.0' in text
    assert "taskframe_webhook_pending 0.0" in text
