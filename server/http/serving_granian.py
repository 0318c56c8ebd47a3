"""Granian, a Rust HTTP server, running the same WSGI app: ``taskframe-server --server granian``.

Granian parses HTTP and holds the connections in Rust, and calls the app in
``--threads`` Python threads. It runs here inside the server process (one
Granian worker, embedded as Granian's own thread-based server runs it), so
the scheduler, its long-poll waiters and the housekeeper are shared by every
request exactly as under waitress.

What waitress does that Granian does not is done in WSGI middleware here:

- body limits: a declared ``Content-Length`` over the route's limit is
  answered 413 before the body is read (Granian streams bodies to the app,
  so nothing was read); a chunked body is read up to the limit, and 413 past it;
- the proxy rules: waitress's own middleware (``waitress.proxy_headers``)
  takes ``X-Forwarded-*`` from ``--trusted-proxy`` only and drops them from
  anyone else.

Other options map to Granian's settings: ``--threads`` are the Python
threads calling the app, ``--connection-limit`` its backpressure
(connections served at once; more wait in the backlog),
``--channel-timeout`` its header read timeout (an idle keep-alive or
half-sent request is closed after it, to the second; waitress checks every
30 s), ``--max-header-size`` its HTTP/1 buffer (431 past it), ``--backlog``
its listen backlog. A stop answers the long polls (the CLI closes the
notifier first), then Granian finishes the requests in progress.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from taskframe.core.errors import ErrorCode
from taskframe.server.config import ServerConfig
from taskframe.server.http.errors import APIError
from taskframe.server.http.serving import body_limit

log = logging.getLogger("taskframe.server")

#: The Granian releases whose embedding API this module was written against.
SUPPORTED = "granian>=2.8,<3"
#: How long a stop waits for the requests in progress to finish.
DRAIN_TIMEOUT = 30.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def problem() -> str | None:
    """Why ``--server granian`` cannot run here, or None."""
    try:
        import granian
        from granian._granian import WSGIWorker  # noqa: F401  # the embedding API
    except ImportError as exc:
        return f"--server granian needs Granian ({exc}): pip install 'taskframe[granian]'"
    version = re.match(r"(\d+)\.(\d+)", granian.__version__)
    if version is None or int(version[1]) != 2 or int(version[2]) < 8:
        return f"--server granian needs {SUPPORTED}, not granian {granian.__version__}"
    return None


def limit_bodies(app: WSGIApp, config: ServerConfig) -> WSGIApp:
    """413 for a body over its route's limit, before the app (or anyone) reads it."""

    def limited(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        limit = body_limit(config, environ.get("PATH_INFO") or "")
        declared = environ.get("CONTENT_LENGTH")
        if declared:
            if declared.isdigit() and int(declared) > limit:
                return _too_large(start_response, limit)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # No length to check first: read up to the limit (as waitress does).
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _too_large(start_response, limit)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return limited


def _too_large(start_response: Callable[..., Any], limit: int) -> list[bytes]:
    import json

    error = APIError(
        "413 Payload Too Large", "Request body too large", code=ErrorCode.PAYLOAD_TOO_LARGE
    )
    error.description = f"the body is larger than {limit} bytes"
    body = json.dumps(error.to_dict()).encode()
    start_response(
        "413 Payload Too Large",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def with_proxy_rules(app: WSGIApp, proxy: dict[str, Any]) -> WSGIApp:
    """waitress's proxy-header rules (it applies them to every app it serves)."""
    from waitress.proxy_headers import proxy_headers_middleware

    return proxy_headers_middleware(  # type: ignore[no-any-return]
        app,
        trusted_proxy=proxy.get("trusted_proxy"),
        trusted_proxy_count=proxy.get("trusted_proxy_count", 1),
        trusted_proxy_headers=proxy.get("trusted_proxy_headers"),
        clear_untrusted=True,
        log_untrusted=False,
        logger=log,
    )


class GranianServer:
    """Serves ``app`` with Granian: :meth:`run` until :meth:`close` or Ctrl-C (as waitress's)."""

    def __init__(
        self, app: WSGIApp, config: ServerConfig, options: argparse.Namespace, proxy: dict[str, Any]
    ) -> None:
        from granian._granian import WorkerSignal
        from granian.net import SocketSpec  # type: ignore[attr-defined]  # not re-exported

        self.app = limit_bodies(with_proxy_rules(app, proxy), config)
        self.options = options
        # Bound now, as waitress binds in create_server: a taken port fails here.
        backlog = max(128, options.backlog)
        self._socket: Any = SocketSpec(options.host, options.port, backlog).build()
        with socket.socket(fileno=os.dup(self._socket.get_fd())) as bound:
            self.effective_port: int = bound.getsockname()[1]
            # Listening now: connections wait in the backlog until Granian accepts them
            # (as under waitress), instead of being refused until then.
            bound.listen(backlog)
        self._signal = WorkerSignal()
        self._drained = threading.Event()
        self._signal.add_cb(self._drained.set)  # Granian calls it once every request ended
        self._serving = False
        self._worker: Any = None

    def run(self) -> None:
        """Serve until :meth:`close` (or KeyboardInterrupt, which closes)."""
        try:
            self._serve()
            while not self._drained.wait(1.0):
                pass
        except KeyboardInterrupt:  # the signal handler's way out, as with waitress
            self._stop()
        finally:
            self._worker = None
            self._socket = None  # closes the listening socket: no one is left to accept

    def _serve(self) -> None:
        """Start Granian's worker: Rust accepts and parses, our threads run the app."""
        from granian import _granian
        from granian._futures import _new_cbscheduler
        from granian._loops import loops
        from granian.http import HTTP1Settings
        from granian.wsgi import _callback_wrapper

        options = self.options
        http1 = HTTP1Settings(
            header_read_timeout=max(1, options.channel_timeout) * 1000,
            keep_alive=True,
            max_buffer_size=max(8192, options.max_header_size),
        )
        # Any: Granian's stub (_granian.pyi) lags behind its signature (IPC, metrics).
        worker_type: Any = _granian.WSGIWorker
        self._worker = worker_type(
            1,  # worker id
            (None, self._socket),
            None,  # no IPC: a single worker in this process
            1,  # Rust I/O threads: one serves thousands of connections
            512,  # Rust blocking threads (Granian's default)
            max(1, options.threads),  # Python threads calling the app
            30,  # seconds before an idle Python thread ends
            max(1, options.connection_limit),  # backpressure: connections served at once
            "1",  # HTTP/1.1, as waitress
            http1,
            None,  # no HTTP/2 settings
            None,  # no static files
            *(False, None, None, None, "tls1.3", None, [], False),  # no TLS (a proxy's job)
            (None, _granian.MetricsAggregator(1)),  # Granian's own metrics off
        )
        # The WSGI app runs in Granian's Python threads; this loop is only its token.
        loop = loops.get("asyncio")
        scheduler = _new_cbscheduler(  # type: ignore[no-untyped-call]  # granian has no hints
            loop, _callback_wrapper(self.app, {}, None), impl_asyncio=True
        )
        self._serving = True
        self._worker.serve_mtr(scheduler, loop, self._signal)  # returns at once; Rust serves

    def close(self) -> None:
        """Stop accepting, let the requests in progress finish (up to DRAIN_TIMEOUT)."""
        if self._serving:
            self._stop()
        self._socket = None

    def _stop(self) -> None:
        self._signal.set()
        if not self._drained.wait(DRAIN_TIMEOUT):
            log.warning("requests still running %g s after the stop", DRAIN_TIMEOUT)


def create_server(
    app: WSGIApp, config: ServerConfig, options: argparse.Namespace, proxy: dict[str, Any]
) -> GranianServer:
    from taskframe.server.http.serving import _raise_file_limit

    _raise_file_limit(options.connection_limit)
    return GranianServer(app, config, options, proxy)
