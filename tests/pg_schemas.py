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

#: Every object of a schema that a test could have added, changed or removed.
_SHAPE = """
SELECT 'relation', c.relname, c.relkind::text FROM pg_class c
 WHERE c.relnamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' '
       || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = %(schema)s::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE connamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'trigger', tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(schema)s::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'function', proname, pg_get_function_identity_arguments(oid) FROM pg_proc
 WHERE pronamespace = %(schema)s::regnamespace
ORDER BY 1, 2, 3
"""

_TABLES = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1
"""

_SEQUENCES = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind = 'S' ORDER BY 1
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
