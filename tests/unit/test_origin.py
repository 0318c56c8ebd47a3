"""Cross-site requests and DNS rebinding: refused by server/http/origin.py before any route runs."""

from __future__ import annotations

import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import ROUTE_ROLES, create_app
from taskframe.server.http.auth import TokenSet
from taskframe.server.http.origin import AllowedHosts, parse_allowed_hosts, split_host
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

SLEEP = {"type": "sleep", "payload": {"duration": 0}}
ADMIN_TOKEN = "admin-token-0123456789ab"
HOST = {"Host": "127.0.0.1:8000"}


@pytest.fixture
def scheduler(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    yield Scheduler(store, ServerConfig())
    store.close()


def make_client(scheduler: Scheduler, tokens: str = "", allowed: str = "") -> testing.TestClient:
    token_set = TokenSet()
    if tokens:
        token_set.add_env(tokens)
    access = AccessConfig(
        tokens=token_set,
        allowed_hosts=AllowedHosts.build("127.0.0.1", parse_allowed_hosts(allowed)),
    )
    app = create_app(ServerConfig(), scheduler, default_plugins(), access)
    return testing.TestClient(app, headers=HOST)


@pytest.fixture
def client(scheduler: Scheduler) -> testing.TestClient:
    return make_client(scheduler)


def paused(client: testing.TestClient, queue: str = "default") -> bool:
    queues = {q["name"]: q for q in client.simulate_get("/queues").json["queues"]}
    return queue in queues and queues[queue]["paused"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::1]", ("::1", None)),
        ("Tasks.Example.COM.", ("tasks.example.com", None)),
        ("localhost:x", ("localhost", None)),
    ],
)
def test_split_host(header, expected):
    assert split_host(header) == expected


def test_hosts_allowed_without_tokens():
    hosts = AllowedHosts.build("tasks.internal", ["ci.example.com", "*.corp.example"])
    for host in ("tasks.internal", "localhost", "app.localhost", "127.0.0.1", "10.1.2.3", "::1"):
        assert hosts.allows(host), host
    assert hosts.allows("ci.example.com") and hosts.allows("a.b.corp.example")
    for host in ("evil.example", "corp.example", "example.com", "127.0.0.1.evil.example"):
        assert not hosts.allows(host), host
    assert AllowedHosts.build("127.0.0.1", ["*"]).allows("anything.example")


def test_a_foreign_host_is_refused_without_tokens(client):
    rebound = {"Host": "evil.example:8000"}
    answer = client.simulate_post("/queues/default/pause", headers=rebound)
    assert answer.status_code == 421
    assert answer.json["title"] == "Unknown host"
    assert "'evil.example'" in answer.json["description"]
    assert "--allowed-host" in answer.json["description"]
    assert client.simulate_get("/jobs", headers=rebound).status_code == 421  # reads too
    assert not paused(client)
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "192.168.1.20:8000"):
        assert client.simulate_get("/jobs", headers={"Host": host}).status_code == 200, host


def test_names_given_with_allowed_host_are_answered(scheduler):
    client = make_client(scheduler, allowed="tasks.example.com")
    assert client.simulate_get("/jobs", headers={"Host": "tasks.example.com"}).status_code == 200
    assert client.simulate_get("/jobs", headers={"Host": "evil.example"}).status_code == 421


def test_with_tokens_the_host_is_not_checked(scheduler):
    client = make_client(scheduler, tokens=f"admin:{ADMIN_TOKEN}")
    answer = client.simulate_get("/jobs", headers={"Host": "tasks.example.com"})
    assert answer.status_code == 401  # the token decides, whatever the name


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_a_browser_request_from_another_site_is_refused(client, site):
    answer = client.simulate_post("/queues/default/pause", headers={"Sec-Fetch-Site": site})
    assert answer.status_code == 403
    assert answer.json["title"] == "Cross-site request refused"
    assert f"Sec-Fetch-Site: {site.lower()}" in answer.json["description"]
    assert not paused(client)


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_a_request_of_this_servers_own_page_passes(client, site):
    answer = client.simulate_post("/queues/default/pause", headers={"Sec-Fetch-Site": site})
    assert answer.status_code == 200, answer.text
    assert paused(client)


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://tasks.example.com", "tasks.example.com", True),  # behind a TLS proxy
        ("http://127.0.0.1:3000", "127.0.0.1:8000", False),  # another port
        ("http://evil.example:8000", "127.0.0.1:8000", False),
        ("http://localhost:8000", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),  # a sandboxed frame, a file: page
        ("not a url", "127.0.0.1:8000", False),
    ],
)
def test_without_sec_fetch_site_the_origin_must_be_this_server(scheduler, origin, host, allowed):
    client = make_client(scheduler, allowed="tasks.example.com")
    answer = client.simulate_post("/queues/default/pause", headers={"Origin": origin, "Host": host})
    assert answer.status_code == (200 if allowed else 403), answer.text
    assert paused(client) == allowed


def test_with_tokens_a_cross_site_request_is_refused_too(scheduler):
    client = make_client(scheduler, tokens=f"admin:{ADMIN_TOKEN}")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Sec-Fetch-Site": "cross-site"}
    assert client.simulate_post("/queues/default/pause", headers=headers).status_code == 403
    headers["Sec-Fetch-Site"] = "same-origin"
    assert client.simulate_post("/queues/default/pause", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
def test_a_state_change_with_a_form_or_text_body_is_415(client, content_type):
    job = client.simulate_post("/jobs", json=SLEEP).json
    for path in (f"/jobs/{job['id']}/cancel", "/queues/default/pause", "/next-job?worker_id=w"):
        answer = client.simulate_post(path, body="a=b", headers={"Content-Type": content_type})
        assert answer.status_code == 415, (path, answer.text)
        assert answer.json["title"] == "Unsupported media type"
    # Even empty, a form says where it came from.
    answer = client.simulate_post(
        f"/jobs/{job['id']}/cancel", headers={"Content-Type": content_type}
    )
    assert answer.status_code == 415
    assert client.simulate_get(f"/jobs/{job['id']}").json["status"] == "queued"
    assert not paused(client)


def test_a_body_without_a_content_type_is_415_and_none_at_all_is_fine(client):
    job = client.simulate_post("/jobs", json=SLEEP).json
    answer = client.simulate_post(f"/jobs/{job['id']}/cancel", body="x")
    assert answer.status_code == 415
    assert client.simulate_post(f"/jobs/{job['id']}/cancel").json["status"] == "cancelled"
    retried = client.simulate_post(f"/jobs/{job['id']}/retry", headers={"Content-Length": "0"})
    assert retried.json["status"] == "queued"


def test_no_get_leases_a_job(client):
    job = client.simulate_post("/jobs", json=SLEEP).json
    answer = client.simulate_get("/next-job", params={"worker_id": "img-tag"})
    assert answer.status_code == 405
    assert client.simulate_get(f"/jobs/{job['id']}").json["status"] == "queued"
    assert ("/next-job", "GET") not in ROUTE_ROLES
    leased = client.simulate_post("/next-job", params={"worker_id": "w1"})
    assert leased.status_code == 200 and leased.json["id"] == job["id"]
