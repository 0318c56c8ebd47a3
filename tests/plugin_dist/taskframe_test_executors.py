"""Test-only executors, installed as a real plugin by ``tests.plugin_dist.install``.

- ``spin``: busy-loops in pure Python for ``seconds``, never looking at its
  cancel event (a job that only a process kill can stop); returns its pid.
- ``crash``: ends its process at once, with ``os._exit(code)`` or a segfault.
- ``chatter``: writes ``megabytes`` MB to its ``context.logger`` in 1 KiB lines.
- ``blob``: returns a string of ``megabytes`` MB.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

from taskframe.core import Executor, ExecutorContext, hookimpl


class SpinSchema(Schema):
    seconds = fields.Float(required=True, validate=validate.Range(min=0, max=3600))


class CrashSchema(Schema):
    how = fields.String(load_default="exit", validate=validate.OneOf(["exit", "segfault"]))
    code = fields.Integer(load_default=3)


class ChatterSchema(Schema):
    megabytes = fields.Float(required=True, validate=validate.Range(min=0, max=1000))


def chatter(payload: dict[str, Any], context: ExecutorContext) -> int:
    line = "z" * 1023
    lines = int(payload["megabytes"] * 1024)
    for n in range(lines):
        context.logger.info("%d %s", n, line)
    return lines


def blob(payload: dict[str, Any], context: ExecutorContext) -> str:
    return "b" * int(payload["megabytes"] * (1 << 20))


def spin(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    end = time.monotonic() + payload["seconds"]
    while time.monotonic() < end:  # deliberately deaf to context.cancel_event
        pass
    return {"pid": os.getpid()}


def crash(payload: dict[str, Any], context: ExecutorContext) -> None:
    if payload["how"] == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    os._exit(payload["code"])


@hookimpl
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    register(Executor(name="spin", schema=SpinSchema(), run=spin, description="busy loop"))
    register(Executor(name="crash", schema=CrashSchema(), run=crash, description="dies"))
    register(Executor(name="chatter", schema=ChatterSchema(), run=chatter, description="logs"))
    register(Executor(name="blob", schema=ChatterSchema(), run=blob, description="a big result"))
