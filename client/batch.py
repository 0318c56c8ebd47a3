"""``Client.batch()``: many submissions from one thread, sent as ``POST /jobs/batch``.

``submit`` only queues the job and returns a :class:`~concurrent.futures.Future`;
a background thread sends what has queued when ``max_size`` jobs are waiting
or ``linger`` seconds after the first one, whichever comes first. A future's
result is the job's id, and it is set only once the server has answered, that
is once the job is committed: nothing is acknowledged before it is durable.

A batch request is all or nothing, so one invalid job would refuse its whole
batch: when that happens, the jobs of that batch are sent again one by one and
only the bad one's future gets the error.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from taskframe.client.api import MAX_BATCH, Client, job_body
from taskframe.client.errors import ValidationError


class BatchSubmitter:
    """Queues submissions and sends them in batches; use it as a context manager.

    Leaving the ``with`` block (or :meth:`close`) sends what is queued and
    waits for every answer; :meth:`flush` does the same without closing.
    """

    def __init__(self, client: Client, max_size: int = MAX_BATCH, linger: float = 0.005) -> None:
        if not 1 <= max_size <= MAX_BATCH:
            raise ValueError(f"max_size must be between 1 and {MAX_BATCH}")
        if linger < 0:
            raise ValueError("linger must be ≥ 0 seconds")
        self.client = client
        self.max_size = max_size
        self.linger = linger
        self._queued: list[tuple[dict[str, Any], Future[int]]] = []
        self._in_flight = 0
        self._flushers = 0  # callers of flush() waiting: no lingering for them
        self._changed = threading.Condition()
        self._closed = False
        self._sender = threading.Thread(
            target=self._send_forever, name="taskframe-batch", daemon=True
        )
        self._sender.start()

    def submit(
        self, type: str, payload: dict[str, Any] | None = None, **fields: Any
    ) -> Future[int]:
        """Queue one job (fields as :meth:`Client.submit` takes them); its future gives the id."""
        future: Future[int] = Future()
        body = job_body(type, payload, **fields)
        with self._changed:
            if self._closed:
                raise RuntimeError("this batch is closed")
            self._queued.append((body, future))
            if len(self._queued) == 1 or len(self._queued) >= self.max_size:
                self._changed.notify_all()
        return future

    def flush(self) -> None:
        """Send everything queued so far and wait until the server has answered it."""
        with self._changed:
            self._flushers += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: not self._queued and not self._in_flight)
            finally:
                self._flushers -= 1

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._sender.join()

    def __enter__(self) -> BatchSubmitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send_forever(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queued or self._closed)
                if not self._queued:
                    return  # closed, and everything answered
                # Linger for more jobs, unless the batch is full or someone waits.
                deadline = time.monotonic() + self.linger
                while len(self._queued) < self.max_size and not (self._closed or self._flushers):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                chunk = self._queued[: self.max_size]
                del self._queued[: self.max_size]
                self._in_flight = len(chunk)
            try:
                self._send(chunk)
            finally:
                with self._changed:
                    self._in_flight = 0
                    self._changed.notify_all()

    def _send(self, chunk: list[tuple[dict[str, Any], Future[int]]]) -> None:
        try:
            batch = self.client.submit_many([body for body, _ in chunk])
        except ValidationError:
            # Only the bad job's future fails, with the error of POST /jobs (its own
            # fields), even alone in its batch: the batch's names it "jobs.0.payload.x".
            for body, future in chunk:
                self._send_alone(body, future)
            return
        except BaseException as exc:  # every future must be answered, whatever happened
            for _, future in chunk:
                future.set_exception(exc)
            return
        for (_, future), job_id in zip(chunk, batch.ids, strict=True):
            future.set_result(job_id)

    def _send_alone(self, body: dict[str, Any], future: Future[int]) -> None:
        try:  # POST /jobs: its errors name the job's own fields (payload.x, not jobs.3.payload.x)
            job = self.client.submit(**body)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(job.id)
