"""Wake-ups for long-polls: a generation counter bumped on every job change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ChangeNotifier:
    """Long-polls note the generation, check the database, then wait for a newer one.

    Bumped by this process after each commit that may interest a waiter, and
    by the store's watcher when another process commits.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._waiters = 0
        self.closed = False

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def close(self) -> None:
        """Server shutdown: wake every waiter now and make later waits return at once."""
        with self._condition:
            self.closed = True
            self._generation += 1
            self._condition.notify_all()

    def has_waiters(self) -> bool:
        return self._waiters > 0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Count a waiter (so cross-process watchers poll fast) for the block's duration."""
        with self._condition:
            self._waiters += 1
        try:
            yield
        finally:
            with self._condition:
                self._waiters -= 1

    def wait(self, generation: int, timeout: float) -> bool:
        """Block until the generation moves past ``generation`` or ``timeout`` passes."""
        with self._condition:
            return self._condition.wait_for(
                lambda: self._generation != generation or self.closed, timeout
            )
