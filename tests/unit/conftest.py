"""Unit-tier fixtures: the real app behind a real HTTP server in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_server import ApiServer, Mounted, migrated_copy


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
