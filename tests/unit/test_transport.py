"""The client's HTTP transport against real tiny HTTP(S) servers: rotation, failover,
errors by kind, the bearer token, a private CA."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskframe.client.errors import (
    Forbidden,
    NotFound,
    TaskframeError,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from taskframe.client.transport import Transport, read_token_file
from taskframe.core.retry import BackoffPolicy
from tests.fake_api import FakeServer, dead_url, fail_first, fake_servers, start

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    yield from fake_servers()


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

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
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
