"""SQLite backend: one database file, shared safely by several server processes.

Settings chosen for a job queue (see the README's "Durability" notes):

- WAL journal: readers never block the writer and vice versa.
- ``synchronous=NORMAL``: a commit survives a crash of any process (kill -9
  of the server included); only a power cut or kernel crash may lose the last
  commits. ``--sqlite-synchronous FULL`` trades speed for that too.
- every write transaction is ``BEGIN IMMEDIATE``: it takes the write lock up
  front, so leasing (select, then update) is atomic across processes.
- a busy timeout: a writer waits that long for the lock, then the request is
  answered 503 (retry) instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

import orjson

from taskframe.core import json_codec
from taskframe.server.storage.base import (
    NEW_JOB_FIELDS,
    JobRow,
    Params,
    Row,
    StoreConfigError,
    StoreUnavailable,
    Transaction,
    apply_migrations,
    load_queries,
    new_job_row,
    with_filters,
    without_nul,
)

QUERIES = load_queries("sqlite.sql")
# How often a waiting long-poll checks for commits made by other processes.
CHANGE_POLL_INTERVAL = 0.005
IDLE_POLL_INTERVAL = 0.05


#: Columns SQLite holds as 0/1 that a row shows as bools (as PostgreSQL returns them).
_BOOLEANS = ("cancel_requested", "has_dependants", "paused")
#: A REAL column may come back as an int (300 for 300.0): a row shows a float.
_FLOATS = ("timeout",)
_TYPED = frozenset(_BOOLEANS + _FLOATS)


def _typed(row: Row) -> Row:
    """``row`` (in place) with the types PostgreSQL gives: one shape of row whatever the
    backend, so that nothing above the storage layer converts."""
    for name in _BOOLEANS:
        value = row.get(name)
        if value is not None:
            row[name] = bool(value)
    for name in _FLOATS:
        value = row.get(name)
        if value is not None:
            row[name] = float(value)
    return row


# Rows come from sqlite3 as tuples and become dicts a result at a time: the column
# names are read once per statement, not once per row (a row factory is called per
# row from C and rebuilt the names each time: a fifth of the server's time in W1).
def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    rows = cursor.fetchall()
    if not rows:
        return []
    names = [column[0] for column in cursor.description]
    found = list(map(dict, map(zip, repeat(names), rows)))
    if _TYPED.isdisjoint(names):
        return found
    return list(map(_typed, found))


def _row(cursor: sqlite3.Cursor) -> Row | None:
    row = cursor.fetchone()
    if row is None:
        return None
    names = [column[0] for column in cursor.description]
    found = dict(zip(names, row, strict=True))
    return found if _TYPED.isdisjoint(names) else _typed(found)


def _adapt(params: Params | None) -> Params:
    # Lists (job types, ids) travel as JSON text and are read back with json_each().
    if not params:
        return {}
    params = without_nul(params)
    for value in params.values():
        if type(value) is list or type(value) is tuple:
            break
    else:
        return params  # nearly every statement: no list, nothing to copy
    return {
        k: json_codec.dumps(v).decode() if isinstance(v, list | tuple) else v
        for k, v in params.items()
    }


def _set_json(rows: Sequence[Params] | Sequence[list[Any]]) -> str:
    """The rows of a set-based statement as one JSON array.

    Their values are the server's own (ids, times, statuses, JSON text): orjson
    writes them as they are; what it refuses (an integer past 64 bits) goes
    through :func:`json_codec.dumps`. json_codec's NaN check is not needed here
    (no NaN among them), and walking every row for it cost more than encoding.
    """
    try:
        return orjson.dumps(rows if isinstance(rows, list) else list(rows)).decode()
    except TypeError:
        return json_codec.dumps(list(rows)).decode()


def _unavailable(exc: sqlite3.OperationalError) -> StoreUnavailable:
    return StoreUnavailable(f"SQLite database is unavailable: {exc}")


class SQLiteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def one(self, query: str, params: Params | None = None) -> Row | None:
        return _row(self._connection.execute(QUERIES[query], _adapt(params)))

    def all(self, query: str, params: Params | None = None) -> list[Row]:
        return _rows(self._connection.execute(QUERIES[query], _adapt(params)))

    def run(self, query: str, params: Params | None = None) -> int:
        cursor = self._connection.execute(QUERIES[query], _adapt(params))
        cursor.fetchall()  # sqlite3 counts the rows of a RETURNING statement as they are read
        return cursor.rowcount

    def run_many(self, query: str, rows: Sequence[Params]) -> None:
        if rows:
            self._connection.executemany(QUERIES[query], [_adapt(row) for row in rows])

    def run_set(
        self, query: str, rows: Sequence[Params], shared: Params | None = None
    ) -> list[Row]:
        if not rows:
            return []
        # One JSON text for the whole set (orjson: floats round-trip exactly through
        # SQLite's JSON reader). json_each would cut text at a NUL: without_nul.
        rows = [without_nul(row) for row in rows]
        params = {**(shared or {}), "rows": _set_json(rows)}
        return _rows(self._connection.execute(QUERIES[query], params))

    def execute_script(self, sql: str) -> None:
        """Run one statement that is not a named query (a migration step)."""
        self._connection.execute(sql)

    def filtered(self, query: str, filters: Sequence[str]) -> str:
        return with_filters(QUERIES, query, filters)

    def insert_jobs(self, rows: Sequence[Params]) -> list[JobRow]:
        if not rows:
            return []
        if len(rows) == 1:
            [row] = rows
            cursor = self._connection.execute(QUERIES["insert_job_without_key"], _adapt(row))
            assert cursor.lastrowid is not None  # a row was inserted: no conflict possible
            return [new_job_row(row, cursor.lastrowid)]
        # One JSON array per job (positions read faster than keys); ids are drawn in
        # the order given, whatever order RETURNING gives them back in. No NUL to
        # replace (json_each would cut text at one): none of these fields can hold one.
        values = [[row[name] for name in NEW_JOB_FIELDS] for row in rows]
        cursor = self._connection.execute(
            QUERIES["insert_jobs_without_keys"], {"rows": _set_json(values)}
        )
        ids = sorted(job_id for (job_id,) in cursor.fetchall())
        return [new_job_row(row, job_id) for row, job_id in zip(rows, ids, strict=True)]

    def returning_many(self, query: str, rows: Sequence[Params]) -> list[Row | None]:
        sql = QUERIES[query]
        execute = self._connection.execute
        return [_row(execute(sql, _adapt(row))) for row in rows]


class SQLiteStore:
    backend = "sqlite"

    def __init__(self, path: str, busy_timeout: float = 5.0, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreConfigError(
                f"unknown SQLite synchronous setting {synchronous!r} "
                "(--sqlite-synchronous: OFF, NORMAL, FULL or EXTRA)"
            )
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous.upper()
        self._local = threading.local()
        self._closed = threading.Event()
        self._write_lock = threading.Lock()
        # One connection for every write transaction of this process (they are
        # serialised by _write_lock anyway): its PRAGMA data_version then moves
        # only for commits made by other processes, which is what _watch needs.
        self._writer: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
                cached_statements=256,
            )
            self._enable_wal(connection)
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc
        return connection

    def _enable_wal(self, connection: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock and SQLite does
        # not wait for it: servers starting at once retry within the timeout.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        # Writers of this process queue on a Python lock: SQLite's own busy
        # handler sleeps in steps of up to 100 ms, which would turn contention
        # between our request threads into long tail latencies. The busy
        # timeout still covers writers in other processes.
        # One context manager, not two nested: each costs ~1.5 µs, on every write.
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise StoreUnavailable("SQLite database is unavailable: too many writers waiting")
        try:
            connection = self._writer_connection()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc
            try:
                yield SQLiteTransaction(connection)
                connection.execute("COMMIT")
            except BaseException as exc:
                connection.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise _unavailable(exc) from exc
                raise
        finally:
            self._write_lock.release()

    def _writer_connection(self) -> sqlite3.Connection:
        """The write connection (call with _write_lock held)."""
        if self._writer is None:
            self._writer = self._connect()
        return self._writer

    @contextmanager
    def reader(self) -> Iterator[SQLiteTransaction]:
        try:
            yield SQLiteTransaction(self._connection())
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc

    def schema_version(self) -> int:
        with self.reader() as tx:
            if not (tx.one("version_table_exists") or {}).get("present"):
                return 0
            return (tx.one("get_version") or {}).get("version") or 0

    def migrate(self, target: int | None = None) -> int:
        # BEGIN IMMEDIATE serialises servers that start at once: the second one
        # sees the version the first one wrote and has nothing left to do.
        with self.transaction() as tx:
            return apply_migrations(tx, QUERIES, target)

    def ping(self) -> None:
        with self.reader() as tx:
            tx.one("ping")

    def notify_change(self, tx: Transaction) -> None:
        """Nothing to send: other processes see the commit through data_version."""

    def watch_changes(self, on_change: Callable[[], None], active: Callable[[], bool]) -> None:
        threading.Thread(
            target=self._watch, args=(on_change, active), name="sqlite-watch", daemon=True
        ).start()

    def _watch(self, on_change: Callable[[], None], active: Callable[[], bool]) -> None:
        # PRAGMA data_version on the write connection moves only when another
        # process commits (never for this process's own commits, whose waiters
        # are woken directly): a cheap check that lets long-polls here see
        # submissions made through other servers.
        last = None
        while not self._closed.is_set():
            version = self._foreign_version()
            if version is not None:
                if last is not None and version != last:
                    on_change()
                last = version
            # Poll fast only while a long-poll waits; idle servers barely wake.
            self._closed.wait(CHANGE_POLL_INTERVAL if active() else IDLE_POLL_INTERVAL)

    def _foreign_version(self) -> int | None:
        """data_version of the write connection; None if our writers kept it busy meanwhile."""
        if not self._write_lock.acquire(timeout=CHANGE_POLL_INTERVAL):
            return None  # looked at next time: a foreign commit moves it until then
        try:
            if self._closed.is_set():
                return None
            row = self._writer_connection().execute("PRAGMA data_version").fetchone()
            return int(row[0])
        except (sqlite3.OperationalError, StoreUnavailable):
            return None
        finally:
            self._write_lock.release()

    def close(self) -> None:
        self._closed.set()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
