"""The server's command line: serve the API with waitress or Granian.

``taskframe-server`` is :func:`main` given an :class:`InProcessWorker` by
taskframe.standalone, which sits above the server and the worker and runs one with
``--standalone``: the server never imports the worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from waitress.adjustments import Adjustments

from taskframe.core.logs import (
    add_logging_options,
    check_logging_options,
    configure_logging,
    early_logging_options,
)
from taskframe.core.options import (
    ArgumentParser,
    BadEnvironment,
    add_option,
    add_version_option,
    env_name,
)
from taskframe.core.plugins import (
    PluginSet,
    TasksModuleError,
    add_plugin_options,
    early_disabled_plugins,
    early_tasks,
    load_plugins,
)
from taskframe.server.config import ServerConfig, add_config_options, config_values
from taskframe.server.engine.housekeeper import Housekeeper
from taskframe.server.engine.outbox import Outbox
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http import serving_granian
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import create_app
from taskframe.server.http.auth import TokenSet, is_loopback, load_tokens
from taskframe.server.http.origin import AllowedHosts, guard_options, parse_allowed_hosts
from taskframe.server.http.serving import add_serving_options, create_server, max_waiting
from taskframe.server.http.throttle import throttle_options
from taskframe.server.observe.events import EventDispatcher
from taskframe.server.storage import StoreConfigError, StoreUnavailable, open_store

log = logging.getLogger("taskframe.server")

PROXY_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port")
_TRUE = {"1", "true", "yes", "on"}

#: What the server's stop signals call (``signal.signal``'s handlers).
SignalHandler = Callable[[int, FrameType | None], None]


class Serving(Protocol):
    """The HTTP server serving the app (waitress's, or Granian's in serving_granian)."""

    effective_port: int

    def run(self) -> None: ...

    def close(self) -> None: ...


class InProcessWorker(Protocol):
    """A worker run in the server's process with ``--standalone`` (taskframe.standalone's)."""

    def add_options(self, parser: argparse.ArgumentParser, plugins: PluginSet) -> None:
        """Add the worker's options (only when ``--standalone`` is given)."""

    def run(
        self,
        server: Serving,
        host: str,
        port: int,
        plugins: PluginSet,
        options: argparse.Namespace,
        tokens: TokenSet | None,
        on_stop_signals: Callable[[SignalHandler], None],
        shut_down: Callable[[], None],
    ) -> int:
        """Serve in a thread and run the worker until a stop signal; then ``shut_down``."""


def standalone_requested(argv: Sequence[str]) -> bool:
    """``--standalone`` on the command line or ``TASKFRAME_STANDALONE`` set true."""
    if "--standalone" in argv:
        return True
    return os.environ.get(env_name("--standalone"), "").strip().lower() in _TRUE


def build_parser(
    plugins: PluginSet, worker: InProcessWorker | None = None
) -> argparse.ArgumentParser:
    """The server's options; the in-process ``worker``'s too when given (``--standalone``)."""
    parser = ArgumentParser(
        prog="taskframe-server",
        description="Serve the taskframe API. Every option can also be set with the "
        "environment variable shown in brackets.",
    )
    add_version_option(parser)
    net = parser.add_argument_group("server")
    add_option(net, "--host", default="127.0.0.1", help="interface to listen on")
    add_option(net, "--port", type=int, default=8000, help="TCP port (0 picks a free one)")
    add_option(
        net,
        "--threads",
        type=int,
        default=32,
        help="request threads; each long-poll holds one while it waits (see --max-waiting)",
    )
    add_option(
        net,
        "--server",
        default="waitress",
        choices=("waitress", "granian"),
        help="the HTTP server: waitress, or Granian (a Rust server; pip install "
        "'taskframe[granian]')",
    )
    add_config_options(net, "server")
    add_serving_options(net)
    add_logging_options(net)
    add_config_options(net, "logging")

    security = parser.add_argument_group(
        "security",
        "Tokens also come from TASKFRAME_TOKENS: the same ROLES:TOKEN entries, separated by "
        "';' or whitespace. Without any token every endpoint is open.",
    )
    add_option(
        security,
        "--token-file",
        # Not TASKFRAME_TOKEN_FILE: that is the worker's and the client's single token.
        env="TASKFRAME_TOKENS_FILE",
        help="file of bearer tokens, one ROLES:TOKEN a line (roles: client, worker, admin; "
        "worker[id,id] or worker[prefix*] binds a worker token to worker ids)",
    )
    add_option(
        security,
        "--insecure",
        flag_only=True,
        help="allow listening on a non-loopback address without tokens (anyone who can "
        "reach the port may do anything)",
    )
    add_option(
        security,
        "--trusted-proxy",
        help="address of the reverse proxy (e.g. nginx terminating TLS) whose forwarded "
        "headers give the client's address and scheme; '*' trusts any peer",
    )
    add_option(
        security,
        "--trusted-proxy-count",
        type=int,
        default=1,
        help="how many proxies in front of the server (the last N addresses of "
        "X-Forwarded-For are theirs)",
    )
    add_option(
        security,
        "--trusted-proxy-headers",
        default=" ".join(PROXY_HEADERS),
        help="headers taken from the trusted proxy, space- or comma-separated: "
        "x-forwarded-for, x-forwarded-proto, x-forwarded-host, x-forwarded-port, "
        "or forwarded alone",
    )
    guard_options(security)
    throttle_options(security)

    db = parser.add_argument_group("database")
    add_option(
        db,
        "--db",
        default="taskframe.db",
        help="SQLite path (or sqlite:///path) or a postgresql:// URL",
    )
    add_option(
        db,
        "--db-busy-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a locked database before answering 503",
    )
    add_option(
        db,
        "--sqlite-synchronous",
        default="NORMAL",
        help="SQLite synchronous setting: NORMAL survives process crashes, FULL also power loss",
    )
    add_option(db, "--migrate-only", flag_only=True, help="create or upgrade the schema, then exit")

    jobs = parser.add_argument_group("jobs")
    add_config_options(jobs, "jobs")

    add_plugin_options(parser)
    add_option(
        parser,
        "--standalone",
        flag_only=True,
        help="also run a worker in this process, talking to this server over HTTP "
        "(`taskframe-server --standalone --help` lists the worker's options)",
    )
    plugins.manager.hook.taskframe_add_options(parser=parser, role="server")
    if worker is not None:
        worker.add_options(parser, plugins)
    return parser


def config_from(options: argparse.Namespace) -> ServerConfig:
    return ServerConfig(**config_values(options), max_waiting=max_waiting(options))


def access_from(options: argparse.Namespace, tokens: TokenSet | None = None) -> AccessConfig:
    return AccessConfig(
        tokens=tokens,
        allowed_hosts=AllowedHosts.build(options.host, parse_allowed_hosts(options.allowed_host)),
        max_auth_failures=max(0, options.max_auth_failures),
    )


def proxy_settings(options: argparse.Namespace) -> dict[str, Any]:
    """waitress's trusted-proxy settings; ValueError when they make no sense."""
    if not options.trusted_proxy:
        return {}
    headers = set(options.trusted_proxy_headers.replace(",", " ").lower().split())
    settings = {
        "trusted_proxy": options.trusted_proxy,
        "trusted_proxy_count": options.trusted_proxy_count,
        "trusted_proxy_headers": headers,
    }
    try:
        Adjustments(**settings)
    except ValueError as exc:
        raise ValueError(f"--trusted-proxy-headers: {exc}") from None
    return settings


def main(argv: list[str] | None = None, worker: InProcessWorker | None = None) -> int:
    """Serve; with ``worker``, ``--standalone`` runs it in this process too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    early = early_logging_options(argv)  # before the plugins load and may log
    configure_logging(early.log_level, early.log_format)
    try:
        plugins = load_plugins(disabled=early_disabled_plugins(argv), tasks=early_tasks(argv))
        parser = build_parser(plugins, worker if standalone_requested(argv) else None)
    except (BadEnvironment, TasksModuleError) as exc:
        print(f"taskframe-server: error: {exc}", file=sys.stderr)
        return 2
    options = parser.parse_args(argv)
    if options.standalone and worker is None:
        # taskframe.server.cli run as a module: the command's entry is taskframe.standalone.
        parser.error("--standalone: this entry point runs no worker; run taskframe-server")
    in_process = worker if options.standalone else None
    check_logging_options(parser, options)
    configure_logging(options.log_level, options.log_format)
    plugins.configure(options, "server")
    if in_process is not None:
        plugins.configure(options, "worker")
    if options.list_plugins:
        print(plugins.describe_text())
        return 0
    # Before anything is created (the SQLite file): is the port free? (--migrate-only
    # does not listen: it runs beside the servers it upgrades the schema for.)
    problem = None if options.migrate_only else port_problem(options.host, options.port)
    if problem:
        parser.error(problem)
    if options.server == "granian" and not options.migrate_only:
        unusable = serving_granian.problem()
        if unusable:
            parser.error(unusable)
    try:
        tokens = load_tokens(options.token_file, os.environ.get("TASKFRAME_TOKENS"))
        proxy = proxy_settings(options)
    except ValueError as exc:
        print(f"taskframe-server: error: {exc}", file=sys.stderr)
        return 2
    if not tokens:
        if not is_loopback(options.host) and not options.insecure:
            print(
                f"taskframe-server: error: refusing to listen on {options.host} without tokens "
                "(give --token-file or TASKFRAME_TOKENS, or --insecure to run open)",
                file=sys.stderr,
            )
            return 2
        log.warning(
            "no tokens configured: every endpoint is open to whoever reaches %s", options.host
        )
    else:
        log.info("%d token(s) configured: %s", len(tokens), tokens.summary())

    try:
        store = open_store(
            options.db,
            busy_timeout=options.db_busy_timeout,
            synchronous=options.sqlite_synchronous,
        )
        version = store.migrate()
    except StoreConfigError as exc:
        parser.error(str(exc))
    except (StoreUnavailable, ValueError) as exc:
        log.error("cannot use the database %s: %s", safe_db_location(options.db), exc)
        return 1
    if options.migrate_only:
        log.info("schema of %s is at version %d", store.backend, version)
        return 0
    config = config_from(options)
    access = access_from(options, tokens)
    outbox = Outbox.for_plugins(store, plugins)  # before the events: it listens to them
    events = EventDispatcher.for_plugins(plugins)
    scheduler = Scheduler(store, config, events=events)
    app = create_app(config, scheduler, plugins, access)
    server: Serving
    try:
        if options.server == "granian":
            server = serving_granian.create_server(app, config, options, proxy)
        else:
            server = create_server(app, config, options, **proxy)
    except OSError as exc:  # lost a race for the port since port_problem()
        parser.error(f"--port {options.port}: cannot listen on {options.host}: {exc.strerror}")
    port = server.effective_port
    housekeeper = scheduler.housekeeper()
    housekeeper.start()
    if outbox is not None:
        outbox.start(scheduler.telemetry.metrics, port)
    if in_process is not None:
        _banner(options.host, port, store.backend, options.db, plugins)
        return in_process.run(
            *(server, options.host, port, plugins, options, access.tokens, _on_stop_signals),
            lambda: _shut_down(server, scheduler, housekeeper, outbox),
        )

    def stop(signum: int, frame: object) -> None:
        log.info("stopping")
        # Long-polls answer now rather than hold waitress's exit for 5 s.
        scheduler.notifier.close()
        # waitress must not be closed from a signal handler while it sits in
        # poll(): its run() closes itself on KeyboardInterrupt.
        raise KeyboardInterrupt

    _on_stop_signals(stop)
    try:
        # After the handlers: a stop signal right after the banner is a clean stop too.
        _banner(options.host, port, store.backend, options.db, plugins)
        server.run()
    except KeyboardInterrupt:  # stopped before serving began
        pass
    finally:
        _shut_down(server, scheduler, housekeeper, outbox)
    return 0


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None (port 0 is always fine)."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"--host {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As waitress binds: with SO_REUSEADDR, so a port in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return (
                f"--port {port}: cannot listen on {host}: {exc.strerror} "
                "(is another server running? choose another --port, or 0 for a free one)"
            )
    return None


def _banner(host: str, port: int, backend: str, db: str, plugins: PluginSet) -> None:
    """The one start line; a WARNING when a plugin failed to load, so it is seen."""
    failures = "".join(f"; FAILED {name}: {error}" for name, error in plugins.failures.items())
    log.log(
        logging.WARNING if failures else logging.INFO,
        "taskframe-server listening on http://%s:%s (%s database %s, job types: %s; plugins: %s%s)",
        *(host, port, backend, safe_db_location(db), ", ".join(plugins.names()) or "none"),
        *(plugins.summary(), failures),
    )


def safe_db_location(db: str) -> str:
    """The database URL or path without its password (in the user part or the query)."""
    if "://" not in db or db.startswith("sqlite:"):
        return db
    parts = urlsplit(db)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username}@{host}" if parts.username else host
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def _on_stop_signals(handler: SignalHandler) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def _shut_down(
    server: Serving, scheduler: Scheduler, housekeeper: Housekeeper, outbox: Outbox | None
) -> None:
    scheduler.notifier.close()
    housekeeper.stop()
    server.close()
    if outbox is not None:
        outbox.stop()
    if scheduler.events is not None:
        scheduler.events.stop()
    scheduler.telemetry.flush()


if __name__ == "__main__":
    sys.exit(main())
