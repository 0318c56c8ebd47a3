"""pytest fixtures for plugin authors (loaded through the ``pytest11`` entry point).

``taskframe_server`` starts a real server on a temporary SQLite file and
``taskframe_worker`` a real worker leasing from it; both load every installed
plugin, the one under test included (``pip install -e .`` it first).
Override ``taskframe_server_args`` / ``taskframe_worker_args`` to pass options
(``["--shout-suffix", "?"]``) and ``taskframe_env`` for environment variables.

    def test_shout(taskframe_server, taskframe_worker):
        job = taskframe_server.run("shout", {"text": "hi"})
        assert job["status"] == "succeeded"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskframe.testing.processes import TaskframeServer, TaskframeWorker


@pytest.fixture
def taskframe_server_args() -> list[str]:
    """Extra ``taskframe-server`` arguments (override in your conftest or module)."""
    return []


@pytest.fixture
def taskframe_worker_args() -> list[str]:
    """Extra ``taskframe-worker`` arguments (override in your conftest or module)."""
    return []


@pytest.fixture
def taskframe_env() -> dict[str, str]:
    """Extra environment variables of both processes."""
    return {}


@pytest.fixture
def taskframe_server(
    tmp_path: Path, taskframe_server_args: list[str], taskframe_env: dict[str, str]
) -> Iterator[TaskframeServer]:
    """A running ``taskframe-server`` on a fresh SQLite file; stopped after the test.

    Helpers: ``.url``, ``.submit(type, payload, **fields)``, ``.wait(job_id)``,
    ``.run(type, payload)`` (submit and wait), ``.get(path)``, ``.post(path, body)``,
    ``.output()`` (its log).
    """
    server = TaskframeServer(
        str(tmp_path / "taskframe.db"),
        tmp_path / "taskframe-server.log",
        *taskframe_server_args,
        env=taskframe_env,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def taskframe_worker(
    tmp_path: Path,
    taskframe_server: TaskframeServer,
    taskframe_worker_args: list[str],
    taskframe_env: dict[str, str],
) -> Iterator[TaskframeWorker]:
    """A running ``taskframe-worker`` leasing from ``taskframe_server``; stopped after."""
    worker = TaskframeWorker(
        taskframe_server,
        tmp_path / "taskframe-worker.log",
        *taskframe_worker_args,
        env=taskframe_env,
    )
    try:
        yield worker
    finally:
        worker.stop()
