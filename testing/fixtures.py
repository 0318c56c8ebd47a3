"""pytest fixtures for plugin authors (loaded through the ``pytest11`` entry point).

``taskframe_server`` starts a real server on a temporary SQLite file and
``taskframe_worker`` a real worker leasing from it; both load every installed
plugin, the one under test included (``pip install -e .`` it first).
Override ``taskframe_server_args`` / ``taskframe_worker_args`` to pass options
(``["--shout-suffix", "?"]``) and ``taskframe_env`` for environment variables.

    def test_shout(taskframe_server, taskframe_worker):
        job = taskframe_server.run("shout", {"text": "hi"})
        assert job["status"] == "succeeded"

For tasks, name their modules in ``taskframe_tasks``; ``taskframe_client`` is
a :class:`taskframe.client.Client` of the server, with a worker running::

    @pytest.fixture
    def taskframe_tasks():
        return ["myapp.tasks"]

    def test_add(taskframe_client):
        from myapp.tasks import add

        assert taskframe_client.wait(taskframe_client.submit(add, x=1, y=2)) == 3
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def taskframe_tasks() -> list[str]:
    """Modules of ``@task`` functions both processes load (``--tasks``); override it."""
    return []


@pytest.fixture
def taskframe_env() -> dict[str, str]:
    """Extra environment variables of both processes."""
    return {}


def _process_env(env: dict[str, str], tasks: list[str]) -> dict[str, str]:
    """``env``, plus the tasks modules and this test run's import path for them."""
    if not tasks:
        return env
    # The processes import the modules as this test does: with its import path.
    path = [entry for entry in sys.path if entry and os.path.isdir(entry)]
    inherited = os.environ.get("PYTHONPATH")
    return {
        "TASKFRAME_TASKS": ",".join(tasks),
        "PYTHONPATH": os.pathsep.join([*path, *([inherited] if inherited else [])]),
        **env,
    }


@pytest.fixture
def taskframe_server(
    tmp_path: Path,
    taskframe_server_args: list[str],
    taskframe_env: dict[str, str],
    taskframe_tasks: list[str],
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
        env=_process_env(taskframe_env, taskframe_tasks),
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
    taskframe_tasks: list[str],
) -> Iterator[TaskframeWorker]:
    """A running ``taskframe-worker`` leasing from ``taskframe_server``; stopped after."""
    worker = TaskframeWorker(
        taskframe_server,
        tmp_path / "taskframe-worker.log",
        *taskframe_worker_args,
        env=_process_env(taskframe_env, taskframe_tasks),
    )
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def taskframe_client(
    taskframe_server: TaskframeServer, taskframe_worker: TaskframeWorker
) -> Iterator[Any]:
    """A :class:`taskframe.client.Client` of ``taskframe_server``, whose worker runs."""
    from taskframe.client import Client

    with Client(taskframe_server.url) as client:
        yield client
