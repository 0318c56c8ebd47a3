"""Discovery of the built-in executors and isolation of broken plugins."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from marshmallow import Schema

from taskframe.core import Executor, hookimpl
from taskframe.core.plugins import load_plugins
from taskframe.plugins import file, http, sleep
from taskframe.testing.distributions import write_distribution


class _BrokenPlugin:
    """Registration raises."""

    __name__ = "broken"

    @hookimpl
    def taskframe_register_executors(self, register: Callable[[Executor], None]) -> None:
        raise RuntimeError("boom")


class _DuplicatePlugin:
    """Registers a job type that ``sleep`` already provides."""

    __name__ = "duplicate"

    @hookimpl
    def taskframe_register_executors(self, register: Callable[[Executor], None]) -> None:
        register(Executor(name="sleep", schema=Schema(), run=lambda payload, context: None))


def test_entry_points_provide_the_builtin_executors() -> None:
    plugins = load_plugins()
    assert {"sleep", "http", "file"} <= set(plugins.names())
    assert not {"sleep", "http", "file"} & set(plugins.failures)
    assert plugins.executors["sleep"].run is sleep.run
    assert plugins.executors["http"].run is http.run
    assert plugins.executors["file"].run is file.run
    for name in ("sleep", "http", "file"):
        executor = plugins.executors[name]
        assert isinstance(executor.schema, Schema) and executor.description


def test_a_raising_plugin_is_reported_and_the_others_load() -> None:
    plugins = load_plugins(
        extra_plugins=(sleep, _BrokenPlugin(), http, file), load_entry_points=False
    )
    assert plugins.names() == ["file", "http", "sleep"]
    assert list(plugins.failures) == ["broken"]
    assert "boom" in plugins.failures["broken"]


def test_a_duplicate_name_is_reported_and_the_first_stays() -> None:
    plugins = load_plugins(extra_plugins=(sleep, _DuplicatePlugin(), http), load_entry_points=False)
    assert plugins.names() == ["http", "sleep"]
    assert plugins.executors["sleep"].run is sleep.run
    assert list(plugins.failures) == ["duplicate"]
    assert "sleep" in plugins.failures["duplicate"]


def _options(role: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    load_plugins().manager.hook.taskframe_add_options(parser=parser, role=role)
    return parser.parse_args(argv)


def test_file_root_option_for_the_worker_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFRAME_FILE_ROOT", raising=False)
    assert _options("worker", []).file_root == "taskframe-files"
    assert _options("worker", ["--file-root", "/srv/files"]).file_root == "/srv/files"
    assert not hasattr(_options("server", []), "file_root")
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _options("server", ["--file-root", "/srv/files"])


def test_file_root_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFRAME_FILE_ROOT", "/from/env")
    assert _options("worker", []).file_root == "/from/env"


def test_an_installed_plugin_that_fails_to_import_is_reported_by_name(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed distribution (dist-info on sys.path) whose entry point is broken.
    write_distribution(
        tmp_path,
        "taskframe-broken",
        {"broken": "taskframe_broken_plugin"},
        modules={"taskframe_broken_plugin": "raise ImportError('missing dependency')\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    plugins = load_plugins()

    assert "ImportError: missing dependency" in plugins.failures["broken"]
    assert {"sleep", "http", "file"} <= set(plugins.executors)
