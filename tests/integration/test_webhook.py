"""The webhook plugin end to end: real server and worker, a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from taskframe.plugins.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from tests.processes import submit, wait_for_job, wait_until
from tests.stub_http import QuietHandler, StubServer

SECRET = "webhook-test-secret"


class Receiver:
    """An HTTP server that records every POST; the first ``fail_first`` get a 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.reply(503 if failing else 204)

        self.server = StubServer(Handler)
        self.url = f"{self.server.url}/hook"

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(fail_first=2)
    yield started
    started.close()


@pytest.mark.timeout(90)
def test_a_finished_job_is_posted_signed_and_retried_until_delivered(
    db_url, start_server, start_worker, receiver
):
    server = start_server(db_url, "--webhook-secret", SECRET)
    start_worker([server.url], "--poll-interval", "1")
    job = submit(server.url, "sleep", {"duration": 0}, notify_url=receiver.url)
    assert job["notify_url"] == receiver.url
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"

    # Two 503s, then a 204: three attempts (backoff 1 s, 2 s), one delivery id.
    wait_until(lambda: len(receiver.requests) >= 3, timeout=30, message="three POSTs")
    assert len(receiver.requests) == 3
    ids = set()
    for headers, body in receiver.requests:
        signature, timestamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
        assert verify(SECRET, body, signature, timestamp)
        assert not verify("another secret", body, signature, timestamp)
        ids.add(headers[DELIVERY_HEADER])
        event = json.loads(body)
        assert event["event"] == "job.finished"
        assert event["job"]["id"] == job["id"] and event["job"]["status"] == "succeeded"
        assert event["job"]["result"] == {"slept": 0.0}
        assert "lease_id" not in event["job"]
    assert len(ids) == 1


@pytest.mark.timeout(60)
def test_failed_and_cancelled_jobs_are_posted_too(sqlite_url, start_server, start_worker):
    receiver = Receiver()
    try:
        server = start_server(sqlite_url, "--webhook-secret", SECRET)
        start_worker([server.url])
        failing = submit(
            server.url,
            "http",
            {"url": "http://127.0.0.1:9/"},
            max_attempts=1,
            notify_url=receiver.url,
        )
        delayed = submit(server.url, "sleep", {"duration": 0}, delay=3600, notify_url=receiver.url)
        answer = requests.post(f"{server.url}/jobs/{delayed['id']}/cancel", timeout=10)
        assert answer.status_code == 200
        assert wait_for_job(server.url, failing["id"])["status"] == "failed"
        wait_until(lambda: len(receiver.requests) >= 2, timeout=30, message="two POSTs")
        statuses = {
            json.loads(body)["job"]["id"]: json.loads(body)["job"]["status"]
            for _, body in receiver.requests
        }
        assert statuses == {failing["id"]: "failed", delayed["id"]: "cancelled"}
    finally:
        receiver.close()


def test_without_a_secret_notify_url_is_refused(sqlite_url, start_server, http):
    server = start_server(sqlite_url)
    answer = http.post(
        f"{server.url}/jobs",
        json={"type": "sleep", "payload": {"duration": 0}, "notify_url": "http://127.0.0.1:9/"},
        timeout=10,
    )
    assert answer.status_code == 422
    assert "notify_url" in answer.json()["errors"]


def finish(server_url: str, notify_url: str) -> int:
    """A job that finishes now (cancelled before it was due), notifying ``notify_url``."""
    job = submit(server_url, "sleep", {"duration": 0}, delay=3600, notify_url=notify_url)
    answer = requests.post(f"{server_url}/jobs/{job['id']}/cancel", timeout=10)
    assert answer.status_code == 200, answer.text
    return job["id"]


def pending(server_url: str) -> float:
    """``taskframe_webhook_pending``: deliveries left in the outbox (every server's)."""
    text = requests.get(f"{server_url}/metrics", timeout=10).text
    [line] = [line for line in text.splitlines() if line.startswith("taskframe_webhook_pending ")]
    return float(line.split()[1])


@pytest.mark.timeout(120)
def test_a_delivery_pending_when_the_server_is_killed_is_sent_after_a_restart(db_url, start_server):
    # Before: pending deliveries lived in the server's memory; kill -9 lost them.
    receiver = Receiver(fail_first=10**9)  # 503 until told otherwise
    try:
        args = ("--webhook-secret", SECRET, "--webhook-timeout", "2")
        server = start_server(db_url, *args)
        job_id = finish(server.url, receiver.url)
        wait_until(
            lambda: f"webhook for job {job_id}: attempt 1" in server.output(),
            timeout=30,
            message="the first attempt, answered 503",
        )
        server.kill()
        receiver.fail_first = 0
        restarted = start_server(db_url, *args)
        wait_until(lambda: len(receiver.requests) >= 2, timeout=30, message="the delivery")
        wait_until(lambda: pending(restarted.url) == 0, timeout=30, message="an empty outbox")
        assert len({headers[DELIVERY_HEADER] for headers, _ in receiver.requests}) == 1
        headers, body = receiver.requests[-1]
        assert verify(SECRET, body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
        assert json.loads(body)["job"]["id"] == job_id
    finally:
        receiver.close()


@pytest.mark.timeout(120)
def test_servers_sharing_a_database_send_each_delivery_once(db_url, start_server):
    receiver = Receiver()
    try:
        servers = [start_server(db_url, "--webhook-secret", SECRET) for _ in range(3)]
        job_ids = [finish(servers[n % 3].url, receiver.url) for n in range(30)]
        wait_until(lambda: len(receiver.requests) >= 30, timeout=60, message="30 deliveries")
        wait_until(lambda: pending(servers[0].url) == 0, timeout=30, message="an empty outbox")
        sent = [json.loads(body)["job"]["id"] for _, body in receiver.requests]
        assert sorted(sent) == sorted(job_ids)
    finally:
        receiver.close()
