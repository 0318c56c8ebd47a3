"""Type hints to payload schemas (core/hints.py), checked by properties.

For each hint, a reference checker written here (what a function with that
hint accepts from JSON) and the generated schema must agree on every value:
random JSON, values built to fit the hint, and those values slightly broken.
200 examples each (derandomized under CI=true) still fail on each of four bugs
put into core/hints.py on purpose (a bool taken as an int, or as a float, a
lost float(), a lost allow_none), as 600 did; 600 took 3 s of the unit tier.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import typing
from typing import Any, Literal, Optional, TypedDict, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from taskframe.core import HintError, task
from taskframe.core.hints import payload_schema


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color | None = None


class Options(TypedDict, total=False):
    label: str
    scale: float


@dataclasses.dataclass
class Inner:
    when: datetime.datetime


class Required(TypedDict):
    size: int
    tags: list[str]


HINTS: list[Any] = [
    Any,
    type(None),
    bool,
    int,
    float,
    str,
    list[int],
    list[list[str]],
    dict[str, float],
    dict[str, list[int | None]],
    Optional[int],  # noqa: UP045 - the typing spelling is mapped too
    int | None,
    Union[int, str],  # noqa: UP007
    int | float,
    Literal["a", "b"],
    Literal[1, True, "1"],
    Color,
    Level,
    Point,
    Shape,
    list[Point],
    Options,
    Required,
    Options | None,
]


# -- the reference: what a function with this hint takes from JSON -------------------


def conforms(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return type(value) is bool
    if hint is int:
        return type(value) is int
    if hint is float:
        return type(value) in (int, float) and math.isfinite(value)
    if hint is str:
        return type(value) is str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return any(conforms(value, arg) for arg in args)
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin is list:
        return type(value) is list and all(conforms(v, args[0]) for v in value)
    if origin is dict:
        return type(value) is dict and all(
            type(k) is str and conforms(v, args[1]) for k, v in value.items()
        )
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return any(type(value) is type(m.value) and value == m.value for m in hint)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        required = {
            f.name
            for f in dataclasses.fields(hint)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        return _object_conforms(value, hints, required)
    if typing.is_typeddict(hint):
        return _object_conforms(value, typing.get_type_hints(hint), set(hint.__required_keys__))
    raise AssertionError(f"no reference for {hint}")


def _object_conforms(value: Any, hints: dict[str, Any], required: set[str]) -> bool:
    return (
        type(value) is dict
        and required <= set(value)
        and set(value) <= set(hints)
        and all(conforms(v, hints[k]) for k, v in value.items())
    )


# -- values: random JSON, and values built to fit a hint ------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
    | st.sampled_from(["a", "b", "1", "red", "blue", "x"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["x", "y", "name", "points", "label", "size", "tags", "z"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def fitting(hint: Any) -> st.SearchStrategy[Any]:
    """JSON values that a function with ``hint`` accepts."""
    if hint is Any:
        return json_values
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-(2**70), 2**70)
    if hint is float:
        return st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    if hint is str:
        return st.text(max_size=5)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return st.one_of([fitting(arg) for arg in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(fitting(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=3), fitting(args[1]), max_size=3)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from([m.value for m in hint])
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = dataclasses.fields(hint)
        needed = {
            f.name: fitting(hints[f.name])
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        optional = {f.name: fitting(hints[f.name]) for f in fields if f.name not in needed}
        return st.fixed_dictionaries(needed, optional=optional)
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint)
        needed = {k: fitting(hints[k]) for k in hint.__required_keys__}
        optional = {k: fitting(v) for k, v in hints.items() if k not in needed}
        return st.fixed_dictionaries(needed, optional=optional)
    raise AssertionError(f"no strategy for {hint}")


def broken(value: Any) -> st.SearchStrategy[Any]:
    """``value`` with one part replaced by another JSON value (it may still fit)."""
    if isinstance(value, dict) and value:
        return st.sampled_from(sorted(value)).flatmap(
            lambda key: json_values.map(lambda other: {**value, key: other})
        ) | json_values.map(lambda other: {**value, "unexpected": other})
    if isinstance(value, list) and value:
        return st.integers(0, len(value) - 1).flatmap(
            lambda i: json_values.map(lambda other: [*value[:i], other, *value[i + 1 :]])
        )
    return json_values


def schema_for(hint: Any):
    def function(p):  # type: ignore[no-untyped-def]
        return p

    function.__annotations__ = {"p": hint}
    return payload_schema(function)


SCHEMAS = {index: schema_for(hint) for index, hint in enumerate(HINTS)}


def accepts(index: int, value: Any) -> bool:
    try:
        SCHEMAS[index].load({"p": value})
    except ValidationError:
        return False
    return True


hint_index = st.integers(0, len(HINTS) - 1)


@settings(max_examples=200, deadline=None)
@given(hint_index, json_values)
def test_the_schema_takes_exactly_the_json_the_hint_allows(index, value):
    assert accepts(index, value) == conforms(value, HINTS[index]), (HINTS[index], value)


@settings(max_examples=200, deadline=None)
@given(hint_index.flatmap(lambda i: st.tuples(st.just(i), fitting(HINTS[i]))))
def test_the_schema_accepts_every_value_that_fits(case):
    index, value = case
    assert conforms(value, HINTS[index])
    assert accepts(index, value), (HINTS[index], value)


@settings(max_examples=200, deadline=None)
@given(
    hint_index.flatmap(lambda i: fitting(HINTS[i]).flatmap(broken).map(lambda value: (i, value)))
)
def test_a_broken_value_is_refused_unless_it_still_fits(case):
    index, value = case
    assert accepts(index, value) == conforms(value, HINTS[index]), (HINTS[index], value)


@settings(max_examples=100, deadline=None)
@given(hint_index.flatmap(lambda i: st.tuples(st.just(i), fitting(HINTS[i]))))
def test_the_function_gets_the_types_its_hints_name(case):
    index, value = case
    loaded = SCHEMAS[index].load({"p": value})["p"]
    hint = HINTS[index]
    if hint is float:
        assert type(loaded) is float and loaded == value
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        assert loaded is hint(value)
    elif dataclasses.is_dataclass(hint):
        assert isinstance(loaded, hint)
        assert dataclasses.asdict(loaded).keys() == {f.name for f in dataclasses.fields(hint)}
    elif hint is list[Point]:
        assert all(isinstance(p, Point) for p in loaded)
    elif hint in (int, str, bool, type(None), list[int], Literal["a", "b"]):
        assert loaded == value and type(loaded) is type(value)


# -- defaults, and hints that cannot be mapped --------------------------------------


def test_defaults_come_from_the_signature():
    @task
    def resize(path: str, width: int = 800, tags: list[str] = [], scale: float | None = None):  # noqa: B006
        """Resize one image."""

    loaded = resize.schema.load({"path": "a.png"})
    assert loaded == {"path": "a.png", "width": 800, "tags": [], "scale": None}
    loaded["tags"].append("x")  # a mutable default is a copy each time
    assert resize.schema.load({"path": "a.png"})["tags"] == []
    with pytest.raises(ValidationError) as refused:
        resize.schema.load({"width": "800", "nope": 1})
    assert set(refused.value.messages) == {"path", "width", "nope"}
    assert resize.description == "Resize one image."


def test_extra_keyword_arguments_take_unknown_keys():
    @task
    def anything(name: str, **rest: Any) -> dict:
        return rest

    assert anything.schema.load({"name": "n", "more": [1]}) == {"name": "n", "more": [1]}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def f(x: set[int]): pass", "parameter x: cannot map set[int]"),
        ("def f(x: dict[int, str]): pass", "parameter x: cannot map dict[int, str]"),
        ("def f(x: bytes): pass", "parameter x: cannot map bytes"),
        ("def f(x): pass", "parameter x has no type hint"),
        ("def f(x: int, /): pass", "parameter x: a payload gives keyword arguments only"),
        ("def f(*x: int): pass", "parameter x: a payload gives keyword arguments only"),
        ("def f(x: 'Undefined'): pass", "its type hints cannot be resolved"),
        ("def f(p: list[Inner]): pass", "parameter p[].when: cannot map datetime"),
    ],
)
def test_an_unmappable_hint_names_the_function_and_the_parameter(source, problem):
    namespace: dict[str, Any] = {"Inner": Inner}
    exec(source, namespace)  # noqa: S102 - the function under test
    with pytest.raises(HintError) as caught:
        task(namespace["f"])
    assert "f" in str(caught.value) and problem in str(caught.value)
