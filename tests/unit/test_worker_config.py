"""``WorkerConfig``: built from the command line, checked once, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from taskframe.core.plugins import load_plugins
from taskframe.worker.cli import build_parser, main
from taskframe.worker.config import WorkerConfig


def parse(argv: list[str]) -> WorkerConfig:
    options = build_parser(load_plugins()).parse_args(argv)
    return WorkerConfig.from_options(options, ["http://a:1"], "w1")


def test_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFRAME_POOL", raising=False)
    config = parse(["--concurrency", "3", "--job-types", "sleep, http", "--file-root", "/x"])
    assert (config.concurrency, config.pool, config.job_types) == (3, "thread", ("http", "sleep"))
    assert config.options.file_root == "/x"  # plugin options reach executors as context.options
    assert parse(["--pool", "PROCESS"]).pool == "process"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pool = "process"  # type: ignore[misc]


def test_the_pool_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFRAME_POOL", "process")
    assert parse([]).pool == "process"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pool": "fibers"}, "pool must be one of thread, process"),
        ({"concurrency": 0}, "concurrency must be between 1 and 500"),
        ({"poll_interval": -1.0}, "poll_interval"),
        ({"heartbeat_interval": 0.0}, "heartbeat_interval"),
        ({"shutdown_grace": float("nan")}, "shutdown_grace"),
        ({"worker_id": ""}, "worker_id"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    base = {"api_urls": ("http://a:1",), "worker_id": "w1"}
    with pytest.raises(ValueError, match=message):
        WorkerConfig(**{**base, **settings})


def test_a_bad_pool_from_the_environment_is_a_usage_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TASKFRAME_POOL", "fibers")
    assert main(["--api-url", "http://127.0.0.1:9"]) == 2
    assert "TASKFRAME_POOL: invalid choice 'fibers'" in capsys.readouterr().err


def test_a_bad_pool_on_the_command_line_is_a_usage_error(monkeypatch, capsys) -> None:
    monkeypatch.delenv("TASKFRAME_POOL", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--api-url", "http://127.0.0.1:9", "--pool", "fibers"])
    assert exit_.value.code == 2
    assert "--pool: invalid choice: 'fibers'" in capsys.readouterr().err


def test_the_default_slots_are_32_threads_or_a_process_per_core(monkeypatch) -> None:
    for name in ("TASKFRAME_POOL", "TASKFRAME_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert parse([]).concurrency == 32
    assert parse(["--pool", "process"]).concurrency == 3
    assert parse(["--pool", "process", "--concurrency", "5"]).concurrency == 5
