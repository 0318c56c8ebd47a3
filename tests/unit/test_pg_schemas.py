"""The PostgreSQL schema pool of the tests hands a used schema out again, as migrated."""

from __future__ import annotations

import pytest

from taskframe.server.config import ServerConfig
from taskframe.server.engine.completions import Completion
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.storage import open_store
from tests.pg_schemas import SchemaPool
from tests.unit.test_properties import counted_jobs, grouped_jobs
from tests.unit.test_scheduler import job

pytestmark = pytest.mark.postgres


def test_a_schema_whose_jobs_moved_is_emptied_and_reused(postgres_schemas: SchemaPool):
    """Before: emptying it fired the count triggers, which failed outside the schema's
    search_path, so every schema was dropped and a new one migrated for each test."""
    schema = postgres_schemas.take()
    store = open_store(postgres_schemas.url(schema))
    try:
        scheduler = Scheduler(store, ServerConfig())
        [(row, _)] = scheduler.submit([job()])
        [leased] = scheduler.lease("w", ["sleep"], 1, wait=0)
        scheduler.complete([Completion(row["id"], leased["lease_id"], "succeeded", "w")])
    finally:
        store.close()
    postgres_schemas.give_back(schema)

    assert postgres_schemas.take() == schema
    store = open_store(postgres_schemas.url(schema))
    try:
        scheduler = Scheduler(store, ServerConfig())
        assert scheduler.list_jobs(None, None, 10, None) == []
        [(again, _)] = scheduler.submit([job()])
        assert again["id"] == row["id"]  # the sequence is restored too
        assert counted_jobs(store) == grouped_jobs(store)  # no count left over either
    finally:
        store.close()
        postgres_schemas.give_back(schema)
