"""The server's rooms import one way: http drives engine, engine tells observe, all use storage.

A module that imports against these arrows fails here, named with the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
    "core": ("taskframe.server", "taskframe.worker", "taskframe.client"),
    "worker": ("taskframe.server",),
    "client": ("taskframe.server", "taskframe.worker"),
    "plugins": ("taskframe.server", "taskframe.worker"),
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
