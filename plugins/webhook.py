"""The ``webhook`` plugin: POST a job's final state to its ``notify_url``, signed.

A job submitted with ``"notify_url": "https://..."`` gets, once it is
``succeeded``, ``failed`` or ``cancelled``, a ``POST`` of
``{"event": "job.finished", "job": {...}}`` (the job as ``GET /jobs/{id}``
shows it). Headers: ``X-Taskframe-Signature: sha256=<hex>``, the HMAC-SHA256
of the exact body with the server's ``--webhook-secret``;
``X-Taskframe-Delivery``, an id that stays the same across retries (delivery
is at least once: receivers drop duplicates by it); ``X-Taskframe-Job``.

A 2xx answer is a delivery. Connection errors, timeouts, 408, 429 and 5xx are
retried with exponential backoff (1 s doubling, at most 5 min apart) up to
``--webhook-attempts`` times; any other answer, and a target refused by the
``--webhook-allow`` / ``--webhook-deny`` rules (the ``http`` executor's rules
and syntax, checked on the address actually connected to), ends the delivery
with an error in the log. Redirects are not followed.

Deliveries run on the server's own threads, after the job's change is
committed: they never block the scheduler or a request. Pending deliveries
live in memory: a server that stops while some are pending (a receiver that
is down) drops them.

Without ``--webhook-secret`` webhooks are off, and a job with a
``notify_url`` is refused at submission (422) rather than never notified.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pluggy
import requests

from taskframe.core import add_option, hookimpl
from taskframe.plugins.http_guard import (
    DEFAULT_DENY,
    GuardedAdapter,
    Policy,
    TargetDenied,
    normalise_host,
    parse_rules,
)

log = logging.getLogger("taskframe.webhook")

SIGNATURE_HEADER = "X-Taskframe-Signature"
DELIVERY_HEADER = "X-Taskframe-Delivery"
RETRYABLE_STATUS = frozenset({408, 429})
FIRST_DELAY = 1.0
MAX_DELAY = 300.0
SENDERS = 4


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare the header with the body's signature in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


# -- the plugin's hooks (module level: always loaded) --------------------------------


@hookimpl
def taskframe_add_options(parser: argparse.ArgumentParser, role: str) -> None:
    if role != "server":
        return
    group = parser.add_argument_group("webhook plugin")
    add_option(
        group,
        "--webhook-secret",
        help="key of the HMAC-SHA256 signature of webhook bodies; without it, jobs "
        "with a notify_url are refused",
    )
    add_option(
        group,
        "--webhook-deny",
        default=DEFAULT_DENY,
        help="hosts, addresses and networks webhooks may not reach (the --http-deny "
        "syntax; @strict adds loopback and private ranges)",
    )
    add_option(group, "--webhook-allow", default="", help="exceptions to --webhook-deny")
    add_option(
        group,
        "--webhook-attempts",
        type=int,
        default=10,
        help="delivery attempts per webhook before giving up",
    )
    add_option(
        group, "--webhook-timeout", type=float, default=10.0, help="seconds per delivery attempt"
    )


@hookimpl
def taskframe_configure(
    options: argparse.Namespace, role: str, manager: pluggy.PluginManager
) -> None:
    """Register the notifier when the server has a secret; otherwise refuse notify_url."""
    if role != "server":
        return
    secret = getattr(options, "webhook_secret", None)
    if not secret:
        manager.register(WebhooksOff(), name="webhook.off")
        return
    try:
        policy = Policy(
            allow=parse_rules(options.webhook_allow), deny=parse_rules(options.webhook_deny)
        )
    except ValueError as exc:  # a usage error: stop rather than run without webhooks
        raise SystemExit(
            f"taskframe-server: error: --webhook-allow/--webhook-deny: {exc}"
        ) from None
    notifier = WebhookNotifier(
        secret, policy, attempts=options.webhook_attempts, timeout=options.webhook_timeout
    )
    manager.register(notifier, name="webhook.notifier")


class WebhooksOff:
    """Registered without ``--webhook-secret``: a notify_url would never be honoured."""

    @hookimpl
    def taskframe_validate_job(self, job: dict[str, Any]) -> dict[str, list[str]] | None:
        if job.get("notify_url"):
            return {
                "notify_url": [
                    "webhooks are off on this server: start it with --webhook-secret "
                    "(TASKFRAME_WEBHOOK_SECRET)"
                ]
            }
        return None


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    job_id: int = field(compare=False)
    delivery_id: str = field(compare=False)
    attempt: int = field(default=0, compare=False)


class WebhookNotifier:
    """Validates notify_url at submission and delivers finished jobs to it."""

    def __init__(
        self, secret: str, policy: Policy, *, attempts: int = 10, timeout: float = 10.0
    ) -> None:
        self.secret = secret
        self.policy = policy
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self._pending: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._started = False
        self._local = threading.local()

    # -- hooks --------------------------------------------------------------------

    @hookimpl
    def taskframe_validate_job(self, job: dict[str, Any]) -> dict[str, list[str]] | None:
        url = job.get("notify_url")
        if not url:
            return None
        reason = self.refusal(url)
        return {"notify_url": [reason]} if reason else None

    @hookimpl
    def taskframe_job_finished(self, job: dict[str, Any]) -> None:
        url = job.get("notify_url")
        if url:
            body = json.dumps({"event": "job.finished", "job": job}, separators=(",", ":"))
            self.enqueue(url, body.encode(), job["id"])

    # -- submission check ---------------------------------------------------------

    def refusal(self, url: str) -> str | None:
        """Why ``url`` is refused by the rules (a name or a literal address), or None.

        A name that resolves to a denied address is refused at delivery, where
        the address connected to is checked.
        """
        host = normalise_host(urlsplit(url).hostname or "")
        try:
            if self.policy.check_name(host):
                return None
            ipaddress.ip_address(host)
        except TargetDenied as exc:
            return str(exc).replace("worker's --http-deny", "server's --webhook-deny")
        except ValueError:
            return None  # a host name: checked when connecting
        reason = self.policy.refusal(host, host)
        return reason.replace("worker's --http-deny", "server's --webhook-deny") if reason else None

    # -- delivery -----------------------------------------------------------------

    def enqueue(self, url: str, body: bytes, job_id: int) -> None:
        delivery = _Delivery(time.monotonic(), next(self._seq), url, body, job_id, uuid.uuid4().hex)
        with self._cond:
            if not self._started:
                self._started = True
                for number in range(SENDERS):
                    threading.Thread(
                        target=self._send_loop, name=f"webhook-{number}", daemon=True
                    ).start()
            heapq.heappush(self._pending, delivery)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending or self._pending[0].due > time.monotonic():
                    wait = self._pending[0].due - time.monotonic() if self._pending else None
                    self._cond.wait(wait)
                delivery = heapq.heappop(self._pending)
            try:
                retry = self._attempt(delivery)
            except Exception:  # the thread must live on
                log.exception("webhook for job %s failed", delivery.job_id)
                retry = False
            if retry:
                self._reschedule(delivery)

    def _reschedule(self, delivery: _Delivery) -> None:
        if delivery.attempt >= self.attempts:
            log.error(
                "webhook for job %s to %s given up after %d attempts",
                delivery.job_id,
                delivery.url,
                delivery.attempt,
            )
            return
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (delivery.attempt - 1))
        delivery.due = time.monotonic() + delay
        with self._cond:
            heapq.heappush(self._pending, delivery)
            self._cond.notify()

    def _attempt(self, delivery: _Delivery) -> bool:
        """One POST; True when it should be retried."""
        delivery.attempt += 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "taskframe-webhook",
            SIGNATURE_HEADER: sign(self.secret, delivery.body),
            DELIVERY_HEADER: delivery.delivery_id,
            "X-Taskframe-Job": str(delivery.job_id),
        }
        try:
            answer = self._session().post(
                delivery.url,
                data=delivery.body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
            answer.close()
        except TargetDenied as exc:
            log.error("webhook for job %s refused: %s", delivery.job_id, exc)
            return False
        except requests.RequestException as exc:
            log.warning(
                "webhook for job %s: attempt %d: %s", delivery.job_id, delivery.attempt, exc
            )
            return True
        if 200 <= answer.status_code < 300:
            log.debug("webhook for job %s delivered to %s", delivery.job_id, delivery.url)
            return False
        retry = answer.status_code >= 500 or answer.status_code in RETRYABLE_STATUS
        level = logging.WARNING if retry else logging.ERROR
        log.log(
            level,
            "webhook for job %s: attempt %d: %s answered %d",
            delivery.job_id,
            delivery.attempt,
            delivery.url,
            answer.status_code,
        )
        return retry

    def _session(self) -> requests.Session:
        """One session per sender thread (requests sessions are not thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no .netrc, no proxy variables
            adapter = GuardedAdapter(self.policy)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session
