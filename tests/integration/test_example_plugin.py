"""The author's kit: examples/taskframe-example-plugin installed with pip, run for real.

The session fixture installs the example with this interpreter's pip as a
user would, but into a folder of its own (``pip install --target``), never
into the developer's environment: the server and worker processes, and the
example's own test suite (which uses the pytest fixtures taskframe ships,
``taskframe.testing``), find it through ``PYTHONPATH``. The fixture checks
that the environment's site-packages is as it was before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.processes import submit, wait_for_job

EXAMPLE = Path(__file__).parents[2] / "examples" / "taskframe-example-plugin"


def with_path(folder: Path) -> dict[str, str]:
    """The environment variables that put ``folder`` first on the processes' path."""
    paths = [str(folder), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.fixture(scope="session")
def example_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The example installed by pip into a folder of its own; yields the environment
    (``PYTHONPATH``) under which processes load it."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    before = sorted(os.listdir(site_packages))
    folder = tmp_path_factory.mktemp("example")
    # A copy: building the example writes (egg-info, build/) into its source tree.
    source = folder / "source"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__")
    )
    target = folder / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
        + ["--target", str(target), str(source)],
        check=True,
        timeout=600,
    )
    yield with_path(target)
    after = sorted(os.listdir(site_packages))
    assert after == before, f"the environment changed: {set(after) ^ set(before)}"


@pytest.mark.timeout(600)
def test_the_example_job_runs_end_to_end(example_installed, sqlite_url, start_server, start_worker):
    server = start_server(sqlite_url, env=example_installed)
    start_worker([server.url], "--shout-suffix", "!!", env=example_installed)
    job = submit(server.url, "shout", {"text": "plugins", "times": 2})
    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {"shouted": "PLUGINS!! PLUGINS!!"}


@pytest.mark.timeout(600)
def test_the_examples_own_tests_pass_on_the_shipped_fixtures(example_installed):
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **example_installed, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout


@pytest.mark.timeout(600)
def test_a_tasks_module_published_by_entry_point_runs(
    example_installed, sqlite_url, start_server, start_worker
):
    server = start_server(sqlite_url, env=example_installed)
    start_worker([server.url], env=example_installed)
    job = submit(server.url, "whisper", {"text": "QUIET", "times": 2})
    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == "quiet... quiet..."
    types = {
        t["name"]: t
        for t in requests.get(f"{server.url}/job-types", timeout=30).json()["job_types"]
    }
    assert types["whisper"]["description"] == "Lower-case a text `times` times."
    assert types["whisper"]["defaults"] == {"max_attempts": 2}


@pytest.mark.timeout(600)
def test_a_type_defined_both_ways_is_a_clash(example_installed, sqlite_url, start_server):
    # The same module by entry point and by --tasks: its job types twice.
    server = start_server(
        sqlite_url, "--tasks", "taskframe_example_plugin.tasks", env=example_installed
    )
    failures = requests.get(f"{server.url}/health", timeout=30).json()["plugin_failures"]
    assert failures == {
        "taskframe_example_plugin.tasks": "job type 'whisper' is already registered by "
        "plugin 'whisper'"
    }
    assert "FAILED taskframe_example_plugin.tasks" in server.output()
