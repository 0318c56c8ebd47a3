"""One bad request must never fail another's job: against real server and worker processes."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import get_job, submit, wait_for_job

S = "\ud800"
HONEST_CLIENTS = 8
JOBS_EACH = 40


def _deep_http_job(depth: int) -> bytes:
    """An http job whose ``json`` nests ``depth`` arrays (``json.dumps`` fails near 1,000)."""
    nested = "[" * depth + "]" * depth
    prefix = '{"type": "http", "payload": {"url": "http://127.0.0.1:9/", "json": '
    return (prefix + nested + "}}").encode()


@pytest.mark.timeout(180)
def test_honest_submitters_never_fail_because_of_a_bad_one(db_url, start_server):
    """Bug: concurrent submissions share one transaction; one that raised while being
    prepared (a surrogate idempotency key, a payload nested 976 deep) failed the whole
    group: honest clients got 1,054 500s out of 3,628."""
    server = start_server(db_url)
    url = server.url
    honest_codes: Counter[int] = Counter()
    bad_codes: Counter[int] = Counter()
    lock = threading.Lock()
    done = threading.Event()

    def honest(index: int) -> None:
        with requests.Session() as session:
            for n in range(JOBS_EACH):
                body = {
                    "type": "sleep",
                    "payload": {"duration": 0},
                    "idempotency_key": f"{index}-{n}",
                }
                code = session.post(f"{url}/jobs", json=body, timeout=60).status_code
                with lock:
                    honest_codes[code] += 1

    def bad(kind: str) -> None:
        headers = {"Content-Type": "application/json"}
        with requests.Session() as session:
            n = 0
            while not done.is_set():
                n += 1
                if kind == "key":  # json= writes the escape "\ud800"
                    body = json.dumps(
                        {"type": "sleep", "payload": {"duration": 0}, "idempotency_key": f"{n}{S}"}
                    )
                    answer = session.post(f"{url}/jobs", data=body, headers=headers, timeout=60)
                else:
                    answer = session.post(
                        f"{url}/jobs", data=_deep_http_job(950), headers=headers, timeout=60
                    )
                with lock:
                    bad_codes[answer.status_code] += 1

    bad_threads = [threading.Thread(target=bad, args=(kind,)) for kind in ("key", "deep")]
    honest_threads = [threading.Thread(target=honest, args=(i,)) for i in range(HONEST_CLIENTS)]
    for thread in bad_threads + honest_threads:
        thread.start()
    for thread in honest_threads:
        thread.join(150)
    done.set()
    for thread in bad_threads:
        thread.join(30)

    assert honest_codes == {201: HONEST_CLIENTS * JOBS_EACH}, honest_codes
    assert bad_codes and set(bad_codes) <= {400, 422}, bad_codes
    listing = requests.get(f"{url}/jobs", params={"limit": 1000}, timeout=30)
    assert listing.status_code == 200, listing.text
    assert len(listing.json()["jobs"]) == HONEST_CLIENTS * JOBS_EACH


class _Utf7Handler(http.server.BaseHTTPRequestHandler):
    """Answers in UTF-7, whose decoder makes lone surrogates of "+2AA-": 200 on /ok, else 500."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = b"caf+2AA- ok"
        self.send_response(200 if self.path == "/ok" else 500)
        self.send_header("Content-Type", "text/plain; charset=utf-7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def utf7_url() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Utf7Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.timeout(120)
def test_executor_output_that_cannot_be_encoded_is_recorded_and_the_worker_carries_on(
    db_url, start_server, start_worker, utf7_url
):
    """Bug: the http executor's result or error held a lone surrogate (a UTF-7 body);
    the failure could not be stored (500 on the worker's POST /lease, so it could
    neither report nor lease) and the success could not be answered (GET /jobs 500)."""
    server = start_server(db_url, *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS, "--concurrency", "2")
    ok = submit(server.url, "http", {"url": f"{utf7_url}/ok", "timeout": 5})
    failing = submit(server.url, "http", {"url": f"{utf7_url}/fail", "timeout": 5}, max_attempts=1)

    done = wait_for_job(server.url, ok["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["result"]["body"] == "caf\ufffd ok"
    failed = wait_for_job(server.url, failing["id"], timeout=60)
    assert failed["status"] == "failed" and "HTTP 500" in failed["error"], failed
    assert "caf\ufffd ok" in failed["error"]
    assert failed["attempts"] == 1

    follow_up = submit(server.url, "sleep", {"duration": 0})
    assert wait_for_job(server.url, follow_up["id"], timeout=30)["status"] == "succeeded"
    assert requests.get(f"{server.url}/jobs", timeout=30).status_code == 200


@pytest.mark.timeout(60)
def test_a_lease_never_answers_500_after_writing(tmp_path, start_server):
    """Bug: a job stored with text UTF-8 cannot encode (by a version before the door
    refused it) made POST /lease fail with 500 after the lease was written; the worker
    re-sent, and every job leased alongside expired, charged an attempt never run
    (jobs with max_attempts 1 ended failed without running)."""
    db = tmp_path / "legacy.db"
    server = start_server(str(db), *SERVER_ARGS)
    honest = submit(server.url, "sleep", {"duration": 0}, max_attempts=1)
    now = time.time()
    with sqlite3.connect(db) as connection:  # as an older server stored it
        connection.execute(
            "INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts,"
            " timeout, run_at, created_at) VALUES ('sleep', ?, 5, 'queued', 0, 1, 60, ?, ?)",
            (json.dumps({"duration": 0, "note": S}), now - 1, now - 1),
        )
    answer = requests.post(f"{server.url}/lease", json={"worker_id": "w1", "max": 2}, timeout=30)
    assert answer.status_code == 200, answer.text
    jobs = answer.json()["jobs"]
    assert {job["id"] for job in jobs} == {honest["id"], honest["id"] + 1}
    assert {job["payload"].get("note") for job in jobs} == {None, "\ufffd"}
    assert get_job(server.url, honest["id"])["status"] == "running"
    assert requests.get(f"{server.url}/jobs", timeout=30).status_code == 200
