"""The route table (server/http/routes.py) is what the app serves, guards and documents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from falcon import inspect, testing

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.http.routes import ROUTE_ROLES, ROUTES
from taskframe.server.storage import open_store
from tests.api_server import default_plugins


@pytest.fixture
def client(sqlite_url: str) -> Iterator[testing.TestClient]:
    store = open_store(sqlite_url)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    yield testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
    store.close()


def served(client: testing.TestClient) -> set[tuple[str, str]]:
    return {
        (route.path, method.method)
        for route in inspect.inspect_app(client.app).routes
        for method in route.methods
        if not method.internal and method.method != "OPTIONS"
    }


def test_the_app_serves_exactly_the_table(client):
    assert served(client) == set(ROUTE_ROLES)


def test_every_route_is_declared_once():
    paths = [route.path for route in ROUTES]
    assert len(paths) == len(set(paths))


def test_the_document_holds_every_documented_operation_and_its_schemas(client):
    document = client.simulate_get("/openapi.json").json
    components = document["components"]["schemas"]
    documented = {
        (route.path, method.lower()): operation
        for route in ROUTES
        for method, operation in route.methods.items()
        if operation.summary
    }
    in_document = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert in_document == set(documented)
    for operation in documented.values():
        for name in (operation.request, operation.response):
            assert name is None or name in components, name


def test_an_operation_open_to_anyone_is_documented_without_security(client):
    document = client.simulate_get("/openapi.json").json
    for route in ROUTES:
        for method, operation in route.methods.items():
            if operation.summary:
                shown = document["paths"][route.path][method.lower()]
                assert ("security" in shown) == bool(operation.roles), (route.path, method)
