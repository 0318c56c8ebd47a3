"""Every error body carries its ``code`` (core.errors.ErrorCode), and the client raises the
class of that code (client/errors.py), a subclass of its status's class."""

from __future__ import annotations

import argparse
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import falcon
import pytest
from falcon import testing

from taskframe.client import errors as client_errors
from taskframe.client.api import Client
from taskframe.core.errors import ErrorCode
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.app import create_app
from taskframe.server.http.auth import TokenSet
from taskframe.server.http.origin import AllowedHosts
from taskframe.server.http.serving import add_serving_options, create_server
from taskframe.server.storage import open_store
from tests.api_server import default_plugins

SLEEP = {"type": "sleep", "payload": {"duration": 0}}
LATER = {**SLEEP, "delay": 3600}
CLIENT_TOKEN = "client-token-0123456789"
WORKER_TOKEN = "worker-token-0123456789"
HOST = {"Host": "127.0.0.1"}
#: Codes no request to this server can bring about (tested through their mapping only).
UNREACHABLE = {ErrorCode.LENGTH_REQUIRED}  # no route requires Content-Length
SEEN: set[ErrorCode] = set()


@pytest.fixture
def engine(migrated_sqlite_url: str) -> Iterator[Scheduler]:
    store = open_store(migrated_sqlite_url, busy_timeout=0.2)
    store.migrate()
    yield Scheduler(store, ServerConfig(max_schedules=2, cascade_batch=2))
    store.close()


def app_client(engine: Scheduler, **access: Any) -> testing.TestClient:
    app = create_app(engine.config, engine, default_plugins(), AccessConfig(**access))
    return testing.TestClient(app, headers=HOST)


@pytest.fixture
def client(engine: Scheduler) -> testing.TestClient:
    return app_client(engine)


def refused(answer: Any, code: ErrorCode) -> None:
    """``answer`` is the error ``code`` with its status, in the one body shape."""
    assert answer.status_code == code.status, answer.text
    assert answer.json["code"] == code.value, answer.json
    assert {"title", "description"} <= answer.json.keys()
    SEEN.add(code)


def leased(client: testing.TestClient) -> dict[str, Any]:
    client.simulate_post("/jobs", json=SLEEP)
    return client.simulate_post("/lease", json={"worker_id": "w1", "max": 1}).json["jobs"][0]


def test_body_and_request_refusals(client):
    refused(
        client.simulate_post("/jobs", body="{", content_type="application/json"), ErrorCode.BAD_JSON
    )
    refused(client.simulate_post("/jobs", json={}), ErrorCode.VALIDATION_FAILED)
    refused(
        client.simulate_post("/jobs", body="x", content_type="text/plain"),
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    )
    big = {**SLEEP, "payload": {"duration": 0, "pad": "x" * (2 << 20)}}
    refused(client.simulate_post("/jobs", json=big), ErrorCode.PAYLOAD_TOO_LARGE)
    refused(client.simulate_delete("/jobs"), ErrorCode.METHOD_NOT_ALLOWED)
    cross = {"Sec-Fetch-Site": "cross-site"}
    refused(client.simulate_post("/jobs", json=SLEEP, headers=cross), ErrorCode.CROSS_SITE)


def test_not_found_everywhere(client):
    refused(client.simulate_get("/jobs/999"), ErrorCode.NOT_FOUND)
    refused(client.simulate_get("/no-such-path"), ErrorCode.NOT_FOUND)
    refused(client.simulate_get("/schedules/nope"), ErrorCode.NOT_FOUND)
    refused(client.simulate_delete("/limits/queue/nope"), ErrorCode.NOT_FOUND)
    refused(client.simulate_get("/dashboard/nope.js"), ErrorCode.NOT_FOUND)
    report = {"worker_id": "w1", "lease_id": "x", "status": "succeeded"}
    refused(client.simulate_post("/jobs/999/complete", json=report), ErrorCode.NOT_FOUND)


def test_each_conflict_says_which(client):
    job = leased(client)
    stale = {"worker_id": "w1", "lease_id": "not-the-lease", "status": "succeeded"}
    refused(client.simulate_post(f"/jobs/{job['id']}/complete", json=stale), ErrorCode.STALE_LEASE)
    beat = {"worker_id": "w1", "lease_id": "not-the-lease"}
    refused(client.simulate_post(f"/jobs/{job['id']}/heartbeat", json=beat), ErrorCode.STALE_LEASE)
    release = {"worker_id": "w1", "lease_id": "not-the-lease"}
    refused(client.simulate_post(f"/jobs/{job['id']}/release", json=release), ErrorCode.STALE_LEASE)
    queued = client.simulate_post("/jobs", json=LATER).json["id"]
    refused(client.simulate_post(f"/jobs/{queued}/retry"), ErrorCode.NOT_RETRYABLE)
    client.simulate_post(f"/jobs/{queued}/cancel")
    refused(client.simulate_post(f"/jobs/{queued}/cancel"), ErrorCode.JOB_FINISHED)
    keyed = {**LATER, "idempotency_key": "k1"}
    client.simulate_post("/jobs", json=keyed)
    other = {**keyed, "priority": 9}
    refused(client.simulate_post("/jobs", json=other), ErrorCode.IDEMPOTENCY_CONFLICT)
    schedule = {"name": "nightly", "cron": "0 3 * * *", "job": SLEEP}
    assert client.simulate_post("/schedules", json=schedule).status_code == 201
    refused(client.simulate_post("/schedules", json=schedule), ErrorCode.SCHEDULE_EXISTS)
    assert client.simulate_post("/schedules", json={**schedule, "name": "b"}).status_code == 201
    third = {**schedule, "name": "c"}  # max_schedules=2
    refused(client.simulate_post("/schedules", json=third), ErrorCode.TOO_MANY_SCHEDULES)


def test_a_retry_while_dependants_are_being_cancelled_is_try_again(client):
    root = client.simulate_post("/jobs", json=LATER).json["id"]
    dependants = [{**SLEEP, "depends_on": [root]} for _ in range(5)]  # cascade_batch=2
    assert client.simulate_post("/jobs/batch", json={"jobs": dependants}).status_code == 201
    client.simulate_post(f"/jobs/{root}/cancel")
    refused(client.simulate_post(f"/jobs/{root}/retry"), ErrorCode.TRY_AGAIN)


def test_tokens_roles_hosts_and_throttling(engine):
    tokens = TokenSet()
    tokens.add_lines([f"client:{CLIENT_TOKEN}", f"worker[w1]:{WORKER_TOKEN}"], "tokens")
    client = app_client(engine, tokens=tokens, max_auth_failures=2)
    refused(client.simulate_get("/jobs"), ErrorCode.UNAUTHORIZED)
    as_worker = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    refused(client.simulate_get("/jobs", headers=as_worker), ErrorCode.FORBIDDEN)
    other_worker = {"worker_id": "w2", "max": 1}
    refused(
        client.simulate_post("/lease", json=other_worker, headers=as_worker), ErrorCode.FORBIDDEN
    )
    bad = {"Authorization": "Bearer not-a-token-0123456789"}
    for _ in range(2):
        client.simulate_get("/jobs", headers=bad)
    refused(client.simulate_get("/jobs", headers=bad), ErrorCode.RATE_LIMITED)
    guarded = app_client(engine, allowed_hosts=AllowedHosts.build("127.0.0.1", []))
    refused(
        guarded.simulate_get("/jobs", headers={"Host": "rebound.example"}), ErrorCode.UNKNOWN_HOST
    )


def test_a_database_that_does_not_answer_and_a_bug(engine, client, migrated_sqlite_url):
    with sqlite3.connect(migrated_sqlite_url.removeprefix("sqlite:///")) as other:
        other.execute("BEGIN IMMEDIATE")  # the write lock of the whole file
        refused(client.simulate_post("/jobs", json=SLEEP), ErrorCode.DATABASE_UNAVAILABLE)
        other.execute("ROLLBACK")

    class Broken:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise RuntimeError("a bug")

    client.app.add_route("/broken", Broken())
    refused(client.simulate_get("/broken"), ErrorCode.INTERNAL_ERROR)


@contextmanager
def waitress(app: Callable[..., Any], header_timeout: float) -> Iterator[int]:
    """The app under waitress as taskframe-server sets it up (its channel: 413 and 408)."""
    parser = argparse.ArgumentParser()
    add_serving_options(parser)
    options = parser.parse_args([])
    options.host, options.port, options.threads = "127.0.0.1", 0, 2
    options.header_timeout = header_timeout
    server = create_server(app, ServerConfig(), options)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            server.asyncore.loop(timeout=0.2, map=server._map, count=1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stopping.set()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)
        server.close()


def raw_answer(port: int, request: bytes) -> tuple[int, dict[str, Any]]:
    import json

    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.timeout(60)
def test_the_channel_below_falcon_answers_with_codes_too(engine):
    app = create_app(ServerConfig(), engine, default_plugins())
    with waitress(app, header_timeout=0.3) as port:
        too_big = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n\r\n"
        status, body = raw_answer(port, too_big)
        assert (status, body["code"]) == (413, "payload_too_large")
        SEEN.add(ErrorCode.PAYLOAD_TOO_LARGE)
        half = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the rest never comes
        status, body = raw_answer(port, half)
        assert (status, body["code"]) == (408, "request_timeout")
        SEEN.add(ErrorCode.REQUEST_TIMEOUT)
        # What waitress itself refuses, in the API's shape too.
        malformed = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n"
        status, body = raw_answer(port, malformed)
        assert (status, body["code"]) == (400, "bad_request")
        SEEN.add(ErrorCode.BAD_REQUEST)
        huge = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"x" * 70000 + b"\r\n\r\n"
        status, body = raw_answer(port, huge)
        assert (status, body["code"]) == (431, "headers_too_large")
        SEEN.add(ErrorCode.HEADERS_TOO_LARGE)
        gzip = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n"
        status, body = raw_answer(port, gzip)
        assert (status, body["code"]) == (501, "not_implemented")
        SEEN.add(ErrorCode.NOT_IMPLEMENTED)


def test_every_reachable_code_was_seen(request):
    """Run after the tests above (pytest keeps the file's order): none is left out."""
    selected = {item.originalname for item in request.session.items}
    if not {name for name in globals() if name.startswith("test_")} <= selected:
        pytest.skip("only with every test of this module")
    assert SEEN == set(ErrorCode) - UNREACHABLE


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.value)
def test_the_client_raises_the_class_of_each_code(code):
    cls = client_errors.error_class(code.status, code.value)
    assert cls is client_errors.BY_CODE[code]
    # Under the class of its status, so that an ``except Conflict`` still catches it.
    assert issubclass(cls, client_errors.error_class(code.status))
    # From another status (a proxy's answer), the status decides.
    assert client_errors.error_class(599, code.value) is client_errors.Unavailable


def test_an_unknown_code_falls_back_to_the_status():
    assert client_errors.error_class(409, "a_newer_servers_code") is client_errors.Conflict


def test_the_status_alone_maps_to_the_generic_codes():
    assert ErrorCode.for_status(400) is ErrorCode.BAD_REQUEST
    assert ErrorCode.for_status(411) is ErrorCode.LENGTH_REQUIRED
    assert ErrorCode.for_status(418) is ErrorCode.BAD_REQUEST
    assert ErrorCode.for_status(502) is ErrorCode.INTERNAL_ERROR


def test_the_client_raises_typed_errors_from_a_real_server(api):
    with Client(api.url) as client:
        job = client.submit("sleep", {"duration": 0}, delay=3600)
        client.cancel(job.id)
        with pytest.raises(client_errors.JobFinished) as caught:
            client.cancel(job.id)
    assert isinstance(caught.value, client_errors.Conflict)
    assert caught.value.code == "job_finished" and caught.value.status == 409
