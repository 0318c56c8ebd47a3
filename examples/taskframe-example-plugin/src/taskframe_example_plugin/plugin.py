"""The ``shout`` executor: upper-case a text, a number of times, pausing in between.

Everything a plugin can have: a payload schema, a run function that honours
cancellation and the deadline, a permanent error, and a worker option.
"""

from __future__ import annotations

import argparse
from typing import Any

from marshmallow import Schema, fields, validate

from taskframe.core import (
    Executor,
    ExecutorContext,
    ExecutorRegistry,
    PermanentError,
    add_option,
    hookimpl,
)


class ShoutPayload(Schema):
    """The payload of a ``shout`` job (validated by the server at submission)."""

    text = fields.String(required=True, validate=validate.Length(1, 1000))
    times = fields.Integer(load_default=1, validate=validate.Range(1, 100))
    pause = fields.Float(load_default=0.0, validate=validate.Range(0, 60))


class Interrupted(Exception):
    """Cancelled: a retryable failure (the server decides what comes next)."""


def shout(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    """Shout ``text`` ``times`` times; stop early when cancelled or at the deadline."""
    if payload["text"].strip() == "":
        raise PermanentError("nothing to shout")  # retrying would not help
    suffix = getattr(context.options, "shout_suffix", "!")
    shouts = []
    for number in range(payload["times"]):
        if number and payload["pause"] and not context.sleep(payload["pause"]):
            # context.sleep returns False when cancelled or the deadline came.
            done = f"after {number} of {payload['times']} shouts"
            if context.time_left() == 0:
                raise TimeoutError(f"timed out {done}")
            raise Interrupted(f"cancelled {done}")
        if context.cancel_event.is_set():
            raise Interrupted("cancelled")
        shouts.append(payload["text"].upper() + suffix)
        context.logger.debug("job %s shouted %d time(s)", context.job_id, number + 1)
    return {"shouted": " ".join(shouts)}


@hookimpl
def taskframe_register_executors(register: ExecutorRegistry) -> None:
    register.add(
        Executor(
            name="shout",
            schema=ShoutPayload(),  # an instance, not the class
            run=shout,
            description="Upper-case a text `times` times, `pause` seconds apart.",
        )
    )


@hookimpl
def taskframe_add_options(parser: argparse.ArgumentParser, role: str) -> None:
    if role == "worker":  # the workers run the job; the server only validates it
        group = parser.add_argument_group("shout plugin")
        add_option(group, "--shout-suffix", default="!", help="appended to every shout")
