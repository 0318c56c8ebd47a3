"""Tokens and roles: the token list's syntax, and every route through Falcon's TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from falcon import inspect, testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import ROUTE_ROLES, create_app
from taskframe.server.http.auth import (
    ADMIN,
    CLIENT,
    OPEN,
    WORKER,
    TokenError,
    TokenSet,
    is_loopback,
    load_tokens,
    parse_token_line,
)
from taskframe.server.storage import open_store
from tests.api_server import default_plugins, migrated_copy

CLIENT_TOKEN = "client-token-0123456789"
WORKER_TOKEN = "worker-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789ab"
W1_TOKEN = "worker-w1-token-0123456789"
W2_TOKEN = "worker-w2-token-0123456789"
GPU_TOKEN = "worker-gpu-token-0123456789"
TOKEN_LINES = f"""
# comments and blank lines are fine
client:{CLIENT_TOKEN}
worker:{WORKER_TOKEN}   # a trailing comment too
admin:{ADMIN_TOKEN}
worker[w1]:{W1_TOKEN}
worker[w2]:{W2_TOKEN}
worker[gpu-*]:{GPU_TOKEN}
"""
BY_ROLE = {CLIENT: CLIENT_TOKEN, WORKER: WORKER_TOKEN, ADMIN: ADMIN_TOKEN}
SLEEP = {"type": "sleep", "payload": {"duration": 0}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the token list ---------------------------------------------------------------


def test_token_lines_give_roles_and_bindings():
    tokens = TokenSet()
    tokens.add_lines(TOKEN_LINES.splitlines(), "tokens.txt")
    assert len(tokens) == 6
    assert tokens.identify(CLIENT_TOKEN).roles == {CLIENT}
    assert tokens.identify(WORKER_TOKEN).worker_ids is None
    w1 = tokens.identify(W1_TOKEN)
    assert w1.may_use_worker_id("w1") and not w1.may_use_worker_id("w2")
    assert not w1.may_use_worker_id(None)
    gpu = tokens.identify(GPU_TOKEN)
    assert gpu.may_use_worker_id("gpu-7") and not gpu.may_use_worker_id("cpu-7")
    assert tokens.identify("not-a-configured-token") is None
    assert tokens.identify(CLIENT_TOKEN + "x") is None


def test_several_roles_and_several_worker_ids_on_one_token():
    token, principal = parse_token_line("client, worker[a, b-*]:" + "x" * 20, "here")
    assert token == "x" * 20
    assert principal.roles == {CLIENT, WORKER}
    assert principal.may_use_worker_id("a") and principal.may_use_worker_id("b-1")
    assert not principal.may_use_worker_id("ab")


def test_environment_entries_are_separated_by_semicolons_or_whitespace():
    tokens = load_tokens(None, f"client:{CLIENT_TOKEN}; worker[w1]:{W1_TOKEN}\nadmin:{ADMIN_TOKEN}")
    assert len(tokens) == 3
    assert tokens.identify(W1_TOKEN).worker_ids == ("w1",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("client " + "x" * 20, "expected ROLES:TOKEN"),
        ("wrker:" + "x" * 20, "unknown role 'wrker'"),
        ("client:", "the token after ':' is empty"),
        ("client:short", "shorter than 16 characters"),
        ("client:" + "x" * 20 + " y", "a token may hold only"),
        ("client[w1]:" + "x" * 20, "only the worker role can be bound"),
        ("worker[]:" + "x" * 20, "worker[...] needs worker ids"),
        ("worker[w1:" + "x" * 20, "unbalanced brackets"),
        (":" + "x" * 20, "unknown role"),
        ("worker,worker[w1]:" + "x" * 20, "the role worker is given twice"),
    ],
)
def test_a_bad_line_is_named_by_its_number(line, message):
    tokens = TokenSet()
    with pytest.raises(TokenError, match=re.escape(message)) as error:
        tokens.add_lines(["# first", "", line], "token file t.txt")
    assert str(error.value).startswith("token file t.txt line 3: ")


def test_errors_never_echo_a_token():
    secret = "Sup3rSecretValue0123456789"
    for line in (f"{secret}:client", secret, f"client:{secret} {secret}", f"client:{secret}!"):
        with pytest.raises(TokenError) as error:
            TokenSet().add_lines([line], "f")
        assert secret not in str(error.value)
    tokens = TokenSet()
    with pytest.raises(
        TokenError, match=r"f line 2: the same token is already defined \(f line 1\)"
    ) as error:
        tokens.add_lines([f"client:{secret}", f"admin:{secret}"], "f")
    assert secret not in str(error.value)
    assert secret not in repr(tokens.identify(secret)) + repr(tokens.identify(secret).digest)


def test_an_unreadable_token_file_is_an_error(tmp_path):
    with pytest.raises(TokenError, match="cannot read the token file"):
        load_tokens(str(tmp_path / "missing"), None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


# -- every route, through the API -----------------------------------------------------


@pytest.fixture
def scheduler(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    yield Scheduler(store, ServerConfig())
    store.close()


def make_client(
    scheduler: Scheduler, token_text: str = TOKEN_LINES, **settings
) -> testing.TestClient:
    tokens = TokenSet()
    tokens.add_lines(token_text.splitlines(), "tokens")
    access = AccessConfig(tokens=tokens, **settings)
    return testing.TestClient(create_app(scheduler.config, scheduler, default_plugins(), access))


@pytest.fixture
def client(scheduler: Scheduler) -> testing.TestClient:
    return make_client(scheduler)


@pytest.fixture(scope="module")
def refusing_client(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[testing.TestClient]:
    """One app for the module's refusal tests: a refused request changes nothing, so
    the ~190 of them need no database (nor app) of their own. Its bad-token throttle
    is off: their ~130 bad tokens from one address would trip it (as one app each,
    they sent one or two); tests/unit/test_throttle.py tests it."""
    db = migrated_copy(sqlite_template, tmp_path_factory.mktemp("auth") / "refusing.db")
    store = open_store(str(db))
    yield make_client(Scheduler(store, ServerConfig()), max_auth_failures=0)
    store.close()


def concrete(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "1", template)


def app_routes(client: testing.TestClient) -> frozenset[tuple[str, str]]:
    """(template, method) of every route; the same for every app, so computed once."""
    global _ROUTES
    if _ROUTES is None:
        _ROUTES = frozenset(
            (route.path, method.method)
            for route in inspect.inspect_app(client.app).routes
            for method in route.methods
            if not method.internal
        )
    return _ROUTES


_ROUTES: frozenset[tuple[str, str]] | None = None


def call(client: testing.TestClient, method: str, template: str, token: str | None):
    # A stale entry of the route table fails here rather than passing unnoticed.
    assert (template, method) in app_routes(client), f"ROUTE_ROLES names {method} {template}"
    headers = bearer(token) if token else {}
    return client.simulate_request(method, concrete(template), headers=headers, json={})


PROTECTED = sorted((key, roles) for key, roles in ROUTE_ROLES.items() if roles != OPEN)
ROUTE_IDS = [f"{method} {concrete(path)}" for (path, method), _ in PROTECTED]


def test_every_route_of_the_app_is_in_the_role_table(client):
    """A route added without a role decision would be admin-only; make it a decision."""
    declared = set(ROUTE_ROLES)
    for route in inspect.inspect_app(client.app).routes:
        for method in route.methods:
            if method.internal or method.method in ("OPTIONS",):
                continue
            assert (route.path, method.method) in declared, (route.path, method.method)


@pytest.mark.parametrize(("route", "roles"), PROTECTED, ids=ROUTE_IDS)
def test_no_token_is_401_with_a_bearer_challenge(refusing_client, route, roles):
    path, method = route
    answer = call(refusing_client, method, path, None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json.keys() == {"code", "title", "description"}
    assert answer.json["code"] == "unauthorized"
    assert "Authorization: Bearer" in answer.json["description"]


@pytest.mark.parametrize(("route", "roles"), PROTECTED, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "header", [f"Bearer {CLIENT_TOKEN}x", "Bearer", f"Basic {CLIENT_TOKEN}", CLIENT_TOKEN]
)
def test_a_bad_token_is_401(refusing_client, route, roles, header):
    path, method = route
    call(refusing_client, method, path, None)  # skips a route this app lacks
    answer = refusing_client.simulate_request(
        method, concrete(path), headers={"Authorization": header}, json={}
    )
    assert answer.status_code == 401
    assert "invalid_token" in answer.headers["www-authenticate"]
    assert CLIENT_TOKEN not in answer.text


WRONG = [
    pytest.param(route, role, id=f"{role} {route[1]} {concrete(route[0])}")
    for route, roles in PROTECTED
    for role in (CLIENT, WORKER)
    if role not in roles
]
RIGHT = [
    pytest.param(route, role, id=f"{role} {route[1]} {concrete(route[0])}")
    for route, roles in PROTECTED
    for role in (CLIENT, WORKER, ADMIN)
    if role in roles or role == ADMIN
]


@pytest.mark.parametrize(("route", "role"), WRONG)
def test_the_wrong_role_is_403(refusing_client, route, role):
    path, method = route
    answer = call(refusing_client, method, path, BY_ROLE[role])
    assert answer.status_code == 403, answer.text
    assert answer.json.keys() == {"code", "title", "description"}
    assert answer.json["code"] == "forbidden"
    assert "needs the role" in answer.json["description"]


@pytest.mark.parametrize(("route", "role"), RIGHT)
def test_the_right_role_gets_through(client, route, role):
    client.simulate_post("/jobs", json=SLEEP, headers=bearer(CLIENT_TOKEN))  # job 1
    path, method = route
    answer = call(client, method, path, BY_ROLE[role])
    # The empty body may well be refused, but by the endpoint, not by the auth check.
    assert answer.status_code not in (401, 403), answer.text
    assert answer.status_code < 500


@pytest.mark.parametrize(
    "route",
    sorted(key for key, roles in ROUTE_ROLES.items() if roles == OPEN),
    ids=lambda route: f"{route[1]} {route[0]}",
)
def test_open_routes_need_no_token(refusing_client, route):
    path, method = route
    answer = call(refusing_client, method, path, None)  # an unknown file is a 404, not a 401
    assert answer.status_code not in (401, 403), answer.text


def test_an_unknown_path_is_404_whoever_asks(client):
    # Falcon answers before any check; the routes are public anyway (README, OpenAPI).
    assert client.simulate_get("/nowhere").status_code == 404


def test_health_tells_an_anonymous_caller_only_the_status(client):
    anonymous = client.simulate_get("/health")
    assert anonymous.status_code == 200
    assert anonymous.json == {"status": "ok"}
    bad = client.simulate_get("/health", headers=bearer("x" * 20))
    assert bad.json == {"status": "ok"}
    full = client.simulate_get("/health", headers=bearer(WORKER_TOKEN)).json
    assert full["status"] == "ok" and "sleep" in full["job_types"]


def test_without_tokens_everything_is_open(scheduler):
    client = testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
    assert client.simulate_post("/jobs", json=SLEEP).status_code == 201
    assert client.simulate_post("/lease", json={"worker_id": "w9"}).status_code == 200
    assert "job_types" in client.simulate_get("/health").json


# -- worker ids bound to tokens --------------------------------------------------------


def lease_one(client: testing.TestClient, token: str, worker_id: str) -> dict:
    client.simulate_post("/jobs", json=SLEEP, headers=bearer(CLIENT_TOKEN))
    answer = client.simulate_post(
        "/lease", json={"worker_id": worker_id, "max": 1}, headers=bearer(token)
    )
    assert answer.status_code == 200, answer.text
    [job] = answer.json["jobs"]
    return job


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/lease"), ("POST", "/next-job?worker_id={w}"), ("POST", "/heartbeats")],
)
def test_a_bound_worker_cannot_lease_or_heartbeat_as_another(client, method, path):
    body = {"worker_id": "w2", "leases": []} if path == "/heartbeats" else {"worker_id": "w2"}
    answer = client.simulate_request(
        method, path.format(w="w2"), json=body, headers=bearer(W1_TOKEN)
    )
    assert answer.status_code == 403, answer.text
    assert "may not act as worker 'w2'" in answer.json["description"]
    assert answer.json["errors"]["worker_id"] == ["this token is bound to w1"]


@pytest.mark.parametrize("action", ["complete", "heartbeat", "release"])
def test_a_bound_worker_cannot_touch_another_workers_lease(client, action):
    job = lease_one(client, W2_TOKEN, "w2")
    body = {"worker_id": "w2", "lease_id": job["lease_id"]}
    if action == "complete":
        body["status"] = "succeeded"
    path = f"/jobs/{job['id']}/{action}"
    answer = client.simulate_post(path, json=body, headers=bearer(W1_TOKEN))
    assert answer.status_code == 403, answer.text
    assert "may not act as worker 'w2'" in answer.json["description"]
    # Under its own id it holds no such lease: the database guard checks the worker id.
    answer = client.simulate_post(path, json={**body, "worker_id": "w1"}, headers=bearer(W1_TOKEN))
    assert answer.status_code == 409, answer.text
    job_now = client.simulate_get(f"/jobs/{job['id']}", headers=bearer(CLIENT_TOKEN)).json
    assert job_now["status"] == "running" and job_now["worker_id"] == "w2"
    # The holder itself may.
    body["worker_id"] = "w2"
    answer = client.simulate_post(path, json=body, headers=bearer(W2_TOKEN))
    assert answer.status_code == 200, answer.text


def test_a_completion_riding_on_a_lease_is_checked_under_the_leasing_worker(client):
    job = lease_one(client, W2_TOKEN, "w2")
    completion = {"job_id": job["id"], "lease_id": job["lease_id"], "status": "succeeded"}
    answer = client.simulate_post(
        "/lease",
        json={"worker_id": "w1", "max": 0, "completions": [completion]},
        headers=bearer(W1_TOKEN),
    )
    assert answer.status_code == 200
    assert answer.json["completions"][0]["code"] == 409
    job_now = client.simulate_get(f"/jobs/{job['id']}", headers=bearer(CLIENT_TOKEN)).json
    assert job_now["status"] == "running"


def test_a_prefix_bound_worker_uses_any_id_with_its_prefix(client):
    job = lease_one(client, GPU_TOKEN, "gpu-3")
    assert job["worker_id"] == "gpu-3"
    answer = client.simulate_post("/lease", json={"worker_id": "cpu-3"}, headers=bearer(GPU_TOKEN))
    assert answer.status_code == 403


def test_admin_and_unbound_worker_tokens_may_use_any_worker_id(client):
    for token in (ADMIN_TOKEN, WORKER_TOKEN):
        job = lease_one(client, token, "anyone")
        body = {"worker_id": "anyone", "lease_id": job["lease_id"], "status": "succeeded"}
        answer = client.simulate_post(
            f"/jobs/{job['id']}/complete", json=body, headers=bearer(token)
        )
        assert answer.status_code == 200, answer.text


# -- lease ids stay with the worker ------------------------------------------------------


def test_a_client_token_never_sees_a_lease_id(client):
    running = lease_one(client, W1_TOKEN, "w1")
    done = lease_one(client, W1_TOKEN, "w1")
    body = {"worker_id": "w1", "lease_id": done["lease_id"], "status": "failed", "error": "x"}
    client.simulate_post(f"/jobs/{done['id']}/complete", json=body, headers=bearer(W1_TOKEN))
    lease_ids = {running["lease_id"], done["lease_id"]}
    texts = [
        client.simulate_get("/jobs", headers=bearer(CLIENT_TOKEN)).text,
        client.simulate_get(f"/jobs/{running['id']}", headers=bearer(CLIENT_TOKEN)).text,
        client.simulate_get(f"/jobs/{done['id']}", headers=bearer(CLIENT_TOKEN)).text,
        client.simulate_get(f"/jobs/{done['id']}/attempts", headers=bearer(CLIENT_TOKEN)).text,
        client.simulate_post(f"/jobs/{running['id']}/cancel", headers=bearer(CLIENT_TOKEN)).text,
    ]
    for text in texts:
        assert "lease_id" not in text
        for lease_id in lease_ids:
            assert lease_id not in text


def test_the_openapi_document_declares_the_bearer_scheme(client):
    spec = client.simulate_get("/openapi.json", headers=bearer(CLIENT_TOKEN)).json
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path == "/health":
                assert "security" not in operation
            else:
                assert operation["security"] == [{"bearer": []}]
                assert {"401", "403"} <= set(operation["responses"])
