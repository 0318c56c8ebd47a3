"""Group commit: concurrent requests share one transaction instead of one each.

A commit writes every page it touched to the WAL, whatever the number of
rows, so one commit for eight concurrent submissions costs little more than
one for a single submission. There is no waiting window: while one batch
commits, newcomers queue; the next thread in line commits all of them.

Sharing a transaction must not mean sharing a failure: when a batch fails,
its items are run again one by one, so only the item at fault fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Entry(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None


@dataclass
class GroupCommitter(Generic[Item, Result]):
    """Calls ``run_batch(items)`` for whatever items are waiting, one batch at a time.

    ``run_batch`` returns one result per item (an exception instance is raised
    in that item's caller only). If it raises, none of the batch was
    committed: each item is run again alone, so that one bad item fails only
    its own caller, unless ``shared_failure(exc)`` says every item would fail
    alike (the database is down), and they all get the exception at once.
    """

    run_batch: Callable[[list[Item]], Sequence[Result | BaseException]]
    shared_failure: Callable[[BaseException], bool] = lambda exc: False
    _turn: threading.Lock = field(default_factory=threading.Lock)
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _waiting: list[_Entry[Item, Result]] = field(default_factory=list)

    def __call__(self, item: Item) -> Result:
        entry: _Entry[Item, Result] = _Entry(item)
        with self._queue_lock:
            self._waiting.append(entry)
        with self._turn:
            if not entry.done:  # nobody committed it meanwhile: lead the next batch
                with self._queue_lock:
                    batch, self._waiting = self._waiting, []
                self._run(batch)
        if entry.error is not None:
            raise entry.error
        return cast(Result, entry.result)  # done without an error: set by _run

    def _run(self, batch: list[_Entry[Item, Result]]) -> None:
        results: Sequence[Result | BaseException]
        try:
            results = self.run_batch([entry.item for entry in batch])
        except Exception as exc:
            if len(batch) > 1 and not self.shared_failure(exc):
                for entry in batch:
                    self._run([entry])
                return
            results = [exc] * len(batch)
        except BaseException as exc:
            results = [exc] * len(batch)
        for entry, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                entry.error = result
            else:
                entry.result = result
            entry.done = True
