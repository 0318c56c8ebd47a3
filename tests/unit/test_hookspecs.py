"""Every hook is named taskframe_*, documented with each parameter, and in the docs."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from taskframe.core import hookspecs

PLUGIN_API = (Path(__file__).parents[2] / "docs" / "reference" / "plugin-api.md").read_text()
HOOKS = [
    function
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "taskframe_spec")
]


def test_there_are_hooks():
    assert {hook.__name__ for hook in HOOKS} >= {
        "taskframe_register_executors",
        "taskframe_add_options",
    }


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.__name__)
def test_hook_is_documented(hook):
    assert hook.__name__.startswith("taskframe_")
    doc = inspect.getdoc(hook) or ""
    for parameter in inspect.signature(hook).parameters:
        assert f":param {parameter}:" in doc, f"{hook.__name__} does not document {parameter}"
    # The reference page renders the module's docstrings: each public hook is on it.
    assert "::: taskframe.core.hookspecs" in PLUGIN_API
    assert not hook.__name__.startswith("_") and doc
