"""TLS: deploy/nginx.conf, run by a real nginx, in front of a real server with tokens.

nginx comes from Debian's packages (.ci/run installs it). It runs unprivileged
from a temporary prefix: ``nginx -p TMP -c TMP/nginx.conf -g 'daemon off;'``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.processes import BIN, Process, Server, Worker, free_port, wait_until
from tests.unit.test_transport import make_ca_and_cert

pytestmark = pytest.mark.timeout(120)

DEPLOY_CONF = Path(__file__).parents[2] / "deploy" / "nginx.conf"
# Set by .ci/run: there, a missing nginx fails these tests instead of skipping them.
REQUIRE_NGINX = os.environ.get("TASKFRAME_REQUIRE_NGINX", "") not in ("", "0")
CLIENT_TOKEN = "tls-client-5e4d3c2b1a09f8e7"
WORKER_TOKEN = "tls-worker-a1b2c3d4e5f60718"
# nginx reaches the server from this address, the test's client from 127.0.0.1:
# so the server's log tells which one it took for the caller.
PROXY_ADDRESS = "127.0.0.2"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if REQUIRE_NGINX:
        pytest.fail("TASKFRAME_REQUIRE_NGINX is set but nginx is not installed")
    pytest.skip("nginx is not installed (apt-get install nginx)")


def render_conf(folder: Path, upstream_port: int, tls_port: int, cert: Path, key: Path) -> Path:
    """deploy/nginx.conf with its ports and paths swapped for the test's (each must be there)."""
    text = DEPLOY_CONF.read_text()
    swaps = {
        "error_log /var/log/nginx/taskframe-error.log warn;": f"error_log {folder}/error.log info;",
        "pid /run/nginx-taskframe.pid;": f"pid {folder}/nginx.pid;",
        "worker_processes auto;": "worker_processes 1;",
        "access_log /var/log/nginx/taskframe-access.log;": (
            f"access_log {folder}/access.log;\n"
            + "".join(
                f"    {kind}_temp_path {folder}/{kind}_temp;\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
        ),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{tls_port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{free_port()};",
        "ssl_certificate /etc/taskframe/tls/server.crt;": f"ssl_certificate {cert};",
        "ssl_certificate_key /etc/taskframe/tls/server.key;": f"ssl_certificate_key {key};",
        "proxy_pass http://taskframe;": (
            f"proxy_pass http://taskframe;\n            proxy_bind {PROXY_ADDRESS};"
        ),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    path = folder / "nginx.conf"
    path.write_text(text)
    return path


class Nginx(Process):
    def __init__(self, folder: Path, conf: Path, port: int) -> None:
        self.url = f"https://127.0.0.1:{port}"
        command = [nginx_binary(), "-p", str(folder), "-c", str(conf), "-g", "daemon off;"]
        super().__init__(command, folder / "nginx.out")

    def wait_ready(self, ca: Path) -> Nginx:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"nginx exited: {self.output()}")
            try:
                return requests.get(self.url + "/health", verify=str(ca), timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(ready, message="nginx in front of the server")
        return self


@pytest.fixture
def tls_stack(
    tmp_path: Path, start_server: Callable[..., Server]
) -> Iterator[tuple[Server, Nginx, Path]]:
    """A server with tokens behind nginx: (server, nginx, the CA that signed its cert)."""
    nginx_binary()
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_ca_and_cert(certs)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"client:{CLIENT_TOKEN}\nworker:{WORKER_TOKEN}\n")
    server = start_server(
        str(tmp_path / "t.db"),
        "--token-file",
        str(tokens),
        "--trusted-proxy",
        PROXY_ADDRESS,
    )
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    conf = render_conf(folder, server.port, port, cert, key)
    nginx = Nginx(folder, conf, port)
    try:
        yield server, nginx.wait_ready(ca), ca
    finally:
        nginx.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_requests_through_nginx_verify_the_ca_and_the_server_sees_the_real_caller(tls_stack):
    server, nginx, ca = tls_stack
    health = requests.get(f"{nginx.url}/health", verify=str(ca), timeout=10)
    assert health.json() == {"status": "ok"}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{nginx.url}/health", timeout=10)  # the system CAs do not know ours
    # A forged X-Forwarded-For is overwritten by nginx; the server logs the real caller
    # and the https scheme, taken from the trusted proxy's headers.
    refused = requests.post(
        f"{nginx.url}/jobs",
        json={"type": "sleep", "payload": {"duration": 0}},
        headers={"X-Forwarded-For": "203.0.113.9"},
        verify=str(ca),
        timeout=10,
    )
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    wait_until(lambda: "refused POST" in server.output(), message="the refusal in the log")
    assert f"refused POST {nginx.url}/jobs from 127.0.0.1: no token" in server.output()
    assert "203.0.113.9" not in server.output()
    assert PROXY_ADDRESS not in server.output().split("refused POST", 1)[1]


def test_a_worker_trusting_the_ca_runs_jobs_over_https_one_that_does_not_refuses(
    tls_stack, tmp_path: Path, start_worker: Callable[..., Worker]
):
    server, nginx, ca = tls_stack
    other = tmp_path / "other-ca"
    other.mkdir()
    other_ca, _, _ = make_ca_and_cert(other)
    token_file = tmp_path / "worker-token"
    token_file.write_text(WORKER_TOKEN + "\n")

    def submit() -> int:
        answer = requests.post(
            f"{nginx.url}/jobs",
            json={"type": "sleep", "payload": {"duration": 0}},
            headers=bearer(CLIENT_TOKEN),
            verify=str(ca),
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    first = submit()
    distrustful = start_worker(
        [nginx.url], "--token-file", str(token_file), "--ca-cert", str(other_ca)
    )
    wait_until(lambda: "TLS error" in distrustful.output(), message="the worker's TLS error")
    assert "CERTIFICATE_VERIFY_FAILED" in distrustful.output()
    distrustful.stop()
    client = {"headers": bearer(CLIENT_TOKEN), "verify": str(ca), "timeout": 10}
    assert requests.get(f"{nginx.url}/jobs/{first}", **client).json()["status"] == "queued"

    start_worker([nginx.url], "--token-file", str(token_file), "--ca-cert", str(ca))
    jobs = [first, *(submit() for _ in range(4))]
    for job_id in jobs:
        answer = requests.get(f"{nginx.url}/jobs/{job_id}", params={"wait": 30}, **client)
        assert answer.json()["status"] == "succeeded", answer.text
    assert WORKER_TOKEN not in server.output()


def test_the_taskframe_command_speaks_https_with_the_ca_and_a_token(tls_stack, tmp_path: Path):
    server, nginx, ca = tls_stack
    token_file = tmp_path / "client-token"
    token_file.write_text(CLIENT_TOKEN + "\n")

    def taskframe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "taskframe"), "--url", nginx.url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    base = ("--token-file", str(token_file))
    done = taskframe(
        *base, "--ca-cert", str(ca), "--json", "submit", "sleep", "--payload", '{"duration": 0}'
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "queued"
    untrusting = taskframe(*base, "submit", "sleep", "--payload", '{"duration": 0}')
    assert untrusting.returncode != 0
    assert "certificate" in untrusting.stderr.lower() or "tls" in untrusting.stderr.lower()
    tokenless = taskframe("--ca-cert", str(ca), "submit", "sleep", "--payload", '{"duration": 0}')
    assert tokenless.returncode != 0 and "this server needs a token" in tokenless.stderr
    assert CLIENT_TOKEN not in done.stdout + done.stderr + untrusting.stderr
