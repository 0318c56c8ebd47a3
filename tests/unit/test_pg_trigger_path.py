"""The job-count trigger works from any session, whatever its search_path (PostgreSQL).

A DBA's ``psql`` or a maintenance script that changes or deletes jobs with a
schema-qualified name must not fail because the trigger function looks up its
delta table on the caller's search_path (migration 13 pins it to the schema).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import open_store
from tests.conftest import POSTGRES_URL


def test_jobs_change_from_a_session_on_another_search_path(postgres_url):
    import psycopg

    store = open_store(postgres_url)
    try:
        store.migrate()
        scheduler = Scheduler(store, ServerConfig())
        scheduler.submit(
            [
                {
                    "type": "sleep",
                    "payload": {"duration": 0},
                    "priority": 5,
                    "max_attempts": 1,
                    "timeout": 10.0,
                    "idempotency_key": None,
                }
            ]
        )
    finally:
        store.close()
    schema = parse_qs(urlparse(postgres_url).query)["options"][0].split("=", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:  # default search_path
        conn.execute(f"UPDATE {schema}.jobs SET status = 'cancelled'")
        conn.execute(f"DELETE FROM {schema}.jobs")
        [(left,)] = conn.execute(f"SELECT count(*) FROM {schema}.jobs").fetchall()
    assert left == 0


pytestmark = pytest.mark.postgres
