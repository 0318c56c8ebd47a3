"""A scripted HTTP server (standard library) for transport tests: real sockets, fake answers."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any]
Replier = Callable[[str, Any], Reply]


class FakeServer:
    """An HTTP server whose answers a test scripts with ``reply(path, body) -> (status, body)``."""

    def __init__(
        self, reply: Callable[[str, Any], Reply] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.reply = reply or self.accept_all
        self.requests: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
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
                outer.headers.append(dict(self.headers))
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
        self.httpd.handle_error = lambda request, address: None  # a scripted drop, not news
        scheme = "http"
        if tls is not None:
            scheme = "https"
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
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


def fake_servers() -> Iterator[list[FakeServer]]:
    """Body of a ``servers`` fixture: a list that ``start`` fills, all closed at the end."""
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


def start(
    servers: list[FakeServer], reply: Replier | None = None, tls: ssl.SSLContext | None = None
) -> FakeServer:
    server = FakeServer(reply, tls)
    servers.append(server)
    return server


def dead_url() -> str:
    """A local URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def fail_first(count: int, status: int = 503) -> Callable[[str, Any], Reply]:
    """Answer ``status`` to the first ``count`` requests, then accept everything."""
    seen = []

    def reply(path: str, body: Any) -> Reply:
        seen.append(path)
        if len(seen) <= count:
            return status, {"title": "Service Unavailable", "description": "busy"}
        return FakeServer.accept_all(path, body)

    return reply
