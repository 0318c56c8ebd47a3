"""The built-in types' payload fast paths against their schemas, and batch loading.

A fast path (``Executor.quick_load``) may decline any payload (None: the schema
decides, and names the problems); whatever it accepts, the schema accepts too,
loading exactly the same value, keys in the same order (the stored JSON is the
same text). Together: the same accepted values and the same errors as the schema.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, validates_schema

from taskframe.core import Executor
from taskframe.plugins import file, http, sleep
from taskframe.server.engine.payloads import load_payloads
from taskframe.server.engine.submission import jobs_errors

EXECUTORS = {
    "sleep": (sleep.SleepPayloadSchema(), sleep.quick_load),
    "http": (http.HttpPayloadSchema(), http.quick_load),
    "file": (file.FilePayloadSchema(), file.quick_load),
}

# Values near and past every rule: types a JSON body can carry, edges of ranges.
numbers = (
    st.integers(-5, 700)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 0.0, 600, 600.0, 600.5, 86400, 86400.0, 86400.1, -0.0, 10**20])
)
odd = st.none() | st.booleans() | st.text(max_size=4) | st.lists(st.integers(), max_size=2)
texts = st.text(max_size=12) | st.sampled_from(["", "\x00", "\ud800", "a\tb", "é", "a\nb"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
urls = texts | st.sampled_from(
    [
        "http://example.com/",
        "https://example.com:8443/a?b=c",
        "HTTP://EXAMPLE.COM",
        "ftp://example.com/",
        "http://",
        "http://example.com:99999/",
        "http://[::1",
        "https://ex\u00e4mple.com/p",
        "http://a b/",
    ]
)
methods = st.sampled_from(["GET", "post", "Delete", "TRACE", "get ", ""]) | odd | numbers
header_maps = st.dictionaries(
    st.sampled_from(["X-A", "Content-Type", "bad name", "", "é"]) | st.text(max_size=3),
    texts | odd,
    max_size=3,
)
statuses = st.sampled_from([200, 404, 99, 600, True, [], [200, 201], [200, "x"], [True]]) | odd
paths = st.sampled_from(["a", "a/b.txt", "", "/abs", "a/../b", "a/", ".", "a//b", "x" * 4097])
paths = paths | texts

sleep_payloads = st.fixed_dictionaries({}, optional={"duration": numbers | odd, "extra": odd})
http_payloads = st.fixed_dictionaries(
    {},
    optional={
        "url": urls,
        "method": methods,
        "headers": header_maps | odd,
        "body": texts | odd,
        "json": json_values,
        "timeout": numbers | odd,
        "expected_status": statuses,
        "other": odd,
    },
)
file_payloads = st.fixed_dictionaries(
    {},
    optional={
        "operation": st.sampled_from(file.OPERATIONS + ("rename", "")) | odd,
        "path": paths | odd,
        "content": texts | odd | st.just("x" * (file.MAX_CONTENT + 1)),
        "destination": paths | odd,
        "mode": odd,
    },
)
# Nearly valid ones too: one rule broken at a time is where a fast path goes wrong.
good_paths = st.sampled_from(["a", "a/b.txt", "dir/x y.csv", "é/ü"])
near_file = st.fixed_dictionaries(
    {"operation": st.sampled_from(file.OPERATIONS), "path": good_paths},
    optional={"content": st.sampled_from(["", "x", "\ud800"]), "destination": good_paths},
)
near_http = st.fixed_dictionaries(
    {"url": st.sampled_from(["http://x/", "https://example.com:8443/a?b=c"])},
    optional={
        "method": st.sampled_from(["get", "POST"]),
        "headers": st.dictionaries(st.sampled_from(["X-A", "b c"]), st.sampled_from(["1", "\n"])),
        "body": st.sampled_from(["", "hi"]),
        "json": st.none() | st.integers(),
        "timeout": st.sampled_from([1, 30.0, 600, 0, 601]),
        "expected_status": st.sampled_from([200, [200, 404], [], 700]),
    },
)
PAYLOADS = {
    "sleep": sleep_payloads | odd,
    "http": http_payloads | near_http | odd,
    "file": file_payloads | near_file | odd,
}


def _schema_load(schema: Schema, payload: object) -> tuple[bool, object]:
    try:
        return True, schema.load(payload)
    except ValidationError as exc:
        return False, exc.messages


def _check_equal(job_type: str, payload: object) -> None:
    schema, quick = EXECUTORS[job_type]
    quick_loaded = quick(payload)
    if quick_loaded is None:
        return  # left to the schema: its answer, whatever it is
    ok, loaded = _schema_load(schema, payload)
    assert ok, f"fast path accepted what the schema refuses: {loaded}"
    assert quick_loaded == loaded
    assert list(quick_loaded) == list(loaded)  # same key order: the same stored text
    assert json.dumps(quick_loaded) == json.dumps(loaded)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS["sleep"])
def test_sleep_fast_path_loads_what_the_schema_loads(payload: object) -> None:
    _check_equal("sleep", payload)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS["http"])
def test_http_fast_path_loads_what_the_schema_loads(payload: object) -> None:
    _check_equal("http", payload)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS["file"])
def test_file_fast_path_loads_what_the_schema_loads(payload: object) -> None:
    _check_equal("file", payload)


@pytest.mark.parametrize(
    ("job_type", "payload"),
    [
        ("sleep", {"duration": 0}),
        ("sleep", {"duration": 2.5}),
        ("http", {"url": "https://example.com/hook", "method": "post", "json": {"n": 1}}),
        ("http", {"url": "http://x/", "headers": {"X-A": "1"}, "body": "hi", "timeout": 5}),
        ("http", {"url": "http://x/", "expected_status": [200, 204]}),
        ("file", {"operation": "write", "path": "a/b.txt", "content": "x"}),
        ("file", {"operation": "copy", "path": "a", "destination": "b"}),
        ("file", {"operation": "read", "path": "a"}),
    ],
)
def test_plain_payloads_take_the_fast_path(job_type: str, payload: dict) -> None:
    """The fast paths are not vacuous: the ordinary payloads go through them."""
    assert EXECUTORS[job_type][1](payload) is not None
    _check_equal(job_type, payload)


def _executors(with_quick: bool) -> dict[str, Executor]:
    return {
        name: Executor(name, schema, lambda p, c: None, quick_load=quick if with_quick else None)
        for name, (schema, quick) in EXECUTORS.items()
    }


jobs = st.lists(
    st.sampled_from(sorted(EXECUTORS)).flatmap(
        lambda t: st.fixed_dictionaries({"type": st.just(t), "payload": PAYLOADS[t]})
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(jobs)
def test_a_batch_gets_each_payloads_own_answer(batch: list[dict]) -> None:
    """Batch loading (fast path, then the schema's many=True, then one by one for the
    errors) answers each job as its schema alone would: the same problems, the same
    stored payloads."""
    for with_quick in (True, False):
        loaded = [dict(job) for job in batch]
        problems = load_payloads(loaded, _executors(with_quick))
        for index, job in enumerate(batch):
            ok, alone = _schema_load(EXECUTORS[job["type"]][0], job["payload"])
            if ok:
                assert index not in problems
                assert loaded[index]["payload"] == alone
            else:
                assert problems[index] == {"payload": alone}


class CrossField(Schema):
    """A schema-level check: marshmallow skips it in a many=True load once any item
    has a field error, which is why a failed batch is loaded again one by one."""

    a = fields.Integer(required=True)
    b = fields.Integer()

    @validates_schema
    def _b_with_a(self, data: dict, **kwargs: object) -> None:
        if data.get("a") == 1 and "b" not in data:
            raise ValidationError("b is required when a is 1", "b")


def test_schema_level_errors_survive_a_batch() -> None:
    executors = {"x": Executor("x", CrossField(), lambda p, c: None)}
    batch = [{"type": "x", "payload": {"a": 1}}, {"type": "x", "payload": {"a": "no"}}]
    problems = load_payloads(batch, executors)
    assert problems == {
        0: {"payload": {"b": ["b is required when a is 1"]}},
        1: {"payload": {"a": ["Not a valid integer."]}},
    }


def test_unknown_types_and_plugin_checks_are_named_per_job() -> None:
    executors = _executors(True)
    batch = [
        {"type": "sleep", "payload": {"duration": 1}},
        {"type": "nope", "payload": {}},
        {"type": "sleep", "payload": {"duration": -1}},
    ]

    def check(job: dict) -> dict | None:
        return {"priority": ["too high"]} if job["payload"] == {"duration": -1} else None

    problems = jobs_errors(batch, executors, check)
    assert set(problems) == {1, 2}
    assert problems[1]["type"][0].startswith("unknown job type 'nope'")
    assert problems[2]["priority"] == ["too high"]
    assert "duration" in problems[2]["payload"]
    assert batch[0]["payload"] == {"duration": 1.0}  # stored as loaded
