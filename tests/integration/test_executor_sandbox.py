"""Executors stay in their lane, through a real server and real workers.

``http``: the worker's --http-deny (flag or environment) refuses names resolving
to a denied address, obfuscated addresses and redirects into a denied network,
at once and without sending anything; .netrc and proxy variables are ignored.
``file``: bad paths are refused at submission (422 naming the field); hard links
and FIFOs fail at once; a symlink-swapping attacker gets nothing out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests import sandbox_attack
from tests.integration import SERVER_ARGS, WORKER_ARGS
from tests.processes import submit, wait_for_job
from tests.recorder import Recorder, recording_servers


@pytest.fixture
def server(start_server, sqlite_url):
    return start_server(sqlite_url, *SERVER_ARGS)


@pytest.fixture
def serve() -> Iterator[Callable[..., Recorder]]:
    with recording_servers() as start:
        yield start


def _failed_at_once(url: str, job: dict, *words: str) -> dict:
    done = wait_for_job(url, job["id"], timeout=60)
    assert (done["status"], done["attempts"]) == ("failed", 1), done
    for word in words:
        assert word in done["error"], done
    return done


# -- http ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_http_targets_resolving_to_denied_addresses_fail_at_once(
    server, start_worker, serve
) -> None:
    """TASKFRAME_HTTP_DENY denies loopback: a name and obfuscated literals that
    resolve to it fail permanently and the loopback service receives nothing."""
    service = serve()
    port = service.url.rsplit(":", 1)[1]
    start_worker([server.url], *WORKER_ARGS, env={"TASKFRAME_HTTP_DENY": "127.0.0.0/8,::1"})
    jobs = [
        submit(server.url, "http", {"url": f"http://{host}:{port}/secret"}, max_attempts=3)
        for host in ("localhost", "2130706433", "0x7f.0.0.1")
    ]
    for job in jobs:
        _failed_at_once(server.url, job, "TargetDenied", "127.0.0.1", "--http-deny")
    assert service.requests == []


@pytest.mark.timeout(120)
def test_http_redirect_into_a_denied_network_and_the_worker_environment(
    server, start_worker, serve, tmp_path: Path
) -> None:
    """A 307 POST into a denied network is not sent; the worker's .netrc and proxy
    variables are not used."""
    front, inner, proxy = serve("127.0.0.1"), serve("127.0.0.2"), serve()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login worker password s3cret\n")
    (home / ".netrc").chmod(0o600)
    env = {"HOME": str(home), "HTTP_PROXY": proxy.url, "http_proxy": proxy.url}
    # The worker's own API client honours these: it reaches the server as
    # "localhost", exempted, while the jobs' 127.0.0.1 targets are not.
    env.update({"NO_PROXY": "localhost", "no_proxy": "localhost"})
    api = f"http://localhost:{server.port}"
    start_worker([api], *WORKER_ARGS, "--http-deny", "@default,127.0.0.2/32", env=env)
    target = f"{inner.url}/jobs/1/cancel"
    redirect = {"url": f"{front.url}/redirect?status=307&to={target}", "method": "POST"}
    denied = submit(server.url, "http", {**redirect, "json": {}}, max_attempts=3)
    _failed_at_once(server.url, denied, "127.0.0.2", "denied")
    assert inner.requests == []

    echo = submit(server.url, "http", {"url": f"{front.url}/echo"})
    done = wait_for_job(server.url, echo["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert [request["path"] for request in front.requests] == [
        "/redirect?status=307&to=" + target,
        "/echo",
    ]
    assert all("Authorization" not in request["headers"] for request in front.requests)
    assert proxy.requests == []


BAD_PAYLOADS = [
    ("file", {"operation": "read", "path": "/etc/passwd"}, "path"),
    ("file", {"operation": "read", "path": "a/../../etc/passwd"}, "path"),
    ("file", {"operation": "read", "path": "a\u0000b"}, "path"),
    ("file", {"operation": "copy", "path": "a", "destination": "../outside"}, "destination"),
    ("file", {"operation": "move", "path": "a", "destination": "d/..\\..\\x"}, "destination"),
    ("file", {"operation": "write", "path": "x" * 256, "content": "x"}, "path"),
    ("file", {"operation": "write", "path": "a/" * 2000 + "f", "content": "x"}, "path"),
    ("file", {"operation": "read", "path": "dir/"}, "path"),
    ("http", {"url": "http://x/", "headers": {"X": "a\u000bb"}}, "headers"),
    ("http", {"url": "http://x/", "headers": {"X": "nul\u0000"}}, "headers"),
    ("http", {"url": "http://x/", "headers": {"X Y": "space in name"}}, "headers"),
    ("http", {"url": "http://x/", "headers": {"X": "not latin-1 \u2713"}}, "headers"),
    ("http", {"url": "http://x/\r\nHost: y"}, "url"),
]


@pytest.mark.parametrize(("job_type", "payload", "field"), BAD_PAYLOADS)
def test_payloads_that_can_never_run_are_refused_at_submission(
    server, job_type: str, payload: dict, field: str
) -> None:
    answer = requests.post(
        f"{server.url}/jobs", json={"type": job_type, "payload": payload}, timeout=30
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"]["payload"][field], answer.text
    assert requests.get(f"{server.url}/jobs", timeout=30).json()["jobs"] == []


# -- file ---------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.mark.timeout(120)
def test_hard_links_and_fifos_fail_at_once_on_the_worker(
    server, start_worker, root: Path, outside: Path
) -> None:
    (outside / "secret.txt").write_text("secret")
    os.link(outside / "secret.txt", root / "linked")
    os.mkfifo(root / "fifo")
    (root / "f").write_text("f")
    start_worker([server.url], *WORKER_ARGS, "--file-root", str(root))
    for payload, words in [
        ({"operation": "read", "path": "linked"}, ("2 hard links",)),
        ({"operation": "write", "path": "linked", "content": "pwned"}, ("2 hard links",)),
        ({"operation": "delete", "path": "linked"}, ("2 hard links",)),
        ({"operation": "copy", "path": "f", "destination": "fifo"}, ("not a regular file",)),
        ({"operation": "read", "path": "fifo"}, ("not a regular file",)),
    ]:
        _failed_at_once(server.url, submit(server.url, "file", payload, max_attempts=3), *words)
    assert (outside / "secret.txt").read_text() == "secret"
    assert os.path.exists(root / "linked")


@pytest.mark.timeout(180)
def test_symlink_swaps_during_worker_jobs_never_reach_outside(
    server, start_worker, root: Path, outside: Path
) -> None:
    """600 file jobs through a 4-slot worker while another process swaps ``f`` and
    ``d`` for links out of the root: nothing outside is read, written or removed."""
    sandbox_attack.prepare(root, outside)
    before = sandbox_attack.snapshot(outside), sorted(os.listdir(outside))
    attacker = sandbox_attack.start_attacker(root, outside)
    try:
        start_worker([server.url], *WORKER_ARGS, "--file-root", str(root), "--concurrency", "4")
        jobs = [{"type": "file", "payload": sandbox_attack.race_job(i)} for i in range(600)]
        answer = requests.post(f"{server.url}/jobs/batch", json={"jobs": jobs}, timeout=60)
        assert answer.status_code == 201, answer.text
        done = [wait_for_job(server.url, job_id, timeout=120) for job_id in answer.json()["ids"]]
    finally:
        attacker.kill()
        attacker.wait(10)
    assert [
        job for job in done if job["status"] == "succeeded" and sandbox_attack.leaks(job["result"])
    ] == []
    assert (sandbox_attack.snapshot(outside), sorted(os.listdir(outside))) == before
    statuses = {job["status"] for job in done}
    assert statuses == {"succeeded", "failed"}, statuses  # the race did happen
    assert all(job["attempts"] == 1 for job in done if job["status"] == "failed")
