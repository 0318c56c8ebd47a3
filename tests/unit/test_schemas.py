"""API message schemas, and the quick loaders of core/quick_load.py against them."""

from __future__ import annotations

import importlib
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields, validate

from taskframe.core import quick_load, schemas, strict_json

LEASE_SCHEMA = schemas.LeaseRequestSchema()
SUBMIT_SCHEMA = schemas.SubmitJobSchema()
BATCH_SCHEMA = schemas.BatchSubmitSchema()

# Valid text: no NUL in names, no lone surrogates anywhere (see the tests at the end).
ids = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=20
)
names = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8)
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
        "traceback": st.none() | st.text(max_size=30),
        "retry_after": st.none()
        | st.floats(0, schemas.MAX_RETRY_AFTER)
        | st.integers(0, int(schemas.MAX_RETRY_AFTER)),
    },
)
lease_request = st.fixed_dictionaries(
    {"worker_id": ids},
    optional={
        "types": st.none() | st.lists(ids, max_size=3),  # a type name is an id (1-200)
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
    # priority, max_attempts and queue stay omitted: the job type's defaults come first.
    loaded = schemas.SubmitJobSchema().load({"type": "sleep"})
    assert "priority" not in loaded and "max_attempts" not in loaded and "queue" not in loaded
    assert loaded["payload"] == {}
    from taskframe.server.engine.submission import apply_defaults

    apply_defaults(loaded, None)
    assert loaded["priority"] == 5 and loaded["max_attempts"] == 3 and loaded["queue"] == "default"


def schema_or_none(schema, data):
    try:
        return schema.load(data)
    except ValidationError:
        return None


numbers = st.integers(-5, 10**6) | st.floats(-1, 1e6, allow_nan=False)


def _validators(field) -> list:
    """A field's validators, ``validate.And`` unpacked."""
    found = []
    for validator in field.validators:
        found += _validators_of(validator)
    return found


def _validators_of(validator) -> list:
    if isinstance(validator, validate.And):
        return [v for inner in validator.validators for v in _validators_of(inner)]
    return [validator]


def _strategy(name: str, field) -> st.SearchStrategy:
    """Valid values of a SubmitJobSchema field, read from its type and validators.

    A field of a kind this does not know fails the tests below, naming it:
    whoever adds a field to the schema says here what valid values it takes.
    """
    checks = _validators(field)
    ranges = [v for v in checks if isinstance(v, validate.Range)]
    low = max((v.min for v in ranges if v.min is not None), default=None)
    high = min((v.max for v in ranges if v.max is not None), default=None)
    choices = [v for v in checks if isinstance(v, validate.OneOf)]
    patterns = [v for v in checks if isinstance(v, validate.Regexp)]
    values: st.SearchStrategy
    if isinstance(field, fields.Integer):
        values = st.integers(low, high)
    elif isinstance(field, fields.Float):
        values = st.floats(low, high, allow_nan=False) | st.integers(
            math.ceil(low or 0), math.floor(high if high is not None else 10**6)
        )
    elif isinstance(field, fields.AwareDateTime):
        values = st.datetimes(
            datetime(1971, 1, 1), datetime(9998, 1, 1), timezones=st.just(timezone.utc)
        ).map(lambda moment: moment.isoformat())
    elif isinstance(field, fields.List) and isinstance(field.inner, schemas.DependencyRef):
        values = st.lists(st.integers(1, schemas.MAX_ID), max_size=schemas.MAX_DEPENDENCIES)
    elif isinstance(field, fields.Dict):
        values = st.dictionaries(st.text(max_size=5), json_values, max_size=3)
    elif isinstance(field, fields.String) and choices:
        values = st.sampled_from(list(choices[0].choices))
    elif isinstance(field, fields.String) and patterns:
        values = st.from_regex(patterns[0].regex, fullmatch=True)
    elif isinstance(field, fields.String) and any(
        getattr(v, "__name__", "") == "_http_url" for v in checks
    ):
        values = st.from_regex(
            r"https?://[a-z]{1,10}\.example(:[1-9][0-9]{0,3})?/[a-z]{0,8}", fullmatch=True
        )
    elif isinstance(field, fields.String):
        values = ids.filter(lambda key: not schemas.reserved_key(key))
    else:
        raise AssertionError(f"no strategy for SubmitJobSchema.{name} ({type(field).__name__})")
    return st.none() | values if field.allow_none else values


SUBMIT_FIELDS = schemas.SubmitJobSchema._declared_fields
SUBMIT_REQUIRED = {name for name, field in SUBMIT_FIELDS.items() if field.required}
#: Every field of the schema, each with valid values: generated, not listed by hand.
every_field = st.fixed_dictionaries(
    {name: _strategy(name, SUBMIT_FIELDS[name]) for name in SUBMIT_REQUIRED},
    optional={
        name: _strategy(name, field)
        for name, field in SUBMIT_FIELDS.items()
        if name not in SUBMIT_REQUIRED
    },
)
#: The jobs the quick loader takes itself (its fields only, not both delay and run_at).
submission = st.fixed_dictionaries(
    {name: _strategy(name, SUBMIT_FIELDS[name]) for name in SUBMIT_REQUIRED},
    optional={
        name: _strategy(name, SUBMIT_FIELDS[name])
        for name in sorted(quick_load.SUBMIT_FIELDS - SUBMIT_REQUIRED)
    },
)


@settings(max_examples=300)
@given(every_field)
def test_quick_load_submit_never_drops_or_changes_a_field(job):
    """Any valid job with any fields: the quick loader answers what the schema does, or
    leaves the job to it. A field it does not know is never dropped."""
    quick = quick_load.quick_load_submit(job)
    loaded = schema_or_none(SUBMIT_SCHEMA, job)
    if quick is not None:
        assert quick == loaded


def test_a_field_new_to_the_schema_takes_the_schemas_path(monkeypatch):
    """A field added to SubmitJobSchema is not silently dropped by the fast path."""
    extended = dict(SUBMIT_FIELDS, label=fields.String())
    monkeypatch.setattr(schemas.SubmitJobSchema, "_declared_fields", extended)
    try:
        reloaded = importlib.reload(quick_load)
        assert reloaded.quick_load_submit({"type": "sleep", "label": "x"}) is None
        assert reloaded.quick_load_batch({"jobs": [{"type": "sleep", "label": "x"}]}) is None
    finally:
        monkeypatch.undo()
        importlib.reload(quick_load)


def test_the_quick_loader_takes_its_own_fields():
    job = {"type": "sleep", "payload": {"duration": 1}, "priority": 9, "max_attempts": 2}
    job.update(timeout=5, delay=1.5, idempotency_key="k", queue="q")
    assert job.keys() == quick_load.SUBMIT_FIELDS
    assert quick_load.quick_load_submit(job) == SUBMIT_SCHEMA.load(job)


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


# -- text UTF-8 cannot encode, and the batch limits: both loaders agree ---------------

SURROGATE = "\ud800"
# Any text, lone surrogates included (they reach the server through json.loads).
any_text = st.text(st.characters() | st.sampled_from([SURROGATE, "\udfff"]), max_size=6)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
any_lease_request = st.fixed_dictionaries(
    {"worker_id": any_text},
    optional={
        "types": st.lists(any_text, max_size=2),
        "request_id": any_text,
        "completions": st.lists(
            st.fixed_dictionaries(
                {"job_id": st.integers(1, 9), "lease_id": any_text, "status": st.just("failed")},
                optional={"result": any_json, "error": any_text, "worker_id": any_text},
            ),
            max_size=3,
        ),
    },
)
any_submission = st.fixed_dictionaries(
    {"type": any_text},
    optional={
        "payload": st.dictionaries(any_text, any_json, max_size=3),
        "idempotency_key": any_text,
    },
)


@settings(max_examples=300)
@given(any_lease_request)
def test_quick_load_and_schema_agree_on_lease_requests_with_any_text(request):
    """Surrogates in names are refused by both; in executor output, repaired by both."""
    quick = quick_load.quick_load_lease_request(request)
    loaded = schema_or_none(LEASE_SCHEMA, request)
    if quick is not None:
        assert quick == loaded
    if loaded is not None:
        assert strict_json.surrogate_path(loaded) is None, loaded


@settings(max_examples=300)
@given(any_submission)
def test_quick_load_and_schema_agree_on_submissions_with_any_text(job):
    quick = quick_load.quick_load_submit(job)
    loaded = schema_or_none(SUBMIT_SCHEMA, job)
    if quick is not None:
        assert quick == loaded
    if loaded is not None:
        assert strict_json.surrogate_path(loaded) is None, loaded


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "sleep" + SURROGATE}, "type"),
        ({"type": "sleep", "idempotency_key": SURROGATE}, "idempotency_key"),
        ({"type": "sleep", "payload": {"a": [1, "x" + SURROGATE]}}, "payload"),
        ({"type": "sleep", "payload": {SURROGATE: 1}}, "payload"),
    ],
)
def test_both_loaders_refuse_lone_surrogates_in_submissions(body, field):
    assert quick_load.quick_load_submit(body) is None
    assert quick_load.quick_load_batch({"jobs": [body]}) is None
    with pytest.raises(ValidationError) as caught:
        SUBMIT_SCHEMA.load(body)
    assert field in caught.value.messages


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker_id": "w" + SURROGATE}, "worker_id"),
        ({"worker_id": "w", "types": ["sleep", SURROGATE]}, "types"),
        ({"worker_id": "w", "request_id": SURROGATE}, "request_id"),
        (
            {
                "worker_id": "w",
                "completions": [{"job_id": 1, "lease_id": SURROGATE, "status": "failed"}],
            },
            "completions",
        ),
    ],
)
def test_both_loaders_refuse_lone_surrogates_in_worker_names(body, field):
    assert quick_load.quick_load_lease_request(body) is None
    with pytest.raises(ValidationError) as caught:
        LEASE_SCHEMA.load(body)
    assert field in caught.value.messages


def test_both_loaders_repair_executor_output_instead_of_refusing_it():
    item = {
        "job_id": 1,
        "lease_id": "l1",
        "status": "failed",
        "error": f"OSError: bad name b{SURROGATE}d",
        "result": {f"k{SURROGATE}": [f"v{SURROGATE}", 1.5, None]},
        "log": f"WARNING skipped b{SURROGATE}d\n",
    }
    request = {"worker_id": "w", "completions": [item]}
    quick = quick_load.quick_load_lease_request(request)
    assert quick == LEASE_SCHEMA.load(request)
    [loaded] = quick["completions"]
    assert loaded["error"] == "OSError: bad name b\ufffdd"
    assert loaded["result"] == {"k\ufffd": ["v\ufffd", 1.5, None]}
    assert loaded["log"] == "WARNING skipped b\ufffdd\n"
    single_item = {k: v for k, v in item.items() if k != "job_id"}
    single = schemas.CompleteSchema().load({**single_item, "worker_id": "w"})
    assert single["error"] == loaded["error"] and single["result"] == loaded["result"]
    assert single["log"] == loaded["log"]


def test_completions_past_the_limit_are_refused_by_both_loaders():
    item = {"job_id": 1, "lease_id": "l1", "status": "succeeded"}
    at_limit = {"worker_id": "w", "completions": [item] * schemas.MAX_COMPLETIONS}
    assert quick_load.quick_load_lease_request(at_limit) == LEASE_SCHEMA.load(at_limit)
    over = {"worker_id": "w", "completions": [item] * (schemas.MAX_COMPLETIONS + 1)}
    assert quick_load.quick_load_lease_request(over) is None
    with pytest.raises(ValidationError) as caught:
        LEASE_SCHEMA.load(over)
    assert set(caught.value.messages) == {"completions"}


def test_heartbeats_past_the_limit_are_refused():
    lease = {"job_id": 1, "lease_id": "l1"}
    schema = schemas.HeartbeatBatchSchema()
    assert (
        len(schema.load({"worker_id": "w", "leases": [lease] * schemas.MAX_HEARTBEATS})["leases"])
        == schemas.MAX_HEARTBEATS
    )
    with pytest.raises(ValidationError) as caught:
        schema.load({"worker_id": "w", "leases": [lease] * (schemas.MAX_HEARTBEATS + 1)})
    assert set(caught.value.messages) == {"leases"}


def test_the_worker_never_sends_more_completions_than_the_server_takes():
    from taskframe.worker import outbox

    assert outbox.MAX_COMPLETIONS_PER_REQUEST <= schemas.MAX_COMPLETIONS


def test_types_past_the_limit_are_refused_by_both_loaders():
    at_limit = {"worker_id": "w", "types": ["t"] * schemas.MAX_TYPES}
    assert quick_load.quick_load_lease_request(at_limit) == LEASE_SCHEMA.load(at_limit)
    over = {"worker_id": "w", "types": ["t"] * (schemas.MAX_TYPES + 1)}
    assert quick_load.quick_load_lease_request(over) is None
    with pytest.raises(ValidationError) as caught:
        LEASE_SCHEMA.load(over)
    assert set(caught.value.messages) == {"types"}


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


@pytest.mark.parametrize("key", ["schedule:nightly:2026-03-29T01:00:00Z", "schedule:"])
def test_keys_in_the_schedules_prefix_are_refused_by_both_loaders(key):
    body = {"type": "sleep", "idempotency_key": key}
    assert quick_load.quick_load_submit(body) is None
    with pytest.raises(ValidationError) as caught:
        SUBMIT_SCHEMA.load(body)
    assert "idempotency_key" in caught.value.messages
    assert "reserved" in schemas.idempotency_key_errors(key)[0]
    assert SUBMIT_SCHEMA.load({"type": "sleep", "idempotency_key": "my-schedule:1"})
