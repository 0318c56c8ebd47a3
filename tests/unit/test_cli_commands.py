"""Every ``taskframe`` command through ``main(argv)`` against the real app over real HTTP.

Tables for people and ``--json`` for scripts: each command's output and exit
code, with the server's state checked through the API.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskframe.client import Client
from taskframe.client.cli import main
from tests.api_server import Mounted, lease_as_worker, run_as_worker
from tests.processes import wait_until

pytestmark = pytest.mark.timeout(30)

LATER = "3600"  # --delay that keeps a job off the lease path for the whole test


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture(autouse=True)
def no_taskframe_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's TASKFRAME_URL, _TOKEN, _JSON... must not change these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("TASKFRAME_"):
            monkeypatch.delenv(name)


@pytest.fixture
def taskframe(api: Mounted, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``taskframe(*args)``: the command run against this test's server (exit code, output)."""

    def run(*args: str) -> Ran:
        capsys.readouterr()  # what came before is not this command's
        code = main(["--url", api.url, *args])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


@pytest.fixture
def client(api: Mounted) -> Iterator[Client]:
    with Client(api.url) as opened:
        yield opened


def finish_when_waited_for(
    api: Mounted, status: str = "succeeded", *, polled: bool = False, **outcome
) -> threading.Thread:
    """A worker thread: once a client long-polls the job, lease and report it.

    ``polled``: only once the client polls ``GET /jobs/1`` (the job outlived the
    wait of ``POST /jobs?wait=``), not during the submission's own wait.
    """

    def waited_for() -> bool:
        polling = any(path.startswith("/jobs/1?wait=") for path in api.paths())
        return api.scheduler.notifier.has_waiters() and (polling or not polled)

    def work() -> None:
        wait_until(waited_for, 10, 0.01, "a client's long poll")
        run_as_worker(api.url, status, **outcome)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# -- submit, get, wait ----------------------------------------------------------------


def test_submit_prints_one_line_and_the_job_is_queued(taskframe, client: Client) -> None:
    ran = taskframe("submit", "sleep", "--payload", '{"duration": 0.5}')
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == "job 1 submitted (sleep, queued)\n"
    job = client.get(1)
    assert (job.type, job.payload, job.status) == ("sleep", {"duration": 0.5}, "queued")


def test_submit_sends_every_option(taskframe, client: Client) -> None:
    root = client.submit("sleep", {"duration": 0})
    args = (
        "submit", "sleep", "--payload", '{"duration": 0}', "--priority", "8",
        "--delay", LATER, "--max-attempts", "2", "--key", "key-1", "--queue", "reports",
        "--depends-on", f"{root.id},", "--on-dependency-failure", "run", "--json",
    )  # fmt: skip
    ran = taskframe(*args)
    assert ran.code == 0, ran.err
    job = ran.json()
    assert isinstance(job, dict)
    assert (job["priority"], job["max_attempts"], job["idempotency_key"]) == (8, 2, "key-1")
    assert (job["queue"], job["depends_on"], job["on_dependency_failure"]) == (
        "reports", [root.id], "run",
    )  # fmt: skip
    assert job["status"] == "waiting"
    # The same submission again: the same job, not a second one.
    assert taskframe(*args).json()["id"] == job["id"]  # type: ignore[index]
    # The same key with another body is a conflict, not a silent mix-up.
    clash = taskframe("submit", "sleep", "--payload", '{"duration": 1}', "--key", "key-1")
    assert clash.code == 1 and clash.err.startswith("error: Conflict: ")
    assert "key-1" in clash.err


def test_payload_from_a_file_and_from_stdin(
    taskframe, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"duration": 2}', encoding="utf-8")
    assert taskframe("submit", "sleep", "--payload", f"@{payload}").code == 0
    monkeypatch.setattr("sys.stdin", _Stdin('{"duration": 3}'))
    assert taskframe("submit", "sleep", "--payload", "@-").code == 0
    assert [client.get(n).payload for n in (1, 2)] == [{"duration": 2}, {"duration": 3}]


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text


def test_submit_wait_of_a_short_job_is_one_request(taskframe, api: Mounted) -> None:
    worker = finish_when_waited_for(api, result={"slept": 0, "note": "é"})
    ran = taskframe("submit", "sleep", "--payload", '{"duration": 0}', "--wait")
    worker.join(10)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == {"slept": 0, "note": "é"}
    assert "é" in ran.out  # printed as text, not as an escape
    # Finished within the submission's own wait: no polling after it.
    [submission] = [path for path in api.paths("POST") if path.split("?")[0] == "/jobs"]
    assert submission.startswith("/jobs?wait=") and api.paths() == []  # no GET after it
    err = ran.err.splitlines()
    assert err[0] == "job 1 submitted (sleep)"
    assert len(err) == 2 and re.fullmatch(r"job 1: succeeded \(\d+\.\d s, attempt 1\)", err[1])


def test_submit_wait_of_a_longer_job_shows_each_status(taskframe, api: Mounted) -> None:
    worker = finish_when_waited_for(api, result={"slept": 0}, polled=True)
    ran = taskframe("submit", "sleep", "--payload", '{"duration": 0}', "--wait")
    worker.join(10)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == {"slept": 0}
    # Not a terminal: a plain line per status seen, on stderr.
    err = ran.err.splitlines()
    assert err[0] == "job 1 submitted (sleep)"
    # This test's worker leases through the scheduler: no live worker is registered.
    assert err.pop(1).startswith("warning: no live worker runs sleep jobs: job 1 waits")
    assert err[1].startswith("job 1: queued (") and err[1].endswith(", attempt 0)")
    assert err[-1].startswith("job 1: succeeded (") and err[-1].endswith(", attempt 1)")


def test_submit_wait_json_prints_the_whole_job(taskframe, api: Mounted) -> None:
    worker = finish_when_waited_for(api, result=[1, 2])
    ran = taskframe("submit", "sleep", "--payload", '{"duration": 0}', "--wait", "--json")
    worker.join(10)
    assert ran.code == 0, ran.err
    job = ran.json()
    assert isinstance(job, dict) and (job["status"], job["result"]) == ("succeeded", [1, 2])
    assert "submitted" not in ran.err  # --json: no submission line


def test_wait_for_a_failed_job_exits_1_with_its_error(taskframe, api: Mounted, client) -> None:
    job = client.submit("sleep", {"duration": 0}, max_attempts=1)
    run_as_worker(api.url, "failed", error="disk full")
    ran = taskframe("wait", str(job.id))
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.splitlines()[-2:] == [
        f"job {job.id} failed after 1 attempt(s): disk full",
        f"(its tracebacks: taskframe attempts {job.id})",
    ]


def test_wait_for_a_cancelled_job_exits_1(taskframe, client: Client) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=3600)
    client.cancel(job.id)
    ran = taskframe("wait", str(job.id), "--json")
    assert ran.code == 1 and ran.json()["status"] == "cancelled"  # type: ignore[index]


def test_wait_timeout_exits_1_naming_the_status(taskframe, client: Client) -> None:
    job = client.submit("sleep", {"duration": 0}, delay=3600)
    ran = taskframe("wait", str(job.id), "--timeout", "0.2")
    assert (ran.code, ran.out) == (1, "")
    lines = ran.err.splitlines()
    assert lines[0].startswith(f"job {job.id}: scheduled (")
    assert lines[-1] == f"error: job {job.id} is still scheduled after 0.2 s"


def test_get_shows_a_block_or_the_json(taskframe, client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, idempotency_key="k1")
    run_as_worker(api.url, result={"slept": 0})
    lines = taskframe("get", str(job.id)).lines()
    assert lines[:3] == [f"id:       {job.id}", "type:     sleep", "status:   succeeded"]
    assert "attempts: 1/3" in lines and "key:      k1" in lines and "worker:   w1" in lines
    assert 'payload:  {"duration":0.0}' in lines and 'result:   {"slept":0}' in lines
    shown = taskframe("get", str(job.id), "--json").json()
    assert isinstance(shown, dict) and shown["result"] == {"slept": 0}


def test_get_of_an_unknown_job_exits_1(taskframe) -> None:
    ran = taskframe("get", "999")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == "error: Not found: job 999 does not exist\n"


# -- list, cancel, retry, attempts -------------------------------------------------------


def test_list_is_a_table_newest_first_or_json(taskframe, client: Client) -> None:
    for _ in range(3):
        client.submit("sleep", {"duration": 0}, delay=3600)
    client.submit("file", {"operation": "read", "path": "x"})
    lines = taskframe("list", "--limit", "2").lines()
    assert lines[0].split() == [
        "ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "FINISHED", "ERROR"
    ]  # fmt: skip
    assert [line.split()[:3] for line in lines[1:]] == [
        ["4", "file", "queued"],
        ["3", "sleep", "scheduled"],
    ]
    listed = taskframe("--json", "list", "--type", "sleep", "--status", "scheduled").json()
    assert isinstance(listed, list) and [job["id"] for job in listed] == [3, 2, 1]
    empty = taskframe("list", "--status", "failed").lines()
    assert [line.split() for line in empty] == [lines[0].split()]  # the headers only


def test_cancel_a_queued_and_a_running_job_and_retry(taskframe, client, api: Mounted) -> None:
    queued = client.submit("sleep", {"duration": 0}, delay=3600)
    ran = taskframe("cancel", str(queued.id))
    assert (ran.code, ran.out) == (0, f"job {queued.id}: cancelled\n")
    again = taskframe("cancel", str(queued.id))
    assert again.code == 1
    assert again.err == f"error: Conflict: job {queued.id} has already been cancelled\n"
    retried = taskframe("retry", str(queued.id))
    assert (retried.code, retried.out) == (0, f"job {queued.id}: queued\n")

    running = lease_as_worker(api.url)
    ran = taskframe("cancel", str(running["id"]))
    assert ran.out == f"job {running['id']}: cancel requested (it is running)\n"
    assert client.get(running["id"]).cancel_requested
    as_json = taskframe("retry", str(running["id"]), "--json")
    assert as_json.code == 1 and "running" in as_json.err


def test_attempts_table_with_each_log_below(taskframe, client: Client, api: Mounted) -> None:
    job = client.submit("sleep", {"duration": 0}, max_attempts=1)
    run_as_worker(api.url, "failed", error="boom", log="starting\nboom happened")
    lines = taskframe("attempts", str(job.id)).lines()
    assert lines[0].split() == ["ATTEMPT", "OUTCOME", "WORKER", "STARTED", "FINISHED", "ERROR"]
    assert lines[1].split()[:3] == ["1", "failed", "w1"] and lines[1].endswith("boom")
    assert lines[2:] == ["", "log of attempt 1:", "  starting", "  boom happened"]
    [attempt] = taskframe("attempts", str(job.id), "--json").json()  # type: ignore[misc]
    assert attempt["log"] == "starting\nboom happened"


# -- the deployment -----------------------------------------------------------------------


def test_types_stats_and_workers(taskframe, client: Client, api: Mounted) -> None:
    types = taskframe("types").lines()
    assert types[0].split() == ["TYPE", "DESCRIPTION"]
    assert [line.split()[0] for line in types[1:]] == ["file", "http", "sleep"]
    names = [t["name"] for t in taskframe("types", "--json").json()]  # type: ignore[union-attr]
    assert names == ["file", "http", "sleep"]

    client.submit("sleep", {"duration": 0})
    client.submit("sleep", {"duration": 0})
    run_as_worker(api.url, worker_id="w-9")
    stats = taskframe("stats").out
    assert stats.splitlines()[0].split()[:3] == ["TYPE", "WAITING", "SCHEDULED"]
    assert "workers alive:             1" in stats and "types with no live worker: none" in stats
    assert taskframe("stats", "--json").json()["by_status"]["succeeded"] == 1  # type: ignore[index]

    workers = taskframe("workers").lines()
    assert workers[0].split() == [
        "WORKER",
        "HOST",
        "TYPES",
        "SLOTS",
        "RUNNING",
        "LAST",
        "SEEN",
        "ALIVE",
    ]
    assert workers[1].split()[:3] == ["w-9", "test-host", "sleep"] and workers[1].endswith("yes")
    [worker] = taskframe("workers", "--json").json()  # type: ignore[misc]
    assert worker["id"] == "w-9" and worker["alive"] is True


# -- queues and limits --------------------------------------------------------------------


def test_queues_pause_and_resume(taskframe, client: Client) -> None:
    client.submit("sleep", {"duration": 0}, queue="reports")
    assert taskframe("pause-queue", "reports").out == "queue reports paused\n"
    table = taskframe("queues").lines()
    assert table[0].split()[:4] == ["QUEUE", "PAUSED", "WAITING", "SCHEDULED"]
    assert table[1].split()[:5] == ["reports", "yes", "0", "0", "1"]
    assert taskframe("resume-queue", "reports", "--json").json()["paused"] is False  # type: ignore[index]
    assert [q.paused for q in client.queues()] == [False]


def test_limits_set_list_and_delete(taskframe, client: Client) -> None:
    assert taskframe("set-limit", "type", "sleep", "3").out == "type sleep: at most 3\n"
    assert taskframe("set-limit", "queue", "reports", "0", "--json").json() == {
        "kind": "queue", "name": "reports", "max_running": 0,
    }  # fmt: skip
    assert taskframe("limits").lines() == [
        "KIND   NAME     MAX",
        "queue  reports  0",
        "type   sleep    3",
    ]
    assert taskframe("delete-limit", "type", "sleep").out == "type sleep: no limit\n"
    assert [x.name for x in client.limits()] == ["reports"]
    missing = taskframe("delete-limit", "type", "sleep")
    assert missing.code == 1 and missing.err == "error: Not found: no limit on type 'sleep'\n"
    assert taskframe("delete-limit", "queue", "reports", "--json").out == "{}\n"


# -- schedules ------------------------------------------------------------------------------


def test_schedules_from_creation_to_deletion(taskframe, client: Client) -> None:
    made = taskframe(
        "create-schedule", "nightly", "30 2 * * *", "sleep", "--payload", '{"duration": 1}',
        "--timezone", "Europe/Paris", "--misfire", "skip", "--queue", "reports", "--priority", "9",
    )  # fmt: skip
    assert made.code == 0, made.err
    block = made.lines()
    assert block[:5] == [
        "name:       nightly",
        "cron:       30 2 * * *",
        "timezone:   Europe/Paris",
        "misfire:    skip",
        "paused:     no",
    ]
    [schedule] = client.schedules()
    assert schedule.job["queue"] == "reports" and schedule.job["priority"] == 9
    assert schedule.job["payload"] == {"duration": 1.0}

    assert taskframe("pause-schedule", "nightly").out == "schedule nightly paused\n"
    table = taskframe("schedules").lines()
    assert table[0].split()[:4] == ["SCHEDULE", "CRON", "TIMEZONE", "TYPE"]
    assert table[1].split() == [
        "nightly",
        *"30 2 * * *".split(),
        "Europe/Paris",
        "sleep",
        "yes",
        "-",
        "-",
    ]
    resumed = taskframe("resume-schedule", "nightly").lines()
    assert "paused:     no" in resumed
    shown = taskframe("schedule", "nightly").lines()
    [fires] = [line for line in shown if line.startswith("next fires:")]
    assert fires.count(":30:00") == 5  # five fire times, each at half past
    assert taskframe("schedule", "nightly", "--json").json()["cron"] == "30 2 * * *"  # type: ignore[index]

    bad = taskframe(
        "create-schedule", "other", "61 * * * *", "sleep", "--payload", '{"duration": 1}'
    )
    assert bad.code == 1 and bad.err.startswith("error: cron: ")
    assert taskframe("delete-schedule", "nightly").out == "schedule nightly deleted\n"
    gone = taskframe("schedule", "nightly")
    assert gone.code == 1 and gone.err == "error: Not found: no schedule named 'nightly'\n"
