"""The ``sleep`` executor: wait for a while, honouring cancellation and the deadline.

Payload: ``{"duration": seconds}`` (0 to one day). Result: ``{"slept": seconds}``.
A duration of 0 returns at once without sleeping or logging (benchmarks use it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

from taskframe.core import Executor, ExecutorContext, hookimpl

MAX_DURATION = 86400.0


class SleepCancelled(Exception):
    """The job was cancelled (or the worker is stopping) while sleeping."""


class SleepPayloadSchema(Schema):
    """Payload of a ``sleep`` job."""

    duration = fields.Float(
        required=True,
        allow_nan=False,
        validate=validate.Range(
            min=0, max=MAX_DURATION, error="must be between {min} and {max} seconds"
        ),
        metadata={"description": "seconds to sleep, 0 to 86400"},
    )


def quick_load(payload: Any) -> dict[str, Any] | None:
    """``SleepPayloadSchema().load(payload)`` for a plainly valid payload, else None."""
    if type(payload) is not dict or len(payload) != 1:
        return None
    duration = payload.get("duration")
    if type(duration) is not float and type(duration) is not int:
        return None  # bools, text ("5") and the rest: the schema decides
    if not 0 <= duration <= MAX_DURATION:  # NaN fails this too
        return None
    return {"duration": float(duration)}


def run(payload: dict[str, Any], context: ExecutorContext) -> dict[str, float]:
    """Sleep ``payload["duration"]`` seconds, stopping early on cancellation or deadline."""
    duration = payload["duration"]
    if duration <= 0:
        return {"slept": 0.0}
    start = time.monotonic()
    context.logger.info("sleeping %g s", duration)
    completed = context.sleep(duration)
    slept = round(time.monotonic() - start, 6)
    if completed:
        context.logger.info("slept %.3f s", slept)
        return {"slept": slept}
    # Interrupted without a cancellation: the deadline is the only other cause.
    if not context.cancel_event.is_set() or _deadline_reached(context):
        raise TimeoutError(f"sleep timed out after {slept:.3f}s of {duration:g}s")
    raise SleepCancelled(f"sleep cancelled after {slept:.3f}s of {duration:g}s")


def _deadline_reached(context: ExecutorContext) -> bool:
    return context.deadline is not None and context.deadline - time.monotonic() <= 0.01


@hookimpl
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    """Register the ``sleep`` executor."""
    register(
        Executor(
            name="sleep",
            schema=SleepPayloadSchema(),
            run=run,
            quick_load=quick_load,
            description="Sleep for `duration` seconds; honours cancellation and timeouts.",
        )
    )
