"""The web dashboard in a real browser (Debian's Chromium driven by Playwright).

Against a live ``taskframe-server`` and ``taskframe-worker``: submit from the form,
watch the job succeed, open it and read its attempts and log, cancel a long job,
show a validation error, and render at phone width. Screenshots go to a
``screenshots`` folder of the test's tmp_path (its path is printed).

Skipped, with the reason, when Playwright or Chromium is missing, unless
``TASKFRAME_REQUIRE_BROWSER`` is set (as ``.ci/run`` does): then it fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.integration.browser import PHONE, open_page
from tests.processes import attempts_of, get_job, submit, wait_until

# Links, buttons and form controls whose accessible name would be empty.
UNNAMED_CONTROLS = """() => [...document.querySelectorAll("a, button, input, select, textarea")]
  .filter((el) => {
    const labels = el.labels ? [...el.labels].map((l) => l.textContent).join(" ") : "";
    const own = ["A", "BUTTON"].includes(el.tagName) ? el.textContent : "";
    return !`${el.getAttribute("aria-label") || ""}${labels}${own}`.trim();
  })
  .map((el) => el.outerHTML.slice(0, 120))"""
WAIT_MS = 20_000

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def live(start_server, start_worker, tmp_path: Path):
    """A server on a fresh SQLite file and one worker with two slots."""
    server = start_server(str(tmp_path / "dashboard.db"))
    start_worker([server.url], "--concurrency", "2", "--worker-id", "dash-worker")
    return server


def job_id_from(page) -> int:
    page.wait_for_url(re.compile(r".*#/jobs/\d+$"), timeout=WAIT_MS)
    return int(page.url.rsplit("/", 1)[1])


def test_submit_watch_open_and_cancel_jobs(browser, live, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = open_page(browser, live.url + "/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("link", name="sleep", exact=True)).to_be_visible()
    shots("overview", page)

    # Submit a short sleep job from the form: the page moves to the job and sees it succeed.
    page.get_by_role("link", name="Submit", exact=True).click()
    page.get_by_label("Job type").select_option("sleep")
    page.get_by_label("duration").fill("0.3")
    page.get_by_label("Priority").fill("7")
    page.get_by_role("button", name="Submit job").click()
    done_id = job_id_from(page)
    expect(page.locator(".facts .badge")).to_have_text("succeeded")
    job = get_job(live.url, done_id)
    assert job["status"] == "succeeded" and job["payload"] == {"duration": 0.3}
    assert job["priority"] == 7

    # The job list shows it; its page shows the payload, the result and the attempt.
    page.get_by_role("link", name="Jobs", exact=True).click()
    row = page.locator("tbody tr", has=page.get_by_role("link", name=f"Job {done_id}"))
    expect(row.locator(".badge")).to_have_text("succeeded")
    shots("jobs", page)
    page.get_by_role("link", name=f"Job {done_id}").click()
    expect(page.get_by_role("heading", name=f"Job #{done_id} · sleep")).to_be_visible()
    expect(page.get_by_role("region", name="Payload")).to_contain_text('"duration": 0.3')
    expect(page.get_by_role("region", name="Result")).to_contain_text('"slept"')
    attempt = page.locator(".attempt").first
    expect(attempt).to_contain_text("Attempt 1")
    expect(attempt).to_contain_text("dash-worker")
    expect(attempt.locator(".badge")).to_have_text("succeeded")
    # The attempt's log: what the sleep executor wrote to context.logger, as the API has it.
    log = attempt.locator("pre.log")
    expect(log).to_contain_text("sleeping 0.3 s")
    expect(log).to_contain_text("slept")
    assert log.inner_text() == attempts_of(live.url, done_id)[0]["log"]
    expect(page.get_by_role("button", name=f"Retry job {done_id}")).to_be_disabled()
    shots("job-succeeded", page)

    # The live counts and the workers follow (polled every 2 s).
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.locator(".count-n[data-status=succeeded]")).to_have_text("1")
    worker = page.locator("tbody tr", has_text="dash-worker")
    expect(worker.locator(".badge")).to_have_text("alive")
    expect(worker).to_contain_text("sleep")

    # Cancel a long job while it runs: the worker stops it and the page shows it cancelled.
    long_id = submit(live.url, "sleep", {"duration": 300})["id"]
    page.goto(f"{live.url}/#/jobs/{long_id}")
    expect(page.locator(".facts .badge")).to_have_text("running")
    shots("job-running", page)
    page.get_by_role("link", name="Overview", exact=True).click()
    running = page.locator("tbody tr", has_text="dash-worker")
    expect(running.get_by_role("link", name=f"#{long_id} sleep")).to_be_visible()
    expect(page.locator(".count-n[data-status=running]")).to_have_text("1")
    shots("overview-running", page)
    page.get_by_role("link", name=f"#{long_id} sleep").click()
    page.get_by_role("button", name=f"Cancel job {long_id}").click()
    # A cancel asks first, saying what will happen.
    confirm = page.get_by_role("dialog", name=f"Cancel job #{long_id}")
    expect(confirm).to_contain_text("its worker will be asked to stop it")
    confirm.get_by_role("button", name="Cancel job", exact=True).click()
    expect(page.locator(".facts .badge")).to_have_text("cancelled")
    expect(page.get_by_role("button", name=f"Cancel job {long_id}")).to_be_disabled()
    expect(page.get_by_role("button", name=f"Retry job {long_id}")).to_be_enabled()
    assert get_job(live.url, long_id)["status"] == "cancelled"
    shots("job-cancelled", page)
    assert page.errors == []


def test_types_without_a_live_worker_are_highlighted(
    browser, start_server, start_worker, tmp_path, shots
):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = start_server(str(tmp_path / "stuck.db"))
    start_worker([server.url], "--job-types", "sleep", "--worker-id", "sleep-only")
    wait_until(lambda: requests.get(f"{server.url}/workers", timeout=10).json()["workers"], 20)
    submit(server.url, "http", {"url": "http://127.0.0.1:1/"})
    page = open_page(browser, server.url + "/")
    alert = page.locator(".stuck")
    expect(alert).to_contain_text("No live worker runs these types")
    expect(alert.get_by_role("link", name="http")).to_be_visible()
    stuck_row = page.locator("tr.stuck-row")
    expect(stuck_row).to_have_count(1)
    expect(stuck_row).to_contain_text("http")
    expect(stuck_row.locator(".stuck-badge")).to_have_text("no live worker")
    expect(page.locator(".health")).to_contain_text("1 warning")
    shots("overview-stuck", page)
    assert page.errors == []


def test_a_delayed_job_is_scheduled_and_can_be_cancelled(browser, start_server, tmp_path, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = start_server(str(tmp_path / "delayed.db"))
    page = open_page(browser, f"{server.url}/#/submit?type=sleep")
    page.get_by_label("duration").fill("1")
    page.get_by_label("Delay (s)").fill("600")
    page.get_by_role("button", name="Submit job").click()
    job_id = job_id_from(page)
    expect(page.locator(".facts .badge")).to_have_text("scheduled")
    expect(page.locator(".facts")).to_contain_text("in 10 min")
    expect(page.locator(".count-n[data-status=scheduled]")).to_have_text("1")
    shots("job-scheduled", page)
    page.get_by_role("button", name=f"Cancel job {job_id}").click()
    page.get_by_role("dialog").get_by_role("button", name="Keep as is").click()
    expect(page.locator(".facts .badge")).to_have_text("scheduled")  # kept
    page.get_by_role("button", name=f"Cancel job {job_id}").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel job", exact=True).click()
    expect(page.locator(".facts .badge")).to_have_text("cancelled")
    assert get_job(server.url, job_id)["status"] == "cancelled"
    assert page.errors == []


def test_validation_errors_are_shown_next_to_the_field(browser, live, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = open_page(browser, live.url + "/#/submit?type=sleep")
    page.get_by_label("Edit the payload as JSON").check()
    page.get_by_label("Payload (JSON object)").fill('{"duration": -1}')
    page.get_by_role("button", name="Submit job").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("422")
    expect(alert).to_contain_text("payload.duration")
    expect(page.locator("#err-payload")).to_contain_text("must be between")
    shots("submit-422", page)
    assert requests.get(f"{live.url}/jobs", timeout=10).json()["jobs"] == []
    assert page.errors == []


def test_job_list_filters_pages_and_sorts(browser, start_server, tmp_path, shots):
    """No worker: the jobs stay queued, so the list is stable while the page polls."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = start_server(str(tmp_path / "list.db"))
    jobs = [
        {"type": "sleep", "payload": {"duration": 1}, "priority": 1 + i % 10} for i in range(30)
    ]
    jobs.append({"type": "http", "payload": {"url": "http://127.0.0.1:1/"}, "priority": 3})
    answer = requests.post(f"{server.url}/jobs/batch", json={"jobs": jobs}, timeout=30)
    assert answer.status_code == 201, answer.text
    ids = answer.json()["ids"]
    page = open_page(browser, f"{server.url}/#/jobs")
    id_cells = page.locator("td[data-label=ID]")
    expect(id_cells).to_have_count(31)

    # A keyboard user changing a filter keeps the focus on it while the list redraws.
    status = page.get_by_label("Status", exact=True)
    status.focus()
    page.keyboard.press("q")  # type-ahead picks "queued"
    expect(page).to_have_url(re.compile(r"status=queued"))
    expect(id_cells).to_have_count(31)
    expect(page.get_by_label("Status", exact=True)).to_be_focused()
    expect(page.get_by_label("Status", exact=True)).to_have_value("queued")
    page.get_by_label("Status", exact=True).select_option("")

    page.get_by_label("Type").select_option("http")
    expect(id_cells).to_have_text([f"#{ids[-1]}"])
    page.get_by_label("Type").select_option("")
    page.get_by_label("Per page").select_option("25")
    newest_first = [f"#{i}" for i in reversed(ids)]
    expect(id_cells).to_have_text(newest_first[:25])
    page.get_by_role("link", name="Next page").click()
    expect(id_cells).to_have_text(newest_first[25:])
    page.get_by_role("link", name="Previous page").click()
    expect(id_cells).to_have_text(newest_first[:25])

    # Sorted by the server across every page, not within the page loaded.
    page.get_by_label("Sort").select_option("priority")
    ranked = sorted(((job["priority"], i) for job, i in zip(jobs, ids, strict=True)), reverse=True)
    by_priority = [f"#{i}" for _, i in ranked]
    expect(id_cells).to_have_text(by_priority[:25])
    shots("jobs-by-priority", page)
    page.get_by_role("link", name="Next page").click()
    expect(id_cells).to_have_text(by_priority[25:])
    page.get_by_label("Order").select_option("asc")
    expect(id_cells).to_have_text(list(reversed(by_priority))[:25])
    assert page.errors == []


def test_data_is_shown_as_text_never_as_markup(browser, live):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    key = '<img src=x onerror="document.title=1"><b id="injected">bold</b>'
    job = submit(live.url, "sleep", {"duration": 0}, idempotency_key=key)
    page = open_page(browser, f"{live.url}/#/jobs/{job['id']}")
    expect(page.locator(".facts")).to_contain_text(key)
    assert page.locator("#injected").count() == 0
    assert page.locator("img").count() == 0
    assert page.errors == []


def test_phone_width_layout_fits_the_screen(browser, live, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    job = submit(live.url, "sleep", {"duration": 0})
    wait_until(lambda: get_job(live.url, job["id"])["status"] == "succeeded", 20)
    for view, name in [
        ("#/", "phone-overview"),
        ("#/jobs", "phone-jobs"),
        (f"#/jobs/{job['id']}", "phone-job"),
        ("#/submit", "phone-submit"),
    ]:
        page = open_page(browser, f"{live.url}/{view}", PHONE)
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        # Nothing wider than the screen: no sideways scrolling on a phone.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{view} is {width}px wide"
        assert page.evaluate(UNNAMED_CONTROLS) == [], f"controls without a name on {view}"
        shots(name, page)
        assert page.errors == []
        page.context.close()
    # Table rows become labelled cards: the label is drawn from data-label.
    page = open_page(browser, f"{live.url}/#/jobs", PHONE)
    cell = page.locator("td[data-label=Status]").first
    expect(cell).to_be_visible()
    assert page.locator("thead").first.is_hidden()
    page.context.close()


def test_token_is_kept_for_the_tab_and_sent_as_a_bearer_header(browser, live):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = open_page(browser, live.url + "/")
    page.get_by_role("button", name="API token").click()
    page.get_by_label(re.compile("Bearer token")).fill("s3cret-token-for-the-test")
    with page.expect_request(
        lambda r: "/jobs" in r.url or "/job-types" in r.url or "/stats" in r.url
    ) as sent:
        page.get_by_role("button", name="Save").click()
    assert sent.value.headers.get("authorization") == "Bearer s3cret-token-for-the-test"
    stored = page.evaluate("sessionStorage.getItem('taskframe.token')")
    assert stored == "s3cret-token-for-the-test"
    assert page.evaluate("localStorage.length") == 0
    assert page.errors == []


def test_a_401_asks_for_a_token_and_the_page_then_works(browser, start_server, tmp_path, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    client_token = "dash-client-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"client:{client_token}\n")
    tokens.chmod(0o600)
    server = start_server(str(tmp_path / "auth.db"), "--token-file", str(tokens))
    job = requests.post(
        f"{server.url}/jobs",
        json={"type": "sleep", "payload": {"duration": 0}},
        headers={"Authorization": f"Bearer {client_token}"},
        timeout=10,
    ).json()
    # The page itself is open; its first API call gets 401 and the token prompt opens.
    page = open_page(browser, f"{server.url}/#/jobs")
    dialog = page.get_by_role("dialog", name="API token")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("401 Unauthorized")
    shots("token-prompt", page)
    page.get_by_label(re.compile("Bearer token")).fill("wrong-token-0123456789abcdef")
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_visible()  # a wrong token: asked again
    page.get_by_label(re.compile("Bearer token")).fill(client_token)
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("link", name=f"Job {job['id']}")).to_be_visible()
    expect(page.locator(".count-n[data-status=queued]")).to_have_text("1")
    # Submitting from the form carries the token too.
    page.get_by_role("link", name="Submit", exact=True).click()
    page.get_by_label("Job type").select_option("sleep")
    page.get_by_label("duration").fill("0")
    page.get_by_role("button", name="Submit job").click()
    new_id = job_id_from(page)
    assert new_id == job["id"] + 1
    expect(page.locator(".facts .badge")).to_have_text("queued")
    assert page.errors == []


def test_queues_schedules_and_dependencies_are_shown(browser, start_server, tmp_path, shots):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = start_server(str(tmp_path / "flow.db"))
    first = submit(server.url, "sleep", {"duration": 0}, queue="reports", delay=600)
    then = submit(server.url, "sleep", {"duration": 0}, depends_on=[first["id"]])
    requests.post(f"{server.url}/queues/reports/pause", timeout=10).raise_for_status()
    job = {"type": "sleep", "payload": {"duration": 0}, "queue": "reports"}
    schedule = {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris", "job": job}
    requests.post(f"{server.url}/schedules", json=schedule, timeout=10).raise_for_status()
    page = open_page(browser, server.url + "/")
    queues = page.get_by_role("table", name="Queues")
    expect(queues.locator("tr", has_text="reports")).to_contain_text("paused")
    schedules = page.get_by_role("table", name="Schedules")
    expect(schedules.locator("tr", has_text="nightly")).to_contain_text("Europe/Paris")
    expect(schedules.locator("tr", has_text="nightly")).to_contain_text("sleep in reports")
    shots("overview-queues-schedules", page)
    page.goto(f"{server.url}/#/jobs/{then['id']}")
    expect(page.locator(".facts .badge")).to_have_text("waiting")
    expect(page.locator(".facts")).to_contain_text("default")
    page.locator(".facts").get_by_role("link", name=f"#{first['id']}").click()
    expect(page.locator(".facts")).to_contain_text("reports")
    shots("job-dependency", page)
    assert page.errors == []


def test_a_tasks_docstring_progress_and_traceback_are_shown(
    browser, start_server, start_worker, tmp_path, shots
):
    from playwright.sync_api import expect

    module = "tests.integration.task_modules.demo_tasks"
    server = start_server(str(tmp_path / "tasks.db"), "--tasks", module)
    start_worker([server.url], "--tasks", module, "--worker-id", "dash-worker")
    expect.set_options(timeout=WAIT_MS)
    page = open_page(browser, server.url + "/#/submit")
    # The form describes the task with its docstring.
    page.get_by_label("Job type").select_option("halfway")
    expect(page.get_by_text("Report half progress, then wait for the flag file.")).to_be_visible()

    flag = tmp_path / "flag"
    running = submit(server.url, "halfway", {"flag": str(flag)})["id"]
    page.goto(f"{server.url}/#/jobs/{running}")
    progress = page.get_by_role("region", name="Progress")
    expect(progress).to_contain_text("50% · half way")
    expect(progress.locator("progress")).to_have_attribute("value", "0.5")
    shots("task-progress", page)
    flag.touch()
    expect(page.locator(".facts .badge")).to_have_text("succeeded")

    failed = submit(server.url, "permanent", {})["id"]
    page.goto(f"{server.url}/#/jobs/{failed}")
    expect(page.locator(".facts .badge")).to_have_text("failed")
    traceback = page.locator(".attempt pre.traceback")
    expect(traceback).to_contain_text("raise PermanentError")
    assert traceback.inner_text() == attempts_of(server.url, failed)[0]["traceback"]
    shots("task-traceback", page)
    assert page.errors == []
