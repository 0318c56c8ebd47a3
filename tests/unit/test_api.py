"""The HTTP API through Falcon's TestClient, on a real SQLite file."""

from __future__ import annotations

import re

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

SLEEP = {"type": "sleep", "payload": {"duration": 0}}


@pytest.fixture
def scheduler(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    yield Scheduler(store, ServerConfig(max_body_bytes=4096))
    store.close()


@pytest.fixture
def client(scheduler: Scheduler) -> testing.TestClient:
    return testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))


def count_jobs(client: testing.TestClient) -> int:
    return len(client.simulate_get("/jobs").json["jobs"])


def lease(client: testing.TestClient, **extra) -> dict:
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json


def test_submit_returns_201_location_and_the_job(client):
    answer = client.simulate_post("/jobs", json={**SLEEP, "priority": 9, "max_attempts": 2})
    assert answer.status_code == 201
    job = answer.json
    assert answer.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["priority"] == 9 and job["max_attempts"] == 2
    assert job["timeout"] == 300  # the server default
    for field in ("run_at", "created_at"):
        assert job[field].endswith("Z")
    assert client.simulate_get(f"/jobs/{job['id']}").json == job


@pytest.mark.parametrize("extra", [{}, {"run_at": "2020-01-01T00:00:00Z"}])  # quick, full load
def test_timeout_has_one_representation_and_0_means_no_limit(client, extra):
    default = client.simulate_post("/jobs", json={**SLEEP, **extra})
    unlimited = client.simulate_post("/jobs", json={**SLEEP, **extra, "timeout": 0})
    assert unlimited.status_code == 201, unlimited.text
    for answer in (default, client.simulate_get(f"/jobs/{default.json['id']}")):
        assert type(answer.json["timeout"]) is float and answer.json["timeout"] == 300.0
    for answer in (unlimited, client.simulate_get(f"/jobs/{unlimited.json['id']}")):
        assert answer.json["timeout"] is None  # no limit, like --default-timeout 0
    job = lease(client, max=2)["jobs"]
    assert {j["id"]: j["timeout"] for j in job}[unlimited.json["id"]] is None


def test_the_payload_is_stored_as_its_schema_loads_it(client):
    answer = client.simulate_post("/jobs", json={"type": "sleep", "payload": {"duration": "5"}})
    assert answer.status_code == 201, answer.text
    assert answer.json["payload"] == {"duration": 5.0}
    stored = client.simulate_get(f"/jobs/{answer.json['id']}").json["payload"]
    assert type(stored["duration"]) is float


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "nope"}, "type"),
        ({"payload": {}}, "type"),
        ({"type": "sleep", "payload": {"duration": -1}}, "payload"),
        ({"type": "sleep", "payload": {"duration": 1, "extra": 1}}, "payload"),
        ({**SLEEP, "priority": 0}, "priority"),
        ({**SLEEP, "priority": 11}, "priority"),
        ({**SLEEP, "priority": "5"}, "priority"),
        ({**SLEEP, "max_attempts": 0}, "max_attempts"),
        ({**SLEEP, "timeout": -1}, "timeout"),
        ({**SLEEP, "delay": 5, "run_at": "2030-01-01T00:00:00Z"}, "run_at"),
        ({**SLEEP, "run_at": "tomorrow"}, "run_at"),
        ({**SLEEP, "priorty": 3}, "priorty"),
        ({"type": "http", "payload": {"url": "ftp://example.com/x"}}, "payload"),
    ],
)
def test_invalid_submissions_name_the_field_and_write_nothing(client, body, field):
    answer = client.simulate_post("/jobs", json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json["errors"]
    assert answer.json["title"] and answer.json["description"]
    assert count_jobs(client) == 0


def test_unknown_type_lists_the_installed_ones(client):
    answer = client.simulate_post("/jobs", json={"type": "nope", "payload": {}})
    message = answer.json["errors"]["type"][0]
    assert "file" in message and "http" in message and "sleep" in message


def test_malformed_json_is_400(client):
    answer = client.simulate_post(
        "/jobs", body="{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and "JSON" in answer.json["title"]
    assert count_jobs(client) == 0


def test_non_json_content_type_is_415(client):
    answer = client.simulate_post(
        "/jobs", body="type=sleep", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 415
    assert count_jobs(client) == 0


def test_oversized_body_is_413(client):
    body = {"type": "file", "payload": {"operation": "write", "path": "a", "content": "x" * 5000}}
    answer = client.simulate_post("/jobs", json=body)
    assert answer.status_code == 413
    assert count_jobs(client) == 0


def test_non_object_body_is_422_naming_the_body(client):
    for path in ("/jobs", "/jobs/batch", "/lease"):
        answer = client.simulate_post(path, json=[1, 2])
        assert answer.status_code == 422
        assert answer.json["errors"] == {"body": ["expected a JSON object"]}, path


def test_unknown_job_is_404_everywhere(client):
    for method, path in [
        ("GET", "/jobs/999"),
        ("GET", "/jobs/999/attempts"),
        ("POST", "/jobs/999/cancel"),
        ("POST", "/jobs/999/retry"),
        ("GET", "/jobs/abc"),
        ("GET", "/no-such-route"),
    ]:
        answer = client.simulate_request(method, path)
        assert answer.status_code == 404, path
        assert answer.json["title"] == "Not found", path
        assert answer.json["description"]
    stale = {"worker_id": "w", "lease_id": "x", "status": "succeeded"}
    assert client.simulate_post("/jobs/999/complete", json=stale).status_code == 404


def test_envelope_and_payload_errors_come_together(client):
    body = {"type": "sleep", "payload": {"duration": -1}, "priorty": 3}
    answer = client.simulate_post("/jobs", json=body)
    assert answer.status_code == 422
    assert set(answer.json["errors"]) == {"priorty", "payload"}
    unknown = client.simulate_post("/jobs", json={"type": "nope", "priority": 0})
    assert set(unknown.json["errors"]) == {"type", "priority"}
    assert count_jobs(client) == 0


def test_conflicts_say_what_state_the_job_is_in(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    retried = client.simulate_post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 409
    assert retried.json["description"] == (
        f"job {job_id} is queued; only a failed or cancelled job can be retried"
    )
    assert client.simulate_post(f"/jobs/{job_id}/cancel").status_code == 200
    again = client.simulate_post(f"/jobs/{job_id}/cancel")
    assert again.json["description"] == f"job {job_id} has already been cancelled"
    assert client.simulate_delete("/jobs").json["title"] == "Method not allowed"


def test_idempotency_key_in_body_or_header(client):
    first = client.simulate_post("/jobs", json={**SLEEP, "idempotency_key": "k1"})
    again = client.simulate_post("/jobs", json={**SLEEP, "idempotency_key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    header = client.simulate_post("/jobs", json=SLEEP, headers={"Idempotency-Key": "k1"})
    assert header.status_code == 200 and header.json["id"] == first.json["id"]
    different = client.simulate_post(
        "/jobs", json={"type": "sleep", "payload": {"duration": 1}, "idempotency_key": "k1"}
    )
    assert different.status_code == 409 and "k1" in different.json["description"]
    assert count_jobs(client) == 1


def test_priority_then_fifo_through_next_job(client):
    ids = {}
    for name, priority in [("low", 1), ("high1", 9), ("mid", 5), ("high2", 9)]:
        ids[client.simulate_post("/jobs", json={**SLEEP, "priority": priority}).json["id"]] = name
    order = []
    for _ in range(4):
        answer = client.simulate_post("/next-job", params={"worker_id": "w1", "types": "sleep"})
        assert answer.status_code == 200
        order.append(ids[answer.json["id"]])
    assert order == ["high1", "high2", "mid", "low"]
    assert client.simulate_post("/next-job", params={"worker_id": "w1"}).status_code == 204


def test_lease_only_requested_types(client):
    client.simulate_post("/jobs", json=SLEEP)
    assert lease(client, types=["http"])["jobs"] == []
    assert len(lease(client, types=["sleep"])["jobs"]) == 1


def test_delayed_job_is_not_leased_early(client):
    client.simulate_post("/jobs", json={**SLEEP, "delay": 60})
    assert lease(client, max=5)["jobs"] == []


def test_complete_heartbeat_and_stale_lease(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    job = lease(client)["jobs"][0]
    ref = {"worker_id": "w1", "lease_id": job["lease_id"]}
    beat = client.simulate_post(f"/jobs/{job_id}/heartbeat", json=ref)
    assert beat.status_code == 200 and beat.json["cancel_requested"] is False
    stale = {"worker_id": "w1", "lease_id": "not-the-lease"}
    assert client.simulate_post(f"/jobs/{job_id}/heartbeat", json=stale).status_code == 409
    bad = client.simulate_post(
        f"/jobs/{job_id}/complete", json={**stale, "status": "succeeded", "result": 1}
    )
    assert bad.status_code == 409
    assert client.simulate_get(f"/jobs/{job_id}").json["status"] == "running"
    done = client.simulate_post(
        f"/jobs/{job_id}/complete", json={**ref, "status": "succeeded", "result": {"ok": 1}}
    )
    assert done.status_code == 200 and done.json["result"] == {"ok": 1}
    # The same completion again (a lost response, re-sent) is accepted and changes nothing.
    again = client.simulate_post(f"/jobs/{job_id}/complete", json={**ref, "status": "failed"})
    assert again.status_code == 200 and again.json["status"] == "succeeded"
    attempts = client.simulate_get(f"/jobs/{job_id}/attempts").json["attempts"]
    assert [a["outcome"] for a in attempts] == ["succeeded"]


def test_completions_ride_on_the_lease_request(client):
    first = client.simulate_post("/jobs", json=SLEEP).json["id"]
    second = client.simulate_post("/jobs", json=SLEEP).json["id"]
    job = lease(client, types=["sleep"])["jobs"][0]
    assert job["id"] == first
    answer = lease(
        client,
        types=["sleep"],
        completions=[{"job_id": first, "lease_id": job["lease_id"], "status": "succeeded"}],
    )
    assert answer["completions"] == [{"job_id": first, "ok": True, "code": 200, "error": None}]
    assert [j["id"] for j in answer["jobs"]] == [second]
    assert client.simulate_get(f"/jobs/{first}").json["status"] == "succeeded"


def test_failed_attempt_is_retried_then_failed(client, scheduler):
    job_id = client.simulate_post("/jobs", json={**SLEEP, "max_attempts": 2}).json["id"]
    for attempt in (1, 2):
        with scheduler.store.transaction() as tx:  # skip the backoff wait
            tx.execute_script(f"UPDATE jobs SET run_at = 0 WHERE id = {int(job_id)}")
        scheduler.promote()  # as the housekeeper does when a job is due
        job = lease(client)["jobs"][0]
        assert job["attempts"] == attempt
        client.simulate_post(
            f"/jobs/{job_id}/complete",
            json={
                "worker_id": "w1",
                "lease_id": job["lease_id"],
                "status": "failed",
                "error": f"boom {attempt}",
            },
        )
    final = client.simulate_get(f"/jobs/{job_id}").json
    assert final["status"] == "failed" and final["error"] == "boom 2"
    retried = client.simulate_post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 200 and retried.json["status"] == "queued"


def test_not_retryable_fails_at_once(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    job = lease(client)["jobs"][0]
    answer = client.simulate_post(
        f"/jobs/{job_id}/complete",
        json={
            "worker_id": "w1",
            "lease_id": job["lease_id"],
            "status": "failed",
            "retryable": False,
            "error": "bad input",
        },
    )
    assert answer.json["status"] == "failed" and answer.json["attempts"] == 1


def test_cancel_queued_running_and_finished(client):
    queued = client.simulate_post("/jobs", json=SLEEP).json["id"]
    assert client.simulate_post(f"/jobs/{queued}/cancel").json["status"] == "cancelled"
    assert client.simulate_post(f"/jobs/{queued}/cancel").status_code == 409
    running = client.simulate_post("/jobs", json=SLEEP).json["id"]
    job = lease(client)["jobs"][0]
    answer = client.simulate_post(f"/jobs/{running}/cancel")
    assert answer.json["status"] == "running" and answer.json["cancel_requested"] is True
    beat = client.simulate_post(
        "/heartbeats",
        json={"worker_id": "w1", "leases": [{"job_id": running, "lease_id": job["lease_id"]}]},
    )
    assert beat.json["leases"] == [{"job_id": running, "ok": True, "cancel_requested": True}]


def test_release_gives_the_attempt_back(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    job = lease(client)["jobs"][0]
    answer = client.simulate_post(
        f"/jobs/{job_id}/release", json={"worker_id": "w1", "lease_id": job["lease_id"]}
    )
    assert answer.json["status"] == "queued" and answer.json["attempts"] == 0


def test_batch_submit_is_all_or_nothing(client):
    bad = client.simulate_post(
        "/jobs/batch", json={"jobs": [SLEEP, {"type": "sleep", "payload": {}}, SLEEP]}
    )
    assert bad.status_code == 422
    assert list(bad.json["errors"]["jobs"]) == ["1"]
    assert count_jobs(client) == 0
    good = client.simulate_post("/jobs/batch", json={"jobs": [SLEEP] * 3})
    assert good.status_code == 201 and good.json["created"] == 3
    assert [job["id"] for job in client.simulate_get("/jobs").json["jobs"]] == good.json["ids"][
        ::-1
    ]
    assert count_jobs(client) == 3


def test_list_filters_and_cursor(client):
    for _ in range(5):
        client.simulate_post("/jobs", json=SLEEP)
    client.simulate_post(
        "/jobs", json={"type": "file", "payload": {"operation": "read", "path": "x"}}
    )
    page = client.simulate_get("/jobs", params={"type": "sleep", "limit": 3}).json
    assert len(page["jobs"]) == 3 and page["next_cursor"]
    rest = client.simulate_get(
        "/jobs", params={"type": "sleep", "limit": 3, "cursor": page["next_cursor"]}
    ).json
    assert len(rest["jobs"]) == 2 and rest["next_cursor"] is None
    assert client.simulate_get("/jobs", params={"status": "nope"}).status_code == 422


def test_wait_returns_when_finished(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    assert client.simulate_post(f"/jobs/{job_id}/cancel").status_code == 200
    answer = client.simulate_get(f"/jobs/{job_id}", params={"wait": "30"})
    assert answer.json["status"] == "cancelled"
    assert client.simulate_get(f"/jobs/{job_id}", params={"wait": "x"}).status_code == 422


def test_job_types_health_and_openapi(client):
    types = {t["name"]: t for t in client.simulate_get("/job-types").json["job_types"]}
    assert {"sleep", "http", "file"} <= set(types)
    assert "duration" in types["sleep"]["payload_schema"]["properties"]
    health = client.simulate_get("/health")
    assert health.status_code == 200 and health.json["status"] == "ok"
    spec = client.simulate_get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert {"/jobs", "/lease", "/next-job", "/jobs/{job_id}/complete"} <= set(spec["paths"])


def test_reaping_leases_can_wait_out_a_grace_period(migrated_sqlite_url):
    now = [1000.0]
    store = open_store(migrated_sqlite_url)
    store.migrate()
    config = ServerConfig(lease_ttl=5, default_timeout=60)
    scheduler = Scheduler(store, config, clock=lambda: now[0])
    [(row, _)] = scheduler.submit(
        [{"type": "sleep", "payload": {}, "priority": 5, "max_attempts": 3}]
    )
    assert scheduler.lease("w1", ["sleep"], 1, 0)[0]["id"] == row["id"]
    now[0] += 10  # the lease expired, e.g. while no server ran
    assert scheduler.reap(expire_leases=False) == 0  # grace: the worker may still heartbeat
    assert scheduler.get(row["id"])["status"] == "running"
    now[0] += 100  # past the timeout: reaped even in the grace period
    assert scheduler.reap(expire_leases=False) == 1
    assert scheduler.get(row["id"])["status"] == "scheduled"  # waiting out its backoff
    store.close()


def test_a_lease_request_resent_after_a_lost_answer_gets_the_same_jobs(client):
    for _ in range(3):
        client.simulate_post("/jobs", json=SLEEP)
    first = lease(client, max=2, request_id="r1")["jobs"]
    again = lease(client, max=2, request_id="r1", resent=True)["jobs"]  # first answer lost
    assert [j["lease_id"] for j in again] == [j["lease_id"] for j in first]
    assert all(j["attempts"] == 1 for j in again)
    assert [j["id"] for j in lease(client, max=2, request_id="r2")["jobs"]] == [3]


def test_lease_ids_are_shown_only_in_the_lease_answer(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    [leased] = lease(client)["jobs"]
    assert len(leased["lease_id"]) == 32
    done = client.simulate_post(
        f"/jobs/{job_id}/complete",
        json={"worker_id": "w1", "lease_id": leased["lease_id"], "status": "succeeded"},
    )
    assert done.status_code == 200 and "lease_id" not in done.json
    assert "lease_id" not in client.simulate_get(f"/jobs/{job_id}").json
    assert "lease_id" not in client.simulate_get("/jobs").json["jobs"][0]
    assert "lease_id" not in client.simulate_get("/jobs?full=true").json["jobs"][0]
    [attempt] = client.simulate_get(f"/jobs/{job_id}/attempts").json["attempts"]
    assert attempt["outcome"] == "succeeded" and "lease_id" not in attempt


def test_listings_are_summaries_unless_full(client):
    job_id = client.simulate_post("/jobs", json={**SLEEP, "payload": {"duration": 1}}).json["id"]
    [summary] = client.simulate_get("/jobs").json["jobs"]
    assert summary["id"] == job_id and "payload" not in summary and "result" not in summary
    [full] = client.simulate_get("/jobs?full=true").json["jobs"]
    assert full["payload"] == {"duration": 1} and full["result"] is None


def test_a_delayed_job_shows_scheduled_and_can_be_cancelled(client):
    job = client.simulate_post("/jobs", json={**SLEEP, "delay": 3600}).json
    assert job["status"] == "scheduled"
    assert client.simulate_get("/jobs?status=scheduled").json["jobs"][0]["id"] == job["id"]
    cancelled = client.simulate_post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"


def test_waits_past_the_cap_answer_at_once_with_retry_after(migrated_sqlite_url):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig(max_waiting=0))
    client = testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
    try:
        job_id = client.simulate_post("/jobs", json={**SLEEP, "delay": 3600}).json["id"]
        answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1, "wait": 30})
        assert answer.json["jobs"] == [] and answer.json["retry_after"] >= 1
        waited = client.simulate_get(f"/jobs/{job_id}?wait=30")
        assert waited.json["status"] == "scheduled" and int(waited.headers["retry-after"]) >= 1
        idle = client.simulate_post("/next-job?worker_id=w1&wait=30")
        assert idle.status_code == 204 and int(idle.headers["retry-after"]) >= 1
    finally:
        store.close()


def test_the_largest_file_content_fits_the_default_body_limit(migrated_sqlite_url):
    """The file executor's content limit agrees with the default --max-body (not 10 MiB)."""
    from taskframe.plugins import file

    store = open_store(migrated_sqlite_url)
    store.migrate()
    try:
        scheduler = Scheduler(store, ServerConfig())  # the defaults, as taskframe-server's
        client = testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
        content = '"\n' * (file.MAX_CONTENT // 2)  # every byte doubled by JSON escaping
        payload = {"operation": "write", "path": "big.txt", "content": content}
        answer = client.simulate_post("/jobs", json={"type": "file", "payload": payload})
        assert answer.status_code == 201, answer.text[:200]
        payload["content"] += "x"
        answer = client.simulate_post("/jobs", json={"type": "file", "payload": payload})
        assert answer.status_code == 422 and "content" in answer.json["errors"]["payload"]
    finally:
        store.close()


def test_the_openapi_document_covers_every_route_and_query_parameter(client):
    """The document and the app cannot drift apart: same routes, the query schemas, all fields."""
    from falcon.inspect import inspect_routes

    from taskframe.core import schemas

    spec = client.simulate_get("/openapi.json").json
    served = {
        (re.sub(r"\{job_id[^}]*\}", "{job_id}", route.path), method.method.lower())
        for route in inspect_routes(client.app)
        for method in route.methods
        if not method.internal and method.method not in ("OPTIONS",)
    }
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    # The document itself, the Prometheus text, the dashboard's and the API explorer's pages.
    undocumented_on_purpose = {
        ("/openapi.json", "get"),
        ("/metrics", "get"),
        ("/", "get"),
        ("/dashboard/{name}", "get"),
        ("/docs", "get"),
        ("/docs/{name}", "get"),
    }
    assert served - undocumented_on_purpose == documented
    for (path, method), query in {
        ("/jobs", "get"): schemas.ListJobsQuerySchema,
        ("/jobs/{job_id}", "get"): schemas.WaitQuerySchema,
        ("/next-job", "post"): schemas.NextJobQuerySchema,
    }.items():
        parameters = spec["paths"][path][method]["parameters"]
        in_query = {p["name"] for p in parameters if p["in"] == "query"}
        assert in_query == set(query().fields), path
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    leased = lease(client)["jobs"][0]
    assert leased["id"] == job_id
    assert set(leased) == set(spec["components"]["schemas"]["Job"]["properties"])  # lease_*
