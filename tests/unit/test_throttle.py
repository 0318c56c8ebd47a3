"""Bad tokens: throttled per client address (429 + Retry-After), refusals logged summed."""

from __future__ import annotations

import logging

import falcon
import pytest
from falcon import testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import create_app
from taskframe.server.http.auth import CLIENT, Authenticator, TokenSet
from taskframe.server.http.errors import install_error_handlers
from taskframe.server.http.throttle import AuthThrottle, RefusalLog, client_key
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

GOOD = "client-token-0123456789"
BAD = {"Authorization": "Bearer guess-0123456789abcdef"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_client_key_groups_ipv6_by_64_and_unmaps_ipv4():
    assert client_key("10.0.0.5") == "10.0.0.5"
    assert (
        client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key("::ffff:10.0.0.5") == "10.0.0.5"
    assert client_key(None) == "unknown"


def test_the_throttle_opens_again_as_failures_age():
    clock = Clock()
    throttle = AuthThrottle(3, window=60, clock=clock)
    thrown = []
    for _ in range(3):
        thrown.append(throttle.failed("10.0.0.5"))
        clock.now += 10
    assert thrown == [False, False, True]
    assert throttle.retry_after("10.0.0.5") == 30  # the first failure was 30 s ago
    assert throttle.retry_after("10.0.0.6") is None
    clock.now += 29.5
    assert throttle.retry_after("10.0.0.5") == 1
    clock.now += 1
    assert throttle.retry_after("10.0.0.5") is None
    assert throttle.failed("10.0.0.5") is True  # three in the window again


def test_the_throttle_remembers_a_bounded_number_of_addresses():
    clock = Clock()
    throttle = AuthThrottle(2, clock=clock, max_tracked=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 250}.{n % 250}")
    assert len(throttle._failures) <= 100


def test_refusals_are_logged_once_per_client_and_reason_then_summed(caplog):
    log = logging.getLogger("test.refusals")
    refusals = RefusalLog(log, period=3600)
    request = testing.create_req(method="POST", path="/jobs", remote_addr="10.0.0.5")
    other = testing.create_req(method="POST", path="/jobs", remote_addr="10.0.0.6")
    with caplog.at_level(logging.INFO, logger="test.refusals"):
        for _ in range(500):
            refusals.refused(request, "bad token")
        refusals.refused(other, "bad token")
        refusals.refused(request, "wrong role", " (roles client, needs worker)")
        assert len(caplog.records) == 3
        refusals.close()
    assert len(caplog.records) == 4
    summary = caplog.records[-1].getMessage()
    assert "refused 499 more request(s)" in summary and "10.0.0.5: 499 bad token" in summary


def throttled_app(clock: Clock, max_failures: int = 3) -> testing.TestClient:
    tokens = TokenSet()
    tokens.add_env(f"client:{GOOD}")
    routes = {("/things", "GET"): frozenset({CLIENT})}
    app = falcon.App(
        middleware=[Authenticator(tokens, routes, AuthThrottle(max_failures, clock=clock))]
    )
    install_error_handlers(app)

    class Things:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"ok": True}

    app.add_route("/things", Things())
    return testing.TestClient(app)


def test_past_the_limit_an_address_gets_429_even_with_a_good_token():
    clock = Clock()
    client = throttled_app(clock)
    good = {"Authorization": f"Bearer {GOOD}"}
    for _ in range(3):
        assert client.simulate_get("/things", headers=BAD).status_code == 401
    refused = client.simulate_get("/things", headers=good)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json["title"] == "Too many requests"
    assert "retry in 60 s" in refused.json["description"]
    # Without a token it learns nothing either way: 401 as always.
    assert client.simulate_get("/things").status_code == 401
    # Another address is not affected.
    assert client.simulate_get("/things", headers=good, remote_addr="10.9.9.9").status_code == 200
    clock.now += 61
    assert client.simulate_get("/things", headers=good).status_code == 200


@pytest.fixture
def scheduler(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    yield Scheduler(store, ServerConfig())
    store.close()


def test_the_app_throttles_after_max_auth_failures(scheduler):
    tokens = TokenSet()
    tokens.add_env(f"client:{GOOD}")
    access = AccessConfig(tokens=tokens, max_auth_failures=5)
    client = testing.TestClient(create_app(ServerConfig(), scheduler, default_plugins(), access))
    statuses = [client.simulate_get("/jobs", headers=BAD).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    # A bad token on an open route counts too (/health tells a valid token more).
    assert client.simulate_get("/health", headers=BAD).status_code == 429
    assert client.simulate_get("/health").status_code == 200


def test_max_auth_failures_0_turns_the_throttle_off(scheduler):
    tokens = TokenSet()
    tokens.add_env(f"client:{GOOD}")
    access = AccessConfig(tokens=tokens, max_auth_failures=0)
    client = testing.TestClient(create_app(ServerConfig(), scheduler, default_plugins(), access))
    assert {client.simulate_get("/jobs", headers=BAD).status_code for _ in range(50)} == {401}
