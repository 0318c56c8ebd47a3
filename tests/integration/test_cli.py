"""The ``taskframe`` command as a real subprocess against a live server and worker."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskframe.client import Client
from taskframe.client.models import FINISHED
from tests.fake_api import dead_url
from tests.integration.live import LATER, Live, live_deployment
from tests.processes import BIN

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from live_deployment(tmp_path_factory)


def taskframe(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``taskframe`` with TASKFRAME_URL set (as a user would export it)."""
    env = {**os.environ, "TASKFRAME_URL": url}
    env.pop("TASKFRAME_TOKEN", None)
    return subprocess.run(
        [str(BIN / "taskframe"), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        input=stdin,
    )


def test_submit_wait_prints_the_result_and_exits_0(live: Live) -> None:
    done = taskframe(live.url, "submit", "sleep", "--payload", '{"duration": 0.2}', "--wait")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["slept"] >= 0.2
    # Progress went to stderr, plainly (not a terminal): one line per status seen.
    assert "submitted" in done.stderr and ": succeeded (" in done.stderr


def test_submit_wait_of_a_failing_job_exits_1(live: Live) -> None:
    payload = '{"operation": "read", "path": "missing.txt"}'
    done = taskframe(
        live.url, "submit", "file", "--payload", payload, "--max-attempts", "1", "--wait"
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "failed after 1 attempt(s)" in done.stderr


def test_submit_json_and_payload_from_a_file(live: Live, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"duration": 0}')
    done = taskframe(
        live.url, "submit", "sleep", "--payload", f"@{payload}", "--priority", "8",
        "--delay", str(LATER), "--key", "cli-key-1", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["type"], job["payload"], job["priority"]) == ("sleep", {"duration": 0}, 8)
    assert job["idempotency_key"] == "cli-key-1" and job["status"] not in FINISHED
    held = job["status"]  # queued, or a status for jobs not due yet
    again = taskframe(
        live.url, "submit", "sleep", "--payload", "@-", "--priority", "8", "--delay", str(LATER),
        "--key", "cli-key-1", "--json", stdin='{"duration": 0}',
    )  # fmt: skip
    assert json.loads(again.stdout)["id"] == job["id"]

    got = taskframe(live.url, "get", str(job["id"]), "--json")
    assert json.loads(got.stdout)["id"] == job["id"]
    shown = taskframe(live.url, "get", str(job["id"]))
    assert f"id:       {job['id']}" in shown.stdout and f"status:   {held}" in shown.stdout

    listed = taskframe(live.url, "--json", "list", "--status", held, "--type", "sleep")
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
    table = taskframe(live.url, "list", "--status", held, "--limit", "1").stdout.splitlines()
    assert table[0].split() == [
        "ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "FINISHED", "ERROR"
    ]  # fmt: skip
    assert len(table) == 2 and table[1].split()[:3] == [str(job["id"]), "sleep", held]

    cancelled = taskframe(live.url, "cancel", str(job["id"]))
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"job {job['id']}: cancelled"
    again = taskframe(live.url, "cancel", str(job["id"]))
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: ") and "cancelled" in again.stderr
    retried = taskframe(live.url, "retry", str(job["id"]), "--json")
    assert json.loads(retried.stdout)["status"] == "queued"


def test_wait_exits_1_when_the_job_is_cancelled(live: Live) -> None:
    with Client(live.url) as client:
        job = client.submit("sleep", {"duration": 0}, delay=LATER)
        waiting = subprocess.Popen(
            [str(BIN / "taskframe"), "--url", live.url, "wait", str(job.id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Cancel once the command is waiting (its first progress line is out).
            line = waiting.stderr.readline()
            assert f"job {job.id}: {job.status}" in line
            client.cancel(job.id)
            out, err = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait(timeout=10)
    assert waiting.returncode == 1
    assert f"job {job.id}: cancelled" in err and out == ""


def test_wait_timeout_exits_1(live: Live) -> None:
    with Client(live.url) as client:
        job = client.submit("sleep", {"duration": 0}, delay=LATER)
    done = taskframe(live.url, "wait", str(job.id), "--timeout", "0.5")
    assert done.returncode == 1
    assert f"error: job {job.id} is still {job.status} after 0.5 s" in done.stderr


def test_attempts_types_and_tables(live: Live) -> None:
    done = taskframe(
        live.url, "submit", "sleep", "--payload", '{"duration": 0.1}', "--wait", "--json"
    )
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    attempts = taskframe(live.url, "attempts", str(job["id"]))
    lines = attempts.stdout.splitlines()
    assert lines[0].split()[:3] == ["ATTEMPT", "OUTCOME", "WORKER"]
    assert lines[1].split()[:2] == ["1", "succeeded"]
    # What the executor logged during the attempt, below the table.
    log = attempts.stdout.split("log of attempt 1:\n", 1)[1]
    assert "sleeping 0.1 s" in log and "slept 0.1" in log
    as_json = json.loads(taskframe(live.url, "attempts", str(job["id"]), "--json").stdout)
    assert [a["outcome"] for a in as_json] == ["succeeded"]
    types = taskframe(live.url, "types").stdout.splitlines()
    assert types[0].split() == ["TYPE", "DESCRIPTION"]
    assert {"file", "http", "sleep"} <= {line.split()[0] for line in types[1:]}
    names = [t["name"] for t in json.loads(taskframe(live.url, "types", "--json").stdout)]
    assert names == sorted(names) and "sleep" in names


def test_stats_and_workers(live: Live) -> None:
    stats = taskframe(live.url, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert set(json.loads(stats.stdout)) >= {"by_status", "by_type", "stuck_types"}
    table = taskframe(live.url, "stats").stdout
    assert table.startswith("TYPE ") and "(all)" in table and "types with no live worker" in table
    workers = taskframe(live.url, "workers", "--json")
    [worker] = json.loads(workers.stdout)
    assert worker["alive"] and "sleep" in worker["types"]
    lines = taskframe(live.url, "workers").stdout.splitlines()
    assert lines[0].split()[:3] == ["WORKER", "HOST", "TYPES"]
    assert lines[1].split()[0] == worker["id"] and lines[1].split()[-1] == "yes"


# -- errors -------------------------------------------------------------------------


def test_bad_payload_names_the_field_and_exits_1(live: Live) -> None:
    done = taskframe(live.url, "submit", "sleep", "--payload", '{"duration": -1}')
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: payload.duration: ")


def test_unknown_type_and_unknown_job_exit_1(live: Live) -> None:
    done = taskframe(live.url, "submit", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("error: type: unknown job type 'nope'")
    for command in ("get", "wait", "cancel", "retry"):
        missing = taskframe(live.url, command, "999999999")
        assert missing.returncode == 1
        assert missing.stderr.strip() == "error: Not found: job 999999999 does not exist"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "sleep", "--payload", "{bad"], "--payload: the text given is not valid JSON"),
        (["submit", "sleep", "--payload", "[1]"], "must hold a JSON object"),
        (["submit", "sleep", "--payload", "@/nonexistent.json"], "cannot read /nonexistent"),
        (["submit", "sleep", "--priority", "high"], "invalid int value"),
        (["get", "abc"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
        (["--url", "localhost:8000", "types"], "--url: 'localhost:8000' is not an http"),
        (["--token", "a", "--token-file", "/x", "types"], "not both"),
    ],
)
def test_usage_errors_exit_2(live: Live, args: list[str], message: str) -> None:
    done = taskframe(live.url, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_server_down_is_one_line_naming_the_url() -> None:
    url = dead_url()
    done = taskframe(url, "list")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: cannot reach {url}: connection refused"]


def test_flags_after_the_command_and_the_token_file(live: Live, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("client-token\n")
    done = taskframe(dead_url(), "types", "--url", live.url, "--json", "--token-file", str(token))
    assert done.returncode == 0, done.stderr
    assert "sleep" in [t["name"] for t in json.loads(done.stdout)]


def test_wait_progress_on_a_terminal_rewrites_one_line(live: Live) -> None:
    main, secondary = pty.openpty()
    try:
        waiting = subprocess.Popen(
            [str(BIN / "taskframe"), "--url", live.url, "submit", "sleep",
             "--payload", '{"duration": 2.5}', "--wait"],
            stdout=subprocess.PIPE, stderr=secondary, text=True,
        )  # fmt: skip
        out, _ = waiting.communicate(timeout=60)
        os.close(secondary)
        secondary = -1
        seen = b""
        while select.select([main], [], [], 0.5)[0]:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal closed with its last writer
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
        if secondary >= 0:
            os.close(secondary)
    assert waiting.returncode == 0 and json.loads(out)["slept"] >= 2.5
    text = seen.decode()
    shown = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    # Refreshed about every second while the job ran, in place (a carriage return, no
    # newline: the terminal turns each newline into "\r\n"), then one newline at the end.
    rewrites = len(re.findall(r"\r(?!\n)", text))
    assert rewrites >= 3 and text.count("\n") == 2, repr(text)
    assert shown[0].endswith("submitted (sleep)")
    assert any(re.fullmatch(r"job \d+: running \(\d+\.\d s, attempt 1\)", s) for s in shown)
    assert re.fullmatch(r"job \d+: succeeded \(\d+\.\d s, attempt 1\)", shown[-1])
