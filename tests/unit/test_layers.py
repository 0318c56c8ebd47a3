"""Imports go one way: the server's rooms (http drives engine, engine tells observe, all use
storage), and the server and the worker never import each other (standalone, above both).

A module that imports against these arrows fails here, named with the import.
"""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from taskframe.server.cli import main as server_main

ROOT = Path(__file__).resolve().parents[2]
#: What each package of the layout may not import (from taskframe.*).
FORBIDDEN = {
    "server/storage": (
        "taskframe.server.engine",
        "taskframe.server.http",
        "taskframe.server.observe",
    ),
    "server/observe": ("taskframe.server.engine", "taskframe.server.http"),
    "server/engine": ("taskframe.server.http",),
    # The server and the worker never import each other: taskframe.standalone, above
    # both, starts the two in one process (taskframe-server --standalone).
    "server": ("taskframe.worker", "taskframe.standalone"),
    "worker": ("taskframe.server", "taskframe.standalone"),
    "core": ("taskframe.server", "taskframe.worker", "taskframe.client", "taskframe.standalone"),
    "client": ("taskframe.server", "taskframe.worker", "taskframe.standalone"),
    "plugins": ("taskframe.server", "taskframe.worker", "taskframe.standalone"),
}


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_module_imports_against_the_layers(folder):
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[folder])
    ]
    assert wrong == []


def test_the_check_sees_an_import_against_the_arrows(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from taskframe.server.http import app\n")
    assert "taskframe.server.http.app" in imports(module)


def test_taskframe_server_is_the_module_above_the_server_and_the_worker(capsys):
    """The command's entry is taskframe.standalone (which may import both); the server's
    own main, run without it, refuses --standalone instead of importing the worker."""
    [script] = [e for e in entry_points(group="console_scripts") if e.name == "taskframe-server"]
    assert script.value == "taskframe.standalone:main"
    with pytest.raises(SystemExit) as exit:
        server_main(["--standalone", "--port", "0"])
    assert exit.value.code == 2
    assert "--standalone: this entry point runs no worker" in capsys.readouterr().err
