"""The worker's exchanges on its event loop (``StreamTransport.acall``) against real tiny
HTTP servers: the blocking transport's answers, errors and rules, without a thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskframe.client.errors import Conflict, TaskframeError, Unavailable
from taskframe.worker.client import ApiClient
from taskframe.worker.streams import BEATS, StreamTransport
from tests.fake_api import FakeServer, Reply, dead_url, fake_servers, start
from tests.unit.test_transport import make_ca_and_cert

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    yield from fake_servers()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_answers_and_errors_are_the_blocking_transports(servers: list[FakeServer]) -> None:
    def reply(path: str, body: Any) -> Reply:
        if path == "/conflict":
            return 409, {"title": "Conflict", "description": "stale lease", "code": "stale_lease"}
        return 200, {"path": path, "body": body}

    server = start(servers, reply)
    transport = StreamTransport([server.url], token="t")

    async def calls() -> tuple[Any, ...]:
        answer = await transport.acall("POST", "/lease", body={"n": [1, "é"]})
        with pytest.raises(Conflict) as refused:
            await transport.acall("POST", "/conflict", body={})
        return answer, refused.value

    answer, refused = run(calls())
    assert answer == transport.call("POST", "/lease", body={"n": [1, "é"]})
    assert answer == {"path": "/lease", "body": {"n": [1, "é"]}}
    with pytest.raises(Conflict) as blocking:
        transport.call("POST", "/conflict", body={})
    assert (refused.status, str(refused)) == (blocking.value.status, str(blocking.value))
    assert server.headers[0]["Authorization"] == "Bearer t"
    assert server.headers[0]["Content-Type"] == "application/json"


def test_a_connection_is_kept_per_channel_and_replaced_when_the_server_closes_it(
    servers: list[FakeServer],
) -> None:
    server = start(servers)
    closing = start(servers, keep_alive=False)
    transport = StreamTransport([server.url])
    other = StreamTransport([closing.url])

    async def calls() -> None:
        for _ in range(3):
            await transport.acall("GET", "/health")
        await transport.acall("GET", "/health", channel=BEATS)
        for _ in range(2):
            await other.acall("GET", "/health")
        transport.close()
        other.close()

    run(calls())
    lease_peers, beats_peer = server.peers[:3], server.peers[3]
    assert len(set(lease_peers)) == 1 and beats_peer not in lease_peers
    assert len(set(closing.peers)) == 2  # "Connection: close" honoured


def test_an_idle_connection_closed_by_the_server_is_replaced_without_failing(
    servers: list[FakeServer],
) -> None:
    server = start(servers, idle_timeout=0.1)
    transport = StreamTransport([server.url])

    async def calls() -> None:
        await transport.acall("GET", "/health")
        await asyncio.sleep(0.5)  # the server closes the idle connection meanwhile
        assert await transport.acall("GET", "/health") == {"status": "ok"}
        transport.close()

    run(calls())
    assert len(set(server.peers)) == 2


def test_a_dead_url_fails_over_to_the_next_and_rests(servers: list[FakeServer]) -> None:
    server = start(servers)
    dead = dead_url()
    transport = StreamTransport([dead, server.url])

    async def calls() -> None:
        for _ in range(4):
            assert await transport.acall("GET", "/health") == {"status": "ok"}
        with pytest.raises(Unavailable, match="connection refused"):
            await StreamTransport([dead]).acall("GET", "/health")
        transport.close()

    run(calls())
    assert len(server.requests) == 4


def test_a_slow_answer_times_out_and_a_5xx_is_unavailable(servers: list[FakeServer]) -> None:
    def reply(path: str, body: Any) -> Reply:
        if path == "/slow":
            time.sleep(1.0)
        return (503, {"title": "Service Unavailable"}) if path == "/down" else (200, {})

    server = start(servers, reply)
    transport = StreamTransport([server.url])

    async def calls() -> None:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=r"timed out \(waiting for the answer, 0.2 s\)"):
            await transport.acall("GET", "/slow", read_timeout=0.2)
        assert time.monotonic() - started < 0.8
        with pytest.raises(Unavailable, match="503"):
            await transport.acall("GET", "/down")
        transport.close()

    run(calls())


def test_interrupt_ends_a_long_poll_at_once_without_trying_the_other_urls(
    servers: list[FakeServer],
) -> None:
    def reply(path: str, body: Any) -> Reply:
        time.sleep(2.0)
        return 200, {}

    first, second = start(servers, reply), start(servers, reply)
    transport = StreamTransport([first.url, second.url])

    async def poll() -> float:
        call = asyncio.ensure_future(transport.acall("POST", "/lease", body={}))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        transport.interrupt()
        with pytest.raises(Unavailable):
            await call
        transport.close()
        return time.monotonic() - started

    assert run(poll()) < 0.5
    assert len(first.requests) + len(second.requests) == 1


def test_https_with_a_private_ca_and_a_body_that_is_not_json_can_not_be_sent(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = start(servers, lambda path, body: (200, {"path": path, "body": body}), tls=context)
    client = ApiClient([server.url], ca_cert=str(ca))

    async def calls() -> None:
        answer = await client.alease("w1", ["sleep"], 1, 0.0, [])
        assert answer["path"] == "/lease" and answer["body"]["max"] == 1
        beats = await client.aheartbeats("w1", [])
        assert beats == {"path": "/heartbeats", "body": {"worker_id": "w1", "leases": []}}
        with pytest.raises(Unavailable, match="TLS error"):
            await StreamTransport([server.url]).acall("GET", "/health")
        with pytest.raises(TaskframeError, match="not valid JSON"):
            await client.acall("POST", "/lease", body={"x": float("nan")})
        client.close()

    run(calls())
    assert [path for path, _ in server.requests] == ["/lease", "/heartbeats"]


def raw_server(answer: bytes) -> tuple[str, threading.Thread]:
    """A server that answers one request with ``answer`` as written, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;x=y\r\n: 1\r\n1\r\n}'
        b"\r\n0\r\nTrailer: t\r\n\r\n",
        b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}',
    ],
    ids=["chunked", "until-closed"],
)
@pytest.mark.parametrize("on_loop", [True, False], ids=["loop", "blocking"])
def test_bodies_chunked_or_ending_with_the_connection(answer: bytes, on_loop: bool) -> None:
    """Both transports read answers with taskframe.client.http11."""
    url, thread = raw_server(answer)
    transport = StreamTransport([url])
    got = run(transport.acall("GET", "/x")) if on_loop else transport.call("GET", "/x")
    assert got == {"a": 1}
    thread.join(5)


@pytest.mark.parametrize(
    "answer",
    [b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}"],
    ids=["not-http", "bad-length"],
)
@pytest.mark.parametrize("on_loop", [True, False], ids=["loop", "blocking"])
def test_an_answer_that_is_not_http_is_unavailable(answer: bytes, on_loop: bool) -> None:
    url, thread = raw_server(answer)
    transport = StreamTransport([url])
    with pytest.raises(Unavailable, match="not an HTTP answer|Content-Length"):
        run(transport.acall("GET", "/x")) if on_loop else transport.call("GET", "/x")
    thread.join(5)


def test_a_proxied_route_is_left_to_the_blocking_transport(monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert not StreamTransport(["http://example.test:8080"]).streams_ok
    monkeypatch.delenv("HTTP_PROXY")
    assert StreamTransport(["http://example.test:8080"]).streams_ok
