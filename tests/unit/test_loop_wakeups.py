"""waitress's loop is woken at the end of a request only when it has something to do
for the connection (server/http/channel.py): real waitress, real app, real sockets."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.api_server import ApiServer, Mounted
from tests.processes import wait_until

pytestmark = pytest.mark.timeout(60)

JOB = json.dumps({"type": "sleep", "payload": {"duration": 0}}).encode()
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def wakeups(api_server: ApiServer) -> Iterator[list[float]]:
    """The times the loop's trigger was pulled (waitress's own trigger, counted)."""
    trigger = api_server.server.trigger
    pulled: list[float] = []
    original = trigger.pull_trigger

    def counted(*args: object) -> None:
        pulled.append(time.monotonic())
        original(*args)

    trigger.pull_trigger = counted
    yield pulled
    trigger.pull_trigger = original


def post_job(conn: http.client.HTTPConnection) -> float:
    """POST /jobs on a kept-alive connection: the seconds its answer took."""
    started = time.monotonic()
    conn.request("POST", "/jobs", JOB, HEADERS)
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 201
    return time.monotonic() - started


def test_kept_alive_requests_do_not_each_wake_the_loop(api: Mounted, wakeups: list[float]):
    conn = http.client.HTTPConnection(api.url.removeprefix("http://"), timeout=10)
    post_job(conn)
    del wakeups[:]
    for _ in range(40):
        post_job(conn)
        time.sleep(0.005)  # each request's task is over before the next one comes
    # Before: one wake-up per request. Now the loop reads the connection already.
    assert len(wakeups) < 10, f"{len(wakeups)} wake-ups for 40 requests"
    conn.close()


def test_no_request_waits_for_the_loop_to_look_again(api: Mounted, wakeups: list[float]):
    """Back to back, the next request often arrives while the last one's task ends:
    the loop must be woken then, or that request waits for its next turn (1 s)."""
    conn = http.client.HTTPConnection(api.url.removeprefix("http://"), timeout=10)
    took = [post_job(conn) for _ in range(400)]
    assert max(took) < 0.5, f"slowest request {max(took):.3f} s"
    conn.close()


def test_a_client_hanging_up_during_a_long_poll_is_still_seen(api: Mounted, wakeups: list[float]):
    """The read-ahead that sees a client hang up (serving.py) still watches a connection
    whose previous request ended without waking the loop."""
    with socket.create_connection(api.url.removeprefix("http://").split(":"), timeout=10) as s:
        conn = http.client.HTTPConnection("127.0.0.1")
        conn.sock = s  # the same connection, kept alive: a job, then a long poll
        post_job(conn)
        post_job(conn)
        lease = json.dumps({"worker_id": "w1", "max": 1, "types": ["no-such-type"], "wait": 30})
        s.sendall(
            b"POST /lease HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(lease)}\r\n\r\n{lease}".encode()
        )
        notifier = api.scheduler.notifier
        wait_until(lambda: notifier.lease_waiters() >= 1, 5, 0.01, "the long poll to start")
    # Hung up: the long poll ends long before its 30 s.
    wait_until(lambda: notifier.lease_waiters() == 0, 5, 0.01, "the server to see the hang-up")
