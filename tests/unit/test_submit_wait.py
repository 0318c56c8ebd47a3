"""``POST /jobs?wait=S``: submit and wait in one request (Falcon's TestClient, real SQLite)."""

from __future__ import annotations

import threading

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

SLEEP = {"type": "sleep", "payload": {"duration": 0}}


def _client(sqlite_url: str, **config) -> tuple[testing.TestClient, Scheduler]:
    store = open_store(sqlite_url)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig(**config))
    return testing.TestClient(create_app(scheduler.config, scheduler, default_plugins())), scheduler


@pytest.fixture
def client(sqlite_url: str):
    client, scheduler = _client(sqlite_url)
    yield client
    scheduler.notifier.close()
    scheduler.store.close()


def _in_thread(call) -> tuple[threading.Thread, list]:
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    return thread, answers


@pytest.mark.timeout(60)
def test_the_answer_comes_when_a_worker_completed_the_job(client):
    submitter, answers = _in_thread(
        lambda: client.simulate_post("/jobs", json=SLEEP, params={"wait": "30"})
    )
    # The job was committed before the wait: a worker leases it meanwhile.
    leased = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1, "wait": 30})
    [job] = leased.json["jobs"]
    assert submitter.is_alive()  # still waiting: the job is running
    done = client.simulate_post(
        "/lease",
        json={
            "worker_id": "w1",
            "max": 0,
            "completions": [
                {
                    "job_id": job["id"],
                    "lease_id": job["lease_id"],
                    "status": "succeeded",
                    "result": {"answer": 42},
                }
            ],
        },
    )
    assert done.json["completions"][0]["ok"]
    submitter.join(timeout=30)
    [answer] = answers
    assert answer.status_code == 201, answer.text  # created, even after waiting
    assert answer.headers["location"] == f"/jobs/{job['id']}"
    assert answer.json["status"] == "succeeded" and answer.json["result"] == {"answer": 42}
    assert "lease_id" not in answer.json


def test_after_the_wait_the_job_comes_as_it_is(client):
    answer = client.simulate_post("/jobs", json=SLEEP, params={"wait": "0.05"})
    assert answer.status_code == 201 and answer.json["status"] == "queued"
    assert "retry-after" not in answer.headers


def test_past_the_cap_the_answer_comes_at_once_with_retry_after(sqlite_url):
    client, scheduler = _client(sqlite_url, max_waiting=0)
    try:
        answer = client.simulate_post("/jobs", json=SLEEP, params={"wait": "30"})
        assert answer.status_code == 201 and answer.json["status"] == "queued"
        assert int(answer.headers["retry-after"]) >= 1
    finally:
        scheduler.store.close()


@pytest.mark.parametrize("wait", ["x", "-1", "61", "nan"])
def test_a_bad_wait_is_422_naming_it_and_nothing_is_written(client, wait):
    answer = client.simulate_post("/jobs", json=SLEEP, params={"wait": wait})
    assert answer.status_code == 422, answer.text
    assert "wait" in answer.json["errors"]
    assert client.simulate_get("/jobs").json["jobs"] == []


def test_other_query_parameters_are_still_ignored(client):
    assert client.simulate_post("/jobs", json=SLEEP, params={"pretty": "1"}).status_code == 201


def test_a_repeated_submission_of_a_finished_job_answers_it_at_once(client):
    keyed = {**SLEEP, "idempotency_key": "k1"}
    job = client.simulate_post("/jobs", json=keyed).json
    assert client.simulate_post(f"/jobs/{job['id']}/cancel").status_code == 200
    again = client.simulate_post("/jobs", json=keyed, params={"wait": "30"})
    assert again.status_code == 200 and again.json["status"] == "cancelled"


def test_the_openapi_document_names_the_wait(client):
    post = client.simulate_get("/openapi.json").json["paths"]["/jobs"]["post"]
    assert [p["name"] for p in post["parameters"]] == ["wait"]
