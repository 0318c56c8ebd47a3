"""Submitting a task object: its arguments checked locally with the task's schema.

``client.submit(add, x=1)`` sends ``{"type": "add", "payload": {"x": 1}}``
once the task's own schema (the one the server validates with) has taken
the arguments; refused ones raise the :class:`ValidationError` a 422 would,
before anything is sent. Enum members and dataclass instances are sent as
their JSON (the value, the fields).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError as SchemaError

from taskframe.client.errors import ValidationError


def is_task(value: Any) -> bool:
    from taskframe.core.task import Task

    return isinstance(value, Task)


def task_payload(
    task: Any, payload: Mapping[str, Any] | None, arguments: dict[str, Any]
) -> dict[str, Any]:
    """The JSON payload of a job of ``task``, checked with its schema."""
    clash = sorted(set(payload or {}) & set(arguments))
    if clash:
        raise TypeError(f"{task.name}: {', '.join(clash)} given both in the payload and by name")
    merged: dict[str, Any] = to_json({**(payload or {}), **arguments})
    try:
        task.schema.load(merged)
    except SchemaError as exc:
        errors = {"payload": exc.messages}
        raise ValidationError(
            f"invalid arguments for task {task.name!r}: {exc.messages}",
            title="Invalid request",
            description=f"the arguments do not match task {task.name!r}",
            errors=errors,
        ) from None
    return merged


def to_json(value: Any) -> Any:
    """Enum members as their values, dataclasses as dicts, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    return value
