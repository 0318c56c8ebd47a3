"""The guarantees of the HTTP layer, on waitress and on Granian (``--server granian``).

Each test runs once per server, whatever TASKFRAME_TEST_SERVER says: the
limits waitress enforces itself are enforced for Granian by middleware
(server/http/serving_granian.py), and these tests hold both to the same word.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading

import pytest
import requests

from tests.processes import BIN, wait_until

pytestmark = pytest.mark.timeout(90)
SLEEP = {"type": "sleep", "payload": {"duration": 0}}


@pytest.fixture(params=["waitress", "granian"])
def server_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "granian":
        from taskframe.server.http import serving_granian

        problem = serving_granian.problem()
        if problem:
            pytest.fail(problem)  # the test extra installs it: missing is a failure
    return request.param


def _raw(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers) and ``body``; the status and body answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith((b"}", b">")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _chunked(data: bytes, size: int = 4096) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_a_chunked_body_is_limited_like_a_declared_one(start_server, sqlite_url, server_kind):
    server = start_server(sqlite_url, "--server", server_kind, "--max-body", "10000")
    head = "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n"
    fits = json.dumps({**SLEEP, "idempotency_key": "k" * 100}).encode()
    status, body = _raw(server.port, head, _chunked(fits))
    assert status == 201, body
    too_big = json.dumps({**SLEEP, "pad": "x" * 20000}).encode()
    status, body = _raw(server.port, head, _chunked(too_big))
    assert status == 413, body
    assert "10000 bytes" in json.loads(body)["description"]


def test_a_declared_body_over_the_limit_is_refused_unread(start_server, sqlite_url, server_kind):
    server = start_server(sqlite_url, "--server", server_kind, "--max-body", "10000")
    head = "POST /lease HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    status, body = _raw(server.port, head + "Content-Length: 160001\r\n")  # no body sent
    assert status == 413 and "160000 bytes" in json.loads(body)["description"]


def test_headers_past_the_limit_are_refused(start_server, sqlite_url, server_kind):
    server = start_server(sqlite_url, "--server", server_kind, "--max-header-size", "16384")
    answer = requests.get(f"{server.url}/health", headers={"X-Big": "x" * 20000}, timeout=10)
    assert answer.status_code == 431
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_headers_count_only_from_the_trusted_proxy(
    start_server, sqlite_url, server_kind, trusted
):
    proxy = "127.0.0.1" if trusted else "192.0.2.1"
    server = start_server(
        sqlite_url, "--server", server_kind, "--trusted-proxy", proxy, "--access-log"
    )
    requests.get(
        f"{server.url}/jobs", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
    ).raise_for_status()
    line = wait_until(
        lambda: re.search(r"taskframe.access .* (\S+) GET /jobs 200", server.output()),
        message="the access line",
    )
    assert line[1] == ("203.0.113.9" if trusted else "127.0.0.1")


def test_a_stop_answers_the_long_polls_and_exits_0(start_server, sqlite_url, server_kind):
    server = start_server(sqlite_url, "--server", server_kind)
    answers: list = []
    poll = threading.Thread(
        target=lambda: answers.append(
            requests.post(
                f"{server.url}/lease",
                json={"worker_id": "w-poll", "types": ["sleep"], "max": 1, "wait": 60},
                timeout=30,
            )
        )
    )
    poll.start()
    # The lease registers its worker before it waits: once listed, the poll is waiting.
    wait_until(
        lambda: requests.get(f"{server.url}/workers", timeout=10).json()["workers"],
        message="the long poll to start",
    )
    server.signal(signal.SIGTERM)
    poll.join(timeout=30)
    [answer] = answers
    assert answer.status_code == 200 and answer.json()["jobs"] == []
    assert server.popen.wait(timeout=30) == 0, server.output()


def test_port_0_listens_on_a_free_port_and_says_which(tmp_path, server_kind):
    process = subprocess.Popen(
        [str(BIN / "taskframe-server"), "--server", server_kind, "--port", "0"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        while "listening on" not in line:
            assert line, "the server exited before listening"
            line = process.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+) ", line)[1])  # type: ignore[index]
        assert port != 0
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        assert code == 0, process.stderr.read() if process.stderr else code
