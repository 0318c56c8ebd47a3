"""Bad input against a real server over HTTP: a clear 4xx, never a 500, nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import Server, get_job, submit, wait_for_job
from tests.stub_http import QuietHandler, serve

MAX_BODY = 2048
SLEEP = {"type": "sleep", "payload": {"duration": 1}}
JSON = {"Content-Type": "application/json"}
HUGE_ID = 2**70  # a syntactically valid id that no database integer can hold


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: none of these requests may write anything."""
    folder = tmp_path_factory.mktemp("bad-input")
    started = Server(
        str(folder / "taskframe.db"), folder / "server.log", "--max-body", str(MAX_BODY)
    )
    try:
        yield started.wait_ready()
    finally:
        started.stop()


@pytest.fixture
def url(server: Server) -> Iterator[str]:
    yield server.url
    assert_no_job_written(server.url)


def assert_no_job_written(url: str) -> None:
    answer = requests.get(f"{url}/jobs", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["jobs"] == []


def assert_error(answer: requests.Response, status: int) -> dict:
    """The status, and the one error shape: a JSON object with title and description."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("description"), str) and body["description"], body
    if "errors" in body:
        assert isinstance(body["errors"], dict) and body["errors"], body
    return body


def post_json(url: str, path: str, document) -> requests.Response:
    return requests.post(f"{url}{path}", json=document, timeout=30)


# -- the body itself -----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "sleep", "payload": {"duration": 1}',
        b'{"type": "sleep"} trailing',
        b"{'type': 'sleep'}",
        b"",
        b'{"type": "sleep", "payload": {"duration": 1}, "note": "\xff\xfe"}',
    ],
    ids=["truncated", "trailing-garbage", "single-quotes", "empty", "invalid-utf8"],
)
def test_malformed_json_is_400(url, body):
    assert_error(requests.post(f"{url}/jobs", data=body, headers=JSON, timeout=30), 400)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "application/jsonp", None],
)
def test_non_json_content_type_is_415(url, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps(SLEEP).encode()
    answer = requests.post(f"{url}/jobs", data=body, headers=headers, timeout=30)
    assert_error(answer, 415)


@pytest.mark.timeout(60)
def test_json_with_parameters_in_the_content_type_is_accepted(tmp_path, start_server):
    # The positive control for the 415s (on its own server: this one writes a job).
    server = start_server(str(tmp_path / "ok.db"))
    answer = requests.post(
        f"{server.url}/jobs",
        data=json.dumps(SLEEP),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.timeout(60)
def test_body_over_the_limit_is_413(url):
    big = {**SLEEP, "idempotency_key": "k" * 100, "payload": {"duration": 1, "x": "y" * MAX_BODY}}
    assert_error(post_json(url, "/jobs", big), 413)

    def chunks():  # no Content-Length: the limit holds while reading, too
        yield b'{"type": "sleep", "payload": {"duration": 1}, "pad": "'
        for _ in range(MAX_BODY // 256 + 1):
            yield b"p" * 256
        yield b'"}'

    answer = requests.post(f"{url}/jobs", data=chunks(), headers=JSON, timeout=30)
    assert_error(answer, 413)

    # Batches may be 16 times larger, and no larger.
    jobs = [{"type": "sleep", "payload": {"duration": 1}}] * (16 * MAX_BODY // 40)
    assert len(json.dumps({"jobs": jobs})) > 16 * MAX_BODY
    assert_error(post_json(url, "/jobs/batch", {"jobs": jobs}), 413)


# -- the envelope and the payload ------------------------------------------------------


@pytest.mark.timeout(60)
def test_unknown_job_type_is_422_listing_the_installed_types(url):
    body = assert_error(post_json(url, "/jobs", {"type": "resize", "payload": {}}), 422)
    [message] = body["errors"]["type"]
    assert "resize" in message
    for installed in ("sleep", "http", "file"):
        assert installed in message


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("job_type", "payload", "field"),
    [
        ("sleep", {"duration": -1}, "duration"),
        ("sleep", {}, "duration"),
        ("sleep", {"duration": "soon"}, "duration"),
        ("sleep", {"duration": 1, "extra": True}, "extra"),
        ("http", {"url": "ftp://example.com/file"}, "url"),
        ("http", {"url": "http://127.0.0.1/", "method": "BREW"}, "method"),
        ("file", {"operation": "explode", "path": "a.txt"}, "operation"),
        ("file", {"operation": "write", "path": "a.txt"}, "content"),
        ("file", {"operation": "copy", "path": "a.txt"}, "destination"),
    ],
)
def test_invalid_payload_is_422_naming_the_field(url, job_type, payload, field):
    body = assert_error(post_json(url, "/jobs", {"type": job_type, "payload": payload}), 422)
    assert field in body["errors"]["payload"], body
    assert body["errors"]["payload"][field], body


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"priority": 0}, "priority"),
        ({"priority": 11}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"priority": 5.5}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
        ({"delay": -5}, "delay"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),  # no time zone
        ({"priorty": 3}, "priorty"),  # an unknown envelope field
        ({"payload": [1, 2]}, "payload"),
    ],
)
def test_invalid_envelope_is_422_naming_the_field(url, extra, field):
    body = assert_error(post_json(url, "/jobs", {**SLEEP, **extra}), 422)
    assert field in body["errors"], body
    assert field in body["description"], body


@pytest.mark.timeout(60)
def test_missing_type_and_non_object_bodies_are_422(url):
    body = assert_error(post_json(url, "/jobs", {"payload": {"duration": 1}}), 422)
    assert "type" in body["errors"]
    assert_error(post_json(url, "/jobs", [SLEEP]), 422)
    assert_error(post_json(url, "/jobs", "sleep"), 422)


@pytest.mark.timeout(60)
def test_a_batch_with_one_bad_job_writes_none(url):
    jobs = [SLEEP, {"type": "sleep", "payload": {"duration": -1}}, SLEEP]
    body = assert_error(post_json(url, "/jobs/batch", {"jobs": jobs}), 422)
    assert list(body["errors"]["jobs"]) == ["1"], body


# -- text that cannot be encoded, nesting, numbers, batch sizes -------------------------

S = "\ud800"  # a lone surrogate; requests' json= writes it as the escape "\ud800"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("path", "document", "field"),
    [
        ("/jobs", {**SLEEP, "idempotency_key": "key" + S}, "idempotency_key"),
        ("/jobs", {"type": "http", "payload": {"url": "http://x/", "json": [S]}}, "payload"),
        ("/jobs/batch", {"jobs": [SLEEP, {**SLEEP, "idempotency_key": S}]}, "jobs"),
        ("/lease", {"worker_id": "w" + S, "max": 1}, "worker_id"),
        ("/heartbeats", {"worker_id": "w", "leases": [{"job_id": 1, "lease_id": S}]}, "leases"),
    ],
)
def test_text_that_cannot_be_encoded_is_422_and_nothing_is_written(url, path, document, field):
    """Bug: stored, such a job made its own submission, GET /jobs and every lease
    answer 500 (UnicodeEncodeError) for as long as it was kept."""
    body = assert_error(post_json(url, path, document), 422)
    assert field in body["errors"], body


@pytest.mark.timeout(60)
def test_raw_surrogate_bytes_and_a_surrogate_key_header_are_422(url):
    raw = b'{"type": "sleep", "payload": {"duration": 1}, "idempotency_key": "\xed\xa0\x80"}'
    answer = requests.post(f"{url}/jobs", data=raw, headers=JSON, timeout=30)
    assert "idempotency_key" in assert_error(answer, 422)["errors"]
    answer = requests.post(
        f"{url}/jobs", json=SLEEP, headers={"Idempotency-Key": "k" * 201}, timeout=30
    )
    assert "Idempotency-Key" in assert_error(answer, 422)["errors"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch", "/lease", "/heartbeats"])
def test_deep_nesting_is_400_not_500(url, path):
    """Bug: 100,000 nested arrays raised RecursionError (500); here as deep as fits."""
    limit = MAX_BODY if path == "/jobs" else 16 * MAX_BODY
    for depth in (limit // 2, 65):
        body = b"[" * depth + b"]" * depth
        answer = requests.post(f"{url}{path}", data=body, headers=JSON, timeout=30)
        assert "64" in assert_error(answer, 400)["description"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_400_naming_them(url, number):
    """Bug: accepted inside an http job's json and echoed back, which is not JSON."""
    body = '{"type": "http", "payload": {"url": "http://x/", "json": ' + number + "}}"
    answer = requests.post(f"{url}/jobs", data=body, headers=JSON, timeout=30)
    assert number in assert_error(answer, 400)["description"]


@pytest.mark.timeout(60)
def test_heartbeats_and_completions_past_the_limit_are_422(tmp_path, start_server):
    """Bug: 250,000 heartbeats or 200,000 completions held the write lock for seconds."""
    url = start_server(str(tmp_path / "limits.db")).url  # bodies larger than MAX_BODY
    leases = [{"job_id": i + 1, "lease_id": "x"} for i in range(1001)]
    answer = post_json(url, "/heartbeats", {"worker_id": "w", "leases": leases})
    assert "leases" in assert_error(answer, 422)["errors"]
    completions = [{**lease, "status": "succeeded"} for lease in leases]
    answer = post_json(url, "/lease", {"worker_id": "w", "max": 0, "completions": completions})
    assert "completions" in assert_error(answer, 422)["errors"]


# -- unknown jobs and paths ------------------------------------------------------------

LEASE_REF = {"worker_id": "w1", "lease_id": "no-such-lease"}
UNKNOWN_JOB_REQUESTS = [
    ("GET", "/jobs/{id}", None),
    ("GET", "/jobs/{id}/attempts", None),
    ("POST", "/jobs/{id}/cancel", None),
    ("POST", "/jobs/{id}/retry", None),
    ("POST", "/jobs/{id}/complete", {**LEASE_REF, "status": "succeeded"}),
    ("POST", "/jobs/{id}/heartbeat", LEASE_REF),
    ("POST", "/jobs/{id}/release", LEASE_REF),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("method", "path", "body"), UNKNOWN_JOB_REQUESTS)
def test_unknown_job_is_404(url, method, path, body):
    answer = requests.request(method, url + path.format(id=424242), json=body, timeout=30)
    error = assert_error(answer, 404)
    assert "424242" in error["description"]


@pytest.mark.timeout(60)
def test_job_id_too_large_for_the_database_is_404_not_500(url):
    """Bug: on SQLite an id past 2**63-1 raises OverflowError in the driver (500)."""
    answers = {
        f"{method} {path}": requests.request(
            method, url + path.format(id=HUGE_ID), json=body, timeout=30
        )
        for method, path, body in UNKNOWN_JOB_REQUESTS
    }
    wrong = {request: a.status_code for request, a in answers.items() if a.status_code != 404}
    assert wrong == {}, f"expected 404 for job {HUGE_ID}"
    for answer in answers.values():
        assert_error(answer, 404)


@pytest.mark.timeout(60)
def test_cursor_or_completion_id_too_large_is_a_4xx_not_500(url):
    """Bug: the same overflow through ``GET /jobs?cursor=`` and a batched completion."""
    answer = requests.get(f"{url}/jobs", params={"cursor": HUGE_ID}, timeout=30)
    assert answer.status_code in (200, 422), answer.text
    completion = {"job_id": HUGE_ID, "lease_id": "x", "status": "succeeded"}
    answer = post_json(url, "/lease", {"worker_id": "w1", "max": 0, "completions": [completion]})
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        [outcome] = answer.json()["completions"]
        assert outcome["ok"] is False and outcome["code"] == 404, outcome


@pytest.mark.timeout(60)
def test_unknown_path_is_a_json_404(url):
    answer = requests.get(f"{url}/no/such/path", timeout=30)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["title"]
    answer = requests.get(f"{url}/jobs/not-a-number", timeout=30)
    assert answer.status_code == 404 and answer.json()["title"]


@pytest.mark.timeout(60)
def test_routing_errors_use_the_documented_error_shape(url):
    """Bug (minor): Falcon's own 404/405 bodies have a title but no description."""
    assert_error(requests.get(f"{url}/no/such/path", timeout=30), 404)
    assert_error(requests.put(f"{url}/jobs", json=SLEEP, timeout=30), 405)


@pytest.mark.timeout(60)
def test_bad_query_strings_are_422(url):
    for path, params, field in [
        ("/jobs", {"limit": "many"}, "limit"),
        ("/jobs", {"limit": 0}, "limit"),
        ("/jobs", {"status": "sleeping"}, "status"),
        ("/jobs/1", {"wait": -1}, "wait"),
        ("/next-job", {}, "worker_id"),
        ("/next-job", {"worker_id": "w", "wait": 3600}, "wait"),
    ]:
        call = requests.post if path == "/next-job" else requests.get
        body = assert_error(call(url + path, params=params, timeout=30), 422)
        assert field in body["errors"], (path, params, body)


@pytest.mark.timeout(60)
def test_nothing_was_written(server):
    assert_no_job_written(server.url)
    assert requests.get(f"{server.url}/health", timeout=30).status_code == 200


# -- values that pass validation but break the server afterwards ------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "run_at",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc"],
)
def test_run_at_outside_the_representable_range_is_422(start_server, tmp_path, run_at):
    """Bug: the job is written, then rendering its run_at fails (500), and from then on
    every GET /jobs answers 500 too (and a worker leasing it gets a 500)."""
    server = start_server(str(tmp_path / "dates.db"))
    answer = post_json(server.url, "/jobs", {**SLEEP, "run_at": run_at})
    listing = requests.get(f"{server.url}/jobs", timeout=30)
    assert listing.status_code == 200, f"GET /jobs after the submission: {listing.text}"
    body = assert_error(answer, 422)
    assert "run_at" in body["errors"]
    assert listing.json()["jobs"] == []


# -- NUL characters (PostgreSQL text cannot hold them) ----------------------------------


@pytest.mark.timeout(60)
def test_nul_characters_are_refused_or_stored_never_a_500(db_url, start_server):
    """Bug on PostgreSQL: a NUL in a text column raises psycopg.DataError (500)."""
    server = start_server(db_url, *SERVER_ARGS)
    answer = post_json(server.url, "/jobs", {**SLEEP, "idempotency_key": "key\x00nul"})
    assert answer.status_code in (201, 422), answer.text

    answer = requests.post(
        f"{server.url}/next-job", params={"worker_id": "worker\x00nul"}, timeout=30
    )
    assert answer.status_code in (200, 204, 422), answer.text

    job = submit(server.url, "sleep", {"duration": 1})
    leased = requests.post(f"{server.url}/next-job", params={"worker_id": "w1"}, timeout=30)
    assert leased.status_code == 200, leased.text
    lease_id = leased.json()["lease_id"]
    assert leased.json()["id"] == job["id"]
    answer = post_json(
        server.url,
        f"/jobs/{job['id']}/complete",
        {
            "worker_id": "w1",
            "lease_id": lease_id,
            "status": "failed",
            "error": "the remote said bad\x00thing",
            "retryable": False,
        },
    )
    assert answer.status_code in (200, 422), answer.text


class _NulErrorHandler(QuietHandler):
    """Answers every GET with a 500 whose body holds a NUL byte."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.reply(500, b"broken\x00backend", {"Content-Type": "text/plain; charset=utf-8"})


@pytest.fixture
def nul_error_url() -> Iterator[str]:
    with serve(_NulErrorHandler) as url:
        yield f"{url}/"


@pytest.mark.timeout(120)
def test_remote_error_with_a_nul_byte_is_recorded_and_the_worker_carries_on(
    db_url, start_server, start_worker, nul_error_url, tmp_path: Path
):
    """Bug on PostgreSQL: the worker's error text (quoting the remote body) holds a NUL;
    recording it fails with a 500 that rejects the worker's whole POST /lease. The
    attempts end as lease_expired instead of failed with the real error, and the worker
    leases nothing else while the outcome is stuck."""
    server = start_server(db_url, *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS, "--concurrency", "1")
    job = submit(server.url, "http", {"url": nul_error_url, "timeout": 5}, max_attempts=2)

    done = wait_for_job(server.url, job["id"], timeout=60)
    assert done["status"] == "failed", done
    assert "HTTP 500" in (done["error"] or ""), done
    assert done["attempts"] == 2
    follow_up = submit(server.url, "sleep", {"duration": 0})
    assert wait_for_job(server.url, follow_up["id"], timeout=30)["status"] == "succeeded"
    assert get_job(server.url, job["id"]) == done
