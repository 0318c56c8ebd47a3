"""orjson on the hot path (core/json_codec.py, core/strict_json.py, server answers): the
standard library's answers, exactly, and stored JSON spliced into answers as it is."""

from __future__ import annotations

import json
import math
import sqlite3
import time

import orjson
import pytest
from falcon import testing
from hypothesis import given, settings
from hypothesis import strategies as st

from taskframe.core import json_codec, strict_json
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http.app import create_app
from taskframe.server.http.http_io import dump_answer
from taskframe.server.storage import open_store
from taskframe.server.storage.representation import StoredJSON, stored_json
from tests.api_server import default_plugins

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
text = st.text(st.characters() | SURROGATES, max_size=8)
numbers = (
    st.integers()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.1, -0.0, 1e300, 5e-324, 2**63, -(2**63) - 1, 2**64, 2**64 - 1])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def typed(value):
    """``value`` with each number's type and sign kept (``1 == 1.0`` and ``0.0 == -0.0``)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


@settings(max_examples=400)
@given(json_values, st.booleans())
def test_the_fast_parse_reads_exactly_what_the_standard_library_reads(value, ascii_only):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    parsed, clean = strict_json.parse_checked(raw)
    assert typed(parsed) == typed(json.loads(raw))
    if clean:  # said free of lone surrogates: it must be
        assert strict_json.surrogate_path(parsed) is None
    assert typed(json_codec.loads(raw)) == typed(json.loads(raw))


def test_integers_past_64_bits_are_read_exactly_not_as_floats():
    raw = b'{"id": 123456789012345678901234567890, "small": -9223372036854775809}'
    assert orjson.loads(raw)["id"] != 123456789012345678901234567890  # why the guard exists
    for read in (strict_json.parse, json_codec.loads):
        document = read(raw)
        assert document == {"id": 123456789012345678901234567890, "small": -(2**63) - 1}
        assert type(document["id"]) is int


@pytest.mark.parametrize(
    "body", [b"NaN", b'{"a": Infinity}', b"[1e400]", b"[1,]", b"", b'{"a": 1} x']
)
def test_what_orjson_refuses_is_refused_with_the_standard_library_s_words(body):
    with pytest.raises(strict_json.JSONRefused) as refused:
        strict_json.parse(body)
    with pytest.raises(strict_json.JSONRefused) as slowly:
        strict_json._parse_slowly(body)
    assert (refused.value.title, refused.value.description) == (
        slowly.value.title,
        slowly.value.description,
    )


def test_lone_surrogates_and_a_bom_still_parse_as_json_reads_them():
    assert strict_json.parse_checked(b'{"a": "\\ud800"}') == ({"a": "\ud800"}, False)
    assert strict_json.parse_checked(b"\xef\xbb\xbf{}") == ({}, False)


@given(json_values)
def test_dumps_writes_what_json_reads_back(value):
    try:
        expected = json.dumps(value, allow_nan=False)
    except ValueError:  # lone surrogates encode as escapes in json, refused by orjson
        return
    assert typed(json.loads(json_codec.dumps(value))) == typed(json.loads(expected))


@pytest.mark.parametrize(
    "value",
    [float("nan"), {"a": None, "b": [float("inf")]}, [None, -math.inf], {"x": (1, float("nan"))}],
)
def test_dumps_refuses_nan_and_infinities_as_json_does(value):
    """orjson would write them as null: the body would change meaning without a word."""
    with pytest.raises(ValueError):
        json_codec.dumps(value)


def test_dumps_falls_back_where_orjson_refuses():
    assert json.loads(json_codec.dumps({1: 2**70})) == {"1": 2**70}
    with pytest.raises(TypeError):
        json_codec.dumps({"when": object()})


# -- answers: stored JSON spliced in as it is -------------------------------------------


def test_strict_stored_text_is_spliced_as_it_is():
    text = '{"b":1,"a":[1.5,"\\u00e9",12345678901234567890123]}'
    assert isinstance(stored_json(text), StoredJSON)
    body = dump_answer({"payload": stored_json(text), "n": 1})
    assert body == b'{"payload":' + text.encode() + b',"n":1}'
    assert orjson.loads(body)["payload"]["a"][1] == "é"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"note": "\\ud800"}', {"note": "\ufffd"}),  # a lone high surrogate
        ('["\\udc00x"]', ["\ufffdx"]),  # a lone low one
        ('{"x": NaN, "y": [Infinity, -Infinity]}', {"x": None, "y": [None, None]}),
    ],
)
def test_stored_text_strict_readers_refuse_is_answered_repaired(text, value):
    body = dump_answer({"result": stored_json(text)})
    assert orjson.loads(body) == {"result": value}  # orjson: a strict reader


def test_a_surrogate_pair_is_spliced_and_reads_as_its_character():
    text = json.dumps({"emoji": "\U0001f600"})  # "\ud83d\ude00"
    assert isinstance(stored_json(text), StoredJSON)
    assert orjson.loads(dump_answer([stored_json(text)])) == [{"emoji": "\U0001f600"}]


def test_an_answer_orjson_cannot_write_still_holds_the_spliced_text():
    media = {"payload": stored_json('{"a":1}'), "big": 2**70, "bad": "x\ud800"}
    assert json.loads(dump_answer(media)) == {"payload": {"a": 1}, "big": 2**70, "bad": "x\ufffd"}


@pytest.fixture
def client(migrated_sqlite_url: str):
    store = open_store(migrated_sqlite_url)
    store.migrate()
    scheduler = Scheduler(store, ServerConfig())
    yield testing.TestClient(create_app(scheduler.config, scheduler, default_plugins()))
    store.close()


def test_the_lease_answer_holds_payloads_as_stored(client, sqlite_url):
    created = client.simulate_post("/jobs", json={"type": "sleep", "payload": {"duration": 0}}).json
    now = time.time()
    with sqlite3.connect(sqlite_url) as connection:  # as an older version may have stored it
        old = connection.execute(
            "INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts,"
            " timeout, run_at, created_at) VALUES ('sleep', ?, 5, 'queued', 0, 1, 60, ?, ?)",
            ('{"duration": 0, "note": "\\udfff", "n": NaN}', now, now),
        ).lastrowid
        [(stored,)] = connection.execute(
            "SELECT payload FROM jobs WHERE id = ?", (created["id"],)
        ).fetchall()
    answer = client.simulate_post("/lease", json={"worker_id": "w1", "max": 2})
    assert answer.status_code == 200, answer.text
    assert b'"payload":' + stored.encode() in answer.content  # spliced, not re-encoded
    jobs = {job["id"]: job for job in orjson.loads(answer.content)["jobs"]}
    assert jobs[old]["payload"] == {"duration": 0, "note": "\ufffd", "n": None}
    assert jobs[created["id"]]["payload"] == {"duration": 0.0}


@settings(max_examples=300)
@given(st.binary(max_size=120) | st.text("0123456789 .e-x", max_size=80).map(str.encode))
def test_a_long_number_is_found_where_the_regex_finds_it(raw):
    import re

    assert json_codec.has_long_number(raw) == (re.search(rb"\d{19}", raw) is not None)
