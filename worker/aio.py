"""``async def`` executors on the threaded worker: each runs on a loop of its own.

The one place the worker runs an awaitable. Until the worker core runs an
event loop itself, a job thread runs the coroutine to its end with
:func:`asyncio.run`, cancelling it when the job is cancelled or its deadline
passes; a core with its own loop replaces :func:`run_awaitable` and awaits
the coroutine there instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from taskframe.core.executor import ExecutorContext

T = TypeVar("T")

#: How often a running coroutine's cancel event and deadline are looked at.
CHECK_INTERVAL = 0.05


class Interrupted(Exception):
    """The job was cancelled (or the worker is stopping) while its coroutine ran."""


def run_awaitable(awaitable: Awaitable[T], context: ExecutorContext) -> T:
    """Run ``awaitable`` in this thread until it ends, is cancelled or times out."""
    return asyncio.run(_supervise(awaitable, context))


async def _supervise(awaitable: Awaitable[T], context: ExecutorContext) -> T:
    job = asyncio.ensure_future(awaitable)
    while True:
        left = context.time_left()
        wait = CHECK_INTERVAL if left is None else min(CHECK_INTERVAL, left)
        done, _ = await asyncio.wait({job}, timeout=wait)
        if done:
            return job.result()
        timed_out = context.time_left() == 0
        if timed_out or context.cancel_event.is_set():
            job.cancel()
            try:
                return await job  # it may catch the cancellation and return
            except asyncio.CancelledError:
                pass
            if timed_out:
                raise TimeoutError("the coroutine did not finish before the job's timeout")
            raise Interrupted("cancelled while the coroutine ran")
