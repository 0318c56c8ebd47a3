"""A page on another origin, in a real Chromium, against a real server without tokens.

The page (served by a tiny http.server on another port, as ``localhost``; the
server is ``127.0.0.1``) tries what worked before: form POSTs that pause the
``default`` queue and a schedule and cancel a job, ``fetch(..., {mode:
"no-cors"})`` POSTs without a body (cancel, retry, pause, lease) or with a
text body (a job, a schedule), and an ``<img>`` pointing at ``/next-job``.
Nothing may change. And DNS rebinding: a request naming another ``Host`` is
refused.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.processes import get_job, submit

SCHEDULE = {
    "name": "nightly",
    "cron": "0 3 * * *",
    "job": {"type": "sleep", "payload": {"duration": 0}},
}
ATTACK = """<!doctype html>
<title>cute cats</title>
<form target="sink0" method="POST" action="{S}/queues/default/pause"></form>
<form target="sink1" method="POST" action="{S}/schedules/nightly/pause"></form>
<form target="sink2" method="POST" action="{S}/jobs/{A}/cancel"><input name="x" value="1"></form>
<form target="sink3" method="POST" action="{S}/next-job?worker_id=form"></form>
<form target="sink4" method="POST" enctype="text/plain" action="{S}/jobs">
  <input name='{{"type":"sleep","payload":{{"duration":0}},"x":"' value='"}}'></form>
<iframe name="sink0"></iframe><iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<iframe name="sink3"></iframe><iframe name="sink4"></iframe>
<script>
const S = "{S}";
const loaded = (element) => new Promise((done) => {{
  element.onload = done;
  element.onerror = done;
}});
async function attack() {{
  const img = new Image();
  const imgDone = loaded(img);
  img.src = S + "/next-job?worker_id=img";
  const frames = [...document.querySelectorAll("iframe")].map(loaded);
  for (const form of document.forms) form.submit();
  const post = {{ method: "POST", mode: "no-cors" }};
  const text = (body) => ({{ ...post, body: JSON.stringify(body),
                             headers: {{ "Content-Type": "text/plain" }} }});
  await Promise.allSettled([
    fetch(S + "/jobs/{A}/cancel", post),
    fetch(S + "/jobs/{B}/retry", post),
    fetch(S + "/queues/default/pause", post),
    fetch(S + "/schedules/nightly/pause", post),
    fetch(S + "/next-job?worker_id=fetch", post),
    fetch(S + "/jobs", text({{ type: "sleep", payload: {{ duration: 0 }} }})),
    fetch(S + "/schedules", text({SCHEDULE2})),
    imgDone,
    ...frames,
  ]);
  document.title = "done";
}}
attack();
</script>
"""


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served on another port: (folder, its base URL as http://localhost:PORT)."""
    folder = tmp_path / "site"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://localhost:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()


def state(url: str) -> dict:
    queues = requests.get(f"{url}/queues", timeout=10).json()["queues"]
    jobs = requests.get(f"{url}/jobs", params={"limit": 100}, timeout=10).json()["jobs"]
    return {
        "paused queues": sorted(q["name"] for q in queues if q["paused"]),
        "schedules": {
            s["name"]: s["paused"]
            for s in requests.get(f"{url}/schedules", timeout=10).json()["schedules"]
        },
        "jobs": sorted((job["id"], job["status"], job["attempts"]) for job in jobs),
    }


@pytest.mark.timeout(180)
def test_a_page_of_another_origin_changes_nothing(
    browser,  # noqa: F811 - the fixture imported above
    start_server,
    tmp_path,
    other_origin,
):
    server = start_server(str(tmp_path / "jobs.db"))
    victim = submit(server.url, "sleep", {"duration": 0})
    stopped = submit(server.url, "sleep", {"duration": 0})
    assert requests.post(f"{server.url}/jobs/{stopped['id']}/cancel", timeout=10).ok
    assert requests.post(f"{server.url}/schedules", json=SCHEDULE, timeout=10).status_code == 201
    before = state(server.url)
    assert before["paused queues"] == [] and before["schedules"] == {"nightly": False}

    folder, site = other_origin
    second = {**SCHEDULE, "name": "evil"}
    (folder / "attack.html").write_text(
        ATTACK.format(S=server.url, A=victim["id"], B=stopped["id"], SCHEDULE2=json.dumps(second))
    )
    page = browser.new_page()
    page.goto(f"{site}/attack.html")
    page.wait_for_function("document.title === 'done'", timeout=30_000)
    page.close()

    assert state(server.url) == before
    assert get_job(server.url, victim["id"])["status"] == "queued"
    log = server.output()
    # The requests did reach the server, and were refused there.
    assert "cross-site (Sec-Fetch-Site: cross-site)" in log


@pytest.mark.timeout(60)
def test_a_rebound_host_name_is_refused_without_tokens(start_server, tmp_path):
    # (--allowed-host as its variable: a build without it ignores it, and shows its fault.)
    server = start_server(
        str(tmp_path / "jobs.db"), env={"TASKFRAME_ALLOWED_HOST": "tasks.example"}
    )
    job = submit(server.url, "sleep", {"duration": 0})
    evil = {"Host": f"evil.example:{server.port}"}
    paused = requests.post(f"{server.url}/queues/default/pause", headers=evil, timeout=10)
    assert paused.status_code == 421
    assert paused.json()["title"] == "Unknown host"
    assert "evil.example" in paused.json()["description"]
    read = requests.get(f"{server.url}/jobs/{job['id']}", headers=evil, timeout=10)
    assert read.status_code == 421  # nor can such a page read the jobs
    assert state(server.url)["paused queues"] == []
    for host in ("localhost", "127.0.0.1", "tasks.example"):
        answer = requests.get(
            f"{server.url}/jobs", headers={"Host": f"{host}:{server.port}"}, timeout=10
        )
        assert answer.status_code == 200, (host, answer.text)
