"""An ``http`` job cannot call the API of the worker's own server (real processes).

Before: the default rules let a job reach the server through loopback, and an
http job paused a queue (without tokens the API needs none; with them, a job
reaching the API is still the worker's network position put to other uses).
"""

from __future__ import annotations

import pytest
import requests

from tests.processes import SERVER_ARGS, WORKER_ARGS, submit, wait_for_job


@pytest.mark.timeout(120)
def test_an_http_job_aimed_at_the_server_fails_for_good(start_server, start_worker, tmp_path):
    server = start_server(str(tmp_path / "jobs.db"), *SERVER_ARGS)
    start_worker([server.url], *WORKER_ARGS)
    jobs = [
        submit(
            server.url,
            "http",
            {"url": f"{base}/queues/default/pause", "method": "POST"},
            max_attempts=3,
        )
        for base in (server.url, f"http://localhost:{server.port}", f"http://[::1]:{server.port}")
    ]
    for job in jobs:
        done = wait_for_job(server.url, job["id"])
        assert done["status"] == "failed", done
        assert done["attempts"] == 1, done  # refused for good, not retried
        assert "the worker's own server" in done["error"], done["error"]
    queues = requests.get(f"{server.url}/queues", timeout=10).json()["queues"]
    assert not any(queue["paused"] for queue in queues)
