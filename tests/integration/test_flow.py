"""Queues, dependencies and concurrency limits (issue 13), with real processes on both backends."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import get_job, submit, wait_for_job, wait_until


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def batch(url: str, jobs: list[dict]) -> list[int]:
    answer = requests.post(f"{url}/jobs/batch", json={"jobs": jobs}, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()["ids"]


def lease(url: str, worker: str = "probe", **fields) -> list[dict]:
    body = {"worker_id": worker, "max": 10, **fields}
    answer = requests.post(f"{url}/lease", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobs"]


def complete(url: str, job: dict, status: str = "succeeded", result=None) -> None:
    body = {"worker_id": job["worker_id"], "lease_id": job["lease_id"], "status": status}
    answer = requests.post(
        f"{url}/jobs/{job['id']}/complete", json={**body, "result": result}, timeout=30
    )
    assert answer.status_code == 200, answer.text


def sleep_job(duration: float, **fields) -> dict:
    return {"type": "sleep", "payload": {"duration": duration}, **fields}


# -- dependencies ----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_chain_runs_in_order_and_a_failed_middle_job_cancels_the_last(
    db_url, start_server, start_worker
):
    server = start_server(db_url, *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS, "--concurrency", "4")
    # A chain submitted atomically: each job names the one before it in the batch.
    first, second, third = batch(
        server.url,
        [sleep_job(0.3), sleep_job(0.3, depends_on=["$0"]), sleep_job(0.1, depends_on=["$1"])],
    )
    jobs = [wait_for_job(server.url, i) for i in (first, second, third)]
    assert [job["status"] for job in jobs] == ["succeeded"] * 3
    assert jobs[2]["depends_on"] == [second]
    for before, after in zip(jobs, jobs[1:], strict=False):
        assert parse_time(after["started_at"]) >= parse_time(before["finished_at"])

    # The middle job fails (its one attempt times out): the last one is cancelled.
    ok, bad, last = batch(
        server.url,
        [
            sleep_job(0.1),
            sleep_job(30, depends_on=["$0"], timeout=0.3, max_attempts=1),
            sleep_job(0.1, depends_on=["$1"]),
        ],
    )
    # Fan-in: runs once both finished, whatever their outcome.
    anyway = submit(
        server.url, "sleep", {"duration": 0}, depends_on=[ok, bad], on_dependency_failure="run"
    )
    assert anyway["status"] == "waiting"
    assert wait_for_job(server.url, ok)["status"] == "succeeded"
    assert wait_for_job(server.url, bad)["status"] == "failed"
    cancelled = wait_for_job(server.url, last)
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == f"dependency {bad} failed"
    assert cancelled["started_at"] is None  # never ran
    assert wait_for_job(server.url, anyway["id"])["status"] == "succeeded"
    # A job submitted after its dependency failed is cancelled at once.
    late = submit(server.url, "sleep", {"duration": 0}, depends_on=[bad])
    assert late["status"] == "cancelled" and late["error"] == f"dependency {bad} failed"


@pytest.mark.timeout(60)
def test_dependants_wait_and_read_their_dependencies_results(db_url, start_server):
    server = start_server(db_url, *SERVER_ARGS)
    a, b = batch(server.url, [sleep_job(0), sleep_job(0)])
    fan_in = submit(server.url, "sleep", {"duration": 0}, depends_on=[a, b])
    assert fan_in["status"] == "waiting" and fan_in["depends_on"] == [a, b]
    leased = {job["id"]: job for job in lease(server.url)}
    assert set(leased) == {a, b}  # the waiting job is not leased
    assert leased[a]["dependencies"] == {}
    complete(server.url, leased[a], result={"rows": 3})
    assert get_job(server.url, fan_in["id"])["status"] == "waiting"
    complete(server.url, leased[b], result=[1, 2])
    assert get_job(server.url, fan_in["id"])["status"] == "queued"
    [job] = lease(server.url)
    assert job["id"] == fan_in["id"]
    assert job["dependencies"] == {str(a): {"rows": 3}, str(b): [1, 2]}

    # Cancelling a waiting job cancels its own dependants.
    root = submit(server.url, "sleep", {"duration": 0}, delay=3600)
    child = submit(server.url, "sleep", {"duration": 0}, depends_on=[root["id"]])
    grandchild = submit(server.url, "sleep", {"duration": 0}, depends_on=[child["id"]])
    answer = requests.post(f"{server.url}/jobs/{child['id']}/cancel", timeout=30)
    assert answer.json()["status"] == "cancelled"
    assert get_job(server.url, grandchild["id"])["error"] == f"dependency {child['id']} cancelled"
    assert get_job(server.url, root["id"])["status"] == "scheduled"


@pytest.mark.timeout(60)
def test_bad_dependencies_are_422_naming_the_field(db_url, start_server):
    server = start_server(db_url)
    cases = [
        ("/jobs", sleep_job(0, depends_on=[999999])),
        ("/jobs", sleep_job(0, depends_on=["$0"])),
        ("/jobs", sleep_job(0, depends_on=["x"])),
        ("/jobs", sleep_job(0, on_dependency_failure="ignore")),
        ("/jobs/batch", {"jobs": [sleep_job(0, depends_on=["$0"])]}),
        ("/jobs/batch", {"jobs": [sleep_job(0), sleep_job(0, depends_on=[999999])]}),
    ]
    for path, body in cases:
        answer = requests.post(server.url + path, json=body, timeout=30)
        assert answer.status_code == 422, (body, answer.text)
        assert "depends_on" in answer.text or "on_dependency_failure" in answer.text
    listed = requests.get(f"{server.url}/jobs", timeout=30).json()["jobs"]
    assert listed == []  # nothing half-written


# -- queues ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_queues_route_pause_and_resume(db_url, start_server):
    server = start_server(db_url, *SERVER_ARGS)
    low_a, high_b, other = batch(
        server.url,
        [
            sleep_job(0, queue="a", priority=3),
            sleep_job(0, queue="b", priority=8),
            sleep_job(0),
        ],
    )
    high_a = submit(server.url, "sleep", {"duration": 0}, queue="a", priority=8)["id"]
    assert get_job(server.url, other)["queue"] == "default"
    # Strict priority across the queues a worker serves, oldest first within one.
    assert [j["id"] for j in lease(server.url, queues=["a", "b"])] == [high_b, high_a, low_a]
    for job in lease(server.url, queues=["default"]):
        complete(server.url, job)

    paused = requests.post(f"{server.url}/queues/c/pause", timeout=30).json()
    assert paused["paused"] is True
    held = submit(server.url, "sleep", {"duration": 0}, queue="c")  # accepted while paused
    assert lease(server.url, queues=["c"]) == [] and lease(server.url) == []
    listed = requests.get(f"{server.url}/queues", timeout=30).json()["queues"]
    queues = {q["name"]: q for q in listed}
    assert queues["c"]["paused"] and queues["c"]["counts"]["queued"] == 1
    assert queues["a"]["counts"]["running"] == 2 and queues["default"]["counts"]["succeeded"] == 1
    requests.post(f"{server.url}/queues/c/resume", timeout=30).raise_for_status()
    assert [j["id"] for j in lease(server.url)] == [held["id"]]

    bad = requests.post(f"{server.url}/queues/Bad Name/pause", timeout=30)
    assert bad.status_code == 422 and "name" in bad.json()["errors"]
    for name in ("-x", "a b", "A", "x" * 65):
        bad = requests.post(f"{server.url}/jobs", json=sleep_job(0, queue=name), timeout=30)
        assert bad.status_code == 422 and "queue" in bad.json()["errors"], name


@pytest.mark.timeout(90)
def test_a_worker_serves_only_its_queues_and_types(db_url, start_server, start_worker):
    server = start_server(db_url, *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS, "--queues", "fast,slow", "--types", "sleep")
    elsewhere = submit(server.url, "sleep", {"duration": 0}, queue="other")
    mine = [submit(server.url, "sleep", {"duration": 0}, queue=q)["id"] for q in ("fast", "slow")]
    for job_id in mine:
        assert wait_for_job(server.url, job_id)["status"] == "succeeded"
    # Submitted before them, and still waiting: no worker serves its queue.
    assert get_job(server.url, elsewhere["id"])["status"] == "queued"


# -- concurrency limits ------------------------------------------------------------------


def max_overlap(jobs: list[dict]) -> int:
    """The most jobs running at once, from their (server-clock) start and finish times."""
    edges = []
    for job in jobs:
        edges.append((parse_time(job["started_at"]), 1))
        edges.append((parse_time(job["finished_at"]), -1))
    running = peak = 0
    for _, step in sorted(edges):  # a finish sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.timeout(180)
def test_a_limit_of_two_holds_with_three_servers_and_four_workers(
    db_url, start_server, start_worker
):
    servers = [start_server(db_url, *SERVER_ARGS) for _ in range(3)]
    urls = [server.url for server in servers]
    answer = requests.put(f"{urls[0]}/limits/queue/narrow", json={"max_running": 2}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert requests.get(f"{urls[1]}/limits", timeout=30).json()["limits"] == [
        {"kind": "queue", "name": "narrow", "max_running": 2}
    ]
    limited = batch(urls[0], [sleep_job(0.3, queue="narrow") for _ in range(12)])
    free = batch(urls[1], [sleep_job(0.3) for _ in range(8)])
    for i in range(4):
        start_worker([urls[i % 3]], *WORKER_ARGS, "--concurrency", "4")
    # The database's own count, sampled while the jobs run (a snapshot cannot overstate)...
    sampled = []

    def narrow_finished() -> bool:
        queues = requests.get(f"{urls[2]}/queues", timeout=30).json()["queues"]
        [narrow] = [q for q in queues if q["name"] == "narrow"]
        sampled.append(narrow["counts"]["running"])
        return narrow["counts"]["succeeded"] == len(limited)

    wait_until(narrow_finished, timeout=90, interval=0.02, message="the narrow queue done")
    done = [wait_for_job(urls[2], i, timeout=90) for i in limited + free]
    assert {job["status"] for job in done} == {"succeeded"}
    assert max(sampled) <= 2
    # ...and the jobs' own times: each started after the count that allowed it.
    assert max_overlap(done[: len(limited)]) <= 2

    missing = requests.delete(f"{urls[0]}/limits/type/none", timeout=30)
    assert missing.status_code == 404
    bad = requests.put(f"{urls[0]}/limits/queue/narrow", json={"max_running": -1}, timeout=30)
    assert bad.status_code == 422 and "max_running" in bad.json()["errors"]
    assert requests.delete(f"{urls[0]}/limits/queue/narrow", timeout=30).status_code == 204
    assert requests.get(f"{urls[0]}/limits", timeout=30).json()["limits"] == []


# -- schedules ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_an_every_second_schedule_fires_once_per_time_across_three_servers(
    db_url, start_server, start_worker
):
    servers = [start_server(db_url, *SERVER_ARGS) for _ in range(3)]
    body = {
        "name": "tick",
        "cron": "* * * * * *",  # every second (croniter's 6th field: seconds)
        "job": {"type": "sleep", "payload": {"duration": 0}, "queue": "ticks"},
    }
    answer = requests.post(f"{servers[0].url}/schedules", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    assert len(answer.json()["next_fire_times"]) == 5
    start_worker([servers[1].url], *WORKER_ARGS)

    def fired() -> list[dict]:
        url = f"{servers[2].url}/jobs?limit=1000&full=true"
        return [j for j in requests.get(url, timeout=30).json()["jobs"] if j["queue"] == "ticks"]

    wait_until(lambda: len(fired()) >= 6, timeout=60, message="six fires")
    paused = requests.post(f"{servers[1].url}/schedules/tick/pause", timeout=30).json()
    assert paused["paused"] is True
    jobs = fired()
    keys = [job["idempotency_key"] for job in jobs]
    assert len(keys) == len(set(keys))  # one job per fire time, whichever server fired it
    times = sorted(parse_time(job["run_at"]) for job in jobs)
    assert len(times) == len(set(times))
    assert all(t == int(t) for t in times)  # whole seconds: the cron's own times
    for job in jobs:
        assert wait_for_job(servers[0].url, job["id"])["status"] == "succeeded"
    shown = requests.get(f"{servers[0].url}/schedules/tick", timeout=30).json()
    assert shown["last_fire_at"] is not None
    assert requests.delete(f"{servers[0].url}/schedules/tick", timeout=30).status_code == 204
