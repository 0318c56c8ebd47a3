"""The server's side of delivering leases: wake-ups by type and queue, answers for a
client that hung up, what a lease answer tells the worker, resent completions."""

from __future__ import annotations

import threading
import time

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.notify import ChangeNotifier
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.storage import open_store
from tests.api_server import default_plugins
from tests.unit.test_scheduler import LaterClock

SLEEP = {"type": "sleep", "payload": {"duration": 0}}


@pytest.fixture
def clock() -> LaterClock:
    return LaterClock()


@pytest.fixture
def scheduler(migrated_sqlite_url: str, clock: LaterClock):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    yield Scheduler(store, ServerConfig(lease_ttl=30, max_result_bytes=5000), clock=clock)
    store.close()


@pytest.fixture
def client(scheduler: Scheduler) -> testing.TestClient:
    return testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))


def waiter(notifier: ChangeNotifier, types, queues=None, gone=None, timeout=5.0):
    """A thread waiting for work; ``result["woken"]`` once it returns."""
    result: dict = {}

    def wait() -> None:
        with notifier.waiting_for_work(types, queues, gone) as waiting:
            result["woken"] = waiting.wait(timeout)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, result


def asleep(notifier: ChangeNotifier, count: int) -> None:
    deadline = time.monotonic() + 5
    while notifier.lease_waiters() < count:
        assert time.monotonic() < deadline, "the waiters did not start waiting"
        time.sleep(0.005)


# -- wake-ups (issue 18.5) ------------------------------------------------------------


def test_a_job_in_a_queue_wakes_a_waiter_of_that_queue_not_an_older_one_of_another():
    notifier = ChangeNotifier()
    b_thread, b = waiter(notifier, ["sleep"], ["b"])  # older: first in line before
    asleep(notifier, 1)
    a_thread, a = waiter(notifier, ["sleep"], ["a"])
    asleep(notifier, 2)
    notifier.work_ready({("sleep", "a"): 1})
    a_thread.join(2)
    assert a.get("woken") is True
    assert "woken" not in b and notifier.lease_waiters() == 1
    notifier.work_ready({("sleep", None): 1})  # a queue not known: any waiter of the type
    b_thread.join(2)
    assert b.get("woken") is True


def test_a_waiter_serving_every_queue_is_woken_for_any_queue():
    notifier = ChangeNotifier()
    thread, every = waiter(notifier, ["sleep"], None)
    asleep(notifier, 1)
    notifier.work_ready({("sleep", "anything"): 1})
    thread.join(2)
    assert every.get("woken") is True


# -- clients that hung up (issues 18.3 and 24.2) ----------------------------------------


def test_a_wake_up_skips_a_waiter_whose_client_has_gone():
    notifier = ChangeNotifier()
    hung_up = threading.Event()
    dead_thread, dead = waiter(notifier, ["sleep"], gone=hung_up.is_set, timeout=30)
    asleep(notifier, 1)
    live_thread, live = waiter(notifier, ["sleep"])
    asleep(notifier, 2)
    hung_up.set()
    notifier.work_ready({("sleep", "default"): 1})
    live_thread.join(2)
    dead_thread.join(2)
    assert live.get("woken") is True, "the wake-up went to a client that had gone"
    assert dead.get("woken") is False


def test_a_waiter_whose_client_goes_stops_waiting_soon(scheduler):
    hung_up = threading.Event()
    result: dict = {}

    def poll() -> None:
        started = time.monotonic()
        result["jobs"] = scheduler.lease("w1", ["sleep"], 1, 30, gone=hung_up.is_set)
        result["took"] = time.monotonic() - started

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    asleep(scheduler.notifier, 1)
    hung_up.set()
    thread.join(5)
    assert result["jobs"] == [] and result["took"] < 5


def test_a_lease_answer_for_a_client_that_hung_up_is_released_uncharged(client, scheduler):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    # waitress's check: the client hangs up once the job is leased (before the answer).
    gone = lambda: scheduler.get(job_id)["status"] == "running"  # noqa: E731
    answer = client.simulate_post(
        "/lease",
        json={"worker_id": "w1", "max": 1},
        extras={"waitress.client_disconnected": gone},
    )
    assert answer.status_code == 200 and answer.json["jobs"] == []
    job = client.simulate_get(f"/jobs/{job_id}").json
    assert job["status"] == "queued" and job["attempts"] == 0
    history = client.simulate_get(f"/jobs/{job_id}/attempts").json["attempts"]
    assert [a["outcome"] for a in history] == ["released"]
    again = client.simulate_post("/lease", json={"worker_id": "w2", "max": 1}).json["jobs"]
    assert [j["id"] for j in again] == [job_id] and again[0]["attempts"] == 1


def test_a_client_gone_before_the_lease_gets_nothing(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    for path in ("/lease", "/next-job?worker_id=w1"):
        extras = {"waitress.client_disconnected": lambda: True}
        if path == "/lease":
            answer = client.simulate_post(path, json={"worker_id": "w1", "max": 1}, extras=extras)
        else:
            answer = client.simulate_post(path, extras=extras)
        assert answer.status_code in (200, 204)
    assert client.simulate_get(f"/jobs/{job_id}").json["attempts"] == 0


def test_without_the_waitress_check_leasing_works_as_before(client):
    job_id = client.simulate_post("/jobs", json=SLEEP).json["id"]
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1})
    assert [j["id"] for j in answer.json["jobs"]] == [job_id]


# -- what a lease answer tells (issues 24.1 and 18.4) ------------------------------------


def test_a_lease_answer_says_how_long_each_lease_lasts_and_what_the_server_takes(client):
    client.simulate_post("/jobs", json=SLEEP)
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1}).json
    [job] = answer["jobs"]
    assert 29 <= job["expires_in"] <= 30
    assert 0 <= answer["answered_after"] < 5
    assert answer["max_result"] == 5000
    assert answer["max_body"] == 16 << 20  # the /lease body limit (16 × --max-body)


# -- resent completions (issue 24.3) -------------------------------------------------


def test_a_resend_of_an_outcome_recorded_before_the_job_moved_on_is_already_recorded(
    client, scheduler, clock
):
    """The first report was recorded (a retryable failure) but its answer was lost;
    the job was leased again meanwhile. Before: the resend got 409 "stale lease"."""
    job_id = client.simulate_post("/jobs", json={**SLEEP, "max_attempts": 3}).json["id"]
    first = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1}).json["jobs"][0]
    report = {
        "job_id": job_id,
        "lease_id": first["lease_id"],
        "status": "failed",
        "error": "boom",
        "retryable": True,
    }
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "completions": [report]})
    assert answer.json["completions"][0]["ok"] is True
    assert "already_recorded" not in answer.json["completions"][0]
    clock.offset = 3600  # past the retry's backoff
    scheduler.promote()
    second = client.simulate_post("/lease", json={"worker_id": "w2", "max": 1}).json["jobs"]
    assert [j["id"] for j in second] == [job_id]
    before = client.simulate_get(f"/jobs/{job_id}").json
    again = client.simulate_post("/lease", json={"worker_id": "w1", "completions": [report]})
    [outcome] = again.json["completions"]
    assert outcome == {
        "job_id": job_id,
        "ok": True,
        "code": 200,
        "error": None,
        "already_recorded": True,
    }
    assert client.simulate_get(f"/jobs/{job_id}").json == before
    single = {k: v for k, v in report.items() if k != "job_id"}
    alone = client.simulate_post(f"/jobs/{job_id}/complete", json={**single, "worker_id": "w1"})
    assert alone.status_code == 200, alone.text
    # Someone else with that lease id, or a report of an attempt that was reaped: stale.
    intruder = {**single, "worker_id": "w3"}
    refused = client.simulate_post(f"/jobs/{job_id}/complete", json=intruder)
    assert refused.status_code == 409


def test_a_late_report_of_a_reaped_attempt_is_still_stale(client, scheduler, clock):
    job_id = client.simulate_post("/jobs", json={**SLEEP, "max_attempts": 3}).json["id"]
    first = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1}).json["jobs"][0]
    clock.offset = 3600
    assert scheduler.reap() == 1
    report = {"job_id": job_id, "lease_id": first["lease_id"], "status": "succeeded"}
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "completions": [report]})
    [outcome] = answer.json["completions"]
    assert outcome["ok"] is False and outcome["code"] == 409
    assert "already_recorded" not in outcome


def test_a_resent_success_does_not_count_a_dependency_twice(client):
    """A dependant of two jobs: a resend of the first's success counted it done again,
    and the dependant became ready while the second had not run."""
    first, second = (client.simulate_post("/jobs", json=SLEEP).json["id"] for _ in range(2))
    after_both = client.simulate_post("/jobs", json={**SLEEP, "depends_on": [first, second]}).json[
        "id"
    ]
    leased = client.simulate_post("/lease", json={"worker_id": "w1", "max": 1}).json["jobs"]
    assert [j["id"] for j in leased] == [first]
    report = {"job_id": first, "lease_id": leased[0]["lease_id"], "status": "succeeded"}
    for _ in range(2):  # the report, then the same report re-sent
        client.simulate_post("/lease", json={"worker_id": "w1", "completions": [report]})
        assert client.simulate_get(f"/jobs/{after_both}").json["status"] == "waiting"
