"""Fuzz a live server from its own ``GET /openapi.json`` (schemathesis).

Every operation gets generated requests, valid and invalid; none may get a
5xx, every answer must conform to the documented schema, and invalid input
must be refused. Skipped when schemathesis is not installed (it is in the
``test`` extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings

from tests.processes import Server

schemathesis = pytest.importorskip("schemathesis")
# schemathesis reports its failures as a FailureGroup, a BaseExceptionGroup
# (built in from Python 3.11; the exceptiongroup backport, a schemathesis
# dependency, before).
try:
    from builtins import BaseExceptionGroup
except ImportError:  # Python 3.10
    from exceptiongroup import BaseExceptionGroup

EXAMPLES = 25  # per operation: ~15 operations in a few seconds
MAX_WAIT = 0.2  # long polls (``wait``) would hold a request for up to a minute
#: The document describes every body field but not which job types and
#: payloads are valid (that depends on the installed plugins): a schema-valid
#: body of an unknown type is rightly refused with 422, so "positive data
#: accepted" is not checked. Everything else is.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder: Path = tmp_path_factory.mktemp("openapi-fuzz")
    server = Server(str(folder / "fuzz.db"), folder / "server.log", "--lease-ttl", "2")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(live_server: Server):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json", timeout=10)

    @schema.hook
    def map_body(context, body):
        if isinstance(body, dict) and isinstance(body.get("wait"), int | float):
            body = {**body, "wait": min(body["wait"], MAX_WAIT)}
        return body

    @schema.hook
    def map_query(context, query):
        if query and "wait" in query:
            query = {**query, "wait": MAX_WAIT}
        return query

    return schema


@pytest.mark.timeout(180)
def test_no_server_error_and_answers_match_the_schema(api_schema, live_server):
    # One Hypothesis run per operation (schemathesis' own pytest integration
    # relies on pytest internals that pytest 9 removed).
    failures = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            case.call_and_validate(checks=CHECKS, timeout=10)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)
    log = live_server.output()
    assert "Traceback" not in log, log


HUGE = 2**64  # what the fuzzer found first: an id past 64 bits was a 500 on SQLite
LEASE = {"worker_id": "w", "lease_id": "l"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/jobs/{HUGE}", None),
        ("GET", f"/jobs/{HUGE}/attempts", None),
        ("POST", f"/jobs/{HUGE}/cancel", None),
        ("POST", f"/jobs/{HUGE}/retry", None),
        ("POST", f"/jobs/{HUGE}/heartbeat", LEASE),
        ("POST", f"/jobs/{HUGE}/complete", {**LEASE, "status": "succeeded"}),
        ("POST", f"/jobs/{HUGE}/release", LEASE),
        ("POST", "/heartbeats", {"worker_id": "w", "leases": [{"job_id": HUGE, "lease_id": "l"}]}),
        (
            "POST",
            "/lease",
            {
                "worker_id": "w",
                "max": 0,
                "completions": [{"job_id": HUGE, **LEASE, "status": "failed"}],
            },
        ),
    ],
)
def test_a_job_id_past_64_bits_is_a_client_error_not_a_500(live_server, method, path, body):
    # No such job can exist: 404 (or 422) like any unknown id, never a 500.
    response = requests.request(method, live_server.url + path, json=body, timeout=10)
    assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text}"
