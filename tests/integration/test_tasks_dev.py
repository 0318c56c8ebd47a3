"""The development loop of tasks: ``taskframe-worker --reload``, and the pytest
fixtures a project uses to test its tasks against live processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import get_job, submit, wait_for_job, wait_until

TASKS = textwrap.dedent(
    """
    import time
    from pathlib import Path

    from taskframe.core import current_job, task

    VERSION = {version}


    @task
    def version(flag: str = "") -> int:
        while flag and not Path(flag).exists():
            if current_job().cancel_event.wait(0.02):
                raise RuntimeError("stopped before the flag")
        return VERSION
    """
)


@pytest.mark.timeout(120)
def test_reload_restarts_the_worker_gracefully_when_a_tasks_module_changes(
    sqlite_url, start_server, start_worker, tmp_path: Path
):
    source = tmp_path / "reloaded_tasks.py"
    source.write_text(TASKS.format(version=1))
    env = {"PYTHONPATH": str(tmp_path)}
    server = start_server(sqlite_url, *SERVER_ARGS, "--tasks", "reloaded_tasks", env=env)
    worker = start_worker(
        [server.url], *WORKER_ARGS, "--tasks", "reloaded_tasks", "--reload",
        "--shutdown-grace", "60", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert wait_for_job(server.url, submit(server.url, "version", {})["id"])["result"] == 1

    # A job runs while the module changes: the old worker lets it finish first.
    flag = tmp_path / "flag"
    running = submit(server.url, "version", {"flag": str(flag)})
    wait_for_job(server.url, running["id"], "running")
    source.write_text(TASKS.format(version=2))
    wait_until(lambda: "restarting the worker" in worker.output(), 30, message="a restart")
    flag.touch()
    done = wait_for_job(server.url, running["id"])
    assert done["status"] == "succeeded" and done["result"] == 1 and done["attempts"] == 1

    def new_version() -> bool:
        job = wait_for_job(server.url, submit(server.url, "version", {})["id"])
        return job["result"] == 2

    wait_until(new_version, 60, interval=0.2, message="the new version to run")
    # A module that breaks does not end the loop: the next change is picked up.
    source.write_text("this is not python\n")
    wait_until(lambda: "cannot import 'reloaded_tasks'" in worker.output(), 30)
    source.write_text(TASKS.format(version=3))
    job = submit(server.url, "version", {})
    wait_until(lambda: get_job(server.url, job["id"])["status"] == "succeeded", 60)
    assert get_job(server.url, job["id"])["result"] == 3
    assert worker.stop() == 0, worker.output()


@pytest.mark.timeout(300)
def test_a_project_tests_its_tasks_with_the_shipped_fixtures(tmp_path: Path):
    (tmp_path / "shop_tasks.py").write_text(
        textwrap.dedent(
            '''
            from taskframe.core import Retry, current_job, task


            @task(max_attempts=2)
            def total(prices: list[float], discount: float = 0.0) -> float:
                """The sum of the prices, less the discount."""
                current_job().progress(1.0, "summed")
                if current_job().attempt == 1 and discount < 0:
                    raise Retry(after=0.1, reason="negative discounts are checked twice")
                return round(sum(prices) * (1 - discount), 2)
            '''
        )
    )
    (tmp_path / "test_shop.py").write_text(
        textwrap.dedent(
            """
            import pytest

            from taskframe.client import JobFailed
            from taskframe.testing import run_task
            from shop_tasks import total


            @pytest.fixture
            def taskframe_tasks():
                return ["shop_tasks"]


            def test_in_process():
                assert run_task(total, prices=[1.5, 2.5], discount=0.5) == 2.0


            def test_live(taskframe_client):
                assert taskframe_client.wait(taskframe_client.submit(total, prices=[2, 3])) == 5.0
                job = taskframe_client.submit(total, prices=[1], discount=-1)
                assert taskframe_client.wait(job) == 2.0


            def test_live_failure(taskframe_client):
                with pytest.raises(JobFailed) as failed:
                    taskframe_client.wait(taskframe_client.submit(total, prices=[1e308, 1e308]))
                assert "OverflowError" in failed.value.error or "not JSON" in failed.value.error
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_shop.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout
