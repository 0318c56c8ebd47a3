"""One version, setup.cfg's, printed by every command's --version from the package metadata."""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

import pytest

from taskframe.client.cli import main as client_main
from taskframe.standalone import main as server_main
from taskframe.worker.cli import main as worker_main

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_version_is_setup_cfgs():
    options = configparser.ConfigParser()
    options.read(ROOT / "setup.cfg")
    assert metadata.version("taskframe") == options["metadata"]["version"]


@pytest.mark.parametrize(
    ("main", "prog"),
    [
        (server_main, "taskframe-server"),
        (worker_main, "taskframe-worker"),
        (client_main, "taskframe"),
    ],
)
def test_every_command_prints_it(main, prog, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"{prog} {metadata.version('taskframe')}\n"
