"""A worker against what would wedge or flood it, wake-ups by queue (issue 18, items
4, 5 and 15), and the server's read-ahead that sees a client hang up: real server
and worker processes."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import requests

from taskframe.client.errors import ApiError
from taskframe.worker.client import ApiClient
from tests import plugin_dist
from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import attempts_of, submit, wait_for_job

pytestmark = pytest.mark.timeout(120)


def test_a_body_over_the_limit_is_answered_413_not_reset(sqlite_url, start_server):
    """waitress answers 413 from Content-Length and closes without reading the body;
    the client, still sending, used to see only a connection reset (and retry)."""
    server = start_server(sqlite_url, *SERVER_ARGS, "--max-body", "65536")
    client = ApiClient([server.url])
    completion = {"job_id": 1, "lease_id": "l" * 32, "status": "succeeded", "error": None}
    huge = [{**completion, "result": "a" * (4 << 20), "retryable": True, "log": None}]
    with pytest.raises(ApiError) as refused:
        client.lease("w1", ["sleep"], 0, 0.0, huge)
    assert refused.value.status == 413
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("server_args", "error"),
    [
        ((), "more than the server keeps (--max-result 1048576)"),
        (("--max-result", str(64 << 20)), "more than the server takes in one request"),
    ],
    ids=["past-max-result", "past-the-body-limit"],
)
def test_a_result_too_large_to_send_fails_its_attempt_and_the_worker_goes_on(
    sqlite_url, start_server, start_worker, tmp_path, server_args, error
):
    """A 20 MB result, over the 16 MiB body limit of POST /lease. Before: the worker
    saw a connection reset instead of the 413, resent the completion forever and
    never leased again."""
    env = {"PYTHONPATH": plugin_dist.install(tmp_path / "site")}
    server = start_server(sqlite_url, *SERVER_ARGS, *server_args, env=env)
    start_worker([server.url], *WORKER_ARGS, "--concurrency", "1", env=env)
    big = submit(server.url, "blob", {"megabytes": 20})
    done = wait_for_job(server.url, big["id"])
    assert done["status"] == "failed" and done["attempts"] == 1, done
    assert error in done["error"]
    after = submit(server.url, "sleep", {"duration": 0})
    assert wait_for_job(server.url, after["id"])["status"] == "succeeded"


def test_a_job_in_a_queue_starts_at_once_while_an_idle_worker_serves_another_queue(
    sqlite_url, start_server, start_worker
):
    """Before: the wake-up for a job in queue a went to the worker of queue b (parked
    first), and the job waited for a's next poll (here 30 s)."""
    server = start_server(sqlite_url, *SERVER_ARGS)
    polls = ("--poll-interval", "30", "--concurrency", "1")
    start_worker([server.url], *WORKER_ARGS, *polls, "--queues", "b", "--worker-id", "b")
    probe_b = submit(server.url, "sleep", {"duration": 0}, queue="b")
    assert wait_for_job(server.url, probe_b["id"])["worker_id"] == "b"  # b now waits
    start_worker([server.url], *WORKER_ARGS, *polls, "--queues", "a", "--worker-id", "a")
    probe_a = submit(server.url, "sleep", {"duration": 0}, queue="a")
    assert wait_for_job(server.url, probe_a["id"])["worker_id"] == "a"  # a waits behind b
    for _ in range(3):
        job = submit(server.url, "sleep", {"duration": 0}, queue="a")
        # Well under the 30 s poll: only a wake-up can start it in time.
        done = wait_for_job(server.url, job["id"], timeout=10)
        assert done["status"] == "succeeded" and done["worker_id"] == "a"


def test_a_job_writing_megabytes_of_output_does_not_flood_the_worker_log(
    sqlite_url, start_server, start_worker, tmp_path
):
    """Before: the stored log was capped at 64 KiB but the worker's own log took it all."""
    env = {"PYTHONPATH": plugin_dist.install(tmp_path / "site")}
    server = start_server(sqlite_url, *SERVER_ARGS, env=env)
    worker = start_worker([server.url], *WORKER_ARGS, env=env)
    job = submit(server.url, "chatter", {"megabytes": 20})
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    [attempt] = attempts_of(server.url, job["id"])
    assert 60_000 < len(attempt["log"]) <= 65_536  # the stored log: its last 64 KiB
    log = Path(worker.log_path)
    assert log.stat().st_size < 1 << 20, f"the worker log has {log.stat().st_size} bytes"
    text = worker.output()
    assert f"job {job['id']} wrote more than 64 KiB of output" in text
    assert "bytes of its output were left out of this log" in text


def test_requests_pipelined_behind_a_long_poll_are_answered_in_order(sqlite_url, start_server):
    """The server reads ahead while a request runs (to see a client hang up): a request
    pipelined behind a long poll, body and all, is still answered after it, in order."""
    server = start_server(sqlite_url, *SERVER_ARGS)

    def post(path: str, body: dict) -> bytes:
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        return head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data

    requests_ = (
        post("/lease", {"worker_id": "w1", "max": 1, "wait": 1})
        + post("/jobs", {"type": "sleep", "payload": {"duration": 0}})
        + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(requests_)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes, after the last answer
            received += chunk
    answers = []
    while received:  # each answer: status line, headers, Content-Length bytes of JSON
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)[1])
        answers.append((head.split()[1], json.loads(rest[:length])))
        received = rest[length:]
    assert [status for status, _ in answers] == [b"200", b"201", b"200"], answers
    assert answers[0][1]["jobs"] == []  # the lease ran first: the job came after it
    assert answers[1][1]["status"] == "queued" and answers[2][1]["status"] == "ok"
