"""PostgreSQL backend: any number of server hosts share one database.

- A connection pool (psycopg_pool); its connections run in autocommit mode, so
  :meth:`PostgresStore.reader` costs no transaction and
  :meth:`PostgresStore.transaction` is an explicit ``BEGIN``/``COMMIT``.
- Leasing selects candidates ``FOR UPDATE SKIP LOCKED``: servers leasing at
  once take disjoint jobs and never wait for each other. Every other statement
  that locks several jobs either skips locked rows or visits them in id order,
  so transactions cannot deadlock; a deadlock or a lock wait longer than
  ``busy_timeout`` (``lock_timeout``) still becomes :class:`StoreUnavailable`
  (HTTP 503, retry), as does a lost connection or an exhausted pool.
- Migrations run in one transaction under an advisory lock, so servers that
  start at once upgrade the schema one after the other.
- Long-polls on other servers are woken through ``LISTEN``/``NOTIFY``.
"""

from __future__ import annotations

import logging
import select
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from taskframe.server.storage.base import (
    JobRow,
    Params,
    Row,
    StoreUnavailable,
    Transaction,
    apply_migrations,
    load_queries,
    new_job_row,
    with_filters,
    without_nul,
)

QUERIES = load_queries("postgres.sql")
# How often the listening thread checks whether the store was closed.
LISTEN_TIMEOUT = 0.25
RECONNECT_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0
CONNECT_TIMEOUT = 10

log = logging.getLogger("taskframe.server")


def _columns(rows: Sequence[Params]) -> dict[str, list[Any]]:
    """``rows`` as one list per field, for ``unnest``: psycopg sends each as an array.

    A field holding both ints and floats (a clock giving whole seconds) becomes all
    floats: psycopg refuses an array of mixed types.
    """
    columns: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in rows[0]}
    for name, values in columns.items():
        kinds = {type(value) for value in values}
        if float in kinds and int in kinds:
            columns[name] = [float(v) if type(v) is int else v for v in values]
    return columns


def _check_if_broken(connection: psycopg.Connection[Row]) -> None:
    """Check a connection leaving the pool, with a round trip only when it may be broken.

    An idle connection in good health has nothing to read. One whose backend ended
    (a server restart, ``pg_terminate_backend``) has the server's last words or the
    end of the stream waiting: then the round trip finds out, and the pool takes
    another. (A round trip for every connection taken cost a W2 job five.)
    """
    if select.select([connection.fileno()], [], [], 0)[0]:
        ConnectionPool.check_connection(connection)


class PostgresTransaction:
    def __init__(self, connection: psycopg.Connection[Row]) -> None:
        self._connection = connection

    def _execute(self, query: str, params: Params | None) -> psycopg.Cursor[Row]:
        # No parameters: the query text is sent as is (no %-placeholder parsing).
        return self._connection.execute(QUERIES[query], without_nul(params) if params else None)

    def one(self, query: str, params: Params | None = None) -> Row | None:
        return self._execute(query, params).fetchone()

    def all(self, query: str, params: Params | None = None) -> list[Row]:
        return self._execute(query, params).fetchall()

    def run(self, query: str, params: Params | None = None) -> int:
        return self._execute(query, params).rowcount

    def run_many(self, query: str, rows: Sequence[Params]) -> None:
        if rows:
            with self._connection.cursor() as cursor:
                cursor.executemany(QUERIES[query], [without_nul(row) for row in rows])

    def run_set(
        self, query: str, rows: Sequence[Params], shared: Params | None = None
    ) -> list[Row]:
        if not rows:
            return []
        params = {**(shared or {}), **_columns([without_nul(row) for row in rows])}
        cursor = self._execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []

    def execute_script(self, sql: str) -> None:
        """Run one statement that is not a named query (a migration step)."""
        self._connection.execute(sql)

    def filtered(self, query: str, filters: Sequence[str]) -> str:
        return with_filters(QUERIES, query, filters)

    def insert_jobs(self, rows: Sequence[Params]) -> list[JobRow]:
        if len(rows) == 1:  # unnest's arrays cost a single job 1 ms more than a plain insert
            row = self.one("insert_job", rows[0])
            assert row is not None  # no key: no conflict
            return [cast(JobRow, row)]
        # No key, no conflict: every job is inserted; ids follow the order given.
        ids = sorted(row["id"] for row in self.run_set("insert_jobs_without_keys", rows))
        return [new_job_row(row, job_id) for row, job_id in zip(rows, ids, strict=True)]

    def returning_many(self, query: str, rows: Sequence[Params]) -> list[Row | None]:
        if not rows:
            return []
        found: list[Row | None] = []
        with self._connection.cursor() as cursor:
            # One pipelined round trip for the batch; one result set per row,
            # empty where ON CONFLICT DO NOTHING skipped it.
            cursor.executemany(QUERIES[query], [without_nul(r) for r in rows], returning=True)
            while True:
                found.append(cursor.fetchone())
                if not cursor.nextset():
                    break
        return found


class PostgresStore:
    backend = "postgres"

    def __init__(
        self,
        url: str,
        busy_timeout: float = 5.0,
        min_size: int = 1,
        max_size: int = 20,
    ) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self._connect_options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo_to_dict(url):
            self._connect_options["connect_timeout"] = CONNECT_TIMEOUT
        # Our own NOTIFY payload: the listener ignores what this process sent,
        # since the scheduler already woke the local waiters itself.
        self._origin = uuid.uuid4().hex
        #: The schema's NOTIFY channel (``change_channel``), known after the first notify.
        self._channel: str | None = None
        self._closed = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            kwargs={**self._connect_options, "row_factory": dict_row},
            min_size=min_size,
            max_size=max_size,
            timeout=busy_timeout,
            configure=self._configure,
            check=_check_if_broken,  # drop connections a restart broke
            name="taskframe",
            open=True,
        )

    def _configure(self, connection: psycopg.Connection[Row]) -> None:
        milliseconds = max(1, round(self.busy_timeout * 1000))
        connection.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Row]]:
        try:
            with self._pool.connection() as connection:
                yield connection
        except psycopg.OperationalError as exc:
            # Pool timeout or closed, connection lost, deadlock, lock timeout.
            raise StoreUnavailable(f"PostgreSQL database is unavailable: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        with self._connection() as connection, connection.transaction():
            yield PostgresTransaction(connection)

    @contextmanager
    def reader(self) -> Iterator[PostgresTransaction]:
        with self._connection() as connection:
            yield PostgresTransaction(connection)

    def schema_version(self) -> int:
        with self.reader() as tx:
            if not (tx.one("version_table_exists") or {}).get("present"):
                return 0
            return (tx.one("get_version") or {}).get("version") or 0

    def migrate(self, target: int | None = None) -> int:
        # The advisory lock serialises servers that start at once: the second
        # one sees the version the first one committed and has nothing to do.
        with self.transaction() as tx:
            tx.run("schema_lock_wait")
            tx.run("schema_lock")
            return apply_migrations(tx, QUERIES, target)

    def ping(self) -> None:
        with self.reader() as tx:
            tx.one("ping")

    def notify_change(self, tx: Transaction) -> None:
        """Queue a NOTIFY; PostgreSQL delivers it to the listeners at commit."""
        if self._channel is None:  # the same for every connection: asked once
            self._channel = str((tx.one("change_channel") or {})["channel"])
        tx.run("notify_change", {"channel": self._channel, "origin": self._origin})

    def watch_changes(self, on_change: Callable[[], None], active: Callable[[], bool]) -> None:
        # Notifications are pushed: there is no polling to speed up, so
        # ``active`` is not needed here.
        thread = threading.Thread(
            target=self._watch, args=(on_change,), name="postgres-listen", daemon=True
        )
        self._watchers.append(thread)
        thread.start()

    def _watch(self, on_change: Callable[[], None]) -> None:
        delay = RECONNECT_DELAY
        while not self._closed.is_set():
            try:
                with psycopg.connect(self.url, **self._connect_options) as connection:
                    [channel] = connection.execute(QUERIES["change_channel"]).fetchone() or [""]
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    delay = RECONNECT_DELAY
                    on_change()  # changes made while nobody listened
                    while not self._closed.is_set():
                        for notice in connection.notifies(timeout=LISTEN_TIMEOUT):
                            if notice.payload != self._origin:
                                on_change()
            except psycopg.Error as exc:
                if self._closed.is_set():
                    return
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
                self._closed.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def close(self) -> None:
        self._closed.set()
        for thread in self._watchers:
            thread.join(timeout=LISTEN_TIMEOUT * 8)
        self._watchers.clear()
        self._pool.close()
