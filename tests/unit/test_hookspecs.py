"""Every hook is named taskframe_*, documented with each parameter, and in the README."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from taskframe.core import hookspecs

README = (Path(__file__).parents[2] / "README.md").read_text()
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
    assert hook.__name__ in README, f"the README does not mention {hook.__name__}"
