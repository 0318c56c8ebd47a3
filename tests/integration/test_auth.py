"""Tokens against a real taskframe-server process: start-up checks, roles, bound workers."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from taskframe.server.http.app import ROUTE_ROLES
from taskframe.server.http.auth import ADMIN, CLIENT, OPEN, WORKER
from tests.processes import BIN, Server, free_port

pytestmark = pytest.mark.timeout(120)

CLIENT_TOKEN = "client-3b6c1d0e9f8a7b6c5d4e"
ADMIN_TOKEN = "admin-7a6b5c4d3e2f1a0b9c8d"
W1_TOKEN = "worker-w1-0f1e2d3c4b5a6978"
W2_TOKEN = "worker-w2-8796a5b4c3d2e1f0"
TOKEN_FILE = f"""\
# taskframe tokens
client:{CLIENT_TOKEN}
admin:{ADMIN_TOKEN}

worker[w1]:{W1_TOKEN}
worker[w2]:{W2_TOKEN}
"""
ALL_TOKENS = (CLIENT_TOKEN, ADMIN_TOKEN, W1_TOKEN, W2_TOKEN)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    path.chmod(0o600)
    return path


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A server start that is expected to stop at once (with an error)."""
    return subprocess.run(
        [str(BIN / "taskframe-server"), "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_no_tokens_and_a_public_address_is_refused(tmp_path):
    done = run_server("--host", "0.0.0.0", "--db", str(tmp_path / "t.db"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "taskframe-server: error: refusing to listen on 0.0.0.0 without tokens "
        "(give --token-file or TASKFRAME_TOKENS, or --insecure to run open)"
    ]


def test_a_bad_token_file_line_stops_the_server_naming_the_line(tmp_path, token_file):
    token_file.write_text(TOKEN_FILE + "wroker:abcdefghijklmnopqrstuv\n")
    done = run_server("--token-file", str(token_file), "--db", str(tmp_path / "t.db"))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"taskframe-server: error: token file {token_file} line 7: ")
    assert "unknown role 'wroker'" in line
    for token in ALL_TOKENS:
        assert token not in done.stderr + done.stdout


def test_insecure_runs_open_on_any_address_and_says_so_once(start_server, tmp_path):
    server = start_server(str(tmp_path / "t.db"), "--host", "0.0.0.0", "--insecure")
    answer = requests.post(
        f"{server.url}/jobs", json={"type": "sleep", "payload": {"duration": 0}}, timeout=10
    )
    assert answer.status_code == 201
    assert server.output().count("no tokens configured") == 1


def test_roles_and_bound_workers_on_a_real_server(start_server, tmp_path, token_file):
    server = start_server(
        str(tmp_path / "t.db"), "--host", "0.0.0.0", "--token-file", str(token_file)
    )
    url = server.url
    job = {"type": "sleep", "payload": {"duration": 0}}

    health = requests.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert "job_types" in requests.get(f"{url}/health", headers=bearer(ADMIN_TOKEN)).json()

    anonymous = requests.post(f"{url}/jobs", json=job, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.post(f"{url}/jobs", json=job, headers=bearer("x" * 20)).status_code == 401
    # A rogue caller with a client token cannot lease.
    rogue = requests.post(
        f"{url}/next-job", params={"worker_id": "rogue"}, headers=bearer(CLIENT_TOKEN)
    )
    assert rogue.status_code == 403
    submitted = requests.post(f"{url}/jobs", json=job, headers=bearer(CLIENT_TOKEN), timeout=10)
    assert submitted.status_code == 201
    job_id = submitted.json()["id"]

    leased = requests.post(
        f"{url}/lease", json={"worker_id": "w2", "max": 1}, headers=bearer(W2_TOKEN), timeout=10
    ).json()["jobs"][0]
    assert leased["id"] == job_id and leased["lease_id"]
    # w1 may not complete w2's lease, neither as w2 nor as itself.
    forged = {"lease_id": leased["lease_id"], "status": "succeeded", "result": {"forged": True}}
    as_w2 = requests.post(
        f"{url}/jobs/{job_id}/complete",
        json={**forged, "worker_id": "w2"},
        headers=bearer(W1_TOKEN),
    )
    assert as_w2.status_code == 403
    as_w1 = requests.post(
        f"{url}/jobs/{job_id}/complete",
        json={**forged, "worker_id": "w1"},
        headers=bearer(W1_TOKEN),
    )
    assert as_w1.status_code == 409
    for action in ("heartbeat", "release"):
        body = {"worker_id": "w2", "lease_id": leased["lease_id"]}
        answer = requests.post(f"{url}/jobs/{job_id}/{action}", json=body, headers=bearer(W1_TOKEN))
        assert answer.status_code == 403, action

    seen = requests.get(f"{url}/jobs/{job_id}", headers=bearer(CLIENT_TOKEN)).json()
    assert seen["status"] == "running" and "lease_id" not in seen
    done = requests.post(
        f"{url}/jobs/{job_id}/complete",
        json={"worker_id": "w2", "lease_id": leased["lease_id"], "status": "succeeded"},
        headers=bearer(W2_TOKEN),
    )
    assert done.status_code == 200 and done.json()["result"] is None

    server.stop()
    log = server.output()
    assert "4 token(s) configured: 1 client, 2 worker, 1 admin" in log
    assert "no tokens configured" not in log
    assert "refused POST http://127.0.0.1" in log
    for token in ALL_TOKENS:
        assert token not in log


def test_tokens_from_the_environment(start_server, tmp_path):
    server = start_server(
        str(tmp_path / "t.db"),
        env={"TASKFRAME_TOKENS": f"client:{CLIENT_TOKEN}; worker[w1]:{W1_TOKEN}"},
    )
    assert requests.get(f"{server.url}/jobs", timeout=10).status_code == 401
    answer = requests.get(f"{server.url}/jobs", headers=bearer(CLIENT_TOKEN), timeout=10)
    assert answer.status_code == 200


def test_the_servers_token_file_variable_is_not_the_workers(start_server, tmp_path, token_file):
    # A host exporting both: the server's list of ROLES:TOKEN lines and the
    # worker's single token. Each command must read its own.
    worker_token = tmp_path / "worker-token"
    worker_token.write_text(W1_TOKEN)
    server = start_server(
        str(tmp_path / "t.db"),
        env={"TASKFRAME_TOKENS_FILE": str(token_file), "TASKFRAME_TOKEN_FILE": str(worker_token)},
    )
    assert requests.get(f"{server.url}/jobs", timeout=10).status_code == 401
    answer = requests.get(f"{server.url}/jobs", headers=bearer(CLIENT_TOKEN), timeout=10)
    assert answer.status_code == 200


def test_a_standalone_server_with_tokens_gives_its_own_worker_one(start_server, tmp_path):
    server = start_server(
        str(tmp_path / "t.db"),
        "--standalone",
        "--worker-id",
        "inside",
        env={"TASKFRAME_TOKENS": f"client:{CLIENT_TOKEN}"},
    )
    job = {"type": "sleep", "payload": {"duration": 0}}
    submitted = requests.post(f"{server.url}/jobs", json=job, headers=bearer(CLIENT_TOKEN))
    job_id = submitted.json()["id"]
    answer = requests.get(
        f"{server.url}/jobs/{job_id}", params={"wait": 30}, headers=bearer(CLIENT_TOKEN)
    ).json()
    assert answer["status"] == "succeeded" and answer["worker_id"] == "inside"


def test_make_tokens_writes_a_token_file_the_server_takes(start_server, tmp_path):
    """deploy/make-tokens, which docker-compose runs, gives usable tokens, once."""
    script = Path(__file__).parents[2] / "deploy" / "make-tokens"
    secrets = tmp_path / "secrets"
    for _ in range(2):  # the second run keeps the first run's tokens
        subprocess.run(["sh", str(script), str(secrets), "worker1"], check=True, timeout=60)
    assert sorted(p.name for p in secrets.iterdir()) == [
        "admin",
        "client",
        "server-tokens",
        "workers",
    ]
    assert (secrets / "server-tokens").stat().st_mode & 0o077 == 0
    server = start_server(str(tmp_path / "t.db"), "--token-file", str(secrets / "server-tokens"))
    client = bearer((secrets / "client").read_text().strip())
    worker = bearer((secrets / "workers" / "worker1").read_text().strip())
    job = {"type": "sleep", "payload": {"duration": 0}}
    assert requests.post(f"{server.url}/jobs", json=job, headers=client).status_code == 201
    assert (
        requests.post(
            f"{server.url}/lease", json={"worker_id": "worker2"}, headers=worker
        ).status_code
        == 403
    )
    leased = requests.post(f"{server.url}/lease", json={"worker_id": "worker1"}, headers=worker)
    assert leased.status_code == 200 and len(leased.json()["jobs"]) == 1


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("auth-routes")
    tokens = folder / "tokens"
    tokens.write_text(f"{TOKEN_FILE}worker:{UNBOUND_WORKER_TOKEN}\n")
    # One bad token per route: more than the throttle allows one address by default.
    server = Server(
        str(folder / "t.db"),
        folder / "server.log",
        *("--token-file", str(tokens), "--max-auth-failures", "1000"),
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


UNBOUND_WORKER_TOKEN = "worker-any-1a2b3c4d5e6f7a8b"
BY_ROLE = {CLIENT: CLIENT_TOKEN, WORKER: UNBOUND_WORKER_TOKEN, ADMIN: ADMIN_TOKEN}


@pytest.mark.parametrize(
    ("route", "roles"),
    sorted((key, roles) for key, roles in ROUTE_ROLES.items() if roles != OPEN),
    ids=lambda value: " ".join(value[::-1]) if isinstance(value, tuple) else "",
)
def test_every_route_of_a_real_server_checks_the_token_and_role(guarded_server, route, roles):
    path, method = route
    url = guarded_server.url + re.sub(r"\{[^}]*\}", "1", path)

    def send(token: str | None) -> requests.Response:
        headers = bearer(token) if token else {}
        return requests.request(method, url, json={}, headers=headers, timeout=10)

    anonymous = send(None)
    assert anonymous.status_code != 404, f"ROUTE_ROLES names {method} {path}: no such route"
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert send("not-a-token-of-this-server").status_code == 401
    for role, token in BY_ROLE.items():
        allowed = role == ADMIN or role in roles
        status = send(token).status_code
        if allowed:
            assert status not in (401, 403) and status < 500, (role, status)
        else:
            assert status == 403, (role, status)


def test_bad_tokens_are_throttled_per_address_and_logged_summed(start_server, tmp_path, token_file):
    server = start_server(str(tmp_path / "t.db"), "--token-file", str(token_file))
    url = server.url
    statuses = []
    with requests.Session() as session:
        for n in range(200):
            guess = bearer(f"guess-{n:04d}-0123456789abcdef")
            statuses.append(session.get(f"{url}/jobs", headers=guess, timeout=10).status_code)
        # Throttled: a right token from the same address gets 429 too (a guess learns nothing).
        right = session.get(f"{url}/jobs", headers=bearer(CLIENT_TOKEN), timeout=10)
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    assert right.status_code == 429
    assert 1 <= int(right.headers["Retry-After"]) <= 60
    assert right.json()["title"] == "Too many requests"
    assert "bad tokens from 127.0.0.1" in right.json()["description"]
    # Anonymous /health still answers (health checks share addresses with clients).
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    log = server.output()
    refusals = [line for line in log.splitlines() if "refused GET" in line]
    assert len(refusals) <= 3, refusals  # the first bad token, the first 429: not 200 lines
    assert "throttling 127.0.0.1: 20 bad tokens" in log
