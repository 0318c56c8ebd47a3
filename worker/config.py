"""The worker's settings: one frozen value built by the command line (or an embedder)."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from typing import Any

from taskframe.core.limits import MAX_WAIT
from taskframe.core.schemas import is_queue_name

#: Slots of a thread pool when not given: short jobs come in batches of up to this
#: many per lease request (16 slots cost the server and the worker half as much
#: again per no-op job as 32; 64 and 128 gain little more: see docs/how-to/tuning.md).
DEFAULT_CONCURRENCY = 32
DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_SHUTDOWN_GRACE = 30.0
MAX_CONCURRENCY = 500
#: ``thread``: jobs run in threads of the worker; ``process``: each slot is a child process.
POOLS = ("thread", "process")


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a :class:`~taskframe.worker.loop.Worker` needs to know, checked once.

    ``options`` is the parsed command line as a whole: executors see it as
    ``context.options`` (that is where plugin options such as ``--file-root``
    live). Nothing in the worker reads its settings from there.
    """

    api_urls: tuple[str, ...]
    worker_id: str
    concurrency: int = DEFAULT_CONCURRENCY
    pool: str = "thread"
    poll_interval: float = DEFAULT_POLL_INTERVAL
    heartbeat_interval: float | None = None  # None: min(2, lease TTL / 3)
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    job_types: tuple[str, ...] = ()  # empty: every installed type
    queues: tuple[str, ...] = ()  # empty: every queue
    token: str | None = None
    ca_cert: str | None = None
    log_level: str = "INFO"  # for the pool's child processes
    log_format: str = "text"
    options: argparse.Namespace = field(default_factory=argparse.Namespace, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {self.pool!r}")
        if not (math.isfinite(self.poll_interval) and 0 <= self.poll_interval <= MAX_WAIT):
            raise ValueError(f"poll_interval must be between 0 and {MAX_WAIT:g}")
        if self.heartbeat_interval is not None and not self.heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        if not (math.isfinite(self.shutdown_grace) and self.shutdown_grace >= 0):
            raise ValueError("shutdown_grace must be >= 0")
        for name in self.queues:
            if not is_queue_name(name):
                raise ValueError(f"--queues: {name!r} is not a queue name")
        if not self.worker_id or len(self.worker_id) > 200:
            raise ValueError("worker_id must have 1 to 200 characters")

    @staticmethod
    def default_concurrency(pool: str) -> int:
        """``DEFAULT_CONCURRENCY`` threads, or one job process per core."""
        return DEFAULT_CONCURRENCY if pool == "thread" else max(1, os.cpu_count() or 1)

    @classmethod
    def from_options(
        cls, options: argparse.Namespace, api_urls: list[str] | tuple[str, ...], worker_id: str
    ) -> WorkerConfig:
        """From the parsed ``taskframe-worker`` options (or ``--standalone`` server's)."""

        def get(name: str, default: Any) -> Any:
            value = getattr(options, name, None)
            return default if value is None else value

        types = get("job_types", "")
        return cls(
            api_urls=tuple(api_urls),
            worker_id=worker_id,
            concurrency=int(get("concurrency", cls.default_concurrency(get("pool", "thread")))),
            pool=get("pool", "thread"),
            poll_interval=float(get("poll_interval", DEFAULT_POLL_INTERVAL)),
            heartbeat_interval=get("heartbeat_interval", None),
            shutdown_grace=float(get("shutdown_grace", DEFAULT_SHUTDOWN_GRACE)),
            job_types=tuple(sorted({t.strip() for t in types.split(",") if t.strip()})),
            queues=tuple(q.strip() for q in get("queues", "").split(",") if q.strip()),
            token=get("token", None),
            ca_cert=get("ca_cert", None),
            log_level=get("log_level", "INFO"),
            log_format=get("log_format", "text"),
            options=options,
        )
