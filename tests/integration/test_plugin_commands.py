"""``--list-plugins``, ``--disable-plugins`` and the start banner, on real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from taskframe.testing.distributions import write_distribution
from tests.processes import BIN, wait_until


@pytest.fixture
def plugin_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH holds two installed distributions: one broken
    (a schema class), one that raises when imported."""
    for name, source in {
        "classy": (
            "from marshmallow import Schema\n"
            "from taskframe.core import Executor, hookimpl\n"
            "class Payload(Schema):\n    pass\n"
            "@hookimpl\n"
            "def taskframe_register_executors(register):\n"
            "    register(Executor(name='classy', schema=Payload, run=print))\n"
        ),
        "bomb": "raise RuntimeError('imported')\n",
    }.items():
        write_distribution(
            tmp_path,
            f"taskframe-{name}",
            {name: f"tf_cmd_{name}"},
            version="2.0",
            modules={f"tf_cmd_{name}": source},
        )
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def _run(command: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_list_plugins_shows_versions_hooks_types_and_failures(plugin_path):
    listed = _run("taskframe-server", "--list-plugins", env=plugin_path)
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert "  sleep  taskframe 0.1.0\n      hooks: taskframe_register_executors\n" in out
    assert "      job types: sleep\n" in out
    assert "  webhook  taskframe 0.1.0\n" in out
    assert "failed:\n" in out
    assert "  bomb: RuntimeError: imported\n" in out
    assert "  classy: job type 'classy': schema is the class Payload, not an instance" in out


def test_disabled_plugins_are_not_imported(plugin_path):
    listed = _run(
        "taskframe-server", "--list-plugins", "--disable-plugins", "bomb,http", env=plugin_path
    )
    assert listed.returncode == 0, listed.stderr
    assert "bomb" not in listed.stdout.split("disabled:")[0]
    assert "  http  " not in listed.stdout
    assert listed.stdout.rstrip().endswith("disabled: bomb, http")
    by_env = _run(
        "taskframe-server",
        "--list-plugins",
        env={**plugin_path, "TASKFRAME_DISABLE_PLUGINS": "bomb"},
    )
    assert "RuntimeError: imported" not in by_env.stdout


def test_the_banner_and_health_name_the_failed_plugins(plugin_path, sqlite_url, start_server, http):
    server = start_server(sqlite_url, env={"PYTHONPATH": plugin_path["PYTHONPATH"]})
    health = http.get(f"{server.url}/health", timeout=10).json()
    assert set(health["plugin_failures"]) == {"bomb", "classy"}
    plugins = http.get(f"{server.url}/plugins", timeout=10).json()
    assert {failure["name"] for failure in plugins["failures"]} == {"bomb", "classy"}
    banner = [line for line in server.output().splitlines() if "listening on" in line][0]
    assert "file (taskframe 0.1.0), http (taskframe 0.1.0)" in banner
    assert "FAILED bomb: RuntimeError: imported" in banner
    assert "FAILED classy: job type 'classy'" in banner


def test_the_worker_takes_disable_plugins_too(plugin_path, sqlite_url, start_server, start_worker):
    server = start_server(sqlite_url)
    worker = start_worker(
        [server.url], "--disable-plugins", "bomb", env={"PYTHONPATH": plugin_path["PYTHONPATH"]}
    )
    wait_until(lambda: "classy" in worker.output(), timeout=20)
    assert "bomb" not in worker.output()
