"""What a worker says when something is wrong or when it is told to stop (issue 23),
seen from real server and worker processes."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from taskframe.testing.processes import free_port
from tests.processes import SERVER_ARGS, WORKER_ARGS, get_job, submit, wait_until

pytestmark = pytest.mark.timeout(90)

W1_TOKEN = "worker-w1-0f1e2d3c4b5a6978"
CLIENT_TOKEN = "client-5e4d3c2b1a0f9e8d"


def wait_running(url: str, job_id: int) -> None:
    wait_until(lambda: get_job(url, job_id)["status"] == "running", 30, message="a running job")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"worker[w1]:{W1_TOKEN}\nclient:{CLIENT_TOKEN}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("token", "status"), [("not-a-token", 401), (W1_TOKEN, 403)], ids=["unknown", "other-id"]
)
def test_a_refused_token_at_start_ends_the_worker_with_one_line(
    start_server, start_worker, tmp_path, token_file, token: str, status: int
) -> None:
    server = start_server(str(tmp_path / "t.db"), "--token-file", str(token_file))
    worker = start_worker([server.url], "--token", token, "--worker-id", "w2")
    worker.popen.wait(timeout=30)
    output = worker.output()
    assert worker.popen.returncode == 2, output
    [line] = [line for line in output.splitlines() if f"HTTP {status}" in line]
    assert line.startswith("taskframe-worker: error: the server refuses this worker")
    assert "Traceback" not in output and "retrying" not in output


def test_an_unreachable_server_is_reported_every_30_s_and_its_return_once(
    start_server, start_worker, tmp_path
) -> None:
    port = free_port()
    worker = start_worker([f"http://127.0.0.1:{port}"], *WORKER_ARGS)
    wait_until(lambda: "still failing after 3" in worker.output(), 45, message="the reminder")
    start_server(str(tmp_path / "t.db"), *SERVER_ARGS, port=port)
    wait_until(lambda: "works again" in worker.output(), 30, message="the return")
    output = worker.output()
    assert output.count("leasing jobs failed, retrying with backoff") == 1
    assert output.count("still failing") == 1
    assert output.count("works again") == 1
    assert "Traceback" not in output


def test_ctrl_c_finishes_the_running_jobs_and_a_second_one_releases_them(
    start_server, start_worker, tmp_path
) -> None:
    server = start_server(str(tmp_path / "t.db"), *SERVER_ARGS)
    worker = start_worker([server.url], "--concurrency", "2", "--shutdown-grace", "60")
    jobs = [submit(server.url, "sleep", {"duration": 60})["id"] for _ in range(2)]
    for job_id in jobs:
        wait_running(server.url, job_id)
    worker.signal(signal.SIGINT)
    wait_until(
        lambda: "finishing 2 running job(s); press Ctrl-C again to stop now" in worker.output(),
        message="the first Ctrl-C's message",
    )
    assert worker.alive()
    worker.signal(signal.SIGINT)
    worker.popen.wait(timeout=30)
    output = worker.output()
    assert worker.popen.returncode == 0, output
    for job_id in jobs:
        assert get_job(server.url, job_id)["status"] == "queued"
        assert f"job {job_id} released: the worker was told to stop now" in output
    assert "Traceback" not in output
    assert " WARNING " not in output and " ERROR " not in output


TASKS = """
from taskframe.core import PermanentError, current_job, task

@task(max_attempts=1)
def give_up() -> None:
    raise PermanentError("no such customer")

@task(max_attempts=1)
def wait_for_cancel() -> None:
    current_job().cancel_event.wait(60)
    raise RuntimeError("stopped: cancelled")

@task(max_attempts=1)
def broken() -> None:
    return 1 / 0
"""


def test_expected_endings_log_at_info_and_only_unexpected_errors_show_a_traceback(
    start_server, start_worker, tmp_path, http
) -> None:
    (tmp_path / "ending_tasks.py").write_text(textwrap.dedent(TASKS))
    env = {"PYTHONPATH": str(tmp_path)}
    server = start_server(str(tmp_path / "t.db"), *SERVER_ARGS, "--tasks", "ending_tasks", env=env)
    worker = start_worker([server.url], *WORKER_ARGS, "--tasks", "ending_tasks", env=env)
    given_up = submit(server.url, "give_up", {})["id"]
    cancelled = submit(server.url, "wait_for_cancel", {})["id"]
    wait_running(server.url, cancelled)
    assert http.post(f"{server.url}/jobs/{cancelled}/cancel", timeout=10).ok
    for job_id in (given_up, cancelled):
        wait_until(lambda j=job_id: get_job(server.url, j)["finished_at"], message="the end")
    wait_until(lambda: f"job {cancelled} (wait_for_cancel" in worker.output())
    quiet = worker.output()
    broken = submit(server.url, "broken", {})["id"]
    wait_until(lambda: f"job {broken} (broken" in worker.output(), message="the broken job")
    loud = worker.output()[len(quiet) :]

    lines = {
        job_id: [line for line in quiet.splitlines() if f"job {job_id} (" in line]
        for job_id in (given_up, cancelled)
    }
    assert " INFO " in lines[given_up][0] and "no such customer" in lines[given_up][0]
    assert " INFO " in lines[cancelled][0]
    assert "Traceback" not in quiet
    assert " WARNING " in loud and "Traceback" in loud and "ZeroDivisionError" in loud


def test_a_plugin_with_one_bad_type_is_named_for_that_type(start_worker, tmp_path) -> None:
    (tmp_path / "half_good.py").write_text(
        "from taskframe.core import task\n\n"
        "@task\ndef fine() -> str:\n    return 'ok'\n\n"
        "@task(name='sleep')  # taken by the built-in sleep\n"
        "def clash() -> None:\n    pass\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    worker = start_worker(
        [f"http://127.0.0.1:{free_port()}"], "--tasks", "half_good", "--job-types", "fine", env=env
    )
    wait_until(lambda: "starting" in worker.output(), message="the worker's start")
    output = worker.output()
    assert "is not available, continuing without it" not in output
    [line] = [line for line in output.splitlines() if "'sleep'" in line]
    assert "half_good" in line and "its other job types are" in line
    assert "types=fine" in output  # its good type runs


def test_internal_objects_are_not_listed_as_plugins(start_server, tmp_path, http) -> None:
    server = start_server(str(tmp_path / "t.db"))  # no webhook secret: webhook.off registered
    names = [
        plugin["name"] for plugin in http.get(f"{server.url}/plugins", timeout=10).json()["plugins"]
    ]
    assert names and not [name for name in names if name.startswith("webhook.")]
    assert "webhook.off" not in server.output()
