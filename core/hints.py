"""Type hints to marshmallow fields: the payload schema of a ``@task`` function.

A payload is JSON, so each hint maps to a field that takes exactly the JSON
values of that type and loads them into what the function expects: ``str``,
``int`` (not ``true``, not ``1.0``), ``float`` (an integer too, never NaN),
``bool`` (only ``true``/``false``), ``None``, ``Any``, ``list[X]``,
``dict[str, X]``, ``X | None`` and ``Optional[X]``, other unions (the first
alternative that takes the value wins), ``Literal[...]``, an ``Enum`` (by its
values), a dataclass and a ``TypedDict`` (JSON objects with their fields).
A parameter's default becomes the field's default. Anything else is a
:class:`HintError` naming the function and the parameter.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import inspect
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load

SUPPORTED = (
    "str, int, float, bool, None, Any, list[X], dict[str, X], X | None, unions, "
    "Literal[...], Enum, dataclasses and TypedDict"
)


class HintError(TypeError):
    """A hint that no JSON payload can satisfy, or that taskframe cannot check."""


# -- strict scalar fields: JSON types only, no coercion ---------------------------------


class StrictString(fields.String):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value


class StrictInteger(fields.Integer):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return int(value)


class StrictFloat(fields.Float):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("special")
        try:
            return float(value)
        except OverflowError:  # an integer past float's range
            raise self.make_error("too_large") from None


class StrictBoolean(fields.Boolean):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class NoneField(fields.Raw):
    """``None``: only ``null``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "allow_none": True})

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        raise ValidationError("Must be null.")


class AnyJSON(fields.Raw):
    """``Any``: whatever JSON value came (the API checked it is JSON)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "allow_none": True})


class LiteralField(fields.Raw):
    """``Literal[...]``: one of the values, of the same type (``1`` is not ``true``)."""

    def __init__(self, values: tuple[Any, ...], **kwargs: Any) -> None:
        self.values = values
        kwargs.setdefault("metadata", {})["enum"] = [_plain(v) for v in values]
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        for choice in self.values:
            if type(choice) is type(value) and choice == value:
                return choice
        raise ValidationError(f"Must be one of: {', '.join(repr(_plain(v)) for v in self.values)}.")


class EnumField(fields.Raw):
    """An ``Enum``: one of its members' values (loads the member)."""

    def __init__(self, kind: type[enum.Enum], **kwargs: Any) -> None:
        self.kind = kind
        self.by_value = [(member.value, member) for member in kind]
        kwargs.setdefault("metadata", {})["enum"] = [value for value, _ in self.by_value]
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return value.value if isinstance(value, enum.Enum) else value

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, self.kind):
            return value
        for plain, member in self.by_value:
            if type(plain) is type(value) and plain == value:
                return member
        shown = ", ".join(repr(value) for value, _ in self.by_value)
        raise ValidationError(f"Must be one of: {shown}.")


class UnionField(fields.Raw):
    """A union: the first alternative that takes the value; else every one's complaint."""

    def __init__(self, choices: list[fields.Field[Any]], **kwargs: Any) -> None:
        self.choices = choices
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        for choice in self.choices:
            try:
                return choice.deserialize(value, attr, data, **kwargs)
            except ValidationError:
                continue
        raise ValidationError(f"Not a valid {self.metadata.get('description', 'value')}.")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


# -- hints to fields ----------------------------------------------------------------------


class _Mapper:
    """Maps hints to fields; one per function, so recursive dataclasses share their schema."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.schemas: dict[type, Callable[[], Schema]] = {}

    def field(self, hint: Any, where: str, **kwargs: Any) -> fields.Field[Any]:
        description = kwargs.setdefault("metadata", {})
        description.setdefault("description", hint_text(hint))
        if hint is Any or hint is object:
            return AnyJSON(**kwargs)
        if hint is None or hint is type(None):
            return NoneField(**kwargs)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
            return self._union(args, where, kwargs)
        if origin is typing.Literal:
            if not all(isinstance(_plain(v), str | int | bool | type(None)) for v in args):
                raise self._error(where, hint, "Literal values must be str, int, bool or None")
            return LiteralField(args, **kwargs)
        if hint is bool:
            return StrictBoolean(**kwargs)
        if hint is int:
            return StrictInteger(**kwargs)
        if hint is float:
            return StrictFloat(**kwargs)
        if hint is str:
            return StrictString(**kwargs)
        if hint is list or origin is list:
            inner = self.field(args[0], f"{where}[]") if args else AnyJSON()
            return fields.List(inner, **kwargs)
        if hint is dict or origin is dict:
            if args and args[0] is not str:
                raise self._error(where, hint, "JSON object keys are strings: use dict[str, X]")
            inner = self.field(args[1], f"{where}[]") if args else AnyJSON()
            return fields.Dict(keys=StrictString(), values=inner, **kwargs)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            if not all(isinstance(m.value, str | int) for m in hint):
                raise self._error(where, hint, "Enum values must be str or int")
            return EnumField(hint, **kwargs)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return fields.Nested(self._object_schema(hint, where), **kwargs)
        if isinstance(hint, type) and typing.is_typeddict(hint):
            return fields.Nested(self._object_schema(hint, where), **kwargs)
        raise self._error(where, hint, f"supported: {SUPPORTED}")

    def _union(
        self, args: tuple[Any, ...], where: str, kwargs: dict[str, Any]
    ) -> fields.Field[Any]:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) < len(args):
            kwargs["allow_none"] = True
        if len(rest) == 1:
            return self.field(rest[0], where, **kwargs)
        # Exact types before wider ones: a float alternative must not take an int first.
        ordered = sorted(rest, key=lambda arg: arg is float)
        return UnionField([self.field(arg, where) for arg in ordered], **kwargs)

    def _object_schema(self, kind: type, where: str) -> Callable[[], Schema]:
        """A schema for a dataclass or TypedDict (built once per class, so recursion works)."""
        if kind in self.schemas:
            return self.schemas[kind]
        built: list[Schema] = []
        self.schemas[kind] = lambda: built[0]
        try:
            hints = typing.get_type_hints(kind)
        except Exception as exc:
            raise self._error(where, kind, f"its hints cannot be resolved ({exc})") from None
        members: dict[str, fields.Field[Any]] = {}
        if dataclasses.is_dataclass(kind):
            for item in dataclasses.fields(kind):
                if not item.init:
                    continue
                default = _default_of(item)
                members[item.name] = self.field(
                    hints[item.name], f"{where}.{item.name}", **_required_or_default(default)
                )
            make: Callable[[dict[str, Any]], Any] = lambda data: kind(**data)  # noqa: E731
        else:
            required = getattr(kind, "__required_keys__", frozenset(hints))
            for name, hint in hints.items():
                members[name] = self.field(hint, f"{where}.{name}", required=name in required)
            make = dict

        class ObjectSchema(Schema):
            @post_load
            def _make(self, data: dict[str, Any], **kwargs: Any) -> Any:
                return make(data)

        schema_class = ObjectSchema.from_dict(members, name=kind.__name__)
        built.append(schema_class())
        return self.schemas[kind]

    def _error(self, where: str, hint: Any, why: str) -> HintError:
        return HintError(f"{self.owner}: parameter {where}: cannot map {hint_text(hint)}; {why}")


_NO_DEFAULT = object()


def _default_of(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory
    return _NO_DEFAULT


def _required_or_default(default: Any) -> dict[str, Any]:
    if default is _NO_DEFAULT:
        return {"required": True}
    if callable(default) and not isinstance(default, type):
        return {"load_default": default}
    if default is None:
        return {"load_default": None, "allow_none": True}
    if isinstance(default, list | dict | set):
        return {"load_default": lambda: copy.deepcopy(default)}
    return {"load_default": default}


def hint_text(hint: Any) -> str:
    """``list[int]``, ``int | None``, ``Color``: a hint as people write it."""
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    if hint is None or hint is type(None):
        return "None"
    # typing.Optional[app.models.Point] -> Optional[Point]
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", repr(hint))


def payload_schema(function: Callable[..., Any], owner: str | None = None) -> Schema:
    """The schema of ``function``'s keyword arguments, generated from its hints.

    Raises :class:`HintError` naming the function and the parameter when a
    parameter cannot come from a JSON payload.
    """
    owner = owner or str(getattr(function, "__qualname__", repr(function)))
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise HintError(f"{owner}: no signature to read ({exc})") from None
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # a name the hints use is not defined
        raise HintError(f"{owner}: its type hints cannot be resolved: {exc}") from None
    mapper = _Mapper(owner)
    members: dict[str, fields.Field[Any]] = {}
    extra_keys = False
    for name, parameter in signature.parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            extra_keys = True
            continue
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
            raise HintError(
                f"{owner}: parameter {name}: a payload gives keyword arguments only "
                "(no positional-only parameters, no *args)"
            )
        if name not in hints:
            raise HintError(
                f"{owner}: parameter {name} has no type hint (annotate it; Any takes any JSON)"
            )
        default = _NO_DEFAULT if parameter.default is parameter.empty else parameter.default
        members[name] = mapper.field(hints[name], name, **_required_or_default(default))
    schema_class = Schema.from_dict(members, name=f"{getattr(function, '__name__', 'task')}")
    return schema_class(unknown=INCLUDE) if extra_keys else schema_class()
