"""The server's settings are declared once (server/config.py): ``ServerConfig``'s defaults are
``taskframe-server``'s, and the flag tables (the docs' generated one, the README's) show them."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

import pytest

from taskframe.core.options import duration, format_duration
from taskframe.server.cli import build_parser, config_from
from taskframe.server.config import FLAGS, ServerConfig
from tests.api_server import default_plugins

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def parser(monkeypatch):
    for name in [name for name in os.environ if name.startswith("TASKFRAME_")]:
        monkeypatch.delenv(name)
    return build_parser(default_plugins())


def shown(value: object, flag_type: object) -> str:
    """A default as ``--help`` and the docs write it."""
    return format_duration(value) if flag_type is duration else str(value)  # type: ignore[arg-type]


def test_the_command_lines_defaults_are_server_configs(parser):
    assert config_from(parser.parse_args([])) == ServerConfig()


def test_each_flag_sets_its_field(parser):
    options = parser.parse_args(
        ["--lease-ttl", "10", "--retry-backoff", "2", "--retry-backoff-max", "1m"]
        + ["--default-timeout", "0", "--max-body", "4096", "--access-log", "--retention", "1d"]
    )
    config = config_from(options)
    assert (config.lease_ttl, config.backoff.base, config.backoff.cap) == (10.0, 2.0, 60.0)
    assert config.default_timeout is None  # 0: no limit
    assert (config.max_body_bytes, config.access_log, config.retention) == (4096, True, 86400.0)


def test_every_flag_names_a_field_and_is_an_option(parser):
    fields = {field.name for field in dataclasses.fields(ServerConfig)}
    options = {flag for action in parser._actions for flag in action.option_strings}
    for flag in FLAGS:
        assert flag.field in fields, flag
        assert flag.flag in options, flag


def test_the_docs_configuration_table_shows_server_configs_defaults():
    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        import pages
    finally:
        sys.path.pop(0)
    page = pages.configuration_page()
    for flag in FLAGS:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{flag.flag}`"))
        default = flag.default()
        if default is not None and not flag.flag_only:
            assert f"| `{shown(default, flag.type)}` |" in row, row


def readme_server_rows() -> list[tuple[str, str]]:
    """(flag, default) of the README's ``taskframe-server`` flag table, if it has one."""
    text = (ROOT / "README.md").read_text("utf-8")
    start = text.find("`taskframe-server`:\n")
    if start < 0:
        return []
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        flags = re.findall(r"`(--[a-z-]+)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(",")]
        if len(flags) == len(defaults):
            rows.extend(zip(flags, defaults, strict=True))
    return rows


def test_the_readmes_flag_table_agrees_with_server_config(parser):
    """A README default that no longer is the code's fails here (units as the README writes
    them: ``30 s``, ``7 d``); defaults it words ("3 × lease TTL") are not compared."""
    known = {flag.flag: flag for flag in FLAGS}
    options = {flag for action in parser._actions for flag in action.option_strings}
    for name, written in readme_server_rows():
        assert name in options, f"the README names {name}, which taskframe-server lacks"
        flag = known.get(name)
        if flag is None or flag.default() is None or flag.flag_only:
            continue
        value = duration(written.replace(" ", "")) if flag.type is duration else flag.type(written)
        assert value == flag.default(), f"README: {name} {written}; ServerConfig: {flag.default()}"


PROSE_DEFAULT = re.compile(r"`(--[a-z-]+)` \((?:default )?(\d+(?:\.\d+)?(?: ?[smhd])?)[);]")


def test_defaults_quoted_in_the_docs_prose_are_the_codes(parser):
    """``--lease-ttl`` (30 s) in a how-to page: the server's or the worker's default."""
    from taskframe.worker.cli import build_parser as worker_parser

    defaults = {}
    for each in (parser, worker_parser(default_plugins())):
        for action in each._actions:
            for flag in action.option_strings:
                defaults.setdefault(flag, action.default)
    quoted = [
        (page.name, *match.groups())
        for page in sorted((ROOT / "docs").rglob("*.md"))
        for match in PROSE_DEFAULT.finditer(page.read_text("utf-8"))
    ]
    assert quoted, "no default quoted in the docs: the pattern is stale"
    for page, flag, written in quoted:
        if flag in defaults and isinstance(defaults[flag], int | float):
            assert duration(written.replace(" ", "")) == defaults[flag], (page, flag, written)
