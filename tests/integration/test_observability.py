"""Logs, metrics, stats and workers, seen from real server and worker processes."""

from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from taskframe.testing.distributions import write_distribution
from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import attempts_of, free_port, submit, wait_for_job, wait_until


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics`` parsed by prometheus_client: {(sample name, labels): value}."""
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.timeout(120)
def test_metrics_count_a_known_set_of_jobs_exactly(start_server, start_worker, sqlite_url):
    server = start_server(sqlite_url, *SERVER_ARGS)
    # Two ready jobs before any worker: the queue gauges come from the database.
    early = [submit(server.url, "sleep", {"duration": 0}, priority=7) for _ in range(2)]
    before = scrape(server.url)
    assert value(before, "taskframe_queue_depth", type="sleep", priority="7") == 2
    assert value(before, "taskframe_oldest_ready_job_age_seconds", type="sleep", priority="7") >= 0
    assert value(before, "taskframe_jobs_submitted_total", type="sleep") == 2

    delayed = submit(server.url, "sleep", {"duration": 0}, delay=3600)
    assert requests.post(f"{server.url}/jobs/{delayed['id']}/cancel", timeout=10).ok
    refused = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    failing = submit(server.url, "http", {"url": refused, "timeout": 5}, max_attempts=2)
    quick = [submit(server.url, "sleep", {"duration": 0}) for _ in range(3)]
    start_worker([server.url], *WORKER_ARGS)
    for job in [*early, *quick, failing]:
        wait_for_job(server.url, job["id"], timeout=60)

    after = scrape(server.url)
    assert value(after, "taskframe_jobs_submitted_total", type="sleep") == 6
    assert value(after, "taskframe_jobs_submitted_total", type="http") == 1
    assert value(after, "taskframe_jobs_finished_total", type="sleep", outcome="succeeded") == 5
    assert value(after, "taskframe_jobs_finished_total", type="sleep", outcome="cancelled") == 1
    assert value(after, "taskframe_jobs_finished_total", type="http", outcome="failed") == 1
    assert value(after, "taskframe_jobs_finished_total", type="http", outcome="succeeded") == 0
    assert value(after, "taskframe_attempts_retried_total", type="http") == 1
    assert value(after, "taskframe_attempts_retried_total", type="sleep") == 0
    assert value(after, "taskframe_jobs_leased_total", type="sleep") == 5
    assert value(after, "taskframe_jobs_leased_total", type="http") == 2
    assert value(after, "taskframe_job_run_seconds_count", type="sleep") == 5
    assert value(after, "taskframe_job_run_seconds_count", type="http") == 2
    assert value(after, "taskframe_job_wait_seconds_count", type="sleep") == 5
    assert value(after, "taskframe_queue_depth", type="sleep", priority="7") == 0
    posts = value(
        after, "taskframe_http_requests_total", method="POST", route="/jobs", status="201"
    )
    assert posts == 7
    cancel_route = "/jobs/{job_id}/cancel"
    assert (
        value(
            after, "taskframe_http_requests_total", method="POST", route=cancel_route, status="200"
        )
        == 1
    )
    leases = value(after, "taskframe_lease_requests_total", result="jobs")
    assert leases >= 1
    assert value(after, "taskframe_lease_request_seconds_count") >= leases
    assert value(after, "taskframe_database_up") == 1


def json_lines(text: str) -> list[dict]:
    """Every line must be one JSON object with the four base fields."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= line.keys(), line
    return lines


@pytest.mark.timeout(90)
def test_json_logs_of_server_and_worker_carry_the_job_fields(
    start_server, start_worker, sqlite_url
):
    # DEBUG: leases and successes are logged per job at DEBUG (summed up at INFO).
    server = start_server(sqlite_url, *SERVER_ARGS, "--log-format", "json", "--log-level", "DEBUG")
    worker = start_worker(
        [server.url],
        *(*WORKER_ARGS, "--worker-id", "w-json", "--log-level", "DEBUG"),
        env={"TASKFRAME_LOG_FORMAT": "json"},
    )
    ok = submit(server.url, "sleep", {"duration": 0.1})
    refused = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    bad = submit(server.url, "http", {"url": refused, "timeout": 5}, max_attempts=2)
    wait_for_job(server.url, ok["id"])
    wait_for_job(server.url, bad["id"])
    server.stop()
    worker.stop()

    served = json_lines(server.output())
    banners = [line for line in served if "listening on" in line["msg"]]
    assert len(banners) == 1 and "sqlite" in banners[0]["msg"]

    def about(lines: list[dict], job: dict) -> list[dict]:
        return [line for line in lines if line.get("job_id") == job["id"]]

    events = about(served, ok)
    assert [e["msg"].split()[2] for e in events] == ["submitted", "leased", "succeeded"]
    assert all(e["type"] == "sleep" for e in events)
    assert events[1]["worker_id"] == "w-json" and events[1]["lease_id"]
    assert events[2]["attempt"] == 1
    failures = about(served, bad)
    assert any("retrying in" in e["msg"] and e["level"] == "INFO" for e in failures)
    assert any("failed after attempt 2/2" in e["msg"] and e["level"] == "WARNING" for e in failures)

    ran = json_lines(worker.output())
    mine = about(ran, ok)
    started, finished = [m for m in mine if m["logger"] == "taskframe.worker"]
    assert started["msg"] == f"job {ok['id']} started (sleep, attempt 1)"
    assert "(sleep, attempt 1) succeeded in" in finished["msg"]
    assert any(m["logger"] == "taskframe.job.sleep" and "sleeping" in m["msg"] for m in mine)
    assert all(m["worker_id"] == "w-json" and m["type"] == "sleep" for m in mine)
    failed = [m for m in about(ran, bad) if m["level"] == "WARNING"]
    assert len(failed) == 2 and all("Traceback" in m["exc_info"] for m in failed)
    # At INFO, the hot path's per-job lines are summed up (here, when it stops).
    summaries = [m["msg"] for m in ran if m["msg"].startswith("in the last")]
    assert summaries and summaries[-1].endswith("2 jobs failed, 1 jobs succeeded"), summaries
    assert any("1 jobs succeeded" in e["msg"] for e in served if e["level"] == "INFO")


@pytest.mark.timeout(60)
def test_plugin_failure_and_banner_are_logged_once(start_server, sqlite_url, tmp_path):
    # A plugin that fails to import, declared by an installed distribution's entry point.
    write_distribution(
        tmp_path / "site", "broken-plugin", {"broken": "no_such_module_here"}, version="1.0"
    )
    env = {"PYTHONPATH": str(tmp_path / "site")}
    server = start_server(sqlite_url, *SERVER_ARGS, env=env)
    assert requests.get(f"{server.url}/health", timeout=5).json()["plugin_failures"]["broken"]
    server.stop()
    output = server.output()
    assert output.count("listening on") == 1
    assert output.count("no_such_module_here") == 1
    assert "WARNING" in next(line for line in output.splitlines() if "listening on" in line)


@pytest.mark.timeout(60)
def test_job_log_is_kept_with_its_attempt(start_server, start_worker, db_url):
    server = start_server(db_url, *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS)
    job = submit(server.url, "sleep", {"duration": 0.2})
    wait_for_job(server.url, job["id"])
    [attempt] = attempts_of(server.url, job["id"])
    lines = attempt["log"].splitlines()
    assert len(lines) == 2
    assert "INFO sleeping 0.2 s" in lines[0] and "INFO slept" in lines[1]


@pytest.mark.timeout(90)
def test_a_type_no_live_worker_runs_is_reported_stuck(start_server, start_worker, db_url):
    server = start_server(db_url, *SERVER_ARGS, "--worker-window", "3")
    start_worker([server.url], *WORKER_ARGS, "--poll-interval", "0.2", "--job-types", "http,file")
    wait_until(lambda: requests.get(f"{server.url}/stats", timeout=5).json()["workers_alive"])
    job = submit(server.url, "sleep", {"duration": 0})
    stats = requests.get(f"{server.url}/stats", timeout=5).json()
    assert stats["stuck_types"] == ["sleep"]
    assert stats["by_type"]["sleep"]["queued"] == 1 and stats["by_status"]["queued"] == 1
    assert stats["oldest_ready_age"] is not None and stats["oldest_ready_age"] >= 0
    health = requests.get(f"{server.url}/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["warnings"] == [
        "job type 'sleep' has 1 queued jobs and no live worker can run it"
    ]

    start_worker([server.url], *WORKER_ARGS, "--job-types", "sleep")
    wait_for_job(server.url, job["id"])
    assert requests.get(f"{server.url}/health", timeout=5).json()["warnings"] == []
    assert requests.get(f"{server.url}/stats", timeout=5).json()["stuck_types"] == []


@pytest.mark.timeout(90)
def test_workers_lists_two_workers_and_a_killed_one_stops_being_alive(
    start_server, start_worker, db_url
):
    server = start_server(db_url, *SERVER_ARGS, "--worker-window", "3")
    fast = ("--poll-interval", "0.2", "--heartbeat-interval", "0.3")
    start_worker(
        [server.url], *fast, "--worker-id", "w-a", "--concurrency", "3", "--job-types", "sleep,http"
    )
    doomed = start_worker([server.url], *fast, "--worker-id", "w-b", "--job-types", "sleep")

    def workers() -> dict[str, dict]:
        answer = requests.get(f"{server.url}/workers", timeout=5).json()["workers"]
        return {w["id"]: w for w in answer}

    seen = wait_until(lambda: (w := workers()).keys() == {"w-a", "w-b"} and w)
    assert seen["w-a"]["slots"] == 3 and seen["w-a"]["types"] == ["http", "sleep"]
    assert seen["w-b"]["types"] == ["sleep"] and seen["w-b"]["host"]
    assert seen["w-a"]["alive"] and seen["w-b"]["alive"]
    job = submit(server.url, "sleep", {"duration": 30})
    running = wait_until(lambda: sum(w["running"] for w in workers().values()) == 1)
    assert running

    doomed.kill()
    gone = wait_until(lambda: not (w := workers())["w-b"]["alive"] and w, timeout=30)
    assert gone["w-a"]["alive"]
    assert requests.get(f"{server.url}/stats", timeout=5).json()["workers_alive"] == 1
    requests.post(f"{server.url}/jobs/{job['id']}/cancel", timeout=5)
