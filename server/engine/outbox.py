"""The webhook outbox: deliveries kept in the database until sent, by any server.

A trigger (migration 10) adds a row to ``webhook_outbox`` in the transaction
that finishes a job with a ``notify_url``, whichever statement finished it
(completion, reap, release, cancel, a dependency's failure), so a server that
dies after that commit loses nothing: it, or any server sharing the
database, sends the delivery later. The sending itself (body, signature,
HTTP) is the plugin's (``taskframe_webhook_sender``); this module claims,
limits, retries and gives up. Each server runs one claimer thread and
``settings.senders`` sender threads:

- The claimer claims due rows in a short transaction (``SKIP LOCKED`` on
  PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite: servers take disjoint rows),
  moving ``next_attempt_at`` to the end of the claim (the attempt's deadline
  plus a margin), so that the row of a server that died mid-delivery comes
  back then. It claims only as many rows as it has idle senders, and none for
  a receiver (scheme, host, port) that already has ``per_origin`` deliveries
  in flight here: a slow receiver holds at most that many senders, for at
  most one deadline each; the other receivers keep being served.
- At its first claim a row gets the job's JSON as the job finished. A job
  retried (or pruned) before that no longer shows that finish: the delivery
  is dropped as superseded (a retried job that finishes again has a row of
  its own).
- A sender makes the attempt and records its outcome: delivered (the row is
  deleted), retried after a backoff (1 s doubling, at most 5 min), or dropped
  (refused, or past ``attempts`` or ``max_age``), logged at ERROR and counted
  in ``taskframe_webhook_deliveries_total``.

The claimer wakes when this server finishes a job with a ``notify_url``
(through the after-commit lifecycle events), when a sender becomes free, and
otherwise every ``POLL`` seconds for rows that fell due or that other
servers left behind.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter as MetricCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskframe.core import hookimpl
from taskframe.core.plugins import PluginSet
from taskframe.core.webhooks import Delivery, DeliveryOutcome, DeliveryResult, WebhookSender
from taskframe.server.observe.metrics import Metrics
from taskframe.server.storage import JobRow, Row, Store, StoreUnavailable, job_rows
from taskframe.server.storage.representation import job_json

log = logging.getLogger("taskframe.webhook")

#: Seconds between two looks at the outbox when nothing woke the claimer.
POLL = 1.0
#: Seconds a claim outlives the attempt's own deadline.
CLAIM_MARGIN = 10.0
FIRST_DELAY = 1.0
MAX_DELAY = 300.0
#: Seconds a stopping server waits for deliveries in flight before giving them back.
STOP_GRACE = 2.0
_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: what the per-receiver limit counts."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{scheme}://{(parts.hostname or '').lower()}:{port or _PORTS.get(scheme, 0)}"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt once ``attempts`` failed: 1, 2, 4, ... at most 300."""
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** max(0, attempts - 1))


class Outbox:
    """One server's claimer and senders of the webhook outbox (see the module docstring)."""

    def __init__(
        self, store: Store, sender: WebhookSender, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.sender = sender
        self.settings = sender.settings
        self._per_origin = max(1, sender.settings.per_origin)
        self.clock = clock
        self._cond = threading.Condition()
        self._woken = False
        self._stopping = False
        #: Rows being delivered here, by id; their receivers' counts.
        self._in_flight: dict[int, Row] = {}
        self._origins: Counter[str] = Counter()
        self._queue: queue.SimpleQueue[Row | None] = queue.SimpleQueue()
        self._outcomes: MetricCounter | None = None
        self._claimer = threading.Thread(target=self._claim_loop, name="webhook-outbox")
        self._claimer.daemon = True

    @classmethod
    def for_plugins(cls, store: Store, plugins: PluginSet) -> Outbox | None:
        """An outbox when a plugin sends webhooks (else None), woken by finished jobs."""
        sender = plugins.manager.hook.taskframe_webhook_sender()
        if sender is None:
            return None
        outbox = cls(store, sender)
        plugins.register(_Wake(outbox), name="taskframe.server.engine.outbox")
        return outbox

    def start(self, metrics: Metrics | None = None, server_port: int | None = None) -> None:
        if metrics is not None:
            self._outcomes = MetricCounter(
                "taskframe_webhook_deliveries",
                "Webhook attempts by outcome: delivered, retried, and the deliveries dropped "
                "(refused, expired: out of attempts or time, superseded: the job moved on)",
                ["outcome"],
                registry=metrics.registry,
            )
            metrics.registry.register(_PendingCollector(self.store))
        self.sender.start(None if server_port is None else int(server_port))  # waitress: text
        self._claimer.start()
        for number in range(self.settings.senders):
            threading.Thread(target=self._send_loop, name=f"webhook-{number}", daemon=True).start()

    def wake(self) -> None:
        """Look for due deliveries now (a job with a notify_url finished here)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop claiming; wait up to ``grace`` s for deliveries in flight, give back the rest."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            deadline = time.monotonic() + grace
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            unfinished = list(self._in_flight.values())
        for _ in range(self.settings.senders):
            self._queue.put(None)
        if self._claimer.is_alive():  # it may be in a transaction: let it end first
            self._claimer.join(timeout=5)
        if unfinished:
            try:
                self._give_back(unfinished)
            except StoreUnavailable as exc:  # they come back when their claims lapse
                log.warning("webhook deliveries in flight not given back: %s", exc)

    # -- the claimer ----------------------------------------------------------------

    def _claim_loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._woken = False
            try:
                wait = self._claim_round()
            except StoreUnavailable as exc:
                log.warning("webhook outbox: %s", exc)
                wait = POLL
            except Exception:  # the thread must live on
                log.exception("webhook outbox failed; will try again")
                wait = POLL
            with self._cond:
                if not self._woken and not self._stopping and wait > 0:
                    self._cond.wait(wait)

    def _room(self) -> tuple[int, list[str]]:
        """(idle senders, the receivers at their limit here)."""
        with self._cond:
            busy = [name for name, count in self._origins.items() if count >= self._per_origin]
            return self.settings.senders - len(self._in_flight), busy

    def _claim_round(self) -> float:
        """Claim and start what may be sent now; return the seconds until the next look."""
        while True:
            free, busy = self._room()
            if free <= 0:
                return POLL  # a sender that finishes wakes the claimer
            claimed, ready = self._claim(free, busy)
            self._dispatch(ready)
            if claimed < free:
                break
        _, busy = self._room()
        with self.store.reader() as tx:
            row = tx.one("outbox_next_due", {"busy": busy})
        if row is None:
            return POLL
        due: float = row["next_attempt_at"]
        return min(POLL, max(0.0, due - self.clock()))

    def _claim(self, limit: int, busy: list[str]) -> tuple[int, list[Row]]:
        """Claim up to ``limit`` due rows: (how many were claimed, those to send).

        Rows that are not to be sent any more are deleted here, logged and counted.
        """
        now = self.clock()
        params = {
            "claim": secrets.token_hex(8),
            "claimed_until": now + self.settings.timeout + CLAIM_MARGIN,
            "now": now,
            "busy": busy,
            "limit": limit,
        }
        dropped: list[tuple[Row, str, str]] = []
        ready: list[Row] = []
        with self.store.transaction() as tx:
            rows = tx.all("outbox_claim", params)
            unfilled = [row["job_id"] for row in rows if row["body"] is None]
            jobs = (
                {job["id"]: job for job in job_rows(tx.all("get_jobs", {"ids": unfilled}))}
                if unfilled
                else {}
            )
            for row in rows:
                why = self._obsolete(row, jobs.get(row["job_id"]), now)
                if why is not None:
                    tx.run("outbox_delete", row)
                    dropped.append((row, *why))
                    continue
                if row["body"] is None:
                    row["body"] = json.dumps(job_json(jobs[row["job_id"]]), separators=(",", ":"))
                    row["origin"] = origin(row["url"])
                    tx.run("outbox_fill", row)
                ready.append(row)
        for row, outcome, reason in dropped:
            self._count(outcome)
            log.error(
                "webhook for job %s to %s dropped: %s",
                *(row["job_id"], row["url"], reason),
                extra={"job_id": row["job_id"], "delivery": row["delivery_id"]},
            )
        return len(rows), ready

    def _obsolete(self, row: Row, job: JobRow | None, now: float) -> tuple[str, str] | None:
        """(outcome, reason) when ``row`` is not to be sent any more, else None."""
        if now - row["created_at"] > self.settings.max_age:
            return "expired", f"not delivered within --webhook-max-age {self.settings.max_age:g} s"
        if row["body"] is not None:
            return None
        if job is None:
            return "superseded", "the job was pruned before its webhook was sent"
        if job["status"] != row["status"] or job["finished_at"] != row["finished_at"]:
            return "superseded", f"the job was retried (now {job['status']}) before it was sent"
        return None

    def _dispatch(self, rows: list[Row]) -> None:
        """Hand claimed rows to the senders; give back those over a receiver's limit."""
        surplus = []
        with self._cond:
            for row in rows:
                name = row["origin"]
                if self._stopping or self._origins[name] >= self._per_origin:
                    surplus.append(row)
                    continue
                self._origins[name] += 1
                self._in_flight[row["id"]] = row
                self._queue.put(row)
        if surplus:
            self._give_back(surplus)

    def _give_back(self, rows: list[Row]) -> None:
        """Unclaim ``rows`` unsent: due at once, no attempt counted."""
        now = self.clock()
        with self.store.transaction() as tx:
            tx.run_many(
                "outbox_reschedule",
                [
                    {
                        "id": row["id"],
                        "claim": row["claim"],
                        "attempts": row["attempts"],
                        "next_attempt_at": now,
                        "error": row["last_error"],
                    }
                    for row in rows
                ],
            )

    # -- the senders ----------------------------------------------------------------

    def _send_loop(self) -> None:
        while (row := self._queue.get()) is not None:
            attempt = row["attempts"] + 1
            delivery = Delivery(row["delivery_id"], row["job_id"], row["url"], row["body"], attempt)
            try:
                result = self.sender.deliver(delivery)
            except Exception as exc:  # a sender's bug: logged, retried like a network error
                log.exception("webhook for job %s: the sender raised", row["job_id"])
                result = DeliveryResult(DeliveryOutcome.RETRY, f"{type(exc).__name__}: {exc}")
            try:
                self._record(row, result)
            except StoreUnavailable as exc:
                log.warning(
                    "webhook for job %s: outcome not recorded (%s); it is sent again "
                    "when its claim lapses",
                    *(row["job_id"], exc),
                )
            except Exception:
                log.exception("webhook for job %s: outcome not recorded", row["job_id"])
            finally:
                with self._cond:
                    self._in_flight.pop(row["id"], None)
                    self._origins[row["origin"]] -= 1
                    if self._origins[row["origin"]] <= 0:
                        del self._origins[row["origin"]]
                    self._woken = True
                    self._cond.notify_all()

    def _record(self, row: Row, result: DeliveryResult) -> None:
        attempts = row["attempts"] + 1
        now = self.clock()
        key = {"id": row["id"], "claim": row["claim"]}
        fields = {"job_id": row["job_id"], "delivery": row["delivery_id"], "attempt": attempts}
        if result.outcome is DeliveryOutcome.DELIVERED:
            with self.store.transaction() as tx:
                tx.run("outbox_delete", key)
            self._count("delivered")
            log.debug("webhook for job %s delivered to %s", row["job_id"], row["url"], extra=fields)
            return
        delay = backoff(attempts)
        if result.outcome is DeliveryOutcome.REFUSED:
            outcome, why = "refused", result.detail
        elif attempts >= self.settings.attempts:
            outcome, why = "expired", f"given up after {attempts} attempts: {result.detail}"
        elif now + delay - row["created_at"] > self.settings.max_age:
            outcome, why = "expired", f"given up at --webhook-max-age: {result.detail}"
        else:
            with self.store.transaction() as tx:
                tx.run(
                    "outbox_reschedule",
                    {
                        **key,
                        "attempts": attempts,
                        "next_attempt_at": now + delay,
                        "error": result.detail[:1000],  # for an operator reading the table
                    },
                )
            self._count("retried")
            log.warning(
                "webhook for job %s: attempt %d: %s; next in %g s",
                *(row["job_id"], attempts, result.detail, delay),
                extra=fields,
            )
            return
        with self.store.transaction() as tx:
            tx.run("outbox_delete", key)
        self._count(outcome)
        log.error(
            "webhook for job %s to %s dropped: %s",
            *(row["job_id"], row["url"], why),
            extra=fields,
        )

    def _count(self, outcome: str) -> None:
        if self._outcomes is not None:
            self._outcomes.labels(outcome).inc()


class _Wake:
    """The outbox's lifecycle listener: a job with a notify_url finished on this server."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    @hookimpl
    def taskframe_job_finished(self, job: dict[str, Any]) -> None:
        if job.get("notify_url"):
            self.outbox.wake()


class _PendingCollector(Collector):
    """``taskframe_webhook_pending``: rows in the outbox, read at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            with self.store.reader() as tx:
                row = tx.one("outbox_pending")
        except StoreUnavailable:
            return
        pending = GaugeMetricFamily(
            "taskframe_webhook_pending", "Webhook deliveries waiting in the outbox (all servers)"
        )
        pending.add_metric([], (row or {}).get("count") or 0)
        yield pending
