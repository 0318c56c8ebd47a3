"""Input no request may get past the door: unencodable text, deep nesting, NaN, huge batches.

Through Falcon's TestClient on a real SQLite file; tests/integration/test_bad_input.py
repeats the worst of these against a real server process.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from falcon import testing

from taskframe.core import schemas, strict_json
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

SLEEP = {"type": "sleep", "payload": {"duration": 0}}
S = "\ud800"  # a lone surrogate: json.loads makes one of "\ud800"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def scheduler(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    yield Scheduler(store, ServerConfig(max_body_bytes=1 << 20))
    store.close()


@pytest.fixture
def client(scheduler: Scheduler) -> testing.TestClient:
    return testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))


def count_jobs(client: testing.TestClient) -> int:
    answer = client.simulate_get("/jobs")
    assert answer.status_code == 200, answer.text
    return len(answer.json["jobs"])


def post_json(client: testing.TestClient, path: str, document: object):
    """``document`` as JSON, a lone surrogate written as the escape ``"\\ud800"``."""
    return post_raw(client, path, json.dumps(document))


def post_raw(client: testing.TestClient, path: str, body: bytes | str):
    return client.simulate_post(path, body=body, headers=JSON)


def assert_error(answer, status: int) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json
    assert body["title"] and body["description"], body
    return body


def lease(client: testing.TestClient, **extra) -> dict:
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json


# -- text UTF-8 cannot encode ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/jobs", {"type": "sleep" + S, "payload": {"duration": 0}}, "type"),
        ("/jobs", {**SLEEP, "idempotency_key": "key" + S}, "idempotency_key"),
        (
            "/jobs",
            {"type": "file", "payload": {"operation": "write", "path": "a", "content": S}},
            "payload",
        ),
        (
            "/jobs",
            {"type": "http", "payload": {"url": "http://127.0.0.1/", "json": {"a": [S]}}},
            "payload",
        ),
        ("/jobs", {"type": "http", "payload": {"url": "http://127.0.0.1/", S: 1}}, "payload"),
        ("/jobs", {**SLEEP, "notify_url": f"http://127.0.0.1/{S}"}, "notify_url"),
        ("/jobs/batch", {"jobs": [SLEEP, {**SLEEP, "idempotency_key": S}]}, "jobs"),
        ("/lease", {"worker_id": "w" + S}, "worker_id"),
        ("/lease", {"worker_id": "w", "types": ["sleep", S]}, "types"),
        ("/lease", {"worker_id": "w", "request_id": S}, "request_id"),
        ("/heartbeats", {"worker_id": S, "leases": []}, "worker_id"),
        ("/jobs/1/heartbeat", {"worker_id": "w", "lease_id": S}, "lease_id"),
        ("/jobs/1/release", {"worker_id": S, "lease_id": "x"}, "worker_id"),
        ("/jobs/1/complete", {"worker_id": S, "lease_id": "x", "status": "failed"}, "worker_id"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field_and_nothing_is_written(
    client, path, body, field
):
    """Bug: the job was stored, then every answer holding it failed with 500
    (UnicodeEncodeError): the submission itself, GET /jobs and every lease."""
    answer = post_json(client, path, body)
    error = assert_error(answer, 422)
    assert field in error["errors"], error
    assert count_jobs(client) == 0


def test_an_unknown_field_named_with_a_lone_surrogate_is_422_not_500(client):
    """The error body names the field: it must be answerable too."""
    error = assert_error(post_json(client, "/jobs", {**SLEEP, f"x{S}": 1}), 422)
    assert error["errors"] == {"x\ufffd": ["Unknown field."]}
    assert count_jobs(client) == 0


def test_raw_utf8_surrogate_bytes_are_refused_too(client):
    # json.loads decodes bytes with "surrogatepass": ED A0 80 becomes "\ud800".
    body = b'{"type": "sleep", "payload": {"duration": 0}, "idempotency_key": "k\xed\xa0\x80"}'
    error = assert_error(post_raw(client, "/jobs", body), 422)
    assert "idempotency_key" in error["errors"]
    assert count_jobs(client) == 0


@pytest.mark.parametrize("key", ["key" + S, "k" * 201, "key\x00"])
def test_a_bad_idempotency_key_header_is_refused(client, key):
    """Bug: the header bypassed the body's rules (length, NUL, encodable text)."""
    headers = {**JSON, "Idempotency-Key": key}
    answer = client.simulate_post("/jobs", body=json.dumps(SLEEP), headers=headers)
    error = assert_error(answer, 422)
    assert "Idempotency-Key" in error["errors"]
    assert count_jobs(client) == 0


def test_nul_in_names_the_database_compares_is_422(client):
    """PostgreSQL text cannot hold NUL: such a name must be refused, not sent to the database."""
    answer = client.simulate_post("/lease", json={"worker_id": "w", "types": ["sleep\x00"]})
    assert "types" in assert_error(answer, 422)["errors"]
    completion = {"job_id": 1, "lease_id": "x", "status": "failed", "worker_id": "w\x00"}
    answer = client.simulate_post("/lease", json={"worker_id": "w", "completions": [completion]})
    assert "completions" in assert_error(answer, 422)["errors"]
    answer = client.simulate_get("/jobs", query_string="type=sleep%00")
    assert "type" in assert_error(answer, 422)["errors"]
    answer = client.simulate_post("/next-job", query_string="worker_id=w&types=sleep%00")
    assert "types" in assert_error(answer, 422)["errors"]


def test_executor_output_with_lone_surrogates_is_repaired_not_refused(client):
    """Bug: a completion whose error text held a surrogate made every POST /lease of
    the worker fail with 500: it could neither report nor lease again."""
    first, second, third = (client.simulate_post("/jobs", json=SLEEP).json["id"] for _ in "123")
    leased = {job["id"]: job["lease_id"] for job in lease(client, max=2)["jobs"]}
    assert set(leased) == {first, second}
    completions = [
        {
            "job_id": first,
            "lease_id": leased[first],
            "status": "failed",
            "error": f"FileNotFoundError: b{S}d",
            "retryable": False,
            "log": f"WARNING no such file b{S}d\n",
        },
        {
            "job_id": second,
            "lease_id": leased[second],
            "status": "succeeded",
            "result": {f"name{S}": [f"v{S}", 1]},
        },
    ]
    answer = post_json(client, "/lease", {"worker_id": "w1", "max": 1, "completions": completions})
    assert answer.status_code == 200, answer.text
    answer = answer.json
    assert [c["ok"] for c in answer["completions"]] == [True, True]
    assert [job["id"] for job in answer["jobs"]] == [third]  # leasing carries on

    failed = client.simulate_get(f"/jobs/{first}").json
    assert failed["status"] == "failed" and failed["error"] == "FileNotFoundError: b\ufffdd"
    done = client.simulate_get(f"/jobs/{second}").json
    assert done["result"] == {"name\ufffd": ["v\ufffd", 1]}
    attempts = client.simulate_get(f"/jobs/{first}/attempts").json["attempts"]
    assert attempts[0]["error"] == "FileNotFoundError: b\ufffdd"
    assert attempts[0]["log"] == "WARNING no such file b\ufffdd\n"
    assert count_jobs(client) == 3

    # The single-job endpoint repairs it the same way.
    job = lease(client)["jobs"]
    assert job == []
    fourth = client.simulate_post("/jobs", json=SLEEP).json["id"]
    [job] = lease(client)["jobs"]
    answer = post_json(
        client,
        f"/jobs/{fourth}/complete",
        {"worker_id": "w1", "lease_id": job["lease_id"], "status": "failed", "error": S},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json["error"] == "\ufffd"


def test_a_stored_row_that_cannot_be_encoded_is_answered_repaired_never_500(client, sqlite_url):
    """Bug: rows stored before the door refused such text made POST /lease answer 500
    after the lease was written: the worker re-sent, and every job leased alongside
    expired and was charged an attempt it never ran."""
    now = time.time()
    with sqlite3.connect(sqlite_url) as connection:  # as an older version stored it
        stored_id = connection.execute(
            "INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts,"
            " timeout, run_at, created_at) VALUES ('sleep', ?, 5, 'queued', 0, 1, 60, ?, ?)",
            (json.dumps({"duration": 0, "note": S}), now - 1, now - 1),
        ).lastrowid
    honest = client.simulate_post("/jobs", json=SLEEP).json["id"]

    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 2})
    assert answer.status_code == 200, answer.text
    jobs = {job["id"]: job for job in answer.json["jobs"]}
    assert set(jobs) == {stored_id, honest}
    assert jobs[stored_id]["payload"] == {"duration": 0, "note": "\ufffd"}
    for path in ("/jobs", f"/jobs/{stored_id}"):
        assert client.simulate_get(path).status_code == 200


def test_answers_are_always_strict_utf8_json():
    from taskframe.server.http.http_io import dump_answer

    media = {"text": f"a{S}b", S: [float("nan"), float("inf")], "fine": "é"}
    body = dump_answer(media)
    assert json.loads(body.decode("utf-8")) == {
        "text": "a\ufffdb",
        "\ufffd": [None, None],
        "fine": "é",
    }
    deep: list = []
    for _ in range(5000):  # deeper than json.dumps can write
        deep = [deep]
    assert json.loads(dump_answer({"deep": deep}))["deep"] is not None


# -- nesting and numbers ---------------------------------------------------------------

ENDPOINTS = [
    "/jobs",
    "/jobs/batch",
    "/lease",
    "/heartbeats",
    "/jobs/1/complete",
    "/jobs/1/heartbeat",
    "/jobs/1/release",
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("depth", [100_000, strict_json.MAX_DEPTH + 1])
def test_nesting_past_the_limit_is_400_not_500(client, path, depth):
    """Bug: 100,000 nested arrays raised RecursionError, which read_json let through (500)."""
    body = "[" * depth + "]" * depth
    error = assert_error(post_raw(client, path, body), 400)
    assert str(strict_json.MAX_DEPTH) in error["description"], error


def test_nesting_up_to_the_limit_is_accepted(client):
    def job(levels: int) -> str:
        value = "[" * levels + "]" * levels  # the payload's "json" field adds two levels
        return '{"type": "http", "payload": {"url": "http://127.0.0.1/", "json": ' + value + "}}"

    limit = strict_json.MAX_DEPTH - 2
    assert post_raw(client, "/jobs", job(limit)).status_code == 201
    assert post_raw(client, "/jobs", job(limit + 1)).status_code == 400
    assert count_jobs(client) == 1


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_nan_and_infinity_are_refused_everywhere(client, number):
    """Bug: NaN and Infinity inside an http job's json were stored and echoed: not JSON."""
    body = '{"type": "http", "payload": {"url": "http://127.0.0.1/", "json": {"x": ' + number
    error = assert_error(post_raw(client, "/jobs", body + "}}}"), 400)
    assert number in error["description"], error
    assert_error(post_raw(client, "/lease", '{"worker_id": "w1", "wait": ' + number + "}"), 400)
    assert count_jobs(client) == 0


# -- batch sizes -----------------------------------------------------------------------


def test_heartbeats_past_the_limit_are_422(client):
    """Bug: 250,000 heartbeat entries held the write lock for seconds."""
    leases = [{"job_id": i + 1, "lease_id": "x"} for i in range(schemas.MAX_HEARTBEATS + 1)]
    answer = client.simulate_post("/heartbeats", json={"worker_id": "w", "leases": leases})
    assert "leases" in assert_error(answer, 422)["errors"]
    answer = client.simulate_post(
        "/heartbeats", json={"worker_id": "w", "leases": leases[: schemas.MAX_HEARTBEATS]}
    )
    assert answer.status_code == 200, answer.text


def test_completions_past_the_limit_are_422(client):
    """Bug: 200,000 completions in one POST /lease held the write lock for seconds."""
    item = {"lease_id": "x", "status": "succeeded"}
    completions = [{"job_id": i + 1, **item} for i in range(schemas.MAX_COMPLETIONS + 1)]
    answer = client.simulate_post("/lease", json={"worker_id": "w", "completions": completions})
    assert "completions" in assert_error(answer, 422)["errors"]
    answer = client.simulate_post(
        "/lease",
        json={"worker_id": "w", "max": 0, "completions": completions[: schemas.MAX_COMPLETIONS]},
    )
    assert answer.status_code == 200, answer.text


def test_batch_submissions_past_the_limit_are_422(client):
    answer = client.simulate_post("/jobs/batch", json={"jobs": [SLEEP] * (schemas.MAX_BATCH + 1)})
    assert "jobs" in assert_error(answer, 422)["errors"]
    assert count_jobs(client) == 0
