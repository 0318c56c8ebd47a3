"""waitress, set up to serve hundreds of workers: its limits as flags, body limits before reading.

waitress reads a whole request body (spooling it to a temporary file past
a few hundred KiB) before the application sees it. So the body limits are
enforced where waitress parses the headers: a declared ``Content-Length``
over the route's limit is answered 413 at once, and the body is never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import RequestEntityTooLarge

from taskframe.core.options import add_option
from taskframe.server.config import ServerConfig

log = logging.getLogger("taskframe.server")

#: Routes whose bodies carry many items, and may be this many times ``--max-body``.
BULK_FACTOR = 16
BULK_ROUTES = re.compile(r"^/(jobs/batch|lease|heartbeats|jobs/[0-9]+/complete)/?$")


def body_limit(config: ServerConfig, path: str) -> int:
    """The largest body the route at ``path`` accepts (as its resource checks it too)."""
    bulk = BULK_ROUTES.match(path)
    return config.max_body_bytes * (BULK_FACTOR if bulk else 1)


def add_serving_options(group: Any) -> None:
    """waitress's limits, sized for 500 workers (each keeps about 2 connections)."""
    add_option(
        group,
        "--connection-limit",
        type=int,
        default=2000,
        help="open connections at most; past it new clients wait in the backlog",
    )
    add_option(
        group,
        "--channel-timeout",
        type=int,
        default=60,
        help="seconds an idle connection (no request in progress) is kept open",
    )
    add_option(
        group,
        "--backlog",
        type=int,
        default=2048,
        help="connections the kernel queues before they are accepted",
    )
    add_option(
        group,
        "--max-header-size",
        type=int,
        default=65536,
        help="largest request line and headers, in bytes (431 past it)",
    )
    add_option(
        group,
        "--max-waiting",
        type=int,
        default=None,
        help="requests that may long-poll at once (lease and ?wait=); the rest are "
        "answered at once with what there is (default: a quarter of --threads)",
    )


def max_waiting(options: argparse.Namespace) -> int:
    if options.max_waiting is not None:
        return max(0, options.max_waiting)
    return max(1, options.threads // 4)


class BodyTooLarge(RequestEntityTooLarge):
    """waitress's 413, in the API's error shape."""

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json.dumps({"title": "Request body too large", "description": self.body})
        return (
            f"{self.code} {self.reason}",
            [("Content-Type", "application/json")],
            body.encode(),
        )


def _channel_class(config: ServerConfig) -> type[HTTPChannel]:
    class Parser(HTTPRequestParser):
        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            limit = body_limit(config, self.path or "")
            if self.content_length > limit:  # type: ignore[has-type]  # set by waitress
                self.error = BodyTooLarge(f"the body is larger than {limit} bytes")
                self.completed = True
                self.content_length = 0  # the body is not read (nor spooled)

    return type("Channel", (HTTPChannel,), {"parser_class": Parser})


def create_server(
    app: Any, config: ServerConfig, options: argparse.Namespace, **settings: Any
) -> Any:
    """waitress with our limits; ``settings`` adds more (the trusted-proxy ones)."""
    _raise_file_limit(options.connection_limit)
    server = waitress.create_server(
        app,
        host=options.host,
        port=options.port,
        threads=options.threads,
        connection_limit=options.connection_limit,
        channel_timeout=options.channel_timeout,
        backlog=options.backlog,
        max_request_header_size=options.max_header_size,
        # Bodies past every route's limit are refused by waitress itself (+1: its test is >=).
        max_request_body_size=config.max_body_bytes * BULK_FACTOR + 1,
        ident="taskframe",
        # Read on while a request runs, so that a client hanging up is seen (EOF): a
        # long poll then ends, and a lease answer nobody reads is released (resources/
        # workers.py). One pipelined request at most is read ahead of the running one.
        channel_request_lookahead=1,
        **settings,
    )
    server.channel_class = _channel_class(config)
    return server


def _raise_file_limit(connections: int) -> None:
    """Each connection is a file descriptor: make room for them, as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256  # the database, logs, the listening socket...
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError) as exc:  # pragma: no cover - depends on the host
            log.warning("cannot raise the open-file limit to %d: %s", new, exc)
        if new < wanted:
            log.warning("open-file limit %d is below --connection-limit %d + 256", new, connections)
