"""Nothing a crowd of waiting clients, idle workers or big bodies does can starve the server.

Real ``taskframe-server`` processes with their default limits; each test fails
(by a request timing out) where main let the crowd lock everyone out.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import get_job, submit, wait_for_job, wait_until

LATER = {"duration": 0}


def _in_threads(count: int, call) -> tuple[list[threading.Thread], list]:
    answers: list = []

    def run(index: int) -> None:
        try:
            answers.append(call(index))
        except requests.RequestException as exc:
            answers.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, answers


@pytest.mark.timeout(120)
def test_waiting_clients_and_idle_workers_do_not_starve_other_requests(start_server, sqlite_url):
    server = start_server(sqlite_url)  # the defaults: 32 threads
    job = submit(server.url, "sleep", LATER, delay=3600)
    waiters, waited = _in_threads(
        40,
        lambda i: requests.get(f"{server.url}/jobs/{job['id']}?wait=20", timeout=40),
    )
    pollers, polled = _in_threads(
        40,
        lambda i: requests.post(
            f"{server.url}/lease",
            json={"worker_id": f"idle-{i}", "types": ["http"], "max": 4, "wait": 20},
            timeout=40,
        ),
    )
    # Past the cap, the crowd is answered at once with what there is...
    deadline = time.monotonic() + 30
    while len(waited) + len(polled) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    refused_waits = [a for a in waited if a.headers.get("Retry-After")]
    refused_polls = [a for a in polled if a.json()["retry_after"]]
    assert refused_waits and refused_polls
    assert all(a.json()["status"] == "scheduled" for a in refused_waits)
    assert all(a.json()["jobs"] == [] for a in refused_polls)
    # ...and the server still has threads for everyone else (main: 20 s and more).
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    created = requests.post(
        f"{server.url}/jobs", json={"type": "sleep", "payload": LATER}, timeout=5
    )
    assert created.status_code == 201
    server.stop()  # answers the remaining long polls
    for thread in waiters + pollers:
        thread.join(timeout=30)


@pytest.mark.timeout(120)
def test_hundreds_of_open_connections_do_not_lock_new_clients_out(start_server, sqlite_url):
    server = start_server(sqlite_url)
    # Clients that sent half a request line and went quiet (main let 100 of them block all).
    idle = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            idle.append(sock)
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        for sock in idle:
            sock.close()


def _declare_body(port: int, path: str, length: int) -> tuple[int, dict]:
    """Send only the headers of a request declaring ``length`` bytes; read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # main: times out, waiting for the body
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.timeout(60)
def test_a_declared_body_over_the_route_limit_is_refused_before_it_is_read(
    start_server, sqlite_url
):
    server = start_server(sqlite_url, "--max-body", "100000")
    status, answer = _declare_body(server.port, "/jobs", 100_001)
    assert status == 413 and "100000 bytes" in answer["description"]
    status, answer = _declare_body(server.port, "/jobs/batch", 1 << 30)  # 1 GiB
    assert status == 413 and "1600000 bytes" in answer["description"]
    # A batch body of 16 x --max-body is fine.
    jobs = [{"type": "sleep", "payload": {"duration": 0, "pad": "x" * 1000}}] * 1000
    answer = requests.post(f"{server.url}/jobs/batch", json={"jobs": jobs}, timeout=30)
    assert len(json.dumps({"jobs": jobs})) > 1_000_000
    assert answer.status_code == 422  # read and validated ("pad" is not a sleep field)


@pytest.mark.timeout(90)
def test_a_delayed_job_is_scheduled_then_runs_when_due(start_server, start_worker, sqlite_url):
    server = start_server(sqlite_url, *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS)
    later = submit(server.url, "sleep", LATER, delay=1.5)
    never = submit(server.url, "sleep", LATER, delay=3600)
    assert later["status"] == never["status"] == "scheduled"
    cancelled = requests.post(f"{server.url}/jobs/{never['id']}/cancel", timeout=10)
    assert cancelled.json()["status"] == "cancelled"
    done = wait_for_job(server.url, later["id"], "succeeded")
    assert done["started_at"] >= done["run_at"]
    assert get_job(server.url, never["id"])["status"] == "cancelled"


@pytest.mark.timeout(60)
def test_a_worker_refused_every_wait_still_runs_jobs(start_server, start_worker, sqlite_url):
    """It pauses as told (retry_after) between polls, and still finds the job."""
    server = start_server(sqlite_url, "--max-waiting", "0")
    worker = start_worker([server.url], "--poll-interval", "5")
    # Its first lease (refused a wait, answered at once) makes it known to the server.
    wait_until(
        lambda: requests.get(f"{server.url}/workers", timeout=5).json()["workers"],
        message="the worker's first lease",
    )
    job = submit(server.url, "sleep", LATER)
    wait_for_job(server.url, job["id"], "succeeded", timeout=30)
    assert worker.alive()
