"""The client's HTTP transport against real tiny HTTP(S) servers: rotation, failover,
errors by kind, the bearer token, a private CA, kept-alive connections, proxies."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from taskframe.client.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    TaskframeError,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from taskframe.client.transport import Transport, read_token_file
from taskframe.core.retry import BackoffPolicy
from tests.fake_api import (
    FakeServer,
    ForwardingProxy,
    dead_url,
    fail_first,
    fake_servers,
    start,
)
from tests.processes import wait_until
from tests.stub_http import QuietHandler, serve

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    yield from fake_servers()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardingProxy]:
    """A forwarding proxy, with every proxy variable of the environment removed."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    started = ForwardingProxy()
    yield started
    started.close()


def echo_path(path: str, body: object) -> tuple[int, object]:
    return 200, {"path": path}


def test_requests_rotate_over_urls(servers: list[FakeServer]) -> None:
    a, b = start(servers), start(servers)
    client = Transport([a.url, b.url + "/"])
    for _ in range(4):
        assert client.call("GET", "/health") == {"status": "ok"}
    assert len(a.requests) == len(b.requests) == 2


def test_refused_connection_fails_over_to_the_next_url(servers: list[FakeServer]) -> None:
    live = start(servers)
    client = Transport([dead_url(), live.url])
    for _ in range(5):
        assert client.call("GET", "/health") == {"status": "ok"}
    assert len(live.requests) == 5


def test_failed_url_rests_then_is_tried_again(servers: list[FakeServer]) -> None:
    flaky, steady = start(servers, fail_first(1)), start(servers)
    client = Transport([flaky.url, steady.url], penalty=BackoffPolicy(base=0.2, cap=0.2))
    for _ in range(4):  # the 503 fails over; then the flaky URL rests
        client.call("GET", "/health")
    assert (len(flaky.requests), len(steady.requests)) == (1, 4)
    time.sleep(0.25)
    client.call("GET", "/health")
    client.call("GET", "/health")
    assert len(flaky.requests) == 2


def test_5xx_fails_over_and_4xx_does_not(servers: list[FakeServer]) -> None:
    busy = start(servers, lambda path, body: (503, {"title": "Service Unavailable"}))
    bad = start(servers, lambda path, body: (422, {"title": "Unprocessable", "errors": {}}))
    ok = start(servers)
    assert Transport([busy.url, ok.url]).call("GET", "/health") == {"status": "ok"}
    with pytest.raises(TaskframeError) as raised:
        Transport([bad.url, ok.url]).call("GET", "/health")
    assert raised.value.status == 422 and not isinstance(raised.value, Unavailable)
    assert len(ok.requests) == 1


def test_unavailable_when_no_url_answers(servers: list[FakeServer]) -> None:
    busy = start(servers, lambda path, body: (503, {"title": "Service Unavailable"}))
    with pytest.raises(Unavailable):
        Transport([busy.url, dead_url()]).call("GET", "/health")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, Unauthorized), (403, Forbidden), (404, NotFound), (422, ValidationError)],
)
def test_4xx_raise_their_own_class_with_the_body(
    servers: list[FakeServer], status: int, kind: type
) -> None:
    body = {"title": "Nope", "description": "why", "errors": {"payload": {"x": ["bad"]}}}
    server = start(servers, lambda path, _: (status, body))
    with pytest.raises(kind) as raised:
        Transport([server.url]).call("GET", "/jobs/1")
    error = raised.value
    assert (error.status, error.title, error.description) == (status, "Nope", "why")
    assert error.errors == {"payload": {"x": ["bad"]}}


def test_validation_errors_flatten_to_dotted_fields(servers: list[FakeServer]) -> None:
    errors = {"payload": {"duration": ["Must be >= 0."]}, "jobs": {"1": {"type": ["Unknown."]}}}
    server = start(servers, lambda path, _: (422, {"title": "Unprocessable", "errors": errors}))
    with pytest.raises(ValidationError) as raised:
        Transport([server.url]).call("POST", "/jobs", body={})
    assert raised.value.field_messages() == [
        ("payload.duration", "Must be >= 0."),
        ("jobs.1.type", "Unknown."),
    ]


def test_every_request_carries_the_bearer_token(servers: list[FakeServer]) -> None:
    server = start(servers)
    transport = Transport([server.url], token="s3cret")
    transport.call("GET", "/health")
    transport.call("POST", "/lease", body={"completions": []})
    assert [h.get("Authorization") for h in server.headers] == ["Bearer s3cret"] * 2
    anonymous = start(servers)
    Transport([anonymous.url]).call("GET", "/health")
    assert "Authorization" not in anonymous.headers[0]


def test_read_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc123\n")
    assert read_token_file(str(path)) == "abc123"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_token_file(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(str(tmp_path / "missing"))


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1 (with the openssl command)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    # EC keys: made in milliseconds (an RSA key takes up to a second or two).
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    openssl("req", "-x509", *ec, "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", *ec, "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf",
            "-out", "server.pem")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def test_https_with_a_private_ca_is_trusted_only_when_given(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = start(servers, tls=context)
    assert server.url.startswith("https://")
    trusting = Transport([server.url], ca_cert=str(ca), token="t")
    assert trusting.call("GET", "/health") == {"status": "ok"}
    assert server.headers[0]["Authorization"] == "Bearer t"
    with pytest.raises(Unavailable, match="TLS error"):
        Transport([server.url]).call("GET", "/health")  # the system CAs do not know it
    assert len(server.requests) == 1


# -- connections: kept alive, replaced when closed, timeouts -------------------------------


def test_each_thread_keeps_one_connection_and_close_closes_them(servers: list[FakeServer]) -> None:
    server = start(servers)
    transport = Transport([server.url])
    for _ in range(3):
        transport.call("GET", "/health")
    other = threading.Thread(target=transport.call, args=("GET", "/health"))
    other.start()
    other.join()
    assert len(set(server.peers)) == 2  # one connection per thread, kept alive
    transport.close()
    wait_until(lambda: server.closed == 2, timeout=5, message="both connections closed")
    assert transport.call("GET", "/health") == {"status": "ok"}  # on a new connection
    assert len(set(server.peers)) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced(servers: list[FakeServer]) -> None:
    server = start(servers, idle_timeout=0.2)  # waitress drops idle connections after 60 s
    transport = Transport([server.url])
    assert transport.call("POST", "/lease", body={"completions": []})
    wait_until(lambda: server.closed == 1, timeout=5, message="the idle connection closed")
    assert transport.call("POST", "/lease", body={"completions": []})  # no error, no resend
    assert len(server.requests) == 2 and len(set(server.peers)) == 2


def test_connection_close_answers_make_the_next_call_reconnect(servers: list[FakeServer]) -> None:
    server = start(servers, keep_alive=False)
    transport = Transport([server.url])
    for _ in range(3):
        assert transport.call("GET", "/health") == {"status": "ok"}
    assert len(set(server.peers)) == 3


def test_a_slow_answer_times_out_unless_the_call_waits_longer(servers: list[FakeServer]) -> None:
    def slow(path: str, body: object) -> tuple[int, object]:
        time.sleep(0.5)
        return 200, {"status": "ok"}

    server = start(servers, slow)
    transport = Transport([server.url], read_timeout=0.1)
    with pytest.raises(Unavailable, match=r"timed out \(waiting for the answer, 0.1 s\)"):
        transport.call("GET", "/health")
    # A long poll passes its own read timeout.
    assert transport.call("GET", "/health", read_timeout=5) == {"status": "ok"}


def test_interrupt_ends_a_waiting_call_without_trying_the_other_urls(
    servers: list[FakeServer],
) -> None:
    def held(path: str, body: object) -> tuple[int, object]:
        if path == "/y":
            time.sleep(3)
        return 200, {"status": "ok"}

    holding, other = start(servers, held), start(servers, echo_path)
    transport = Transport([holding.url, other.url])
    for _ in range(2):  # round robin: the next call goes to the holding server first
        transport.call("GET", "/x")
    failed: list[BaseException] = []
    caller = threading.Thread(
        target=lambda: failed.append(pytest.raises(Unavailable, transport.call, "GET", "/y").value)
    )
    caller.start()
    wait_until(lambda: ("/y", None) in holding.requests, message="the call held by the first")
    transport.interrupt()
    caller.join(2)
    assert not caller.is_alive() and failed
    assert not [path for path, _ in other.requests if path == "/y"]  # not tried elsewhere
    assert transport.call("GET", "/z", read_timeout=5) is not None  # later calls work


# -- what goes on the wire ---------------------------------------------------------------


def test_the_url_path_prefix_and_the_query_reach_the_server(servers: list[FakeServer]) -> None:
    server = start(servers, echo_path)
    params = {"limit": 5, "status": None, "type": ["a", "b c"], "wait": "1.500"}
    answer = Transport([server.url + "/taskframe/"]).call("GET", "/jobs", params=params)
    assert answer == {"path": "/taskframe/jobs?limit=5&type=a&type=b+c&wait=1.500"}
    # The same bytes as requests sent (it leaves None out, repeats a list's key).
    sent_by_requests = requests.Request("GET", f"{server.url}/taskframe/jobs", params=params)
    assert answer["path"] == sent_by_requests.prepare().path_url


def test_a_body_that_is_not_json_is_refused_before_sending(servers: list[FakeServer]) -> None:
    server = start(servers)
    with pytest.raises(TaskframeError, match="not valid JSON") as raised:
        Transport([server.url]).call("POST", "/jobs", body={"duration": float("nan")})
    assert not isinstance(raised.value, Unavailable)
    assert server.requests == []


def test_a_redirect_is_not_followed_but_named() -> None:
    class Redirect(QuietHandler):
        def do_POST(self) -> None:
            self.reply(301, b"<html>moved</html>", {"Location": "https://elsewhere/jobs"})

    with serve(Redirect) as url:
        with pytest.raises(BadRequest, match="redirected to https://elsewhere/jobs") as raised:
            Transport([url]).call("POST", "/jobs", body={})
    assert raised.value.status == 301


def test_bad_urls_and_proxies_are_refused_when_the_transport_is_made(
    proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in ("localhost:8000", "http://h:port", "http://user:pw@h", "http://h/?q=1"):
        with pytest.raises(ValueError):
            Transport([url])
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    Transport(["http://127.0.0.1:8000"])  # the https proxy is not needed
    with pytest.raises(ValueError, match="only http:// proxies"):
        Transport(["https://127.0.0.1:8000"])


# -- proxies from the environment --------------------------------------------------------


def test_http_goes_through_HTTP_PROXY_unless_NO_PROXY_names_the_host(
    servers: list[FakeServer], proxy: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start(servers, echo_path)
    credentials = proxy.url.replace("http://", "http://proxy-user:p%40ss@")
    monkeypatch.setenv("HTTP_PROXY", credentials)
    transport = Transport([server.url], token="t")
    answer = transport.call("POST", "/lease", body={"completions": []}, params={"x": 1})
    assert answer == {"path": "/lease?x=1"}
    assert proxy.lines == [f"POST {server.url}/lease?x=1 HTTP/1.1"]
    assert proxy.authorizations == ["Basic " + base64.b64encode(b"proxy-user:p@ss").decode()]
    assert server.headers[0]["Authorization"] == "Bearer t"
    assert "Proxy-Authorization" not in server.headers[0]

    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert Transport([server.url]).call("GET", "/health") == {"path": "/health"}
    assert len(proxy.lines) == 1 and len(server.requests) == 2


def test_https_goes_through_HTTPS_PROXY_in_a_tunnel(
    servers: list[FakeServer],
    proxy: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = start(servers, tls=context)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    transport = Transport([server.url], ca_cert=str(ca))
    assert transport.call("GET", "/health") == {"status": "ok"}
    assert transport.call("GET", "/health") == {"status": "ok"}  # the same tunnel
    address = server.url.removeprefix("https://")
    assert proxy.lines == [f"CONNECT {address} HTTP/1.0"]


class RecordingSocket:
    """A connected socket whose sends are recorded (a socket takes no new attributes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


@pytest.mark.parametrize("body", [{"type": "sleep"}, None])
def test_a_request_goes_out_in_one_send_with_its_body(
    servers: list[FakeServer], body: object
) -> None:
    """Head and body in one segment (the server reads a request once, not twice), and
    the head says what http.client's would."""
    server = start(servers, echo_path)
    transport = Transport([server.url], token="t0k")
    transport.call("GET", "/health")  # opens this thread's connection
    reader = transport._connection(0).reader
    assert reader is not None
    reader.sock = recording = RecordingSocket(reader.sock)  # type: ignore[assignment]
    assert transport.call("POST", "/jobs", body=body) == {"path": "/jobs"}
    [sent] = recording.sent
    payload = b'{"type":"sleep"}' if body else b""
    assert sent.endswith(b"\r\n\r\n" + payload)

    stock: list[bytes] = []
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(server.url).port)
    connection.send = stock.append  # type: ignore[method-assign]  # where it leaves
    headers = transport._headers(body is not None, None)
    connection.request("POST", "/jobs", payload, headers)
    stock_lines = b"".join(stock).split(b"\r\n")
    stock_lines.remove(b"Accept-Encoding: identity")  # http.client's own, not needed
    assert sorted(sent.split(b"\r\n")) == sorted(stock_lines)


def test_a_path_or_header_that_would_split_the_request_is_never_sent(
    servers: list[FakeServer],
) -> None:
    server = start(servers, echo_path)
    transport = Transport([server.url])
    with pytest.raises(TaskframeError, match="control character"):
        transport.call("GET", "/jobs/1 HTTP/1.1\r\nX-Evil: 1")
    with pytest.raises(TaskframeError, match="line break"):
        transport.call("GET", "/health", headers={"X-Note": "a\r\nX-Evil: 1"})
    assert server.requests == []
