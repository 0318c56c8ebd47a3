"""The webhook plugin end to end: real server and worker, a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from taskframe.plugins.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify
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
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])
        assert not verify("another secret", body, headers[SIGNATURE_HEADER])
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
