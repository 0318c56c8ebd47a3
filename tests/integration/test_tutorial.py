"""The "Your first task" page, run as written: its file, its commands, real processes.

The code blocks are taken from docs/getting-started/first-task.md: the first
``python`` block is saved under the name its title gives, the ``taskframe-server`` command
runs in the background, the others run in turn in the same folder (the
``taskframe`` one on a terminal, where it draws its progress bar). The only
change: a free port instead of 8000 (``TASKFRAME_PORT`` and ``TASKFRAME_URL``
for the commands, the port rewritten in the curl lines), as other tests run
beside this one.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.processes import BIN, Process, free_port, wait_until

PAGE = Path(__file__).parents[2] / "docs" / "getting-started" / "first-task.md"


def tutorial_blocks() -> list[tuple[str, str, str]]:
    """(language, title, text) of each fenced block of the page, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(r'```(\w+)(?: title="([^"]+)")?\n(.*?)```', text, re.S)


def run_on_a_terminal(command: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``command`` with a pseudo-terminal as its stdin, stdout and stderr; its output."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        shlex.split(command), stdin=child, stdout=child, stderr=child, cwd=cwd, env=env
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side is closed (the command ended)
                break
            if not chunk:
                break
            output += chunk
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    assert process.returncode == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


@pytest.mark.timeout(120)
def test_the_first_task_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = tutorial_blocks()
    commands: list[str] = []
    expected = ""
    for language, title, body in blocks:
        if language == "python" and title:
            (tmp_path / title).write_text(body, encoding="utf-8")
        elif language == "sh":
            lines = body.replace("\\\n", " ").splitlines()  # continuation lines joined
            commands += [line for line in lines if line.strip() and not line.startswith("#")]
        elif language == "text":
            expected = body
    [serve] = [c for c in commands if c.startswith("taskframe-server")]
    [submit] = [c for c in commands if c.startswith("taskframe ")]
    curls = [c for c in commands if c.startswith("curl ")]
    assert (tmp_path / "tasks.py").exists() and curls and expected

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TASKFRAME_PORT": str(port),
        "TASKFRAME_URL": url,
    }
    env.pop("TASKFRAME_TASKS", None)
    env.pop("PYTHONPATH", None)  # the tasks module is found in the folder, as for a user
    server = Process([*shlex.split(serve)], tmp_path / "server.log", env=env, cwd=tmp_path)
    try:
        wait_until(lambda: _healthy(url, server), 30, message="the tutorial's server")

        # The taskframe command, on a terminal: a progress bar, then the result.
        output = run_on_a_terminal(submit, tmp_path, env, timeout=60)
        assert re.search(r"\[#+-*\]\s+\d+% \d+ sheep", output), output
        result_line = expected.strip().splitlines()[-1]
        assert result_line in output, output

        # curl: submit, then wait for the job.
        answers = []
        for command in curls:
            command = command.replace("localhost:8000", f"127.0.0.1:{port}")
            done = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            answers.append(json.loads(done.stdout))
        refused, submitted, finished = answers
        assert "sheep" in refused["errors"]["payload"], refused
        assert submitted["type"] == "count_sheep" and submitted["status"] in ("queued", "running")
        assert finished["id"] == submitted["id"], "the tutorial waits for the job it submitted"
        assert finished["status"] == "succeeded", finished
        assert finished["result"] == "counted 1 sheep"
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()


def _healthy(url: str, server: Process) -> bool:
    import requests

    if not server.alive():
        raise AssertionError(f"the server exited:\n{server.output()}")
    try:
        return requests.get(url + "/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
