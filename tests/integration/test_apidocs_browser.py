"""The API explorer at /docs in a real browser (Debian's Chromium driven by Playwright).

Against a live server with tokens: the page asks for a token, then renders the
API from /openapi.json, and "Try it out" calls the API with that token; no
request leaves the server's origin and the Content-Security-Policy blocks
nothing. Skipped or failed like the dashboard's browser test (the ``browser``
fixture of tests/integration/conftest.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.test_dashboard import WAIT_MS

pytestmark = pytest.mark.timeout(120)
CLIENT_TOKEN = "explorer-client-0123456789abcdef"
# Chromium reports what a Content-Security-Policy blocked to the page as events.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def test_the_explorer_asks_for_a_token_renders_the_api_and_tries_it(
    browser, start_server, tmp_path: Path
):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"client:{CLIENT_TOKEN}\n")
    tokens.chmod(0o600)
    server = start_server(str(tmp_path / "docs.db"), "--token-file", str(tokens))

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "401" not in message.text
            else None
        ),
    )
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith((server.url, "data:")) else elsewhere.append(request.url)
        ),
    )
    page.goto(server.url + "/docs")

    # /openapi.json needs a token: the page says so and asks for one.
    expect(page.locator("#token-reason")).to_contain_text("401")
    page.get_by_label(re.compile("Bearer token")).fill(CLIENT_TOKEN)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("taskframe")
    expect(page.locator(".opblock-summary-path", has_text="/jobs/batch")).to_be_visible()
    expect(page.locator("#token-form")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('taskframe.token')") == CLIENT_TOKEN
    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=False)

    # "Try it out" on GET /stats: the call carries the token and the answer shows.
    # Exactly /stats (not /stats/history).
    path = page.locator(".opblock-summary-path", has_text=re.compile(r"^/stats$"))
    stats = page.locator(".opblock", has=path)
    stats.locator(".opblock-summary").click()
    stats.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.endswith("/stats")) as answer:
        stats.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers.get("authorization") == f"Bearer {CLIENT_TOKEN}"
    expect(
        stats.locator(".live-responses-table td.response-col_status:not(.col_header)").first
    ).to_contain_text("200")
    page.screenshot(path=str(tmp_path / "explorer-tried.png"), full_page=False)
    print(f"API explorer screenshots in {tmp_path}")

    assert page.evaluate("window.__violations") == []
    assert elsewhere == [], "requests left the server's origin"
    assert errors == []
    context.close()
