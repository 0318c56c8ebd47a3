"""A real HTTP server on a free port that records every request, for the ``http``
executor's tests (unit and integration). Routes: ``/redirect?status=&to=``,
``/loop``, ``/hanging-redirect``, ``/many-headers``, ``/charset?cs=``; anything
else answers 200 with the recorded request as JSON.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HEADER_COUNT, HEADER_SIZE = 40, 4000


@dataclass
class Recorder:
    """A real HTTP server that records every request it receives."""

    url: str
    requests: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            recorder.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            parts = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            if parts.path == "/redirect":
                self._reply(int(query.get("status", "302")), b"", {"Location": query["to"]})
            elif parts.path == "/loop":
                self._reply(302, b"", {"Location": "/loop"})
            elif parts.path == "/hanging-redirect":
                # A redirect whose body never ends: reading it would hang the job.
                self.send_response(302)
                self.send_header("Location", "/ok")
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                self.wfile.write(b"x" * 1024)
                self.wfile.flush()
                recorder.release.wait(20)
            elif parts.path == "/many-headers":
                extra = {f"X-Big-{n}": "h" * HEADER_SIZE for n in range(HEADER_COUNT)}
                self._reply(200, b"ok", extra)
            elif parts.path == "/charset":
                text = "héllo ✓"
                data = text.encode("utf-16" if query["cs"] == "utf-16" else "utf-8")
                self._reply(200, data, {"Content-Type": f"text/plain; charset={query['cs']}"})
            else:
                answer = json.dumps(recorder.requests[-1]).encode()
                self._reply(200, answer, {"Content-Type": "application/json"})

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _route

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@contextmanager
def recording_servers() -> Iterator[Callable[..., Recorder]]:
    """Yield start(host="127.0.0.1", tls=None) -> a running Recorder (https with an
    SSL context); all stopped on exit."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread, Recorder]] = []

    def start(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Recorder:
        recorder = Recorder("")
        server = ThreadingHTTPServer((host, 0), _handler(recorder))
        server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        recorder.url = f"{scheme}://{host}:{server.server_address[1]}"
        # shutdown() waits for the loop's next poll: a short one for a quick teardown.
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        started.append((server, thread, recorder))
        return recorder

    try:
        yield start
    finally:
        for server, thread, recorder in started:
            recorder.release.set()
            server.shutdown()
            server.server_close()
            thread.join(5)
