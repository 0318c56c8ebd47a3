"""core/strict_json.py: the JSON the API accepts, checked against plain json and recursion."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskframe.core import strict_json

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
text = st.text(st.characters() | SURROGATES, max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def encodes(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=300)
@given(json_values, st.sampled_from(["utf-8", "utf-16-le", "utf-16-be", "utf-32"]), st.booleans())
def test_parse_reads_what_json_reads_and_the_surrogate_prefilter_misses_nothing(
    value, encoding, ascii_only
):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    parsed = strict_json.parse(raw)
    assert parsed == json.loads(raw)
    if not encodes(parsed):  # the body holds a lone surrogate: the prefilter must say so
        assert strict_json.may_hold_surrogates(raw)
    assert (strict_json.surrogate_path(parsed) is None) == encodes(parsed)


@given(json_values, st.integers(0, 6))
def test_depth_exceeds_agrees_with_a_recursive_count(value, limit):
    assert strict_json.depth_exceeds(value, limit) == (depth(value) > limit)


@given(json_values)
def test_encodable_always_encodes_and_keeps_clean_values_as_they_are(value):
    repaired = strict_json.encodable(value)
    assert encodes(repaired)
    json.dumps(repaired, allow_nan=False)
    if encodes(value):
        assert repaired is value


def test_surrogate_path_names_where_the_text_is():
    assert strict_json.surrogate_path({"a": [1, {"b": "x\ud800"}]}) == "a.1.b"
    assert strict_json.surrogate_path({"a": {"\udc00": 1}}) == "a.<key>"
    assert strict_json.surrogate_path({"a": ["fine", "é"]}) is None


@pytest.mark.parametrize("levels", [strict_json.MAX_DEPTH + 1, 5_000, 100_000])
def test_parse_refuses_deep_nesting_without_recursing(levels):
    for opener, closer in ("[]", ("{", "}")):
        if opener == "{":
            body = '{"a":' * levels + "1" + "}" * levels
        else:
            body = opener * levels + closer * levels
        with pytest.raises(strict_json.JSONRefused) as caught:
            strict_json.parse(body.encode())
        assert caught.value.title == "Nesting too deep"
    assert strict_json.parse(b"[" * 64 + b"]" * 64) is not None


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-2e308"])
def test_parse_refuses_numbers_json_cannot_hold(number):
    with pytest.raises(strict_json.JSONRefused) as caught:
        strict_json.parse(f'{{"x": [{number}]}}'.encode())
    assert number in caught.value.description
