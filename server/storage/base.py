"""The storage interface the scheduler is written against.

A backend offers transactions that run *named queries*; the queries of a
backend live together in one ``.sql`` file beside its module. All job logic
(what a completion or a reap does) lives once, in the scheduler, above this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any, Protocol, TypedDict, cast

#: Any row a named query returns; a job's or an attempt's is a JobRow or an AttemptRow.
Row = dict[str, Any]
Params = Mapping[str, Any]


class JobRow(TypedDict):
    """A job as the storage layer returns it (``SELECT *`` / ``RETURNING *`` on jobs).

    One shape whatever the backend: ``cancel_requested`` and ``has_dependants``
    are bools, ``timeout`` a float. Every column of the table is a key; a few
    statements select fewer (a listing leaves out payload and result) and read
    only the keys they selected.
    """

    id: int
    type: str
    payload: str
    priority: int
    status: str
    attempts: int
    max_attempts: int
    timeout: float | None
    run_at: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker_id: str | None
    lease_id: str | None
    lease_expires_at: float | None
    deadline: float | None
    cancel_requested: bool
    result: str | None
    error: str | None
    idempotency_key: str | None
    request_hash: str | None
    lease_request: str | None
    notify_url: str | None
    attempt_grant: int | None
    queue: str
    depends_on: str | None  # JSON list of ids
    deps_pending: int
    on_dependency_failure: str | None
    has_dependants: bool
    progress: str | None  # JSON object
    live_log: str | None


class AttemptRecord(TypedDict):
    """One finished attempt as the engine records it (a ``job_attempts`` row to insert)."""

    job_id: int
    attempt: int
    worker_id: str | None
    lease_id: str | None
    started_at: float | None
    finished_at: float
    outcome: str
    error: str | None
    log: str | None
    traceback: str | None


class AttemptRow(AttemptRecord):
    """One finished attempt as the storage layer returns it (``job_attempts``)."""

    id: int


#: What a new job's row holds besides what its submission gives (the columns' defaults).
_NEW_JOB_DEFAULTS: dict[str, Any] = {
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
    "worker_id": None,
    "lease_id": None,
    "lease_expires_at": None,
    "deadline": None,
    "cancel_requested": False,
    "result": None,
    "error": None,
    "idempotency_key": None,
    "request_hash": None,
    "lease_request": None,
    "attempt_grant": None,
    "depends_on": None,
    "deps_pending": 0,
    "on_dependency_failure": None,
    "has_dependants": False,
    "progress": None,
    "live_log": None,
}
#: The fields of a job ``insert_jobs`` stores, in the order its statement reads them.
NEW_JOB_FIELDS = (
    "type",
    "payload",
    "priority",
    "max_attempts",
    "timeout",
    "run_at",
    "created_at",
    "notify_url",
    "queue",
    "on_dependency_failure",
)


def new_job_row(params: Params, job_id: int) -> JobRow:
    """The row ``insert_jobs`` stored for ``params`` under ``job_id``, as a read gives it:
    a batch's rows are not read back (that cost as much as inserting them).
    ``tests/unit/test_row_shape.py`` compares it with the stored row, both backends."""
    run_at, created_at, timeout = params["run_at"], params["created_at"], params["timeout"]
    row = {
        **_NEW_JOB_DEFAULTS,
        "id": job_id,
        "type": params["type"],
        "payload": params["payload"],
        "priority": params["priority"],
        "status": "scheduled" if run_at > created_at else "queued",
        "max_attempts": params["max_attempts"],
        # REAL and float8 columns: a float, as a read gives it.
        "timeout": None if timeout is None else float(timeout),
        "run_at": float(run_at),
        "created_at": float(created_at),
        "notify_url": params["notify_url"],
        "queue": params["queue"],
        "on_dependency_failure": params["on_dependency_failure"],
    }
    return cast(JobRow, row)


#: The parameters that carry text as a worker or a remote server sent it: errors
#: (quoting remote bodies), logs, tracebacks. PostgreSQL text cannot hold NUL and
#: SQLite's JSON reader (``run_set``) ends a string at one, so both backends store
#: U+FFFD in its place (:func:`without_nul`).
FREE_TEXT = ("error", "log", "traceback")


def without_nul(params: Params) -> Params:
    """``params`` with NUL in its free text (:data:`FREE_TEXT`) replaced by U+FFFD.

    A dict is changed in place, so that the caller holds what was stored (an
    attempt's history row goes on to the plugins' hooks and the logs as the API
    will show it); text without NUL (nearly all) costs three lookups.
    """
    for key in FREE_TEXT:
        value = params.get(key)
        if type(value) is str and "\x00" in value:
            if not isinstance(params, dict):
                params = dict(params)
            params[key] = value.replace("\x00", "\ufffd")
    return params


# The named queries that select from jobs return job rows: these say so to the
# type checker (no copy, no check at run time).
def job_row(row: Row | None) -> JobRow | None:
    return cast("JobRow | None", row)


def job_rows(rows: Sequence[Row]) -> list[JobRow]:
    return cast("list[JobRow]", rows)


def maybe_job_rows(rows: Sequence[Row | None]) -> list[JobRow | None]:
    return cast("list[JobRow | None]", rows)


class StoreUnavailable(Exception):
    """The database cannot answer now (locked, down, out of connections): retry later."""


class StoreConfigError(ValueError):
    """The store cannot work as configured (a missing driver, an unknown setting)."""


class Transaction(Protocol):
    def one(self, query: str, params: Params | None = None) -> Row | None: ...

    def all(self, query: str, params: Params | None = None) -> list[Row]: ...

    def run(self, query: str, params: Params | None = None) -> int:
        """Execute a statement; return the number of rows it changed."""
        ...

    def run_many(self, query: str, rows: Sequence[Params]) -> None:
        """Execute a statement once per parameter set (one batched call)."""
        ...

    def insert_jobs(self, rows: Sequence[Params]) -> list[JobRow]:
        """Insert jobs without idempotency keys in one statement; return their rows in
        order (built by :func:`new_job_row`, not read back)."""
        ...

    def returning_many(self, query: str, rows: Sequence[Params]) -> list[Row | None]:
        """Run a ``... RETURNING`` statement once per row, as one batch.

        One answer per row, in order: the returned row, or None where the
        statement touched nothing (a conflict skipped, a guard not met).
        """
        ...

    def run_set(
        self, query: str, rows: Sequence[Params], shared: Params | None = None
    ) -> list[Row]:
        """Run a set-based statement once for all ``rows``: one statement, one round trip.

        The rows (each with the same fields) travel the backend's way: SQLite,
        ``:rows``, a JSON array of objects read with ``json_each``; PostgreSQL, an
        array per field (``%(field)s``) read with ``unnest``. ``shared``: parameters
        common to every row. Returns what a ``RETURNING`` gives, in no set order.
        """
        ...

    def execute_script(self, sql: str) -> None:
        """Run one statement that is not a named query (a migration step)."""
        ...

    def filtered(self, query: str, filters: Sequence[str]) -> str:
        """The name of ``query`` with its ``<query>_where_<filter>`` fragments put in.

        See :func:`with_filters`: the composed text is a named query too.
        """
        ...


class Store(Protocol):
    backend: str

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction: serialised with other writers, committed on success."""
        ...

    def reader(self) -> AbstractContextManager[Transaction]:
        """A read-only view for single queries, without taking write locks."""
        ...

    def migrate(self, target: int | None = None) -> int:
        """Create or upgrade the schema (to ``target`` or the latest); return its version."""
        ...

    def schema_version(self) -> int: ...

    def ping(self) -> None:
        """Raise StoreUnavailable when the database cannot be reached."""
        ...

    def watch_changes(self, on_change: Callable[[], None], active: Callable[[], bool]) -> None:
        """Call ``on_change`` promptly when another process commits a change.

        ``active()`` tells whether anyone waits; backends that poll only poll then.
        Runs in a daemon thread until :meth:`close`.
        """
        ...

    def notify_change(self, tx: Transaction) -> None:
        """Tell other server processes, within ``tx``, that jobs changed."""
        ...

    def close(self) -> None: ...


FILTERS_MARK = "/* filters */"


def with_filters(queries: MutableMapping[str, str], query: str, filters: Sequence[str]) -> str:
    """Compose ``query`` with the fragments ``<query>_where_<f>`` for each of ``filters``.

    The fragments replace ``/* filters */`` in the query's text; the result is
    registered in ``queries`` (once per combination) and its name returned. One
    query and a fragment per filter, instead of a query per combination.
    """
    if not filters:
        return query
    name = "+".join((query, *filters))
    if name not in queries:
        fragments = " ".join(queries[f"{query}_where_{f}"] for f in filters)
        queries[name] = queries[query].replace(FILTERS_MARK, fragments)
    return name


_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(filename: str) -> dict[str, str]:
    """Parse a ``.sql`` file of ``-- name: xyz`` sections into {name: sql}."""
    text = resources.files("taskframe.server.storage").joinpath(filename).read_text("utf-8")
    parts = _QUERY_HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migrations(queries: Mapping[str, str]) -> list[tuple[int, list[str]]]:
    """The ``migration_N`` sections in order, each split into statements."""
    found = []
    for name, sql in queries.items():
        if name.startswith("migration_"):
            found.append((int(name.removeprefix("migration_")), split_statements(sql)))
    return sorted(found)


_TRIGGER_BODY = re.compile(r"\bCREATE\s+TRIGGER\b.*\bBEGIN\b", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"\bEND\s*$", re.IGNORECASE)


def split_statements(sql: str) -> list[str]:
    """``sql`` split on ``;``, keeping whole the bodies that hold semicolons of their
    own: a ``$$``-quoted function body (PostgreSQL) and a trigger's ``BEGIN ... END``
    (SQLite)."""
    statements: list[str] = []
    current = ""
    for piece in sql.split(";"):
        current = f"{current};{piece}" if current else piece
        if current.count("$$") % 2 or (
            _TRIGGER_BODY.search(current) and not _BODY_END.search(current)
        ):
            continue  # inside a body: the semicolon belongs to it
        if current.strip():
            statements.append(current.strip())
        current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def apply_migrations(tx: Transaction, queries: Mapping[str, str], target: int | None) -> int:
    """Run the migrations past the recorded version (up to ``target``) in ``tx``."""
    tx.run("create_version_table")
    current = (tx.one("get_version") or {}).get("version") or 0
    for version, statements in migrations(queries):
        if version <= current or (target is not None and version > target):
            continue
        for statement in statements:
            tx.execute_script(statement)
        tx.run("set_version", {"version": version})
        current = version
    return current
