"""Operating from the dashboard (issue 23), in a real browser against live servers:
charts after jobs ran, bulk retry with its confirmation, queue pause and resume, limits,
schedules, search, a running job's live log and the compact phone layout. (Server-side
sorting across pages: test_dashboard.py's job list test.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.integration.browser import PHONE, open_page
from tests.processes import get_job, submit, wait_until

WAIT_MS = 30_000
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def server(start_server, tmp_path: Path):
    """A server and no worker: jobs stay where the test puts them."""
    return start_server(str(tmp_path / "ops.db"))


def test_charts_have_points_after_jobs_ran(browser, start_server, start_worker, tmp_path, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = start_server(str(tmp_path / "charts.db"))
    start_worker([server.url], "--worker-id", "chart-worker")
    ids = [submit(server.url, "sleep", {"duration": 0})["id"] for _ in range(3)]
    wait_until(lambda: all(get_job(server.url, i)["status"] == "succeeded" for i in ids), 30)
    page = open_page(browser, server.url + "/")
    succeeded = page.locator(".chart .series.ok")
    # The housekeeper writes the rollup every 10 s; the page polls every 2 s.
    expect(succeeded).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    expect(page.locator(".chart svg").first).to_have_attribute(
        "aria-label", re.compile("succeeded")
    )
    answer = requests.get(f"{server.url}/stats/history", timeout=10).json()
    assert sum(point["succeeded"] for point in answer["points"]) == 3
    page.get_by_label("Period").select_option("day")
    expect(succeeded).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    shots("overview-charts", page)
    assert page.errors == []


def test_bulk_retry_says_how_many_jobs_it_touches_first(browser, server, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    ids = [submit(server.url, "sleep", {"duration": 0}, queue="bulk")["id"] for _ in range(3)]
    other = submit(server.url, "sleep", {"duration": 0})["id"]
    cancelled = requests.post(f"{server.url}/jobs/cancel", json={"queue": "bulk"}, timeout=10)
    assert cancelled.json()["changed"] == 3
    page = open_page(browser, f"{server.url}/#/jobs?status=cancelled&queue=bulk")
    expect(page.locator("td[data-label=ID]")).to_have_count(3)
    expect(page.locator("td[data-label=Queue]").first).to_have_text("bulk")
    page.get_by_role("button", name="Retry matching…").click()
    dialog = page.get_by_role("dialog", name="Retry 3 job(s)")
    expect(dialog).to_contain_text("This will retry 3 job(s) (status cancelled, queue bulk)")
    shots("bulk-retry-confirm", page)
    dialog.get_by_role("button", name="Retry 3 job(s)").click()
    expect(page.get_by_text("3 job(s) queued again.")).to_be_visible()
    assert {get_job(server.url, i)["status"] for i in ids} == {"queued"}
    assert get_job(server.url, other)["status"] == "queued"
    # Cancel matching, but kept as is: nothing changes.
    page.goto(f"{server.url}/#/jobs?queue=bulk")
    page.get_by_role("button", name="Cancel matching…").click()
    page.get_by_role("dialog").get_by_role("button", name="Keep as is").click()
    assert {get_job(server.url, i)["status"] for i in ids} == {"queued"}
    assert page.errors == []


def test_queues_pause_and_resume_and_limits_are_set(browser, server, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    submit(server.url, "sleep", {"duration": 0}, queue="reports")
    page = open_page(browser, server.url + "/")
    queues = page.get_by_role("table", name="Queues")
    row = queues.locator("tr", has_text="reports")
    row.get_by_role("button", name="Pause queue reports").click()
    expect(row).to_contain_text("paused")
    listed = requests.get(f"{server.url}/queues", timeout=10).json()["queues"]
    assert [q["paused"] for q in listed if q["name"] == "reports"] == [True]
    shots("queue-paused", page)
    row.get_by_role("button", name="Resume queue reports").click()
    expect(row.locator(".paused-badge")).to_have_count(0)
    # A limit: set from the form, listed, removed.
    page.get_by_text("Set a limit").click()
    page.get_by_label("Limit kind").select_option("queue")
    page.get_by_label("Limit name").fill("reports")
    page.get_by_label("At most running").fill("2")
    page.get_by_role("button", name="Set limit").click()
    limits = page.get_by_role("table", name="Limits")
    expect(limits.locator("tr", has_text="reports")).to_contain_text("2")
    assert requests.get(f"{server.url}/limits", timeout=10).json()["limits"][0]["max_running"] == 2
    limits.get_by_role("button", name="Remove the limit of queue reports").click()
    expect(page.get_by_text("No concurrency limit is set.")).to_be_visible()
    assert page.errors == []


def test_a_schedule_is_created_paused_and_deleted(browser, server, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = open_page(browser, server.url + "/")
    page.get_by_text("Create a schedule").click()
    page.get_by_label("Schedule name").fill("nightly")
    page.get_by_label("Cron").fill("30 2 * * *")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Schedule job type").select_option("sleep")
    page.get_by_label("Schedule payload (JSON)").fill('{"duration": 0}')
    page.get_by_role("button", name="Create schedule").click()
    schedules = page.get_by_role("table", name="Schedules")
    row = schedules.locator("tr", has_text="nightly")
    expect(row).to_contain_text("Europe/Paris")
    created = requests.get(f"{server.url}/schedules/nightly", timeout=10).json()
    assert created["job"]["payload"] == {"duration": 0}
    shots("schedule-created", page)
    row.get_by_role("button", name="Pause schedule nightly").click()
    expect(row).to_contain_text("paused")
    row.get_by_role("button", name="Resume schedule nightly").click()
    expect(row.locator(".paused-badge")).to_have_count(0)
    assert requests.get(f"{server.url}/schedules/nightly", timeout=10).json()["paused"] is False
    row.get_by_role("button", name="Delete schedule nightly").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No schedule.")).to_be_visible()
    assert requests.get(f"{server.url}/schedules/nightly", timeout=10).status_code == 404
    assert page.errors == []


def test_search_finds_a_job_by_key_or_id(browser, server):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    keyed = submit(server.url, "sleep", {"duration": 0}, idempotency_key="order-42")
    for _ in range(3):
        submit(server.url, "sleep", {"duration": 0})
    page = open_page(browser, f"{server.url}/#/jobs")
    expect(page.locator("td[data-label=ID]")).to_have_count(4)
    page.get_by_role("searchbox", name="Search").fill("order-42")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("td[data-label=ID]")).to_have_text([f"#{keyed['id']}"])
    page.get_by_role("searchbox", name="Search").fill(str(keyed["id"]))
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", name=f"Job #{keyed['id']} · sleep")).to_be_visible()
    assert page.errors == []


def test_the_job_page_tails_a_running_attempts_log(browser, server, shots):
    """Heartbeats carrying ``log`` sent over HTTP, as the worker sends them."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    first = submit(server.url, "sleep", {"duration": 0})
    then = submit(server.url, "sleep", {"duration": 0}, depends_on=[first["id"]])
    lease = requests.post(
        f"{server.url}/lease", json={"worker_id": "w-live", "types": ["sleep"]}, timeout=10
    ).json()["jobs"][0]
    beat = {"worker_id": "w-live", "lease_id": lease["lease_id"]}

    def heartbeat(text: str) -> None:
        answer = requests.post(
            f"{server.url}/jobs/{first['id']}/heartbeat", json={**beat, "log": text}, timeout=10
        )
        assert answer.status_code == 200, answer.text

    heartbeat("starting\n")
    page = open_page(browser, f"{server.url}/#/jobs/{first['id']}")
    live = page.get_by_label("Live log")
    expect(live).to_have_text("starting\n")
    heartbeat("step 1 of 2\n")
    expect(live).to_have_text("starting\nstep 1 of 2\n")
    # The dependant is listed on the job it waits for.
    expect(page.get_by_role("link", name=f"Dependant job {then['id']}")).to_be_visible()
    shots("job-live-log", page)
    done = requests.post(
        f"{server.url}/jobs/{first['id']}/complete",
        json={**beat, "status": "succeeded", "log": "starting\nstep 1 of 2\ndone\n"},
        timeout=10,
    )
    assert done.status_code == 200, done.text
    expect(page.locator(".facts .badge")).to_have_text("succeeded")
    expect(live).to_have_count(0)
    expect(page.locator(".attempt pre.log")).to_have_text("starting\nstep 1 of 2\ndone\n")
    assert page.errors == []


def test_phone_layout_is_compact(browser, server, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    for _ in range(3):
        submit(server.url, "sleep", {"duration": 0}, queue="mail")
    page = open_page(browser, f"{server.url}/#/jobs", PHONE)
    expect(page.locator("td[data-label=ID]")).to_have_count(3)
    page.wait_for_load_state("networkidle")
    # The counts by status: one short row (they took ~230 px), scrolled sideways if need be.
    counts = page.locator(".count-list").bounding_box()
    assert counts is not None and counts["height"] <= 40, counts
    card = page.locator(".job-list tbody tr").first.bounding_box()
    line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight) || 23")
    assert card is not None and card["height"] <= 4 * line, (card, line)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shots("phone-jobs-compact", page)
    assert page.errors == []


def test_a_real_workers_log_lines_show_while_the_job_runs(
    browser, start_server, start_worker, tmp_path, shots
):
    """The worker sends new log lines with its heartbeats (the server says it takes
    them): the sleep executor's first line shows before the job ends."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = start_server(str(tmp_path / "worker-log.db"))
    start_worker([server.url], "--worker-id", "log-worker")
    job = submit(server.url, "sleep", {"duration": 300})
    page = open_page(browser, f"{server.url}/#/jobs/{job['id']}")
    expect(page.locator(".facts .badge")).to_have_text("running")
    expect(page.get_by_label("Live log")).to_contain_text("sleeping 300")
    running = requests.get(f"{server.url}/jobs/{job['id']}/attempts", timeout=10).json()
    assert "sleeping 300" in running["running"]["log"]
    shots("job-live-log-worker", page)
    requests.post(f"{server.url}/jobs/{job['id']}/cancel", timeout=10).raise_for_status()
    expect(page.locator(".facts .badge")).to_have_text("cancelled")
    assert page.errors == []
