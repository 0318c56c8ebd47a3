"""taskframe-worker's --token, --token-file and --ca-cert, seen by a scripted server."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fake_api import FakeServer, fake_servers, start
from tests.processes import BIN, Worker, wait_until
from tests.unit.test_transport import make_ca_and_cert

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    yield from fake_servers()


def authorizations(server: FakeServer) -> list[str | None]:
    return [h.get("Authorization") for h in server.headers]


def test_token_file_is_sent_on_every_lease(
    servers: list[FakeServer], start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    server = start(servers)
    token_file = tmp_path / "token"
    token_file.write_text("worker-secret\n")
    worker = start_worker([server.url], "--token-file", str(token_file), "--poll-interval", "0")
    wait_until(lambda: len(server.requests) >= 3, message="three lease requests")
    assert set(authorizations(server)) == {"Bearer worker-secret"}
    assert "worker-secret" not in worker.output()


def test_token_from_the_environment(
    servers: list[FakeServer], start_worker: Callable[..., Worker]
) -> None:
    server = start(servers)
    start_worker([server.url], "--poll-interval", "0", env={"TASKFRAME_TOKEN": "from-env"})
    wait_until(lambda: server.requests, message="a lease request")
    assert authorizations(server)[0] == "Bearer from-env"


def test_https_worker_trusts_the_given_ca_only(
    servers: list[FakeServer], start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = start(servers, tls=context)
    distrustful = start_worker([server.url], "--poll-interval", "0")
    wait_until(lambda: "TLS error" in distrustful.output(), message="the worker's TLS error")
    assert not server.requests
    start_worker([server.url], "--ca-cert", str(ca), "--poll-interval", "0")
    wait_until(lambda: server.requests, message="a lease request over https")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "a", "--token-file", "f"], "not both"),
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
        (["--ca-cert", "/nonexistent/ca.pem"], "is not a file"),
    ],
)
def test_bad_credentials_options_are_usage_errors(args: list[str], message: str) -> None:
    done = subprocess.run(
        [str(BIN / "taskframe-worker"), "--api-url", "http://127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
