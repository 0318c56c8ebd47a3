"""Tasks (plain functions with @task) through real server and worker processes,
on SQLite and PostgreSQL: typed submission, defaults, progress, Retry, errors,
tracebacks, follow-up jobs. The tasks are tests/integration/task_modules/demo_tasks.py.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import requests

from taskframe.client import Client, JobFailed, TaskJob, ValidationError
from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.integration.task_modules import demo_tasks
from tests.processes import BIN, attempts_of, get_job, submit, wait_for_job, wait_until

MODULE = "tests.integration.task_modules.demo_tasks"


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def deployment(db_url, start_server, start_worker, tmp_path):
    """A server and a worker (4 slots) loading the demo tasks, and a file root."""
    files = tmp_path / "files"
    files.mkdir()
    server = start_server(db_url, *SERVER_ARGS, "--tasks", MODULE)
    start_worker(
        [server.url], *WORKER_ARGS, "--tasks", MODULE, "--concurrency", "4",
        "--file-root", str(files),
    )  # fmt: skip
    return server


@pytest.mark.timeout(120)
def test_typed_submission_defaults_and_job_types(deployment):
    url = deployment.url
    with Client(url) as client:
        job = client.submit(demo_tasks.add, x=1)
        assert isinstance(job, TaskJob)
        # The task's defaults apply to what the submission omits; given ones win.
        assert (job.queue, job.priority, job.max_attempts, job.timeout) == ("demo", 8, 4, 60.0)
        assert client.wait(job, timeout=60) == 3
        assert client.submit(demo_tasks.add, x=1, priority=2).priority == 2
        # Checked locally with the same schema: nothing is sent.
        before = client.stats().by_type.get("add", {})
        with pytest.raises(ValidationError) as refused:
            client.submit(demo_tasks.add, x="1")
        assert set(refused.value.errors["payload"]) == {"x"}
        assert client.stats().by_type.get("add", {}).get("queued", 0) <= before.get("queued", 0)
        # async, nested payloads, and a follow-up job submitted from inside a task.
        assert client.wait(client.submit(demo_tasks.double, x=2.5), timeout=60) == 5.0
        point = demo_tasks.Point(3, 4)
        shaped = client.submit(
            demo_tasks.shapes, point=point, color=demo_tasks.Color.BLUE, options={"scale": 2}
        )
        assert client.wait(shaped, timeout=60) == {
            "point": [3, 4],
            "color": "blue",
            "tags": [],
            "options": {"scale": 2.0},
        }
        follow = client.wait(client.submit(demo_tasks.follow_up, x=5), timeout=60)
        assert client.wait(client.get(follow).id, timeout=60).result == 15
        # Type names keep working (the existing signature).
        assert client.wait(client.submit("add", {"x": 2}).id, timeout=60).result == 4

    # The server refuses a bad payload naming every bad field, as for plugins.
    answer = requests.post(
        f"{url}/jobs",
        json={"type": "add", "payload": {"x": "one", "y": 1.5, "z": 1}},
        timeout=30,
    )
    assert answer.status_code == 422, answer.text
    assert set(answer.json()["errors"]["payload"]) == {"x", "y", "z"}
    answer = requests.post(f"{url}/jobs", json={"type": "shapes", "payload": {}}, timeout=30)
    assert answer.status_code == 422 and set(answer.json()["errors"]["payload"]) == {"point"}

    # The docstring and the defaults in /job-types and the OpenAPI document.
    types = {t["name"]: t for t in requests.get(f"{url}/job-types", timeout=30).json()["job_types"]}
    assert types["add"]["description"] == "Add two integers."
    assert types["add"]["defaults"] == {
        "queue": "demo",
        "priority": 8,
        "max_attempts": 4,
        "timeout": 60.0,
    }
    assert types["add"]["payload_schema"]["required"] == ["x"]
    assert types["shapes"]["payload_schema"]["properties"]["point"]["required"] == ["x"]
    document = requests.get(f"{url}/openapi.json", timeout=30).json()
    assert document["components"]["schemas"]["Payload.add"]["description"] == "Add two integers."


@pytest.mark.timeout(120)
def test_progress_is_stored_and_shown_while_the_job_runs(deployment, tmp_path):
    url = deployment.url
    flag = tmp_path / "go"
    job = submit(url, "halfway", {"flag": str(flag)})
    assert job["progress"] is None

    def halfway() -> dict | None:
        found = get_job(url, job["id"])
        return found if found["progress"] else None

    running = wait_until(halfway, 30, message="the job's progress")
    assert running["status"] == "running"
    assert running["progress"]["fraction"] == 0.5
    assert running["progress"]["message"] == "half way"
    assert running["progress"]["attempt"] == 1 and running["progress"]["updated_at"]
    flag.touch()
    done = wait_for_job(url, job["id"])
    assert done["status"] == "succeeded" and done["result"] == "done"
    # The CLI shows it too (off a terminal: the line, without the bar).
    shown = subprocess.run(
        [str(BIN / "taskframe"), "--url", url, "get", str(job["id"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "50% half way" in shown.stdout, shown.stdout


@pytest.mark.timeout(180)
def test_retry_permanent_errors_retry_on_and_tracebacks(deployment):
    url = deployment.url
    # Retry(after=2): the next attempt waits 2 s, not the server's 0.1-0.5 s backoff.
    later = submit(url, "retry_later", {"after": 2, "succeed_on": 2})
    done = wait_for_job(url, later["id"], timeout=60)
    assert done["status"] == "succeeded" and done["result"] == 2
    first, second = attempts_of(url, later["id"])
    assert first["outcome"] == "failed" and "not before attempt 2" in first["error"]
    assert seconds(second["started_at"]) - seconds(first["finished_at"]) >= 1.95
    # It counts as an attempt: the last one fails the job with the reason.
    never = submit(url, "retry_later", {"after": 0.1, "succeed_on": 9})
    done = wait_for_job(url, never["id"], timeout=60)
    assert done["status"] == "failed" and done["attempts"] == 3
    assert "not before attempt 9" in done["error"]

    # PermanentError and exceptions outside retry_on fail at once; others are retried.
    expected = {
        ("permanent", ()): (1, "PermanentError: no use retrying"),
        ("picky", ("kind", "value")): (1, "ValueError: not one to retry"),
        ("picky", ("kind", "connection")): (3, "ConnectionError: worth retrying"),
        ("not_json", ()): (1, "returned a datetime at result['when'], which is not JSON"),
    }
    jobs = {key: submit(url, key[0], dict([key[1]]) if key[1] else {})["id"] for key in expected}
    for key, job_id in jobs.items():
        attempts, error = expected[key]
        done = wait_for_job(url, job_id, timeout=60)
        assert done["status"] == "failed" and done["attempts"] == attempts, done
        assert error in done["error"], done
        # Every failed attempt keeps its traceback, the task's own frames first.
        for attempt in attempts_of(url, job_id):
            assert attempt["traceback"].startswith("Traceback (most recent call last)")
            assert error.split(":")[0] in attempt["traceback"]
    [attempt] = attempts_of(url, jobs["permanent", ()])
    assert 'demo_tasks.py", line' in attempt["traceback"]
    assert "raise PermanentError" in attempt["traceback"]

    # A built-in executor's failure keeps its traceback too.
    missing = submit(url, "file", {"operation": "read", "path": "missing.txt"})
    done = wait_for_job(url, missing["id"], timeout=60)
    assert done["status"] == "failed"
    assert all(a["traceback"] for a in attempts_of(url, missing["id"])), done

    # From Python: the error carries the remote traceback; the CLI shows it.
    with Client(url) as client:
        with pytest.raises(JobFailed) as failed:
            client.wait(client.submit(demo_tasks.permanent), timeout=60)
    assert failed.value.error == "PermanentError: no use retrying"
    assert "raise PermanentError" in failed.value.traceback
    assert "remote traceback" in str(failed.value)
    shown = subprocess.run(
        [str(BIN / "taskframe"), "--url", url, "attempts", str(jobs["permanent", ()])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "traceback of attempt 1:" in shown.stdout and "raise PermanentError" in shown.stdout


@pytest.mark.timeout(120)
def test_tasks_in_the_process_pool_report_progress_and_tracebacks(
    sqlite_url, start_server, start_worker, tmp_path
):
    server = start_server(sqlite_url, *SERVER_ARGS, "--tasks", MODULE)
    start_worker([server.url], *WORKER_ARGS, "--tasks", MODULE, "--pool", "process",
                 "--concurrency", "2")  # fmt: skip
    flag = tmp_path / "go"
    job = submit(server.url, "halfway", {"flag": str(flag)})
    wait_until(lambda: get_job(server.url, job["id"])["progress"], 60, message="progress")
    flag.touch()
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    later = submit(server.url, "retry_later", {"after": 0.5, "succeed_on": 2})
    assert wait_for_job(server.url, later["id"])["result"] == 2
    first, _ = attempts_of(server.url, later["id"])
    assert "raise Retry" in first["traceback"]
    double = submit(server.url, "double", {"x": 1})
    assert wait_for_job(server.url, double["id"])["result"] == 2.0


@pytest.mark.timeout(120)
def test_a_follow_up_client_needs_the_client_role(sqlite_url, start_server, start_worker):
    tokens = {"TASKFRAME_TOKENS": "worker:worker-token-0123456789 client:client-token-0123456789"}
    server = start_server(sqlite_url, *SERVER_ARGS, "--tasks", MODULE, env=tokens)
    client_only = {"Authorization": "Bearer client-token-0123456789"}
    first = start_worker([server.url], *WORKER_ARGS, "--tasks", MODULE,
                         "--token", "worker-token-0123456789")  # fmt: skip
    answer = requests.post(
        f"{server.url}/jobs",
        json={"type": "follow_up", "payload": {"x": 1}, "max_attempts": 1},
        headers=client_only,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    done = wait_until(
        lambda: (j := requests.get(f"{server.url}/jobs/{job_id}", headers=client_only, timeout=30)
                 .json())["status"] in ("succeeded", "failed") and j,
        30,
    )  # fmt: skip
    assert done["status"] == "failed" and "Forbidden" in done["error"], done
    first.stop()

    start_worker([server.url], *WORKER_ARGS, "--tasks", MODULE,
                 "--token", "worker-token-0123456789",
                 "--client-token", "client-token-0123456789")  # fmt: skip
    with Client(server.url, token="client-token-0123456789") as client:
        follow = client.wait(client.submit(demo_tasks.follow_up, x=1, max_attempts=3), 60)
        assert client.wait(follow, timeout=60).result == 11


def test_start_up_names_a_module_that_cannot_be_loaded(tmp_path: Path, sqlite_url: str):
    (tmp_path / "bad_hint.py").write_text(
        "from taskframe.core import task\n\n@task\ndef f(x: set[int]) -> None:\n    pass\n"
    )
    (tmp_path / "no_tasks.py").write_text("X = 1\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(BIN)}
    cases = [
        ("missing_module", "cannot import 'missing_module': ModuleNotFoundError"),
        ("bad_hint", "bad_hint.f: parameter x: cannot map set[int]"),
    ]
    for command in ("taskframe-server", "taskframe-worker"):
        extra = (
            ["--db", sqlite_url]
            if command == "taskframe-server"
            else ["--api-url", "http://127.0.0.1:9"]
        )
        for module, message in cases:
            done = subprocess.run(
                [str(BIN / command), *extra, "--tasks", module],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                cwd=tmp_path,
            )
            assert done.returncode == 2, done
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], done.stderr
            assert module in lines[0]
    # A module without a task: a warning naming it (the server still starts).
    listing = subprocess.run(
        [
            str(BIN / "taskframe-server"),
            "--db",
            sqlite_url,
            "--tasks",
            "no_tasks",
            "--list-plugins",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    assert "tasks module 'no_tasks' defines no task" in listing.stderr
