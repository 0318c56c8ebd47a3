"""The ``webhook`` plugin: POST a job's final state to its ``notify_url``, signed.

A job submitted with ``"notify_url": "https://..."`` gets, once it is
``succeeded``, ``failed`` or ``cancelled``, a ``POST`` of
``{"event": "job.finished", "job": {...}}`` (the job as ``GET /jobs/{id}``
showed it when it finished). Headers:

- ``X-Taskframe-Timestamp``: when this attempt was sent, in Unix seconds;
- ``X-Taskframe-Signature: sha256=<hex>``: the HMAC-SHA256, keyed with the
  server's ``--webhook-secret``, of the timestamp, a ``.`` and the exact body
  (:func:`sign`). A receiver checks it and refuses a timestamp too far from
  its clock (:func:`verify`), so a captured request cannot be replayed later;
- ``X-Taskframe-Delivery``: an id that stays the same across the attempts of
  one delivery (delivery is at least once: receivers drop duplicates by it,
  which also stops a replay within the timestamp's tolerance);
- ``X-Taskframe-Job``: the job's id.

Pending deliveries are the server's: it keeps them in its database (the
outbox, ``server/engine/outbox.py``), so a server that stops or crashes loses none,
and it claims, limits per receiver, retries and gives up. This plugin
contributes the sending (``taskframe_webhook_sender``): a 2xx answer is a
delivery; no answer within ``--webhook-timeout`` (the whole attempt), a
connection error, 408, 429 and 5xx are retried; any other answer, and a
target refused by the ``--webhook-allow`` / ``--webhook-deny`` rules (the
``http`` executor's, checked on the address actually connected to) or this
server's own API, end the delivery with an error in the log. Redirects are
not followed; a 2xx answer is not read, of any other at most 1 KiB.

Without ``--webhook-secret`` webhooks are off, and a job with a
``notify_url`` is refused at submission (422) rather than never notified.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pluggy

from taskframe.core import add_option, hookimpl
from taskframe.core.webhooks import Delivery, DeliveryOutcome, DeliveryResult, OutboxSettings
from taskframe.plugins.http_guard import (
    DEFAULT_DENY,
    Policy,
    TargetDenied,
    normalise_host,
    parse_rules,
)

if TYPE_CHECKING:  # imported when used: it needs requests (see http_guard.__getattr__)
    from taskframe.plugins.webhook_http import Answer, Watchdog

SIGNATURE_HEADER = "X-Taskframe-Signature"
TIMESTAMP_HEADER = "X-Taskframe-Timestamp"
DELIVERY_HEADER = "X-Taskframe-Delivery"
JOB_HEADER = "X-Taskframe-Job"
#: Seconds a receiver accepts between a request's timestamp and its own clock.
TOLERANCE = 300.0
RETRYABLE_STATUS = frozenset({408, 429})
_DEFAULTS = OutboxSettings()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of
    ``timestamp``, ``.`` and ``body``, keyed with ``secret``."""
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature is this body's at this timestamp (compared
    in constant time), and the timestamp is within ``tolerance`` seconds of ``now``."""
    if signature is None or timestamp is None:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def event_body(job_json: str) -> bytes:
    """The POSTed body around the job's JSON text, the same bytes at every attempt."""
    return b'{"event":"job.finished","job":' + job_json.encode() + b"}"


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
        default=_DEFAULTS.attempts,
        help="delivery attempts per webhook before it is dropped (logged and counted)",
    )
    add_option(
        group,
        "--webhook-timeout",
        type=float,
        default=_DEFAULTS.timeout,
        help="seconds one delivery attempt may take in all: connect, send and answer",
    )
    add_option(
        group,
        "--webhook-max-age",
        type=float,
        default=_DEFAULTS.max_age,
        help="seconds after the job finished past which an undelivered webhook is dropped",
    )
    add_option(
        group,
        "--webhook-senders",
        type=int,
        default=_DEFAULTS.senders,
        help="webhook deliveries in flight at once per server",
    )
    add_option(
        group,
        "--webhook-per-host",
        type=int,
        default=_DEFAULTS.per_origin,
        help="webhook deliveries in flight at once to one receiver (scheme, host, port)",
    )


@hookimpl
def taskframe_configure(
    options: argparse.Namespace, role: str, manager: pluggy.PluginManager
) -> None:
    """Register the sender when the server has a secret; otherwise refuse notify_url."""
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
    settings = OutboxSettings(
        attempts=max(1, options.webhook_attempts),
        timeout=max(0.1, options.webhook_timeout),
        max_age=getattr(options, "webhook_max_age", _DEFAULTS.max_age),
        senders=max(1, getattr(options, "webhook_senders", _DEFAULTS.senders)),
        per_origin=max(1, getattr(options, "webhook_per_host", _DEFAULTS.per_origin)),
    )
    manager.register(WebhookNotifier(secret, policy, settings), name="webhook.notifier")


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


def _for_webhooks(reason: str) -> str:
    """The guard speaks of the worker's option; here the server's applies."""
    return reason.replace("worker's --http-deny", "server's --webhook-deny")


class WebhookNotifier:
    """Validates notify_url at submission and sends the server's webhook deliveries."""

    def __init__(self, secret: str, policy: Policy, settings: OutboxSettings = _DEFAULTS) -> None:
        self.secret = secret
        self.policy = policy
        self.settings = settings
        self.server_port: int | None = None
        self._watchdog: Watchdog | None = None  # made by the first delivery

    # -- hooks --------------------------------------------------------------------

    @hookimpl
    def taskframe_validate_job(self, job: dict[str, Any]) -> dict[str, list[str]] | None:
        url = job.get("notify_url")
        if not url:
            return None
        reason = self.refusal(url)
        return {"notify_url": [reason]} if reason else None

    @hookimpl
    def taskframe_webhook_sender(self) -> WebhookNotifier:
        return self

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
            return _for_webhooks(str(exc))
        except ValueError:
            return None  # a host name: checked when connecting
        reason = self.policy.refusal(host, host)
        return _for_webhooks(reason) if reason else None

    # -- delivery (called by the server's outbox) ---------------------------------------

    def start(self, server_port: int | None) -> None:
        self.server_port = server_port

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """One signed POST within ``settings.timeout`` seconds; never raises for the receiver."""
        import requests

        from taskframe.plugins.webhook_http import DeadlinePassed, Watchdog, post

        if self._watchdog is None:
            self._watchdog = Watchdog()
        body = event_body(delivery.job_json)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "taskframe-webhook",
            "Accept-Encoding": "identity",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            DELIVERY_HEADER: delivery.id,
            JOB_HEADER: str(delivery.job_id),
        }
        try:
            answer = post(
                delivery.url,
                body,
                headers,
                policy=self.policy,
                timeout=self.settings.timeout,
                watchdog=self._watchdog,
                server_port=self.server_port,
            )
        except TargetDenied as exc:
            return DeliveryResult(DeliveryOutcome.REFUSED, f"refused: {_for_webhooks(str(exc))}")
        except DeadlinePassed as exc:
            return DeliveryResult(DeliveryOutcome.RETRY, str(exc))
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            UnicodeError,
        ) as exc:
            return DeliveryResult(DeliveryOutcome.REFUSED, f"{type(exc).__name__}: {exc}")
        except requests.RequestException as exc:
            return DeliveryResult(DeliveryOutcome.RETRY, f"{type(exc).__name__}: {exc}")
        return _judge(delivery.url, answer)


def _judge(url: str, answer: Answer) -> DeliveryResult:
    status = answer.status
    if 200 <= status < 300:
        return DeliveryResult(DeliveryOutcome.DELIVERED, str(status))
    detail = f"{url} answered {status}"
    if 300 <= status < 400:
        detail += " (redirects are not followed)"
    if answer.start:
        detail += f": {answer.start[:200].decode('utf-8', 'replace')!r}"
    retry = status >= 500 or status in RETRYABLE_STATUS
    return DeliveryResult(DeliveryOutcome.RETRY if retry else DeliveryOutcome.REFUSED, detail)
