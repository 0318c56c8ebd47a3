"""One server and one worker shared by a test module (client and CLI tests).

Tests that need a job to stay queued submit it with a long ``delay``, so
sharing the worker does not make them racy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import Server, Worker

#: A job that stays queued for the whole test run.
LATER = 3600.0


@dataclass
class Live:
    url: str
    files: Path
    server: Server
    worker: Worker


def live_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Body of a module-scoped fixture: start, yield, stop (even when a test failed)."""
    folder = tmp_path_factory.mktemp("live")
    files = folder / "files"
    files.mkdir()
    server = Server(str(folder / "taskframe.db"), folder / "server.log", *SERVER_ARGS)
    processes: list[Server | Worker] = [server]
    try:
        server.wait_ready()
        worker = Worker(
            [server.url], folder / "worker.log", *WORKER_ARGS, "--file-root", str(files)
        )
        processes.append(worker)
        yield Live(server.url, files, server, worker)
    finally:
        for process in reversed(processes):
            process.stop()
