"""A light load generator for the capacity benchmarks: one server process, raw http.client.

Threads that spend their time blocked in sockets cost the benchmark little,
so hundreds of simulated workers and clients fit on a small machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import _die_with_parent, free_port


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> str:
    """``p50 / p99 / max`` in milliseconds."""
    ms = [v * 1000 for v in values]
    p50, p99, top = percentile(ms, 50), percentile(ms, 99), max(ms, default=math.nan)
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms (n={len(ms)})"


class Server:
    """``taskframe-server`` from ``bin_dir`` on a fresh SQLite file (or a given --db)."""

    def __init__(self, bin_dir: Path, db: str | None, args: list[str]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="taskframe-bench-"))
        self.port = free_port()
        self.db = db or str(self.folder / "jobs.db")
        self.log_path = self.folder / "server.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [str(bin_dir / "taskframe-server"), "--port", str(self.port), "--db", self.db]
        self.popen = subprocess.Popen(
            [*command, "--log-level", "WARNING", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(self.port, "GET", "/health", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.popen.poll() is not None:
                self.stop()
                raise SystemExit(f"server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 60.0,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request (on ``connection`` if given, else a new one); (status, JSON or None, headers)."""
    own = connection is None
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        answer = conn.getresponse()
        raw = answer.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return answer.status, parsed, dict(answer.getheaders())
    finally:
        if own:
            conn.close()


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bin",
        type=Path,
        default=None,
        help="folder of the taskframe-server to measure (default: this venv's)",
    )
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--server-args", default="", help="extra taskframe-server flags")
