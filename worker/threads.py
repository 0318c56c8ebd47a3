"""Daemon threads that run calls for the worker's event loop and hand the results back.

Not :class:`concurrent.futures.ThreadPoolExecutor`: its threads are joined at
interpreter exit, so a job that ignores its cancellation (or an HTTP request
stuck in a dead network) would keep a stopped worker alive. These are daemon
threads.

Results come back in batches: a finishing call wakes the loop only when no
wake-up is pending already, and the loop then takes every result that is
ready. Under load (many short jobs) that is one wake-up for many jobs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("taskframe.worker")

#: What the loop is given for each call: (its callback, its result, its exception).
Done = tuple[Callable[[Any, BaseException | None], None], Any, "BaseException | None"]


class DaemonThreads:
    """``size`` daemon threads running calls; results go back to ``loop``.

    No lock on the way: the threads are all started at once (idle ones cost
    nothing), and the hand-back below is safe under the GIL (see ``_serve``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, name: str) -> None:
        self.loop = loop
        self._calls: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], Callable[[Any, BaseException | None], None]]
            | None
        ] = queue.SimpleQueue()
        self._done: deque[Done] = deque()
        self._wake_pending = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        then: Callable[[Any, BaseException | None], None],
    ) -> None:
        """Run ``fn(*args)`` in a thread; ``then(result, exception)`` runs on the loop."""
        self._calls.put((fn, args, then))

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` in a thread, as a future of the loop."""
        future = self.loop.create_future()

        def then(result: Any, exc: BaseException | None) -> None:
            if future.done():  # cancelled meanwhile
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self.submit(fn, args, then)
        return future

    def close(self) -> None:
        """Let the idle threads end (busy ones end after their call)."""
        for _ in self._threads:
            self._calls.put(None)

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, args, then = item
            try:
                result, exc = fn(*args), None
            except BaseException as error:  # handed to the loop, which decides
                result, exc = None, error
            # Appended before the flag is read, and the loop clears the flag before it
            # takes the results: a result is always either taken or announced.
            self._done.append((then, result, exc))
            del item, fn, args, then, result, exc  # hold nothing while idle
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self.loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: the worker is gone
                    return

    def _deliver(self) -> None:
        """On the loop: every result ready now."""
        self._wake_pending = False
        while self._done:
            then, result, exc = self._done.popleft()
            try:
                then(result, exc)
            except Exception:  # one failing callback must not strand the others' results
                log.exception("handing a result back to the worker's loop failed")
