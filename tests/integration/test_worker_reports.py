"""Made-up workers with long type lists cannot grow /workers and /health (a real server).

Before: 1,000 fake workers reporting 1,000 long type names each made
``GET /workers`` 102 MB and every ``GET /health`` take about a second.
"""

from __future__ import annotations

import pytest
import requests

FAKES = 1100
LONG_TYPES = [f"{n:02d}" + "t" * 198 for n in range(20)]  # the longest type names allowed


@pytest.mark.timeout(180)
def test_fake_workers_cannot_grow_workers_and_health(start_server, tmp_path):
    server = start_server(str(tmp_path / "jobs.db"))
    with requests.Session() as session:
        for n in range(FAKES):
            body = {"worker_id": f"fake-{n:05d}", "max": 0, "types": ["sleep", *LONG_TYPES]}
            answer = session.post(f"{server.url}/lease", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
        refused = session.post(
            f"{server.url}/lease", json={"worker_id": "w", "types": ["t" * 201]}, timeout=30
        )
        assert refused.status_code == 422 and list(refused.json()["errors"]) == ["types"]
        listing = session.get(f"{server.url}/workers", timeout=30)
        health = session.get(f"{server.url}/health", timeout=30)
    assert listing.status_code == 200 and health.status_code == 200
    answer = listing.json()
    assert answer["truncated"] is True
    assert len(answer["workers"]) == 1000
    assert {tuple(w["types"]) for w in answer["workers"]} == {("sleep",)}
    assert "fake-01099" in {w["id"] for w in answer["workers"]}  # the latest are kept
    assert len(listing.content) < 300_000, len(listing.content)
