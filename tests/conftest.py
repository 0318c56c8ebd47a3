"""Shared fixtures: databases (real SQLite files, a real PostgreSQL) and processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.pg_schemas import SchemaPool
from tests.processes import Server, Worker

POSTGRES_URL = os.environ.get(
    "TASKFRAME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# Set by .ci/run: there, a PostgreSQL that cannot be reached fails the tests.
REQUIRE_POSTGRES = os.environ.get("TASKFRAME_REQUIRE_POSTGRES", "") not in ("", "0")


def _postgres_or_skip() -> None:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover
        reason = f"psycopg is not installed ({exc}); pip install -e '.[test]'"
    else:
        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
            return
        except psycopg.Error as exc:
            reason = f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}"
    if REQUIRE_POSTGRES:
        pytest.fail(f"TASKFRAME_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason + " (set TASKFRAME_TEST_POSTGRES_URL)")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    _postgres_or_skip()
    import psycopg

    schema = f"tf_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "taskframe.db")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once: tests copy it instead of migrating again."""
    from tests.api_server import migrate_template

    return migrate_template(tmp_path_factory.mktemp("template") / "migrated.db")


@pytest.fixture
def migrated_sqlite_url(sqlite_url: str, sqlite_template: Path) -> str:
    """``sqlite_url``, already migrated (a copy of the template: no migration per test)."""
    from tests.api_server import migrated_copy

    return str(migrated_copy(sqlite_template, Path(sqlite_url)))


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[SchemaPool]:
    """Migrated PostgreSQL schemas, emptied after each test and handed out again."""
    _postgres_or_skip()
    pool = SchemaPool(POSTGRES_URL)
    yield pool
    pool.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test using this runs once per backend.

    On PostgreSQL, a test that uses ``store`` (which migrates at once) gets a
    migrated schema from the pool; the others a fresh, empty one.
    """
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
    elif "store" not in request.fixturenames:
        yield request.getfixturevalue("postgres_url")
    else:
        pool: SchemaPool = request.getfixturevalue("postgres_schemas")
        schema = pool.take()
        yield pool.url(schema)
        pool.give_back(schema)


@pytest.fixture
def store(db_url: str, request: pytest.FixtureRequest):
    from taskframe.server.storage import open_store

    if not db_url.startswith(("postgresql://", "postgres://")):
        request.getfixturevalue("migrated_sqlite_url")  # SQLite: the template's copy
    opened = open_store(db_url)
    opened.migrate()  # a no-op on the copy
    yield opened
    opened.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: start_server(db, *extra_args) -> a ready Server; all stopped at teardown."""
    started: list[Server] = []

    def start(db: str, *args: str, ready: bool = True, **kw) -> Server:
        server = Server(db, tmp_path / f"server-{len(started)}.log", *args, **kw)
        started.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: start_worker([urls], *extra_args) -> a Worker; all stopped at teardown."""
    started: list[Worker] = []

    def start(api_urls: list[str], *args: str, **kw) -> Worker:
        worker = Worker(api_urls, tmp_path / f"worker-{len(started)}.log", *args, **kw)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
