"""Payloads checked against their job types' schemas, a whole batch at once.

A payload schema is marshmallow: tens of microseconds per ``load``, most of
``POST /jobs/batch``. So the jobs of a batch are grouped by type and each type
is loaded once: first its executor's ``quick_load`` (a fast path the built-in
types have, proved equal to their schemas by ``tests/unit/test_quick_payloads.py``)
takes the plainly valid payloads, then the schema loads the rest in one
``load(many=True)``.

The errors are always the schema's, one payload at a time: marshmallow skips
the schema-level checks of a whole ``many`` load once any item has a field error,
so a batch that fails is loaded again item by item (the failure path only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError

from taskframe.core.executor import Executor

#: The loaded payloads of a batch by index, or the problems of those that failed.
Problems = dict[int, dict[str, Any]]


def load_payloads(jobs: list[dict[str, Any]], executors: Mapping[str, Executor]) -> Problems:
    """Load each job's payload with its type's schema, in place; the problems by index.

    An unknown type is a problem of its job. A loaded payload replaces the one
    sent when it stays plain JSON ("5" for a Float field is stored as 5.0); a
    schema that loads into objects keeps the payload as sent.
    """
    problems: Problems = {}
    by_type: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        by_type.setdefault(job["type"], []).append(index)
    for job_type, indexes in by_type.items():
        executor = executors.get(job_type)
        if executor is None:
            installed = ", ".join(sorted(executors)) or "none"
            message = [f"unknown job type {job_type!r}; installed types: {installed}"]
            problems.update((index, {"type": list(message)}) for index in indexes)
            continue
        problems.update(_load_type(executor, [jobs[i] for i in indexes], indexes))
    return problems


def _load_type(executor: Executor, jobs: list[dict[str, Any]], indexes: list[int]) -> Problems:
    """Load the payloads of ``jobs``, all of one type: the fast path, then the schema."""
    quick = executor.quick_load
    rest: list[dict[str, Any]] = []
    rest_indexes: list[int] = []
    for index, job in zip(indexes, jobs, strict=True):
        loaded = quick(job["payload"]) if quick is not None else None
        if loaded is None:
            rest.append(job)
            rest_indexes.append(index)
        else:
            job["payload"] = loaded
    if not rest:
        return {}
    try:
        loaded_rest = executor.schema.load([job["payload"] for job in rest], many=True)
    except ValidationError:
        return _one_by_one(executor, rest, rest_indexes)
    for job, loaded in zip(rest, loaded_rest, strict=True):
        _keep(job, loaded)
    return {}


def _one_by_one(executor: Executor, jobs: list[dict[str, Any]], indexes: list[int]) -> Problems:
    """The schema's own errors, payload by payload (a batch load would hide some)."""
    problems: Problems = {}
    for index, job in zip(indexes, jobs, strict=True):
        try:
            _keep(job, executor.schema.load(job["payload"]))
        except ValidationError as exc:
            problems[index] = {"payload": exc.messages}
    return problems


def _keep(job: dict[str, Any], loaded: Any) -> None:
    """Store the payload as its schema loaded it, when that is still plain JSON."""
    if isinstance(loaded, dict) and _plain_json(loaded):
        job["payload"] = loaded


def _plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)
