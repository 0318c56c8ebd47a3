"""The ``http`` executor against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from marshmallow import ValidationError

from taskframe.core import ExecutorContext, PermanentError
from taskframe.plugins import http

BIG = 200 * 1024


class _Handler(BaseHTTPRequestHandler):
    """``/status/N`` answers N; ``/big`` a 200 KiB body; ``/echo`` the request back."""

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length).decode("utf-8")
        if self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
            self._send(status, f"status {status}".encode())
        elif self.path == "/big":
            self._send(200, b"x" * BIG)
        elif self.path == "/utf8":
            self._send(200, "héllo ✓".encode(), "text/plain; charset=utf-8")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/status/200")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        else:  # /echo
            echo = {
                "method": self.command,
                "content_type": self.headers.get("Content-Type"),
                "x_custom": self.headers.get("X-Custom"),
                "body": request_body,
            }
            self._send(200, json.dumps(echo).encode(), "application/json")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _route

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _run(payload: dict, timeout: float | None = None) -> dict:
    deadline = None if timeout is None else time.monotonic() + timeout
    loaded = http.HttpPayloadSchema().load(payload)
    return http.run(loaded, ExecutorContext(job_id=1, attempt=1, deadline=deadline))


def _field_errors(payload: dict) -> dict:
    with pytest.raises(ValidationError) as excinfo:
        http.HttpPayloadSchema().load(payload)
    return excinfo.value.messages


def test_get_returns_status_headers_body_and_timing(base_url: str) -> None:
    result = _run({"url": f"{base_url}/status/200"})
    assert result["status_code"] == 200
    assert result["headers"]["X-Test"] == "yes"
    assert result["body"] == "status 200"
    assert result["body_truncated"] is False
    assert isinstance(result["elapsed_ms"], float) and result["elapsed_ms"] >= 0
    json.dumps(result)  # JSON-serialisable


def test_large_body_is_truncated(base_url: str) -> None:
    result = _run({"url": f"{base_url}/big"})
    assert result["body"] == "x" * http.MAX_BODY
    assert result["body_truncated"] is True


def test_body_is_decoded_with_the_declared_charset(base_url: str) -> None:
    assert _run({"url": f"{base_url}/utf8"})["body"] == "héllo ✓"


def test_json_body_and_headers_are_sent(base_url: str) -> None:
    payload = {"url": f"{base_url}/echo", "method": "post", "json": {"a": [1, 2]}}
    payload["headers"] = {"X-Custom": "v"}
    echo = json.loads(_run(payload)["body"])
    assert echo == {
        "method": "POST",
        "content_type": "application/json",
        "x_custom": "v",
        "body": '{"a": [1, 2]}',
    }


def test_text_body_is_sent(base_url: str) -> None:
    echo = json.loads(_run({"url": f"{base_url}/echo", "method": "PUT", "body": "hi"})["body"])
    assert (echo["method"], echo["body"]) == ("PUT", "hi")


def test_head_and_redirects(base_url: str) -> None:
    assert _run({"url": f"{base_url}/big", "method": "HEAD"})["body"] == ""
    assert _run({"url": f"{base_url}/redirect"})["status_code"] == 200


def test_client_error_is_permanent(base_url: str) -> None:
    with pytest.raises(PermanentError, match="404"):
        _run({"url": f"{base_url}/status/404"})


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_error_is_retryable(base_url: str, status: int) -> None:
    with pytest.raises(Exception, match=str(status)) as excinfo:
        _run({"url": f"{base_url}/status/{status}"})
    assert not isinstance(excinfo.value, PermanentError)


def test_expected_status(base_url: str) -> None:
    assert _run({"url": f"{base_url}/status/404", "expected_status": 404})["status_code"] == 404
    assert _run({"url": f"{base_url}/status/201", "expected_status": [200, 201]})
    with pytest.raises(PermanentError, match="expected 201"):
        _run({"url": f"{base_url}/status/200", "expected_status": 201})
    with pytest.raises(Exception) as excinfo:
        _run({"url": f"{base_url}/status/500", "expected_status": 200})
    assert not isinstance(excinfo.value, PermanentError)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError) as excinfo:
        _run({"url": f"http://127.0.0.1:{port}/", "timeout": 5})
    assert not isinstance(excinfo.value, PermanentError)


def test_request_timeout_is_capped_by_the_deadline(base_url: str) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError) as excinfo:
        _run({"url": f"{base_url}/slow", "timeout": 30}, timeout=0.3)
    assert not isinstance(excinfo.value, PermanentError)
    assert time.monotonic() - start < 1.2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "not a url"}, "url"),
        ({}, "url"),
        ({"url": "http://x", "method": "BREW"}, "method"),
        ({"url": "http://x", "timeout": 0}, "timeout"),
        ({"url": "http://x", "timeout": 601}, "timeout"),
        ({"url": "http://x", "headers": {"A": 1}}, "headers"),
        ({"url": "http://x", "headers": {"A": "b\r\nInjected: 1"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "nul\0byte"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "vertical\x0btab"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "form\x0cfeed"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "line\nfeed"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "delete\x7f"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "not latin-1 ✓"}}, "headers"),
        ({"url": "http://x", "headers": {"A B": "space in the name"}}, "headers"),
        ({"url": "http://x", "headers": {"A:B": "colon in the name"}}, "headers"),
        ({"url": "http://x", "headers": {"": "empty name"}}, "headers"),
        ({"url": "http://x", "headers": {"Ä": "non-ASCII name"}}, "headers"),
        ({"url": "http://x/\x00"}, "url"),
        ({"url": "http://x/a\r\nHost: y"}, "url"),
        ({"url": "http://x/\ud800"}, "url"),
        ({"url": "http://x", "body": "lone \ud800 surrogate"}, "body"),
        ({"url": "http://x", "json": {"a": float("nan")}}, "json"),
        ({"url": "http://x", "json": [float("inf")]}, "json"),
        ({"url": "http://x", "body": "a", "json": {}}, "json"),
        ({"url": "http://x", "expected_status": 99}, "expected_status"),
        ({"url": "http://x", "expected_status": []}, "expected_status"),
        ({"url": "http://x", "expected_status": [200, "ok"]}, "expected_status"),
        ({"url": "http://x", "expected_status": True}, "expected_status"),
        ({"url": "http://x", "verb": "GET"}, "verb"),
    ],
)
def test_schema_errors_name_the_field(payload: dict, field: str) -> None:
    assert list(_field_errors(payload)) == [field]


def test_tabs_and_latin1_header_values_are_accepted() -> None:
    headers = {"X-Tab": "a\tb", "X-Latin": "café", "X-Token!#$%&'*+-.^_`|~": "v"}
    assert http.HttpPayloadSchema().load({"url": "http://x", "headers": headers})["headers"] == (
        headers
    )


def test_schema_defaults() -> None:
    loaded = http.HttpPayloadSchema().load({"url": "https://example.com/", "json": None})
    assert loaded == {
        "url": "https://example.com/",
        "method": "GET",
        "headers": {},
        "timeout": 30.0,
        "json": None,
    }
    assert http.HttpPayloadSchema().load({"url": "http://x", "expected_status": 204})[
        "expected_status"
    ] == [204]
