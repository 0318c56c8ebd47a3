"""A scripted HTTP server (standard library) for transport tests: real sockets, fake answers."""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Reply = tuple[int, Any]
Replier = Callable[[str, Any], Reply]


class FakeServer:
    """An HTTP server whose answers a test scripts with ``reply(path, body) -> (status, body)``."""

    def __init__(
        self,
        reply: Callable[[str, Any], Reply] | None = None,
        tls: ssl.SSLContext | None = None,
        *,
        idle_timeout: float | None = None,
        keep_alive: bool = True,
    ) -> None:
        """``idle_timeout``: close a connection that waited that long for a request (as
        waitress does after 60 s); ``keep_alive=False``: answer with ``Connection: close``."""
        self.reply = reply or self.accept_all
        self.requests: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.peers: list[int] = []  # the client's port, per request: tells the connections
        self.closed = 0  # connections ended by the server
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as waitress does
            timeout = idle_timeout

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length) or b"null"))

            def _answer(self, body: Any) -> None:
                outer.requests.append((self.path, body))
                outer.headers.append(dict(self.headers))
                outer.peers.append(self.client_address[1])
                status, answer = outer.reply(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if not keep_alive:
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                outer.closed += 1

        self.httpd = Server(("127.0.0.1", 0), Handler)
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


class ForwardingProxy:
    """A tiny HTTP proxy that records each request line (and Proxy-Authorization) it gets:
    absolute-URI requests are forwarded, ``CONNECT host:port`` is tunnelled."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.authorizations: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                outer.lines.append(self.requestline)
                outer.authorizations.append(self.headers.get("Proxy-Authorization"))

            def _forward(self) -> None:
                self._record()
                target = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if not k.lower().startswith(
                    ("proxy-", "connection", "keep-alive"))}  # fmt: skip
                upstream = http.client.HTTPConnection(target.netloc, timeout=10)
                try:
                    query = f"?{target.query}" if target.query else ""
                    upstream.request(self.command, target.path + query, body, headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type") or "")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

            def do_CONNECT(self) -> None:
                self._record()
                host, port = self.path.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as upstream:
                    self.send_response(200, "Connection established")
                    self.end_headers()
                    _pipe(self.connection, upstream)
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Move bytes both ways until either side closes (or 10 s of silence)."""
    while True:
        readable, _, _ = select.select([one, other], [], [], 10)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (other if source is one else one).sendall(data)


def fake_servers() -> Iterator[list[FakeServer]]:
    """Body of a ``servers`` fixture: a list that ``start`` fills, all closed at the end."""
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


def start(
    servers: list[FakeServer],
    reply: Replier | None = None,
    tls: ssl.SSLContext | None = None,
    **options: Any,
) -> FakeServer:
    server = FakeServer(reply, tls, **options)
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
