"""Storage backends: one module (and one file of SQL) per database.

``open_store(url)`` picks the backend from the URL: a path or ``sqlite:///path``
for SQLite, ``postgresql://...`` for PostgreSQL.
"""

from __future__ import annotations

from taskframe.server.storage.base import (
    AttemptRecord,
    AttemptRow,
    JobRow,
    Row,
    Store,
    StoreConfigError,
    StoreUnavailable,
    Transaction,
    job_row,
    job_rows,
    maybe_job_rows,
)

POSTGRES_HINT = (
    "--db: a postgresql:// URL needs the PostgreSQL driver: pip install 'taskframe[postgres]'"
)


def open_store(url: str, busy_timeout: float = 5.0, synchronous: str = "NORMAL") -> Store:
    """Open (but do not migrate) the store that ``url`` names.

    ``synchronous`` applies to SQLite only. Raises :class:`StoreConfigError`
    for a setting that cannot work (missing driver, unknown setting).
    """
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from taskframe.server.storage.postgres import PostgresStore
        except ImportError as exc:
            raise StoreConfigError(f"{POSTGRES_HINT} ({exc})") from exc
        return PostgresStore(url, busy_timeout=busy_timeout)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    from taskframe.server.storage.sqlite import SQLiteStore

    return SQLiteStore(path, busy_timeout=busy_timeout, synchronous=synchronous)


__all__ = [
    "AttemptRecord",
    "AttemptRow",
    "JobRow",
    "Row",
    "Store",
    "StoreConfigError",
    "StoreUnavailable",
    "Transaction",
    "job_row",
    "job_rows",
    "maybe_job_rows",
    "open_store",
]
