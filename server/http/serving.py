"""waitress, set up to serve hundreds of workers: its limits as flags.

Which knob bounds what:

- ``--connection-limit``: open connections; past it new ones wait in the
  kernel's ``--backlog`` until one closes. waitress waits on its sockets
  with ``poll()``, so the limit is not capped by ``select()``'s 1024.
- ``--header-timeout``: how long a connection may take to send a request's
  line and headers (then its body must keep a minimum rate): slow clients
  give their slot back within it, however they trickle (see ``channel.py``).
- ``--channel-timeout``: how long a connection may sit idle between requests.
- ``--max-header-size`` and ``--max-body``: how much a request may send.
"""

from __future__ import annotations

import argparse
import logging
import re
import resource
from typing import Any

import waitress

from taskframe.core.options import add_option, duration
from taskframe.server.config import ServerConfig
from taskframe.server.http.channel import LimitLogFilter, channel_class

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
        help="seconds an idle connection (between requests) is kept open",
    )
    add_option(
        group,
        "--header-timeout",
        type=duration,
        default=10.0,
        help="seconds a connection has to send a request's line and headers, counted from "
        "its accept or the request's first byte (then its body must average 1 KiB/s); "
        "slower ones are closed, so trickling clients cannot hold --connection-limit (0: off; "
        "waitress only: under --server granian, --channel-timeout is the headers' deadline)",
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
        return max(0, int(options.max_waiting))
    return max(1, int(options.threads) // 4)


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
        # select() fails past file descriptor 1024, ending the server; poll() has no such limit.
        asyncore_use_poll=True,
        # Read on while a request runs, so that a client hanging up is seen (EOF): a
        # long poll then ends, and a lease answer nobody reads is released (resources/
        # workers.py). One pipelined request at most is read ahead of the running one.
        channel_request_lookahead=1,
        **settings,
    )
    server.channel_class = channel_class(
        lambda path: body_limit(config, path), options.header_timeout
    )
    waitress_log = logging.getLogger("waitress")
    if not any(isinstance(f, LimitLogFilter) for f in waitress_log.filters):
        waitress_log.addFilter(LimitLogFilter())
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
