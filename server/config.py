"""The job engine's settings, each declared once: its default here, and for those the
command line sets, its flag and help in :data:`FLAGS`.

``taskframe-server`` builds those options from :data:`FLAGS` (server/cli.py), and
the docs' configuration page is generated from that parser: one declaration for
the code, ``--help`` and the docs. Who may reach the API (tokens, Host names) is
:class:`~taskframe.server.http.access.AccessConfig`'s, apart from these.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskframe.core.options import add_option, duration
from taskframe.core.retry import BackoffPolicy


@dataclass(frozen=True)
class ServerConfig:
    lease_ttl: float = 30.0
    default_timeout: float | None = 300.0
    """Seconds one attempt may run when the job does not say (None: no limit)."""
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    max_body_bytes: int = 1 << 20
    reap_interval: float = 1.0
    retention: float = 7 * 86400.0
    prune_batch: int = 500
    max_waiting: int = 8
    """Requests that may long-poll at once (lease and job waits); 0: none may wait.
    (``--max-waiting``'s default is a quarter of ``--threads``: server/http/serving.py.)"""
    busy_retry_after: float = 5.0
    """Seconds a request refused a wait is told to pause (jittered ½–1½×)."""
    max_result_bytes: int = 1 << 20
    max_answer_bytes: int = 16 << 20
    promote_batch: int = 1000
    """Scheduled jobs made ready per transaction by the housekeeper."""
    max_schedules: int = 1000
    cascade_batch: int = 500
    """Dependants resolved per transaction when a job finishes (the rest: the housekeeper)."""
    worker_window: float | None = None
    access_log: bool = False

    @property
    def worker_alive_window(self) -> float:
        return self.worker_window or 3 * self.lease_ttl


@dataclass(frozen=True)
class Flag:
    """A command-line option that sets a :class:`ServerConfig` field."""

    flag: str
    field: str  # the ServerConfig field it sets
    help: str
    group: str  # the --help group it is listed in
    type: Callable[[str], Any] = float
    part: str | None = None  # the attribute of a composite field it sets (backoff.base)
    flag_only: bool = False  # a switch (store_true)
    zero_is_none: bool = False  # 0 on the command line means None (no limit)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def default(self) -> Any:
        value = getattr(DEFAULTS, self.field)
        return getattr(value, self.part) if self.part else value


FLAGS: tuple[Flag, ...] = (
    Flag(
        "--max-body",
        "max_body_bytes",
        "largest request body in bytes (batch endpoints: 16 times this)",
        "server",
        int,
    ),
    Flag(
        "--max-result",
        "max_result_bytes",
        "largest result stored, in bytes of JSON; past it the attempt fails (not retried)",
        "server",
        int,
    ),
    Flag(
        "--max-answer",
        "max_answer_bytes",
        "largest GET /jobs?full=true page, in bytes; a page stops short of it",
        "server",
        int,
    ),
    Flag(
        "--access-log",
        "access_log",
        "log every request at INFO (it is logged at DEBUG otherwise)",
        "logging",
        flag_only=True,
    ),
    Flag("--lease-ttl", "lease_ttl", "seconds a lease lives without a heartbeat", "jobs", duration),
    Flag(
        "--default-timeout",
        "default_timeout",
        "seconds an attempt may run when the job gives no timeout (0: no limit)",
        "jobs",
        duration,
        zero_is_none=True,
    ),
    Flag(
        "--retry-backoff",
        "backoff",
        "base delay before retrying a failed attempt (doubles per attempt)",
        "jobs",
        duration,
        part="base",
    ),
    Flag(
        "--retry-backoff-max",
        "backoff",
        "longest delay between attempts",
        "jobs",
        duration,
        part="cap",
    ),
    Flag(
        "--reap-interval",
        "reap_interval",
        "how often expired leases and timeouts are reaped",
        "jobs",
        duration,
    ),
    Flag(
        "--retention",
        "retention",
        "how long finished jobs are kept, e.g. 7d (0 keeps them forever)",
        "jobs",
        duration,
    ),
    Flag(
        "--max-schedules",
        "max_schedules",
        "how many schedules the database may hold (each fires jobs on its own)",
        "jobs",
        int,
    ),
    Flag(
        "--worker-window",
        "worker_window",
        "seconds a worker counts as alive after its last request "
        "(default 3 lease TTLs; keep it above the workers' --poll-interval)",
        "jobs",
        duration,
        zero_is_none=True,
    ),
)
DEFAULTS = ServerConfig()


def add_config_options(group: Any, name: str) -> None:
    """The options of :data:`FLAGS` listed in the --help group ``name``, with their defaults."""
    for flag in FLAGS:
        if flag.group != name:
            continue
        if flag.flag_only:
            add_option(group, flag.flag, flag_only=True, help=flag.help)
        else:
            add_option(group, flag.flag, type=flag.type, default=flag.default(), help=flag.help)


def config_values(options: argparse.Namespace) -> dict[str, Any]:
    """The :class:`ServerConfig` fields the options of :data:`FLAGS` set."""
    values: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for flag in FLAGS:
        value = getattr(options, flag.dest)
        if flag.zero_is_none:
            value = value or None
        if flag.part:
            parts.setdefault(flag.field, {})[flag.part] = value
        else:
            values[flag.field] = value
    for name, given in parts.items():
        values[name] = dataclasses.replace(getattr(DEFAULTS, name), **given)
    return values
