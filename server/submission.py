"""Checking submitted jobs against the installed executors' payload schemas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError

from taskframe.core.executor import Executor


def job_errors(job: dict[str, Any], executors: Mapping[str, Executor]) -> dict[str, Any]:
    """The problems of one (envelope-valid) job: unknown type or invalid payload."""
    executor = executors.get(job["type"])
    if executor is None:
        installed = ", ".join(sorted(executors)) or "none"
        return {"type": [f"unknown job type {job['type']!r}; installed types: {installed}"]}
    try:
        executor.schema.load(job["payload"])
    except ValidationError as exc:
        return {"payload": exc.messages}
    return {}
