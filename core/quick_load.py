"""Fast paths for the messages on the hot path, checked against their schemas.

marshmallow costs tens of microseconds per message; at thousands of jobs per
second that is most of the server's time. These functions load an ordinary,
plainly valid message in a fraction of that and return exactly what the
schema's ``load`` would. Anything they do not recognise as valid, they leave
to the schema (they return None), which then names the offending fields.
``tests/unit/test_schemas.py`` checks both against each other.

``text_checked=True`` tells them that no string in ``data`` holds a lone
surrogate (the body could not encode one: ``strict_json.may_hold_surrogates``),
which spares them walking payloads and results for such text.
"""

from __future__ import annotations

import functools
from typing import Any

from taskframe.core import limits, model, schemas, strict_json

_NUMBER = (int, float)
#: The fields of ``SubmitJobSchema`` this loader checks and copies itself, named
#: one by one: a job with any other field (run_at, notify_url, dependencies, or a
#: field added to the schema later) takes the schema's path, so nothing is dropped.
SUBMIT_FIELDS = frozenset(
    {"type", "payload", "priority", "max_attempts", "timeout", "delay", "idempotency_key", "queue"}
)
if not SUBMIT_FIELDS <= frozenset(schemas.SubmitJobSchema._declared_fields):  # pragma: no cover
    raise ImportError("quick_load.SUBMIT_FIELDS names a field SubmitJobSchema does not have")


def _is_number(value: object, low: float, high: float, low_inclusive: bool = True) -> bool:
    if type(value) not in _NUMBER:
        return False
    assert isinstance(value, (int, float))  # for the type checker
    return (low <= value if low_inclusive else low < value) and value <= high


def quick_load_submit(data: object, text_checked: bool = False) -> dict[str, Any] | None:
    """``SubmitJobSchema().load(data)`` for a plainly valid job (no ``run_at``), else None."""
    if type(data) is not dict or not data.keys() <= SUBMIT_FIELDS:
        return None
    payload = data.get("payload", {})
    priority = data.get("priority", schemas.DEFAULT_PRIORITY)
    max_attempts = data.get("max_attempts", schemas.DEFAULT_MAX_ATTEMPTS)
    timeout = data.get("timeout")
    key = data.get("idempotency_key")
    queue = data.get("queue", schemas.DEFAULT_QUEUE)
    job_type = data.get("type")
    if (
        type(job_type) is not str
        or type(queue) is not str
        or not _known_names(job_type, queue)
        or type(payload) is not dict
        or not all(type(name) is str for name in payload)
        or (not text_checked and strict_json.surrogate_path(payload) is not None)
        or type(priority) is not int
        or not limits.MIN_PRIORITY <= priority <= limits.MAX_PRIORITY
        or type(max_attempts) is not int
        or not 1 <= max_attempts <= limits.MAX_ATTEMPTS
        or (timeout is not None and not _is_number(timeout, 0, limits.MAX_TIMEOUT))
        or ("delay" in data and not _is_number(data["delay"], 0, limits.MAX_DELAY))
        or (key is not None and (not _is_id_text(key) or schemas.reserved_key(key)))
    ):
        return None
    loaded = {
        "type": data["type"],
        "payload": payload,
        "timeout": None if timeout is None else float(timeout),
        "idempotency_key": key,
    }
    # Omitted ones stay omitted: the job type's defaults apply (server/engine/submission.py).
    for name, value in (("priority", priority), ("max_attempts", max_attempts), ("queue", queue)):
        if name in data:
            loaded[name] = value
    if "delay" in data:
        loaded["delay"] = float(data["delay"])
    return loaded


def quick_load_batch(data: object, text_checked: bool = False) -> dict[str, Any] | None:
    """``BatchSubmitSchema().load(data)`` for a plainly valid batch, else None."""
    if type(data) is not dict or data.keys() != {"jobs"}:
        return None
    jobs = data["jobs"]
    if type(jobs) is not list or not 1 <= len(jobs) <= limits.MAX_BATCH:
        return None
    loaded = [quick_load_submit(job, text_checked) for job in jobs]
    return None if None in loaded else {"jobs": loaded}


_LEASE_KEYS = frozenset(schemas.LeaseRequestSchema._declared_fields)
_COMPLETION_KEYS = frozenset(schemas.CompletionItemSchema._declared_fields)
_OUTCOMES = frozenset(model.REPORTED)


@functools.lru_cache(maxsize=1024)
def _known_names(job_type: str, queue: str) -> bool:
    """A valid job type and queue name (the few of a batch are checked once)."""
    return _is_id_text(job_type) and schemas.is_queue_name(queue)


def _is_id_text(value: object) -> bool:
    return (
        type(value) is str
        and 1 <= len(value) <= limits.MAX_ID_TEXT
        and "\x00" not in value
        and not strict_json.has_surrogate(value)
    )


def _is_text(value: object) -> bool:
    return type(value) is str and "\x00" not in value and not strict_json.has_surrogate(value)


def quick_load_lease_request(data: object, text_checked: bool = False) -> dict[str, Any] | None:
    """``LeaseRequestSchema().load(data)`` for a plainly valid request, else None."""
    if type(data) is not dict or not data.keys() <= _LEASE_KEYS:
        return None
    types = data.get("types")
    queues = data.get("queues")
    maximum = data.get("max", 1)
    wait = data.get("wait", 0.0)
    completions = data.get("completions", [])
    request_id = data.get("request_id")
    resent = data.get("resent", False)
    host = data.get("host")
    slots = data.get("slots")
    if (
        (request_id is not None and not _is_id_text(request_id))
        or (host is not None and not _is_id_text(host))
        or (slots is not None and (type(slots) is not int or not 0 <= slots <= limits.MAX_SLOTS))
        or type(resent) is not bool
        or not _is_id_text(data.get("worker_id"))
        or (
            types is not None
            and (
                type(types) is not list
                or len(types) > limits.MAX_TYPES
                or not all(_is_id_text(t) for t in types)
            )
        )
        or (
            queues is not None
            and (type(queues) is not list or not all(schemas.is_queue_name(q) for q in queues))
        )
        or type(maximum) is not int
        or not 0 <= maximum <= limits.MAX_LEASE_BATCH
        or type(wait) not in (int, float)
        or not 0 <= wait <= limits.MAX_WAIT
        or type(completions) is not list
        or len(completions) > limits.MAX_COMPLETIONS
    ):
        return None
    loaded = []
    for item in completions:
        if type(item) is not dict or not item.keys() <= _COMPLETION_KEYS:
            return None
        error = item.get("error")
        worker_id = item.get("worker_id")
        retryable = item.get("retryable", True)
        log = item.get("log")
        trace = item.get("traceback")
        retry_after = item.get("retry_after")
        if (
            type(item.get("job_id")) is not int
            or not 1 <= item["job_id"] <= limits.MAX_ID
            or not _is_id_text(item.get("lease_id"))
            or item.get("status") not in _OUTCOMES
            or (error is not None and (type(error) is not str or len(error) > limits.MAX_ERROR))
            or (worker_id is not None and not _is_text(worker_id))
            or type(retryable) is not bool
            or (log is not None and (type(log) is not str or len(log) > limits.MAX_ATTEMPT_LOG))
            or (trace is not None and (type(trace) is not str or len(trace) > limits.MAX_TRACEBACK))
            or (retry_after is not None and not _is_number(retry_after, 0, limits.MAX_RETRY_AFTER))
        ):
            return None
        result = item.get("result")
        if not text_checked:  # executor output: repaired, as the schema does, never refused
            result = None if result is None else strict_json.encodable(result)
            error = None if error is None else strict_json.encodable_text(error)
            log = None if log is None else strict_json.encodable_text(log)
            trace = None if trace is None else strict_json.encodable_text(trace)
        loaded.append(
            {
                "job_id": item["job_id"],
                "lease_id": item["lease_id"],
                "status": item["status"],
                "result": result,
                "error": error,
                "retryable": retryable,
                "worker_id": worker_id,
                "log": log,
                "traceback": trace,
                "retry_after": None if retry_after is None else float(retry_after),
            }
        )
    return {
        "worker_id": data["worker_id"],
        "types": types,
        "queues": queues,
        "max": maximum,
        "wait": float(wait),
        "completions": loaded,
        "request_id": request_id,
        "resent": resent,
        "host": host,
        "slots": slots,
    }
