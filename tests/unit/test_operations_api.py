"""Issue 23's endpoints over real HTTP: bulk retry and cancel, sorted pages, search,
dependants, heartbeats carrying log text, and the charts' history."""

from __future__ import annotations

import pytest
import requests

from tests.api_server import Mounted

pytestmark = pytest.mark.timeout(60)


def post(api: Mounted, path: str, body: dict | None = None) -> requests.Response:
    return requests.post(api.url + path, json=body if body is not None else {}, timeout=10)


def submit_many(api: Mounted, jobs: list[dict]) -> list[int]:
    answer = post(api, "/jobs/batch", {"jobs": jobs})
    assert answer.status_code == 201, answer.text
    return answer.json()["ids"]


def lease(api: Mounted, worker: str = "w1", max: int = 1) -> list[dict]:
    answer = post(api, "/lease", {"worker_id": worker, "max": max, "types": ["sleep"]})
    assert answer.status_code == 200, answer.text
    return answer.json()["jobs"]


def test_bulk_cancel_answers_the_count_first_then_cancels(api):
    sleep = {"type": "sleep", "payload": {"duration": 0}}
    ids = submit_many(api, [{**sleep, "queue": "mail"}] * 5 + [sleep])
    counted = post(api, "/jobs/cancel", {"queue": "mail", "dry_run": True}).json()
    assert counted == {
        "matched": 5,
        "changed": 0,
        "cancel_requested": 0,
        "skipped": 0,
        "dry_run": True,
    }
    done = post(api, "/jobs/cancel", {"queue": "mail"}).json()
    assert (done["matched"], done["changed"]) == (5, 5)
    listed = requests.get(f"{api.url}/jobs?status=cancelled&queue=mail", timeout=10).json()
    assert sorted(job["id"] for job in listed["jobs"]) == ids[:5]
    # Retry takes the same filter; a status it never applies to is a 422 naming it.
    again = post(api, "/jobs/retry", {"queue": "mail", "status": "cancelled"}).json()
    assert again["changed"] == 5
    refused = post(api, "/jobs/retry", {"status": "queued"})
    assert refused.status_code == 422 and "status" in refused.json()["errors"]
    bad = post(api, "/jobs/cancel", {"created_after": "yesterday"})
    assert bad.status_code == 422 and "created_after" in bad.json()["errors"]


def test_server_side_sort_pages_with_cursors(api):
    jobs = [{"type": "sleep", "payload": {"duration": 0}, "priority": 1 + i % 10} for i in range(9)]
    ids = submit_many(api, jobs)
    seen, cursor = [], None
    while True:
        params = {"sort": "priority", "order": "desc", "limit": 4}
        if cursor is not None:
            params["cursor"] = cursor
        page = requests.get(f"{api.url}/jobs", params=params, timeout=10).json()
        seen += [(job["priority"], job["id"]) for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    expected = sorted(((j["priority"], i) for j, i in zip(jobs, ids, strict=True)), reverse=True)
    assert seen == expected
    # A cursor of another order is refused, not misread.
    mixed = requests.get(
        f"{api.url}/jobs", params={"sort": "created", "cursor": cursor or "x"}, timeout=10
    )
    assert mixed.status_code == 422
    newest = requests.get(f"{api.url}/jobs?limit=4", timeout=10).json()
    assert newest["next_cursor"] == ids[-4]  # newest first keeps its integer cursor


def test_search_by_idempotency_key_and_dependants(api):
    first = post(
        api, "/jobs", {"type": "sleep", "payload": {"duration": 0}, "idempotency_key": "k-1"}
    )
    first_id = first.json()["id"]
    found = requests.get(f"{api.url}/jobs", params={"key": "k-1"}, timeout=10).json()["jobs"]
    assert [job["id"] for job in found] == [first_id]
    dependant = {"type": "sleep", "payload": {"duration": 0}, "depends_on": [first_id]}
    then = post(api, "/jobs", dependant).json()
    answer = requests.get(f"{api.url}/jobs/{first_id}/dependants", timeout=10)
    assert answer.status_code == 200
    assert [job["id"] for job in answer.json()["jobs"]] == [then["id"]]
    assert requests.get(f"{api.url}/jobs/999999/dependants", timeout=10).status_code == 404
    # The OpenAPI document describes every field the answer carries (job_id too).
    document = requests.get(f"{api.url}/openapi.json", timeout=10).json()
    operation = document["paths"]["/jobs/{job_id}/dependants"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    described = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert set(answer.json()) == set(described)


def test_heartbeats_carry_log_text_into_the_running_attempt(api):
    job_id = post(api, "/jobs", {"type": "sleep", "payload": {"duration": 0}}).json()["id"]
    [leased] = lease(api)
    lease_id = leased["lease_id"]
    one = post(
        api, f"/jobs/{job_id}/heartbeat", {"worker_id": "w1", "lease_id": lease_id, "log": "a\n"}
    )
    assert one.status_code == 200, one.text
    batch = post(
        api,
        "/heartbeats",
        {"worker_id": "w1", "leases": [{"job_id": job_id, "lease_id": lease_id, "log": "b\n"}]},
    )
    assert batch.json()["leases"][0]["ok"]
    # An old worker sends no log: nothing changes for it.
    old = post(
        api,
        "/heartbeats",
        {"worker_id": "w1", "leases": [{"job_id": job_id, "lease_id": lease_id}]},
    )
    assert old.status_code == 200
    attempts = requests.get(f"{api.url}/jobs/{job_id}/attempts", timeout=10).json()
    assert attempts["attempts"] == []
    assert attempts["running"]["log"] == "a\nb\n" and attempts["running"]["attempt"] == 1
    too_long = post(
        api,
        f"/jobs/{job_id}/heartbeat",
        {"worker_id": "w1", "lease_id": lease_id, "log": "x" * 65537},
    )
    assert too_long.status_code in (413, 422)
    done = post(
        api,
        f"/jobs/{job_id}/complete",
        {"worker_id": "w1", "lease_id": lease_id, "status": "succeeded", "log": "a\nb\nend\n"},
    )
    assert done.status_code == 200, done.text
    attempts = requests.get(f"{api.url}/jobs/{job_id}/attempts", timeout=10).json()
    assert attempts["running"] is None and attempts["attempts"][0]["log"] == "a\nb\nend\n"


def test_history_answers_points_for_the_window(api):
    answer = requests.get(f"{api.url}/stats/history?window=hour", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["step"] == 60 and len(body["points"]) == 60
    assert set(body["points"][0]) == {"time", "succeeded", "failed", "depth", "oldest_age"}
    day = requests.get(f"{api.url}/stats/history?window=day&type=sleep", timeout=10).json()
    assert day["step"] == 600 and len(day["points"]) == 144
    assert requests.get(f"{api.url}/stats/history?window=year", timeout=10).status_code == 422


def test_the_openapi_document_names_the_new_endpoints(api):
    paths = requests.get(f"{api.url}/openapi.json", timeout=10).json()["paths"]
    for path in ("/jobs/retry", "/jobs/cancel", "/jobs/{job_id}/dependants", "/stats/history"):
        assert path in paths
    names = {p["name"] for p in paths["/jobs"]["get"]["parameters"]}
    assert {"sort", "order", "queue", "key", "created_after", "finished_before"} <= names


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": str(2**70)},
        {"sort": "id", "order": "asc", "cursor": "-1"},
        {
            "sort": "priority",
            "cursor": "WyJwcmlvcml0eSIsImRlc2MiLDUsMTE4MDU5MTYyMDcxNzQxMTMwMzQyNF0",
        },
        {"sort": "priority", "cursor": "not base64 at all"},
    ],
)
def test_a_cursor_out_of_range_or_forged_is_a_422(api, params):
    answer = requests.get(f"{api.url}/jobs", params=params, timeout=10)
    assert answer.status_code == 422, answer.text
    assert "cursor" in answer.json()["errors"]


def test_a_bulk_action_can_name_one_idempotency_key(api):
    sleep = {"type": "sleep", "payload": {"duration": 0}}
    submit_many(api, [sleep, sleep])
    keyed = post(api, "/jobs", {**sleep, "idempotency_key": "only-me"}).json()
    done = post(api, "/jobs/cancel", {"key": "only-me"}).json()
    assert (done["matched"], done["changed"]) == (1, 1)
    statuses = [job["status"] for job in requests.get(f"{api.url}/jobs", timeout=10).json()["jobs"]]
    assert statuses == ["cancelled", "queued", "queued"] and keyed["id"] == 3
