"""The author's kit: examples/taskframe-example-plugin installed with pip, run for real.

The session fixture installs the example (editable, with this interpreter's
pip) as a user would; the tests run its job through real server and worker
processes, and run the example's own test suite, which uses the pytest
fixtures taskframe ships (``taskframe.testing``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import requests

from tests.processes import submit, wait_for_job

EXAMPLE = Path(__file__).parents[2] / "examples" / "taskframe-example-plugin"


@pytest.fixture(scope="session")
def example_installed() -> None:
    try:
        found = metadata.distribution("taskframe-example-plugin")
        # An install from before the example gained its tasks entry point: again.
        if "whisper" not in {e.name for e in found.entry_points}:
            raise metadata.PackageNotFoundError("taskframe-example-plugin")
    except metadata.PackageNotFoundError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(EXAMPLE)],
            check=True,
            timeout=600,
        )
        # Its entry point is now visible to this process too, but the editable
        # install's .pth file is read only at start: make its module importable
        # here, so that later in-process plugin loading finds it like a restart would.
        sys.path.append(str(EXAMPLE / "src"))
        importlib.invalidate_caches()


@pytest.mark.timeout(600)
def test_the_example_job_runs_end_to_end(example_installed, sqlite_url, start_server, start_worker):
    server = start_server(sqlite_url)
    start_worker([server.url], "--shout-suffix", "!!")
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
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout


@pytest.mark.timeout(600)
def test_a_tasks_module_published_by_entry_point_runs(
    example_installed, sqlite_url, start_server, start_worker
):
    server = start_server(sqlite_url)
    start_worker([server.url])
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
    server = start_server(sqlite_url, "--tasks", "taskframe_example_plugin.tasks")
    failures = requests.get(f"{server.url}/health", timeout=30).json()["plugin_failures"]
    assert failures == {
        "taskframe_example_plugin.tasks": "job type 'whisper' is already registered by "
        "plugin 'whisper'"
    }
    assert "FAILED taskframe_example_plugin.tasks" in server.output()
