"""Every named query the server uses exists in both backends' ``.sql`` files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from taskframe.server.engine import scheduler as scheduler_module
from taskframe.server.storage.base import load_queries, migrations, with_filters

SERVER = Path(scheduler_module.__file__).parents[1]  # server/, all of it
BACKEND_MODULES = {"sqlite.py", "postgres.py"}  # may use queries of their own backend only
TX_METHODS = {"one", "all", "run", "run_many", "run_set", "returning_many", "filtered"}
QUERIES = {backend: load_queries(f"{backend}.sql") for backend in ("sqlite", "postgres")}


def used_query_names() -> dict[str, str]:
    """Query name -> the module using it: string literals passed to a transaction's
    methods, and any other literal that names a query of either backend."""
    known = set().union(*QUERIES.values())
    used: dict[str, str] = {}
    for path in sorted(SERVER.rglob("*.py")):
        if path.name in BACKEND_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in TX_METHODS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                used[node.args[0].value] = path.name
            elif isinstance(node, ast.Constant) and node.value in known:
                used[node.value] = path.name
    return used


def test_the_scan_finds_the_schedulers_queries():
    used = used_query_names()
    assert {"lease_jobs", "retry_job", "list_jobs", "get_version"} <= used.keys()


@pytest.mark.parametrize("backend", sorted(QUERIES))
def test_every_query_the_server_uses_exists(backend):
    missing = {
        name: module for name, module in used_query_names().items() if name not in QUERIES[backend]
    }
    assert missing == {}, f"queries missing from {backend}.sql"


@pytest.mark.parametrize("backend", sorted(QUERIES))
@pytest.mark.parametrize("filters", [(), ("status",), ("type",), ("status", "type")])
def test_list_filters_compose_into_one_where_clause(backend, filters):
    queries = dict(QUERIES[backend])
    sql = queries[with_filters(queries, "list_jobs", filters)]
    where = sql.split("WHERE", 1)[1]
    for name in ("status", "type"):
        assert (f"{name} = " in where) == (name in filters)
    assert "/* filters */" not in sql or not filters


def test_migrations_split_on_semicolons_but_keep_trigger_and_function_bodies_whole():
    from taskframe.server.storage.base import split_statements

    sql = """CREATE TABLE t (a int);
CREATE TRIGGER x AFTER UPDATE ON t BEGIN
    INSERT INTO u VALUES (1);
    INSERT INTO u VALUES (2);
END;
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO u VALUES (NEW.a);
    RETURN NULL;
END
$$;
CREATE TRIGGER y AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f();
"""
    statements = split_statements(sql)
    assert [s.split()[1] for s in statements] == ["TABLE", "TRIGGER", "FUNCTION", "TRIGGER"]
    assert statements[1].endswith("VALUES (2);\nEND")
    assert statements[2].endswith("RETURN NULL;\nEND\n$$")
    for backend in sorted(QUERIES):
        [(_, migration)] = [m for m in migrations(QUERIES[backend]) if m[0] == 10]
        assert any("CREATE TRIGGER webhook_outbox_on_finish" in s for s in migration)
