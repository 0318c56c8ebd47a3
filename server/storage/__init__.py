"""Storage backends: one module (and one file of SQL) per database.

``open_store(url)`` picks the backend from the URL: a path or ``sqlite:///path``
for SQLite, ``postgresql://...`` for PostgreSQL.
"""

from __future__ import annotations

from taskframe.server.storage.base import Row, Store, StoreUnavailable, Transaction


def open_store(url: str, **options: object) -> Store:
    """Open (but do not migrate) the store that ``url`` names."""
    if url.startswith(("postgresql://", "postgres://")):
        from taskframe.server.storage.postgres import PostgresStore

        return PostgresStore(url, **options)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    from taskframe.server.storage.sqlite import SQLiteStore

    return SQLiteStore(path, **options)


__all__ = ["Row", "Store", "StoreUnavailable", "Transaction", "open_store"]
