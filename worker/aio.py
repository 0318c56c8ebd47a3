"""Awaiting an ``async def`` executor's coroutine until it ends, is cancelled or times out.

On the worker's event loop (:func:`await_job`), the coroutine runs beside
the loop's own work; the worker resolves the job's ``stop`` future when it
cancels the job (a cancel request, the timeout, a lost lease, the stop), so
nothing polls. Where there is no loop of the worker's — a job process of
``--pool process``, :func:`taskframe.testing.run_task`, a synchronous run
that returned an awaitable — :func:`run_awaitable` runs it to its end with
:func:`asyncio.run`, watching the job's cancel event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from taskframe.core.executor import ExecutorContext

T = TypeVar("T")

#: How often a coroutine run by :func:`run_awaitable` has its cancel event looked at.
CHECK_INTERVAL = 0.05


class Interrupted(Exception):
    """The job was cancelled (or the worker is stopping) while its coroutine ran."""


async def await_job(awaitable: Awaitable[T], context: ExecutorContext, stop: asyncio.Future) -> T:
    """On the running loop: the coroutine's result, until ``stop`` is resolved or the
    deadline passes (then it is cancelled; one that catches that may still return)."""
    job = asyncio.ensure_future(awaitable)
    await asyncio.wait({job, stop}, timeout=context.time_left(), return_when="FIRST_COMPLETED")
    if job.done():
        return job.result()
    return await _cancelled(job, timed_out=not stop.done())


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
            return await _cancelled(job, timed_out)


async def _cancelled(job: asyncio.Future[Any], timed_out: bool) -> Any:
    job.cancel()
    try:
        return await job  # it may catch the cancellation and return
    except asyncio.CancelledError:
        pass
    if timed_out:
        raise TimeoutError("the coroutine did not finish before the job's timeout")
    raise Interrupted("cancelled while the coroutine ran")
