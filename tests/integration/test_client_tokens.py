"""The client and the command against a real server with tokens (roles)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from taskframe.client import Client, Forbidden, Unauthorized
from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import BIN, Server, Worker

pytestmark = pytest.mark.timeout(120)

CLIENT = "client-token-0123456789abcdef"
WORKER = "worker-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"


def test_client_and_command_carry_their_token(
    start_server: Callable[..., Server],
    start_worker: Callable[..., Worker],
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    tokens = f"client:{CLIENT} worker:{WORKER} admin:{ADMIN}"
    server = start_server(sqlite_url, *SERVER_ARGS, env={"TASKFRAME_TOKENS": tokens})
    start_worker([server.url], *WORKER_ARGS, "--token", WORKER)

    with Client(server.url) as anonymous, pytest.raises(Unauthorized) as raised:
        anonymous.submit("sleep", {"duration": 0})
    assert raised.value.status == 401
    with Client(server.url, token="not-a-known-token-at-all") as stranger:
        with pytest.raises(Unauthorized):
            stranger.get(1)
    with Client(server.url, token=WORKER) as worker_role, pytest.raises(Forbidden) as raised:
        worker_role.submit("sleep", {"duration": 0})
    assert raised.value.status == 403 and "client" in str(raised.value)
    with Client(server.url, token=CLIENT) as client:
        job = client.wait(client.submit("sleep", {"duration": 0.1}).id, timeout=60)
        assert job.succeeded
        assert [a.outcome for a in client.attempts(job.id)] == ["succeeded"]
        assert client.stats().by_status["succeeded"] == 1
        assert [w.alive for w in client.workers()] == [True]

    token_file = tmp_path / "token"
    token_file.write_text(CLIENT + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFRAME_")}
    command = [str(BIN / "taskframe"), "--url", server.url]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=90, env=env
        )

    done = run(
        "--token-file", str(token_file), "submit", "sleep", "--payload", '{"duration": 0}', "--wait"
    )
    assert done.returncode == 0, done.stderr
    refused = run("list")
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert len(refused.stderr.splitlines()) == 1
    forbidden = run("--token", WORKER, "submit", "sleep")
    assert forbidden.returncode == 1 and "Forbidden" in forbidden.stderr
