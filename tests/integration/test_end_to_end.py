"""The working core, end to end: a real server and real workers on a SQLite file."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import (
    BIN,
    Worker,
    attempts_of,
    free_port,
    get_job,
    submit,
    wait_for_job,
    wait_for_start,
    wait_long_polling,
    wait_until,
)
from tests.stub_http import QuietHandler, serve


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def server(start_server, sqlite_url):
    return start_server(sqlite_url, *SERVER_ARGS)


class _SiteHandler(QuietHandler):
    """A web site for http jobs (a job may not call the worker's own server)."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path == "/health":
            self.reply(200, b'{"status": "ok"}', {"Content-Type": "application/json"})
        else:
            self.reply(404, b"not found")


@pytest.fixture
def site() -> Iterator[str]:
    with serve(_SiteHandler) as url:
        yield url


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    return root


#: Workers log each job's start at DEBUG: wait_running waits for that line.
DEBUG = ("--log-level", "DEBUG")


def wait_running(url: str, job_id: int, worker: Worker) -> dict:
    """Wait until ``worker`` (run with ``DEBUG``) has started the job, not only until
    the server leased it; return the job."""
    job = wait_for_job(url, job_id, "running")
    wait_for_start(worker, job_id)
    return job


# -- the three job types ---------------------------------------------------------------


@pytest.mark.timeout(90)
def test_sleep_http_and_file_jobs_succeed_through_a_worker(server, start_worker, files, site):
    start_worker([server.url], *WORKER_ARGS, "--file-root", str(files))

    sleep = submit(server.url, "sleep", {"duration": 0.2})
    http = submit(server.url, "http", {"url": f"{site}/health"})
    content = "hello taskframe\nsecond line\n"
    write = submit(
        server.url, "file", {"operation": "write", "path": "notes/a.txt", "content": content}
    )

    done = wait_for_job(server.url, sleep["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done["result"]["slept"] >= 0.2
    assert done["started_at"] and done["finished_at"] and done["worker_id"]

    done = wait_for_job(server.url, http["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["status_code"] == 200
    assert '"ok"' in done["result"]["body"]

    done = wait_for_job(server.url, write["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["bytes_written"] == len(content.encode())
    assert (files / "notes" / "a.txt").read_text() == content

    read = submit(server.url, "file", {"operation": "read", "path": "notes/a.txt"})
    checksum = submit(server.url, "file", {"operation": "checksum", "path": "notes/a.txt"})
    done = wait_for_job(server.url, read["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["content"] == content and done["result"]["truncated"] is False
    done = wait_for_job(server.url, checksum["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["sha256"] == hashlib.sha256(content.encode()).hexdigest()
    assert done["result"]["size"] == len(content.encode())

    for job in (sleep, http, write, read, checksum):
        [attempt] = attempts_of(server.url, job["id"])
        assert attempt["outcome"] == "succeeded"


@pytest.mark.timeout(90)
def test_standalone_server_runs_jobs_by_itself(start_server, sqlite_url, files):
    server = start_server(
        sqlite_url,
        *SERVER_ARGS,
        "--standalone",
        "--concurrency", "2",
        "--file-root", str(files),
        *WORKER_ARGS,
    )  # fmt: skip
    answer = requests.post(
        f"{server.url}/jobs/batch",
        json={
            "jobs": [
                {"type": "sleep", "payload": {"duration": 1.5}},
                {"type": "sleep", "payload": {"duration": 1.5}},
            ]
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    first, second = answer.json()["ids"]
    write = submit(server.url, "file", {"operation": "write", "path": "s.txt", "content": "solo"})

    first = wait_for_job(server.url, first)
    second = wait_for_job(server.url, second)
    done = wait_for_job(server.url, write["id"])
    assert [first["status"], second["status"], done["status"]] == ["succeeded"] * 3
    assert (files / "s.txt").read_text() == "solo"
    # Two slots: the two sleeps ran side by side (each started before the other ended).
    assert parse_time(second["started_at"]) < parse_time(first["finished_at"])
    assert parse_time(first["started_at"]) < parse_time(second["finished_at"])
    assert server.stop() == 0


# -- scheduling ------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_one_slot_worker_runs_jobs_by_priority_then_fifo(server, start_worker, files):
    priorities = [5, 1, 10, 5, 3, 10, 5, 1, 7, 5]
    jobs = [
        submit(
            server.url,
            "file",
            {"operation": "append", "path": "order.log", "content": f"{label}\n"},
            priority=priority,
        )
        for label, priority in enumerate(priorities)
    ]
    start_worker([server.url], *WORKER_ARGS, "--concurrency", "1", "--file-root", str(files))

    finished = [wait_for_job(server.url, job["id"]) for job in jobs]
    assert all(job["status"] == "succeeded" for job in finished), finished
    expected = sorted(range(len(priorities)), key=lambda label: (-priorities[label], label))
    ran = [int(line) for line in (files / "order.log").read_text().splitlines()]
    assert ran == expected
    # The server's clock agrees: started_at never goes backwards in that order.
    starts = [parse_time(finished[label]["started_at"]) for label in expected]
    assert starts == sorted(starts)


# -- failures, retries, timeouts ---------------------------------------------------------


@pytest.mark.timeout(90)
def test_refused_connection_is_retried_then_the_job_fails(server, start_worker):
    start_worker([server.url], *WORKER_ARGS)
    url = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    job = submit(server.url, "http", {"url": url, "timeout": 5}, max_attempts=3)

    done = wait_for_job(server.url, job["id"], timeout=60)
    assert done["status"] == "failed", done
    assert done["attempts"] == 3
    assert "connection" in done["error"].lower() and url in done["error"]
    history = attempts_of(server.url, job["id"])
    assert [a["attempt"] for a in history] == [1, 2, 3]
    assert [a["outcome"] for a in history] == ["failed"] * 3
    assert all("connection" in a["error"].lower() for a in history)
    assert history[-1]["error"] == done["error"]


@pytest.mark.timeout(60)
def test_http_404_fails_at_once_without_retry(server, start_worker, site):
    start_worker([server.url], *WORKER_ARGS)
    job = submit(server.url, "http", {"url": f"{site}/no-such-page"}, max_attempts=3)

    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "failed", done
    assert done["attempts"] == 1
    assert "404" in done["error"]
    [attempt] = attempts_of(server.url, job["id"])
    assert attempt["outcome"] == "failed"


@pytest.mark.timeout(90)
def test_job_past_its_timeout_fails_after_its_attempts(server, start_worker):
    start_worker([server.url], *WORKER_ARGS)
    job = submit(server.url, "sleep", {"duration": 30}, timeout=1, max_attempts=2)

    done = wait_for_job(server.url, job["id"], timeout=45)
    assert done["status"] == "failed", done
    assert done["attempts"] == 2
    assert "timed out" in done["error"]
    history = attempts_of(server.url, job["id"])
    assert len(history) == 2
    for attempt in history:
        # Reported by the worker ("failed") or reaped by the server ("timed_out").
        assert attempt["outcome"] in ("failed", "timed_out"), attempt
        assert "timed out" in attempt["error"], attempt
        # Stopped at the deadline, far from the 30 s it asked for.
        took = parse_time(attempt["finished_at"]) - parse_time(attempt["started_at"])
        assert took.total_seconds() < 20, attempt


# -- dying workers, stale leases ---------------------------------------------------------


@pytest.mark.timeout(90)
def test_worker_killed_mid_job_loses_nothing(server, start_worker):
    worker_a = start_worker([server.url], *WORKER_ARGS, *DEBUG, "--worker-id", "worker-A")
    job = submit(server.url, "sleep", {"duration": 3})
    running = wait_running(server.url, job["id"], worker_a)
    assert running["worker_id"] == "worker-A"

    worker_a.kill()
    start_worker([server.url], *WORKER_ARGS, "--worker-id", "worker-B")

    done = wait_for_job(server.url, job["id"], timeout=45)
    assert done["status"] == "succeeded", done
    assert done["worker_id"] == "worker-B"
    assert done["attempts"] == 2
    history = attempts_of(server.url, job["id"])
    assert [(a["worker_id"], a["outcome"]) for a in history] == [
        ("worker-A", "lease_expired"),
        ("worker-B", "succeeded"),
    ]
    assert "lease expired" in history[0]["error"]


@pytest.mark.timeout(60)
def test_stale_completion_gets_409_and_changes_nothing(server):
    url = server.url
    job = submit(url, "sleep", {"duration": 1})
    lease = {"worker_id": "fake-worker", "wait": 5}

    first = requests.post(f"{url}/next-job", params=lease, timeout=30)
    assert first.status_code == 200, first.text
    first = first.json()
    assert first["id"] == job["id"] and first["lease_id"]

    # No heartbeat: the reaper ends the attempt once the lease expires, and re-queues it.
    wait_for_job(url, job["id"], {"scheduled", "queued"}, timeout=20)

    def lease_again():
        answer = requests.post(f"{url}/next-job", params={**lease, "wait": 1}, timeout=30)
        return answer.json() if answer.status_code == 200 else None

    second = wait_until(lease_again, 20, message="the job leased again")
    assert second["id"] == job["id"]
    assert second["lease_id"] != first["lease_id"]
    before = get_job(url, job["id"])
    assert before["status"] == "running" and before["attempts"] == 2

    stale = {"worker_id": "fake-worker", "lease_id": first["lease_id"]}
    answer = requests.post(
        f"{url}/jobs/{job['id']}/complete",
        json={**stale, "status": "succeeded", "result": {"from": "stale"}},
        timeout=30,
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["title"] and answer.json()["description"]
    answer = requests.post(f"{url}/jobs/{job['id']}/heartbeat", json=stale, timeout=30)
    assert answer.status_code == 409, answer.text
    assert get_job(url, job["id"]) == before

    fresh = {"worker_id": "fake-worker", "lease_id": second["lease_id"]}
    answer = requests.post(
        f"{url}/jobs/{job['id']}/complete",
        json={**fresh, "status": "succeeded", "result": {"from": "fresh"}},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    done = get_job(url, job["id"])
    assert done["status"] == "succeeded" and done["result"] == {"from": "fresh"}
    history = attempts_of(url, job["id"])
    # Lease ids are secrets: the history names the worker, never the lease.
    assert [(a["worker_id"], a["outcome"]) for a in history] == [
        ("fake-worker", "lease_expired"),
        ("fake-worker", "succeeded"),
    ]
    assert not any("lease_id" in a for a in history)


@pytest.mark.timeout(60)
def test_cancelling_a_running_job_stops_it_promptly(server, start_worker):
    worker = start_worker([server.url], *WORKER_ARGS, *DEBUG, "--concurrency", "1")
    job = submit(server.url, "sleep", {"duration": 30})
    wait_running(server.url, job["id"], worker)

    answer = requests.post(f"{server.url}/jobs/{job['id']}/cancel", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["cancel_requested"] is True

    done = wait_for_job(server.url, job["id"], timeout=15)  # far less than the 30 s sleep
    assert done["status"] == "cancelled", done
    assert done["attempts"] == 1
    history = attempts_of(server.url, job["id"])
    assert [a["outcome"] for a in history] == ["cancelled"]
    took = parse_time(history[0]["finished_at"]) - parse_time(history[0]["started_at"])
    assert took.total_seconds() < 20
    # The single slot is free again.
    follow_up = submit(server.url, "sleep", {"duration": 0.1})
    assert wait_for_job(server.url, follow_up["id"], timeout=15)["status"] == "succeeded"


# -- graceful shutdown -------------------------------------------------------------------


class _SlowHandler(QuietHandler):
    """Says that a request arrived, then takes a while to answer 200."""

    arrived: threading.Event
    delay: float = 1.5

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.arrived.set()
        time.sleep(self.delay)
        self.reply(200, b"slow but fine")


@pytest.fixture
def slow_endpoint():
    """(url, arrived): an HTTP endpoint that proves a job really started on a worker."""
    arrived = threading.Event()
    handler = type("Handler", (_SlowHandler,), {"arrived": arrived})
    with serve(handler) as url:
        yield f"{url}/slow", arrived


@pytest.mark.timeout(60)
def test_sigterm_lets_a_short_job_finish(server, start_worker, slow_endpoint):
    url, arrived = slow_endpoint
    worker = start_worker([server.url], *WORKER_ARGS, "--shutdown-grace", "10")
    job = submit(server.url, "http", {"url": url, "timeout": 20})
    assert arrived.wait(30), "the worker never started the job"

    worker.signal(signal.SIGTERM)
    assert worker.popen.wait(timeout=30) == 0, worker.output()
    done = get_job(server.url, job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["result"]["body"] == "slow but fine"


@pytest.mark.timeout(90)
def test_sigterm_releases_a_long_job_to_another_worker(server, start_worker):
    worker_a = start_worker(
        [server.url], *WORKER_ARGS, *DEBUG, "--worker-id", "worker-A", "--shutdown-grace", "1"
    )
    job = submit(server.url, "sleep", {"duration": 4})
    wait_running(server.url, job["id"], worker_a)

    worker_a.signal(signal.SIGTERM)
    assert worker_a.popen.wait(timeout=15) == 0, worker_a.output()
    released = get_job(server.url, job["id"])
    assert released["status"] == "queued", released
    assert released["attempts"] == 0  # a released attempt is not spent
    history = attempts_of(server.url, job["id"])
    assert [(a["worker_id"], a["outcome"]) for a in history] == [("worker-A", "released")]

    start_worker([server.url], *WORKER_ARGS, "--worker-id", "worker-B")
    done = wait_for_job(server.url, job["id"], timeout=45)
    assert done["status"] == "succeeded", done
    assert done["worker_id"] == "worker-B"
    assert done["attempts"] == 1
    assert [a["outcome"] for a in attempts_of(server.url, job["id"])] == [
        "released",
        "succeeded",
    ]


@pytest.mark.timeout(90)
def test_idle_worker_exits_promptly_on_sigterm(sqlite_url, start_server, start_worker):
    """Bug: an idle worker sits in its long poll and exits only when the poll ends
    (up to --poll-interval, at most 60 s), although it has nothing to finish."""
    server = start_server(sqlite_url, *SERVER_ARGS, "--max-waiting", "1")  # see below
    worker = start_worker([server.url], "--poll-interval", "20", "--heartbeat-interval", "0.3")
    job = submit(server.url, "sleep", {"duration": 0})
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    wait_long_polling(server.url)  # idle, in a 20 s long poll

    worker.signal(signal.SIGTERM)
    try:
        code = worker.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()  # no need to wait out the poll at teardown
        pytest.fail("an idle worker was still running 10 s after SIGTERM")
    assert code == 0, worker.output()


# -- the server goes away ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_worker_keeps_its_result_while_the_server_is_down(start_server, start_worker, sqlite_url):
    port = free_port()
    # A long lease: the result must arrive by delivery, not be reaped and re-run.
    args = (*SERVER_ARGS, "--lease-ttl", "60")
    first = start_server(sqlite_url, *args, port=port)
    worker = start_worker([first.url], *WORKER_ARGS, *DEBUG)
    job = submit(first.url, "sleep", {"duration": 2})
    wait_running(first.url, job["id"], worker)

    first.stop()  # SIGTERM (its exit code: see test_server_exits_0_on_sigterm)
    assert not first.alive()
    # The job ends meanwhile; its outcome has nowhere to go.
    wait_until(
        lambda: f"job {job['id']} (sleep, attempt 1) succeeded in" in worker.output(),
        timeout=30,
        message="the job to end on the worker (its log at DEBUG says so)",
    )
    assert worker.alive()
    restarted_at = time.time()
    second = start_server(sqlite_url, *args, port=port)

    done = wait_for_job(second.url, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert parse_time(done["finished_at"]).timestamp() >= restarted_at - 0.5
    assert [a["outcome"] for a in attempts_of(second.url, job["id"])] == ["succeeded"]
    assert "retrying with backoff" in worker.output()


@pytest.mark.timeout(60)
def test_server_exits_0_on_sigterm(server):
    """A SIGTERM is the normal way to stop a server: no traceback, exit status 0."""
    server.signal(signal.SIGTERM)
    code = server.popen.wait(timeout=30)
    output = server.output()
    assert "Traceback" not in output, output
    assert code == 0, output


# -- command line and environment --------------------------------------------------------


@pytest.mark.timeout(60)
def test_migrate_only_creates_the_schema_and_exits(tmp_path):
    db = tmp_path / "migrated.db"
    for _ in range(2):  # a second run finds nothing to do
        run = subprocess.run(
            [str(BIN / "taskframe-server"), "--migrate-only", "--db", str(db), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=45,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "job_attempts", "taskframe_schema"} <= tables


@pytest.mark.timeout(60)
def test_an_unusable_database_is_a_clear_error_not_a_traceback(tmp_path):
    db = tmp_path / "missing-folder" / "x.db"
    run = subprocess.run(
        [str(BIN / "taskframe-server"), "--db", str(db), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert run.returncode == 1
    assert f"cannot use the database {db}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.timeout(60)
def test_environment_variables_configure_server_and_worker(
    start_server, start_worker, tmp_path, files
):
    db = str(tmp_path / "from-env.db")
    server = start_server(db, via_env=True, env={"TASKFRAME_LEASE_TTL": "7"})
    assert Path(db).exists()
    answer = requests.post(f"{server.url}/lease", json={"worker_id": "probe", "max": 0}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["lease_ttl"] == 7

    start_worker([server.url], *WORKER_ARGS, env={"TASKFRAME_FILE_ROOT": str(files)})
    job = submit(server.url, "file", {"operation": "write", "path": "env.txt", "content": "e"})
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    assert (files / "env.txt").read_text() == "e"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("command", "variables"),
    [
        ("taskframe-server", ["TASKFRAME_PORT", "TASKFRAME_DB", "TASKFRAME_LEASE_TTL"]),
        ("taskframe-worker", ["TASKFRAME_API_URL", "TASKFRAME_CONCURRENCY", "TASKFRAME_FILE_ROOT"]),
    ],
)
def test_help_mentions_the_environment_variables(command, variables):
    run = subprocess.run([str(BIN / command), "--help"], capture_output=True, text=True, timeout=45)
    assert run.returncode == 0, run.stderr
    for variable in variables:
        assert variable in run.stdout
