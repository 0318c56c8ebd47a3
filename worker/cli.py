"""``taskframe-worker``: lease jobs from one or more servers and run them.

Every option can also come from a ``TASKFRAME_*`` environment variable, and
plugins add their own (``taskframe_add_options`` with ``role="worker"``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from taskframe.client.transport import read_token_file
from taskframe.core.limits import MAX_WAIT
from taskframe.core.logs import (
    add_logging_options,
    check_logging_options,
    configure_logging,
    early_logging_options,
)
from taskframe.core.options import add_option, add_version_option
from taskframe.core.plugins import (
    PluginSet,
    TasksModuleError,
    add_plugin_options,
    early_disabled_plugins,
    early_tasks,
    load_plugins,
)
from taskframe.worker.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE,
    MAX_CONCURRENCY,
    POOLS,
    WorkerConfig,
)
from taskframe.worker.loop import Refused, Worker

log = logging.getLogger("taskframe.worker")


def _number(kind: type[float], low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: ``kind`` within [low, high], with a clear message otherwise."""

    def parse(text: str) -> float:
        try:
            value: float = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def parse_urls(text: str | None) -> list[str]:
    """``"http://a:8000, http://b:8000/"`` -> ``["http://a:8000", "http://b:8000"]``."""
    urls = [part.strip().rstrip("/") for part in (text or "").split(",") if part.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return urls


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def add_worker_options(
    parser: argparse.ArgumentParser,
    plugins: PluginSet | None,
    *,
    api_url: bool = True,
    log_level: bool = True,
) -> None:
    """Add the worker's options, then the plugins' worker options.

    A standalone server that runs a worker in-process passes ``api_url=False``
    and ``log_level=False`` (it knows its own URL, and so needs neither a
    token nor a CA for it, and has its own logging options),
    and ``plugins=None`` if it calls ``taskframe_add_options`` itself.
    """
    group = parser.add_argument_group("worker")
    if api_url:
        add_option(
            group,
            "--api-url",
            help="server URL(s), comma-separated; requests rotate over them and fail over",
        )
        add_option(
            group,
            "--token",
            help="bearer token sent to the server (a token with the worker role)",
        )
        add_option(
            group,
            "--token-file",
            help="file holding the token (instead of --token: keeps it out of `ps`)",
        )
        add_option(
            group,
            "--client-token",
            help="bearer token of the client that jobs submit follow-up jobs with "
            "(current_job().client; it needs the client role); default: --token",
        )
        add_option(
            group,
            "--ca-cert",
            help="CA certificate (PEM) that https servers are verified against, "
            "for a private CA (default: the system's CAs)",
        )
    add_option(group, "--worker-id", help="name shown on leased jobs (default <hostname>-<pid>)")
    add_option(
        group,
        "--job-types",
        help="comma-separated job types to run (default: every installed one)",
    )
    group.add_argument("--types", dest="job_types", help="the same as --job-types")
    add_option(
        group,
        "--queues",
        help="comma-separated queues to lease from (default: every queue); strict priority "
        "holds across them, oldest first within a priority",
    )
    add_option(
        group,
        "--concurrency",
        type=_number(int, 1, MAX_CONCURRENCY),
        help=f"jobs run at once (slots of the pool; default {DEFAULT_CONCURRENCY} threads, or "
        "one job process per core); the worker leases only free slots",
    )
    add_option(
        group,
        "--pool",
        type=str.lower,
        choices=POOLS,
        default="thread",
        help="where jobs run: threads of the worker (I/O-bound jobs), or one child process "
        "per slot (CPU-bound jobs; a timed-out or cancelled job is killed, a crash fails "
        "only its attempt)",
    )
    add_option(
        group,
        "--poll-interval",
        type=_number(float, 0, MAX_WAIT),
        default=DEFAULT_POLL_INTERVAL,
        help="seconds an idle worker long-polls the server; a new job is handed over at "
        "once, so this bounds the request rate, not the latency",
    )
    add_option(
        group,
        "--heartbeat-interval",
        type=_number(float, 0.05),
        help="seconds between lease heartbeats (default min(2, lease TTL / 3))",
    )
    add_option(
        group,
        "--shutdown-grace",
        type=_number(float, 0),
        default=DEFAULT_SHUTDOWN_GRACE,
        help="seconds running jobs get to finish after SIGTERM/SIGINT before they are "
        "cancelled and released (a second signal ends the wait)",
    )
    if api_url:  # the command, not a standalone server
        add_option(
            group,
            "--reload",
            flag_only=True,
            help="restart the worker (gracefully) when a --tasks module changes, for "
            "development (needs watchfiles: pip install 'taskframe[reload]')",
        )
    if log_level:
        add_logging_options(group)
    if plugins is not None:
        plugins.manager.hook.taskframe_add_options(parser=parser, role="worker")


def _reload_wanted(argv: Sequence[str]) -> bool:
    early = argparse.ArgumentParser(add_help=False)
    add_option(early, "--reload", flag_only=True, help="")
    return bool(early.parse_known_args(argv)[0].reload)


def build_parser(plugins: PluginSet) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskframe-worker",
        description="Lease jobs from taskframe servers over HTTP and run them with the "
        "installed executor plugins.",
    )
    add_version_option(parser)
    add_worker_options(parser, plugins)
    add_plugin_options(parser, listing=False)
    return parser


def report_plugin_failures(plugins: PluginSet) -> None:
    """One line per plugin problem: a plugin that did not load is unavailable; one that
    loaded with a bad job type runs its other types (the problem names the bad one)."""
    for name, message in plugins.failures.items():
        if plugins.manager.get_plugin(name) is None:
            log.error("plugin %r is not available, continuing without it: %s", name, message)
        else:
            log.error("plugin %r: not available: %s (its other job types are)", name, message)


def announce_stop(worker: Worker, signum: int) -> None:
    """The first signal: a graceful stop (running jobs finish); the second: stop now."""
    name = signal.Signals(signum).name
    if worker.stopping:
        log.info("%s again: stopping now, releasing the running jobs", name)
        return
    running = worker.running_count()
    if signum == signal.SIGINT and running:
        log.info("finishing %d running job(s); press Ctrl-C again to stop now", running)
    else:
        log.info("worker %s: %s received, stopping", worker.worker_id, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; 0 after a graceful stop, 2 on bad usage or
    when the server refuses its token at start, 1 when its process pool cannot start."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Logging first, so that plugin load errors are logged in the chosen format.
        early = early_logging_options(argv)
        configure_logging(early.log_level, early.log_format)
        if _reload_wanted(argv):  # a supervisor: it never imports the tasks itself
            from taskframe.worker.reload import run_reloading

            return run_reloading(argv, early_tasks(argv))
        plugins = load_plugins(disabled=early_disabled_plugins(argv), tasks=early_tasks(argv))
        parser = build_parser(plugins)
    except (ValueError, TasksModuleError) as exc:  # a bad TASKFRAME_* value, a bad module
        print(f"taskframe-worker: error: {exc}", file=sys.stderr)
        return 2
    options = parser.parse_args(argv)
    check_logging_options(parser, options)
    configure_logging(options.log_level, options.log_format)
    plugins.configure(options, "worker")
    report_plugin_failures(plugins)
    try:
        urls = parse_urls(options.api_url)
    except ValueError as exc:
        parser.error(f"--api-url: {exc}")
    if not urls:
        parser.error("--api-url (or TASKFRAME_API_URL) is required")
    if options.token and options.token_file:
        parser.error("give --token or --token-file, not both")
    if options.token_file:
        try:
            options.token = read_token_file(options.token_file)
        except ValueError as exc:
            parser.error(f"--token-file: {exc}")
    if options.ca_cert and not os.path.isfile(options.ca_cert):
        parser.error(f"--ca-cert: {options.ca_cert} is not a file")
    if not plugins.executors:
        log.error("no executor plugin is installed; nothing to run")
        return 2
    if options.worker_id and len(options.worker_id) > 200:
        parser.error("--worker-id is longer than 200 characters")
    try:
        config = WorkerConfig.from_options(options, urls, options.worker_id or default_worker_id())
        worker = Worker(config, plugins)
    except ValueError as exc:
        parser.error(str(exc))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        announce_stop(worker, signum)
        worker.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run()
    except Refused as exc:  # a token that will not do: retrying cannot help
        print(f"taskframe-worker: error: the server refuses this worker: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the process pool could not start
        log.error("worker %s: %s", config.worker_id, exc)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
