"""Webhook receivers that misbehave (issue 18): a huge answer, a trickled answer, a
receiver the rules deny, the server's own API. Real server processes, real sockets.

Jobs finish by cancellation (a job due in an hour, cancelled): no worker needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.processes import submit, wait_until
from tests.stub_http import QuietHandler, StubServer

SECRET = "webhook-abuse-secret"
MIB = 1 << 20


def finish(server_url: str, notify_url: str) -> int:
    """A job that finishes now (cancelled before it was due), notifying ``notify_url``."""
    job = submit(server_url, "sleep", {"duration": 0}, delay=3600, notify_url=notify_url)
    answer = requests.post(f"{server_url}/jobs/{job['id']}/cancel", timeout=10)
    assert answer.status_code == 200, answer.text
    return job["id"]


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of process ``pid``, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


class Receiver:
    """A receiver on its own port: records each POST's headers, then ``answer``s."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.connected = threading.Event()
        self.hung_up = threading.Event()  # the server closed the connection on us
        self.done = threading.Event()  # the handler returned
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(dict(self.headers))
                receiver.connected.set()
                try:
                    receiver.answer(self)
                except OSError:  # BrokenPipe, ConnectionReset: the server hung up
                    receiver.hung_up.set()
                finally:
                    receiver.done.set()
                    self.close_connection = True

        self.server = StubServer(Handler)
        self.url = f"{self.server.url}/hook"

    def answer(self, handler: QuietHandler) -> None:
        handler.reply(204)

    def close(self) -> None:
        self.server.close()


class HugeAnswer(Receiver):
    """Answers 200 with a body of ``size`` bytes, as fast as the socket takes them."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.sent = 0

    def answer(self, handler: QuietHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(self.size))
        handler.end_headers()
        chunk = b"x" * MIB
        while self.sent < self.size:
            handler.wfile.write(chunk)
            self.sent += len(chunk)


class Trickle(Receiver):
    """Sends its status line one byte every ``interval`` s, for ``duration`` s at most."""

    def __init__(self, interval: float = 0.5, duration: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self.duration = duration
        self.stopped = threading.Event()

    def answer(self, handler: QuietHandler) -> None:
        line = b"HTTP/1.1 200 OK\r\n" * 1000
        end = time.monotonic() + self.duration
        for byte in line:
            if time.monotonic() > end or self.stopped.wait(self.interval):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    def close(self) -> None:
        self.stopped.set()
        super().close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.close()


@pytest.mark.timeout(120)
def test_a_huge_answer_is_not_read_into_the_servers_memory(sqlite_url, start_server, receivers):
    # Before: the whole answer was read (800 MB: +1.5 GB RSS). Now a 2xx is not read at all.
    huge = HugeAnswer(200 * MIB)
    receivers.append(huge)
    server = start_server(sqlite_url, "--webhook-secret", SECRET)
    before = memory(server.pid)
    finish(server.url, huge.url)
    wait_until(huge.done.is_set, timeout=60, message="the receiver's answer ended")
    after = memory(server.pid)
    assert huge.hung_up.is_set() and huge.sent < huge.size, "the server read the whole answer"
    grown = {name: (after[name] - before[name]) / MIB for name in after}
    assert grown["VmHWM"] < 50, f"the server's memory grew by {grown} MiB"
    assert grown["VmRSS"] < 50, f"the server's memory grew by {grown} MiB"


@pytest.mark.timeout(120)
def test_trickling_receivers_do_not_hold_up_a_fast_one(sqlite_url, start_server, receivers):
    # Before: four receivers trickling their answers held all four sender threads,
    # and nobody else's webhook went out while they trickled (here for a minute).
    slow = [Trickle(interval=0.5, duration=60) for _ in range(4)]
    fast = Receiver()
    receivers.extend([*slow, fast])
    server = start_server(sqlite_url, "--webhook-secret", SECRET, "--webhook-timeout", "60")
    for receiver in slow:
        finish(server.url, receiver.url)
    for receiver in slow:
        wait_until(receiver.connected.is_set, timeout=30, message="the slow receivers are hit")
    finish(server.url, fast.url)
    wait_until(lambda: fast.requests, timeout=20, message="the fast receiver's webhook")
    assert not any(receiver.done.is_set() for receiver in slow), "still trickling meanwhile"


@pytest.mark.timeout(90)
def test_a_trickling_receiver_is_cut_off_at_the_attempts_deadline(
    sqlite_url, start_server, receivers
):
    # Before: --webhook-timeout bounded each read only; a byte every 0.5 s never hit it.
    slow = Trickle(interval=0.5, duration=60)
    receivers.append(slow)
    server = start_server(sqlite_url, "--webhook-secret", SECRET, "--webhook-timeout", "2")
    finish(server.url, slow.url)
    wait_until(slow.hung_up.is_set, timeout=30, message="the server hanging up on the trickle")
    # The attempt counts as failed and is tried again, with the same delivery id.
    wait_until(lambda: len(slow.requests) >= 2, timeout=30, message="a second attempt")
    ids = {headers["X-Taskframe-Delivery"] for headers in slow.requests}
    assert len(ids) == 1


@pytest.mark.timeout(60)
def test_a_name_resolving_to_a_denied_address_is_not_contacted(sqlite_url, start_server, receivers):
    # The http executor's @strict profile denies loopback: localhost passes the
    # submission check (a name) and is refused at the address it resolves to.
    receiver = Receiver()
    receivers.append(receiver)
    server = start_server(sqlite_url, "--webhook-secret", SECRET, "--webhook-deny", "@strict")
    port = receiver.url.split(":")[2].split("/")[0]
    job_id = finish(server.url, f"http://localhost:{port}/hook")
    wait_until(
        lambda: f"webhook for job {job_id} to" in server.output() and "refused" in server.output(),
        timeout=30,
        message="the refusal in the server's log",
    )
    assert receiver.requests == []
    assert "--webhook-deny (127.0.0.0/8)" in server.output()


@pytest.mark.timeout(60)
def test_the_servers_own_api_is_not_a_receiver(sqlite_url, start_server):
    # Before: a notify_url naming the server's own address was POSTed to, e.g.
    # /queues/default/pause, which paused the queue (no tokens, the quick start).
    server = start_server(sqlite_url, "--webhook-secret", SECRET)
    job_id = finish(server.url, f"http://localhost:{server.port}/queues/default/pause")
    wait_until(
        lambda: f"webhook for job {job_id} to" in server.output(),
        timeout=30,
        message="the refusal in the server's log",
    )
    assert "this server's own API" in server.output()
    queues = requests.get(f"{server.url}/queues", timeout=10).json()["queues"]
    assert not any(queue["paused"] for queue in queues)
