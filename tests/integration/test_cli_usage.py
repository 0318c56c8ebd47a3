"""What a new user hits on the command line: one line naming the flag or variable, exit 2.

Each case runs the real ``taskframe-server``/``taskframe-worker`` in an empty
directory and checks that nothing was created there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from taskframe.core.options import format_duration

BIN = Path(sys.executable).parent


def run(command: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKFRAME_")}
    return subprocess.run(
        [str(BIN / command), *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr (no traceback, no usage dump)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TASKFRAME_PORT", "abc", "TASKFRAME_PORT: 'abc' is not an integer"),
        ("TASKFRAME_LEASE_TTL", "-5", "TASKFRAME_LEASE_TTL: must be a finite number"),
        ("TASKFRAME_LOG_LEVEL", "bogus", "TASKFRAME_LOG_LEVEL: invalid choice 'BOGUS'"),
    ],
)
def test_server_names_a_bad_variable(tmp_path, variable, value, expected):
    result = run("taskframe-server", cwd=tmp_path, **{variable: value})
    assert result.returncode == 2
    assert expected in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_worker_names_a_bad_variable(tmp_path):
    result = run("taskframe-worker", cwd=tmp_path, TASKFRAME_CONCURRENCY="abc")
    assert result.returncode == 2
    assert "TASKFRAME_CONCURRENCY: 'abc' is not an integer" in error_line(result)


def test_server_bad_log_level_flag_is_one_line(tmp_path):
    result = run("taskframe-server", "--log-level", "bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "--log-level" in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_port_in_use_is_refused_before_the_database_is_created(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("taskframe-server", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert f"--port {port}" in line and "Address already in use" in line
    assert list(tmp_path.iterdir()) == []  # no taskframe.db


def test_postgres_url_without_the_driver_hints_at_the_extra(tmp_path):
    # The server's main() in a Python where psycopg cannot be imported.
    code = (
        "import sys; sys.modules['psycopg'] = None; "
        "from taskframe.server.cli import main; "
        "sys.exit(main(['--db', 'postgresql://nobody@127.0.0.1:1/none', '--port', '0']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "pip install 'taskframe[postgres]'" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["taskframe-server", "taskframe-worker"])
def test_version(tmp_path, command):
    result = run(command, "--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(f"{command} ")


def test_server_help_lists_worker_options_only_with_standalone(tmp_path):
    plain = run("taskframe-server", "--help", cwd=tmp_path).stdout
    standalone = run("taskframe-server", "--standalone", "--help", cwd=tmp_path).stdout
    assert "--concurrency" not in plain and "--file-root" not in plain
    assert "--concurrency" in standalone and "--file-root" in standalone
    assert "default 7d" in " ".join(plain.split())  # --retention, as the README writes it


def test_format_duration():
    assert [format_duration(s) for s in (604800, 300, 30, 1.5, 5400, 0)] == [
        "7d",
        "5m",
        "30s",
        "1.5s",
        "90m",
        "0s",
    ]


def test_migrate_only_does_not_need_the_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("taskframe-server", "--port", str(port), "--migrate-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "taskframe.db").exists()
