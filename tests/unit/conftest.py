"""Unit-tier fixtures: the real app behind a real HTTP server in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import openapi_cache
from tests.api_server import ApiServer, Mounted, migrated_copy


@pytest.fixture(scope="session", autouse=True)
def openapi_built_once() -> Iterator[None]:
    """Each app's OpenAPI document is built once per plugin set (tests/openapi_cache.py)."""
    undo = openapi_cache.install()
    yield
    undo()


@pytest.fixture(scope="module")
def api_server() -> Iterator[ApiServer]:
    """One waitress per test module; each test mounts its own app on it (``api``)."""
    server = ApiServer()
    yield server
    server.close()


@pytest.fixture
def api(api_server: ApiServer, sqlite_template: Path, tmp_path: Path) -> Iterator[Mounted]:
    """A fresh app (a new, migrated SQLite database) served over HTTP at ``api.url``."""
    mounted = api_server.mount(migrated_copy(sqlite_template, tmp_path / "api.db"))
    yield mounted
    api_server.unmount()
