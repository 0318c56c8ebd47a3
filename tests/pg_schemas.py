"""Migrated PostgreSQL schemas for tests, emptied and handed out again.

Creating a schema, migrating it and dropping it costs about half a second
per test; emptying the tables of a used one, a few hundredths. A
schema goes back to the pool only when it is exactly as migrated: the same
tables, columns, indexes, constraints, triggers and functions, the rows that
the migrations wrote (the version table) unchanged, the sequences restored.
Anything else (a test that altered the schema, a lock still held) drops it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

#: Every object of the schema with the version (``xmin``) of its catalog rows: any
#: DDL (a table, column, default, index, constraint, trigger or function added,
#: changed or removed) writes a new row version, unlike DELETE, setval or VACUUM.
#: The schema's members come from pg_depend and everything else by index: the
#: catalogs of a test database that many schemas came and went in are large, and
#: scanning them (or rendering the definitions) took 50-130 ms a test.
_SHAPE = """
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d
     WHERE d.refclassid = 'pg_namespace'::regclass
       AND d.refobjid = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
), relations AS (
    SELECT objid AS oid FROM members WHERE classid = 'pg_class'::regclass
)
SELECT 'member', m.classid::bigint, m.objid::bigint, '' FROM members m
UNION ALL
SELECT 'class', c.oid::bigint, 0, c.xmin::text FROM pg_class c
 WHERE c.oid IN (SELECT oid FROM relations)
UNION ALL
SELECT 'attribute', a.attrelid::bigint, a.attnum, a.xmin::text FROM pg_attribute a
 WHERE a.attrelid IN (SELECT oid FROM relations)
UNION ALL
SELECT 'default', d.oid::bigint, 0, d.xmin::text FROM pg_attrdef d
 WHERE d.adrelid IN (SELECT oid FROM relations)
UNION ALL
SELECT 'index', i.indexrelid::bigint, 0, i.xmin::text FROM pg_index i
 WHERE i.indrelid IN (SELECT oid FROM relations)
UNION ALL
SELECT 'constraint', k.oid::bigint, 0, k.xmin::text FROM pg_constraint k
 WHERE k.conrelid IN (SELECT oid FROM relations)
UNION ALL
SELECT 'trigger', t.oid::bigint, 0, t.xmin::text FROM pg_trigger t
 WHERE t.tgrelid IN (SELECT oid FROM relations)
UNION ALL
SELECT 'function', p.oid::bigint, 0, p.xmin::text FROM pg_proc p
 WHERE p.oid IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
ORDER BY 1, 2, 3
"""

_TABLES = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
   AND c.relkind IN ('r', 'p')
 ORDER BY 1
"""

_SEQUENCES = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
   AND c.relkind = 'S'
 ORDER BY 1
"""


@dataclass
class _Baseline:
    """A schema as its migration left it."""

    shape: list[tuple[Any, ...]]
    seeded: dict[str, list[tuple[Any, ...]]]  # tables the migrations wrote rows into
    emptied: list[str]  # the other tables: emptied after each use
    sequences: dict[str, tuple[Any, ...]]  # name -> (last_value, is_called)


@dataclass
class SchemaPool:
    """Hands out migrated schemas of ``base_url``'s database (``take``/``give_back``)."""

    base_url: str
    prefix: str = "tf_"
    _free: list[str] = field(default_factory=list)
    _baselines: dict[str, _Baseline] = field(default_factory=dict)

    def url(self, schema: str) -> str:
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}options=-csearch_path%3D{schema}"

    def take(self) -> str:
        """A migrated schema with no jobs, nor anything else a test wrote."""
        if self._free:
            return self._free.pop()
        from taskframe.server.storage import open_store

        schema = f"{self.prefix}{uuid.uuid4().hex[:12]}"
        with self._connect() as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        store = open_store(self.url(schema))
        try:
            store.migrate()
        finally:
            store.close()
        with self._connect() as conn:
            self._baselines[schema] = self._baseline(conn, schema)
        return schema

    def give_back(self, schema: str) -> None:
        """Empty ``schema`` for the next test; drop it if it is not as migrated any more."""
        baseline = self._baselines.get(schema)
        try:
            with self._connect() as conn:
                conn.execute("SET lock_timeout = '5s'")  # a connection left open: drop
                # Emptying restores the rows as migrated: the jobs table's triggers must
                # not fire (they wrote count deltas, and outside the schema's search_path
                # failed, so that no schema was ever reused). Needs a superuser; if not,
                # the schema is dropped as before.
                conn.execute("SET session_replication_role = replica")
                if baseline is not None and self._reset(conn, schema, baseline):
                    self._free.append(schema)
                    return
        except Exception:  # noqa: BLE001 - a schema in doubt is dropped, never reused
            pass
        self._baselines.pop(schema, None)
        self.drop(schema)

    def drop(self, schema: str) -> None:
        with self._connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def close(self) -> None:
        """Drop every pooled schema (in one statement)."""
        free, self._free = self._free, []
        if free:
            with self._connect() as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {', '.join(free)} CASCADE")

    # -- helpers ---------------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.base_url, autocommit=True)

    def _baseline(self, conn: Any, schema: str) -> _Baseline:
        seeded, emptied = {}, []
        for (table,) in conn.execute(_TABLES, {"schema": schema}).fetchall():
            rows = self._rows(conn, schema, table)
            if rows:
                seeded[table] = rows
            else:
                emptied.append(table)
        sequences = {
            name: tuple(
                conn.execute(f"SELECT last_value, is_called FROM {schema}.{name}").fetchone()
            )
            for (name,) in conn.execute(_SEQUENCES, {"schema": schema}).fetchall()
        }
        return _Baseline(self._shape(conn, schema), seeded, emptied, sequences)

    def _reset(self, conn: Any, schema: str, baseline: _Baseline) -> bool:
        if self._shape(conn, schema) != baseline.shape:
            return False
        for table, rows in baseline.seeded.items():
            if self._rows(conn, schema, table) != rows:
                return False
        if not self._empty(conn, schema, baseline.emptied):
            return False
        for name, (last_value, is_called) in baseline.sequences.items():
            conn.execute("SELECT setval(%s, %s, %s)", [f"{schema}.{name}", last_value, is_called])
        return True

    @staticmethod
    def _empty(conn: Any, schema: str, tables: list[str]) -> bool:
        """DELETE every row (TRUNCATE rewrites the files: 50 times slower on small tables);
        a table still referenced by another's rows waits for the next pass."""
        import psycopg

        pending = list(tables)
        for _ in range(len(tables)):
            left = []
            for table in pending:
                try:
                    conn.execute(f"DELETE FROM {schema}.{table}")
                except psycopg.errors.ForeignKeyViolation:
                    left.append(table)
            if not left:
                return True
            pending = left
        return not pending

    @staticmethod
    def _shape(conn: Any, schema: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(_SHAPE, {"schema": schema}).fetchall()]

    @staticmethod
    def _rows(conn: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
        rows = conn.execute(f"SELECT * FROM {schema}.{table}").fetchall()
        return sorted((tuple(row) for row in rows), key=repr)
