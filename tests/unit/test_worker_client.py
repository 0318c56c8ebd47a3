"""The worker's API client against real tiny HTTP servers: rotation, failover, resends."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskframe.core.retry import BackoffPolicy
from taskframe.worker.client import ApiClient, ApiError, FailureStreak, Outbox, Unavailable

pytestmark = pytest.mark.timeout(30)

Reply = tuple[int, Any]
Replier = Callable[[str, Any], Reply]


class FakeServer:
    """An HTTP server whose answers a test scripts with ``reply(path, body) -> (status, body)``."""

    def __init__(self, reply: Callable[[str, Any], Reply] | None = None) -> None:
        self.reply = reply or self.accept_all
        self.requests: list[tuple[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as waitress does

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length) or b"null"))

            def _answer(self, body: Any) -> None:
                outer.requests.append((self.path, body))
                status, answer = outer.reply(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    @staticmethod
    def accept_all(path: str, body: Any) -> Reply:
        if path == "/health":
            return 200, {"status": "ok"}
        completions = [
            {"job_id": c["job_id"], "ok": True, "code": 200, "error": None}
            for c in body["completions"]
        ]
        return 200, {"jobs": [], "completions": completions, "lease_ttl": 30}

    def completions_seen(self) -> list[list[int]]:
        return [[c["job_id"] for c in body["completions"]] for path, body in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


def start(servers: list[FakeServer], reply: Replier | None = None) -> FakeServer:
    server = FakeServer(reply)
    servers.append(server)
    return server


def dead_url() -> str:
    """A local URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def completion(job_id: int) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lease_id": f"lease-{job_id}",
        "status": "succeeded",
        "result": {"n": job_id},
        "error": None,
        "retryable": True,
    }


def fail_first(count: int, status: int = 503) -> Callable[[str, Any], Reply]:
    """Answer ``status`` to the first ``count`` requests, then accept everything."""
    seen = []

    def reply(path: str, body: Any) -> Reply:
        seen.append(path)
        if len(seen) <= count:
            return status, {"title": "Service Unavailable", "description": "busy"}
        return FakeServer.accept_all(path, body)

    return reply


def test_requests_rotate_over_urls(servers: list[FakeServer]) -> None:
    a, b = start(servers), start(servers)
    client = ApiClient([a.url, b.url + "/"])
    for _ in range(4):
        assert client.health() == {"status": "ok"}
    assert len(a.requests) == len(b.requests) == 2


def test_refused_connection_fails_over_to_the_next_url(servers: list[FakeServer]) -> None:
    live = start(servers)
    client = ApiClient([dead_url(), live.url])
    for _ in range(5):
        assert client.health() == {"status": "ok"}
    assert len(live.requests) == 5


def test_failed_url_rests_then_is_tried_again(servers: list[FakeServer]) -> None:
    flaky, steady = start(servers, fail_first(1)), start(servers)
    client = ApiClient([flaky.url, steady.url], penalty=BackoffPolicy(base=0.2, cap=0.2))
    for _ in range(4):  # the 503 fails over; then the flaky URL rests
        client.health()
    assert (len(flaky.requests), len(steady.requests)) == (1, 4)
    time.sleep(0.25)
    client.health()
    client.health()
    assert len(flaky.requests) == 2


def test_5xx_fails_over_and_4xx_does_not(servers: list[FakeServer]) -> None:
    busy = start(servers, lambda path, body: (503, {"title": "Service Unavailable"}))
    bad = start(servers, lambda path, body: (422, {"title": "Unprocessable", "errors": {}}))
    ok = start(servers)
    assert ApiClient([busy.url, ok.url]).health() == {"status": "ok"}
    with pytest.raises(ApiError) as raised:
        ApiClient([bad.url, ok.url]).health()
    assert raised.value.status == 422 and not isinstance(raised.value, Unavailable)
    assert len(ok.requests) == 1


def test_unavailable_when_no_url_answers(servers: list[FakeServer]) -> None:
    busy = start(servers, lambda path, body: (503, {"title": "Service Unavailable"}))
    with pytest.raises(Unavailable):
        ApiClient([busy.url, dead_url()]).health()


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
