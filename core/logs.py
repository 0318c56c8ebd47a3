"""One logging setup for ``taskframe-server`` and ``taskframe-worker``.

Two formats: ``text`` for people, ``json`` (one object per line) for log
shippers. A JSON line carries ``ts``, ``level``, ``logger``, ``msg`` and,
where the record is about a job, the :data:`CONTEXT_FIELDS` given to the
logging call with ``extra=``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, TextIO

from taskframe.core.options import add_option, env_name

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
#: Attributes a record may carry (through ``extra=``) that JSON lines show.
CONTEXT_FIELDS = ("job_id", "type", "attempt", "worker_id", "lease_id", "job_ids", "count")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def add_logging_options(parser: argparse.ArgumentParser | Any) -> None:
    """``--log-level`` and ``--log-format`` (also ``TASKFRAME_LOG_LEVEL``/``_FORMAT``)."""
    add_option(
        parser,
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="logging level",
    )
    add_option(
        parser,
        "--log-format",
        type=str.lower,
        choices=LOG_FORMATS,
        default="text",
        help="text for people, json for one JSON object per line",
    )


def check_logging_options(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Refuse bad values from the environment (argparse checks choices only on flags)."""
    for flag, allowed in (("--log-level", LOG_LEVELS), ("--log-format", LOG_FORMATS)):
        value = getattr(options, flag[2:].replace("-", "_"))
        if value not in allowed:
            parser.error(
                f"{env_name(flag)}: invalid choice {value!r} (choose from {', '.join(allowed)})"
            )


def early_logging_options(argv: list[str]) -> argparse.Namespace:
    """The logging options alone, read before the plugins load (bad values: defaults).

    The full parser, built once the plugins are loaded, reports bad values.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--log-level", type=str.upper, default=None)
    parser.add_argument("--log-format", type=str.lower, default=None)
    options = parser.parse_known_args(argv)[0]
    level = options.log_level or os.environ.get(env_name("--log-level"), "").upper()
    fmt = options.log_format or os.environ.get(env_name("--log-format"), "").lower()
    return argparse.Namespace(
        log_level=level if level in LOG_LEVELS else "INFO",
        log_format=fmt if fmt in LOG_FORMATS else "text",
    )


@functools.lru_cache(maxsize=64)
def _utc_second(second: int) -> str:
    # Job events come by the thousand per second: format each second once.
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


@functools.lru_cache(maxsize=64)
def _local_second(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


class TextFormatter(logging.Formatter):
    """The standard formatter, with each second's timestamp formatted once."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{_local_second(int(record.created))},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, built with ``json.dumps``."""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        line: dict[str, Any] = {
            "ts": f"{_utc_second(second)}.{int(record.msecs):03d}+00:00",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Replace the root handlers with one that writes ``fmt`` lines to ``stream``."""
    # No format shows process fields: spare every record gathering them.
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


class Tally:
    """Sums up hot-path events that are logged one by one only at DEBUG.

    ``add("jobs succeeded")`` counts; at most every ``every`` seconds (with
    the next event) and on :meth:`flush`, one INFO line gives the counts:
    ``in the last 10 s: 2 jobs failed, 5000 jobs succeeded`` (sorted). Thread-safe.
    """

    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self.logger = logger
        self.every = every
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()

    def add(self, what: str, n: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self._counts[what] = self._counts.get(what, 0) + n
            if now - self._since < self.every:
                return
        self.flush()

    def flush(self) -> None:
        now = time.monotonic()
        with self._lock:
            counts, since = self._counts, self._since
            self._counts, self._since = {}, now
        if any(counts.values()):
            summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
            self.logger.info("in the last %.0f s: %s", now - since, summary)
