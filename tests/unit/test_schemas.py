"""API message schemas, and the quick loaders of core/quick_load.py against them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from taskframe.core import quick_load, schemas

LEASE_SCHEMA = schemas.LeaseRequestSchema()
SUBMIT_SCHEMA = schemas.SubmitJobSchema()
BATCH_SCHEMA = schemas.BatchSubmitSchema()

ids = st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
completion = st.fixed_dictionaries(
    {
        "job_id": st.integers(min_value=1, max_value=2**40),
        "lease_id": ids,
        "status": st.sampled_from(["succeeded", "failed", "cancelled"]),
    },
    optional={
        "result": json_values,
        "error": st.none() | st.text(max_size=30),
        "retryable": st.booleans(),
        "worker_id": st.none() | ids,
    },
)
lease_request = st.fixed_dictionaries(
    {"worker_id": ids},
    optional={
        "types": st.none() | st.lists(st.text(max_size=8), max_size=3),
        "max": st.integers(min_value=0, max_value=schemas.MAX_LEASE_BATCH),
        "wait": st.floats(min_value=0, max_value=schemas.MAX_WAIT) | st.integers(0, 60),
        "completions": st.lists(completion, max_size=4),
        "request_id": st.none() | ids,
        "resent": st.booleans(),
    },
)


@settings(max_examples=200)
@given(lease_request)
def test_quick_load_matches_the_schema_on_valid_requests(request):
    assert quick_load.quick_load_lease_request(request) == LEASE_SCHEMA.load(request)


@pytest.mark.parametrize(
    "request_body",
    [
        {},
        {"worker_id": ""},
        {"worker_id": "w\x00"},
        {"worker_id": "w", "max": -1},
        {"worker_id": "w", "max": 1.5},
        {"worker_id": "w", "max": True},
        {"worker_id": "w", "wait": 61},
        {"worker_id": "w", "types": "sleep"},
        {"worker_id": "w", "surprise": 1},
        {"worker_id": "w", "completions": [{"job_id": 1, "lease_id": "x"}]},
        {"worker_id": "w", "completions": [{"job_id": "1", "lease_id": "x", "status": "failed"}]},
        {"worker_id": "w", "completions": [{"job_id": 1, "lease_id": "x", "status": "done"}]},
        {"worker_id": "w", "completions": [{"job_id": 1, "lease_id": "", "status": "failed"}]},
    ],
)
def test_quick_load_leaves_invalid_requests_to_the_schema(request_body):
    assert quick_load.quick_load_lease_request(request_body) is None
    with pytest.raises(ValidationError):
        LEASE_SCHEMA.load(request_body)


def test_submit_rejects_delay_with_run_at():
    with pytest.raises(ValidationError) as caught:
        schemas.SubmitJobSchema().load(
            {"type": "sleep", "delay": 1, "run_at": "2030-01-01T00:00:00Z"}
        )
    assert set(caught.value.messages) == {"run_at"}


def test_submit_rejects_unknown_fields():
    with pytest.raises(ValidationError) as caught:
        schemas.SubmitJobSchema().load({"type": "sleep", "priorty": 1})
    assert set(caught.value.messages) == {"priorty"}


def test_submit_defaults():
    loaded = schemas.SubmitJobSchema().load({"type": "sleep"})
    assert loaded["priority"] == 5 and loaded["max_attempts"] == 3 and loaded["payload"] == {}


numbers = st.integers(-5, 10**6) | st.floats(-1, 1e6, allow_nan=False)
submission = st.fixed_dictionaries(
    {"type": ids},
    optional={
        "payload": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "priority": st.integers(schemas.MIN_PRIORITY, schemas.MAX_PRIORITY),
        "max_attempts": st.integers(1, 100),
        "timeout": st.none() | st.floats(0.001, 7 * 86400) | st.integers(1, 7 * 86400),
        "delay": st.floats(0, 365 * 86400) | st.integers(0, 365 * 86400),
        "idempotency_key": st.none() | ids,
        "queue": st.from_regex(schemas.QUEUE_NAME, fullmatch=True),
    },
)


@settings(max_examples=200)
@given(submission)
def test_quick_load_submit_matches_the_schema_on_valid_jobs(job):
    assert quick_load.quick_load_submit(job) == SUBMIT_SCHEMA.load(job)


@settings(max_examples=50)
@given(st.lists(submission, min_size=1, max_size=5))
def test_quick_load_batch_matches_the_schema(jobs):
    assert quick_load.quick_load_batch({"jobs": jobs}) == BATCH_SCHEMA.load({"jobs": jobs})


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {"type": st.text(max_size=3) | st.integers()},
        optional={
            "priority": numbers | st.booleans(),
            "max_attempts": numbers,
            "timeout": numbers | st.none(),
            "delay": numbers,
            "payload": st.none() | st.lists(st.integers(), max_size=1),
            "queue": st.text(max_size=70) | st.integers(),
        },
    )
)
def test_quick_load_submit_never_accepts_what_the_schema_rejects(job):
    loaded = quick_load.quick_load_submit(job)
    if loaded is not None:
        assert loaded == SUBMIT_SCHEMA.load(job)


def test_quick_load_submit_leaves_run_at_to_the_schema():
    job = {"type": "sleep", "run_at": "2030-01-01T00:00:00Z"}
    assert quick_load.quick_load_submit(job) is None
    assert SUBMIT_SCHEMA.load(job)["run_at"].year == 2030


def test_dependencies_and_queues_are_loaded_by_the_schema():
    loaded = SUBMIT_SCHEMA.load({"type": "sleep", "depends_on": [3, "$0"], "queue": "q.1"})
    assert loaded["depends_on"] == [3, ("ref", 0)] and loaded["queue"] == "q.1"
    assert quick_load.quick_load_submit({"type": "sleep", "depends_on": [3]}) is None
    for bad in ([0], ["$"], ["$-1"], [True], "3", [1.5]):
        with pytest.raises(ValidationError) as info:
            SUBMIT_SCHEMA.load({"type": "sleep", "depends_on": bad})
        assert "depends_on" in info.value.messages
    lease = quick_load.quick_load_lease_request({"worker_id": "w", "queues": ["a", "b"]})
    assert lease == schemas.LeaseRequestSchema().load({"worker_id": "w", "queues": ["a", "b"]})
    assert quick_load.quick_load_lease_request({"worker_id": "w", "queues": ["A"]}) is None
