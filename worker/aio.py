"""Awaiting an ``async def`` executor's coroutine until it ends, is cancelled or times out.

On the worker's event loop, the coroutine is awaited by the job's own task,
which the worker cancels when the job must stop (a cancel request, the
timeout, a lost lease, the worker's stop): nothing polls, and
:func:`stopped_error` says what the job ended by. Where there is no loop of
the worker's — a job process of ``--pool process``,
:func:`taskframe.testing.run_task`, a synchronous run that returned an
awaitable — :func:`run_awaitable` runs it to its end with
:func:`asyncio.run`, watching the job's cancel event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from taskframe.core.executor import ExecutorContext

T = TypeVar("T")

#: How often a coroutine run by :func:`run_awaitable` has its cancel event looked at.
CHECK_INTERVAL = 0.05


class Interrupted(Exception):
    """The job was cancelled (or the worker is stopping) while its coroutine ran."""


def stopped_error(context: ExecutorContext) -> Exception:
    """What a coroutine cancelled by its job's end raised: a timeout, or a cancellation."""
    if context.time_left() == 0:
        return TimeoutError("the coroutine did not finish before the job's timeout")
    return Interrupted("cancelled while the coroutine ran")


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
        if context.time_left() == 0 or context.cancel_event.is_set():
            return await _cancelled(job, context)


async def _cancelled(job: asyncio.Future[T], context: ExecutorContext) -> T:
    job.cancel()
    try:
        return await job  # it may catch the cancellation and return
    except asyncio.CancelledError:
        raise stopped_error(context) from None
