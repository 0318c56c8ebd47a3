"""What the server's webhook outbox hands a sender plugin, and what it gets back.

The server keeps pending deliveries in its database (``server/engine/outbox.py``):
it claims them, enforces the limits below, retries and gives up. A plugin
(the built-in ``webhook``) contributes the sending itself through the
``taskframe_webhook_sender`` hook: the body, the signature and the HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


@dataclass(frozen=True)
class OutboxSettings:
    """The limits the server's outbox applies to a sender's deliveries."""

    #: Attempts per delivery before it is dropped (logged and counted).
    attempts: int = 10
    #: Seconds after the job finished past which a delivery is dropped, sent or not.
    max_age: float = 86400.0
    #: Seconds one attempt may take in all (connect, send, answer): its deadline.
    timeout: float = 10.0
    #: Deliveries in flight at once, per server process.
    senders: int = 16
    #: Deliveries in flight at once to one receiver (scheme, host and port).
    per_origin: int = 2


@dataclass(frozen=True)
class Delivery:
    """One attempt to tell ``url`` that job ``job_id`` finished."""

    #: Stays the same across the attempts of one delivery (receivers drop duplicates by it).
    id: str
    job_id: int
    url: str
    #: The job as ``GET /jobs/{id}`` showed it when it finished, as JSON text.
    job_json: str
    #: 1 for the first attempt.
    attempt: int


class DeliveryOutcome(str, Enum):
    DELIVERED = "delivered"
    #: Try again later (no answer in time, a connection error, 408, 429, 5xx).
    RETRY = "retry"
    #: Never again (a target the rules deny, any other answer).
    REFUSED = "refused"


@dataclass(frozen=True)
class DeliveryResult:
    outcome: DeliveryOutcome
    #: What happened, for the log (an error, the receiver's status and a bit of its answer).
    detail: str = ""


class WebhookSender(Protocol):
    """What ``taskframe_webhook_sender`` returns."""

    settings: OutboxSettings

    def start(self, server_port: int | None) -> None:
        """Called once before the first delivery; ``server_port`` is where this server
        listens (its own API is never a receiver)."""
        ...

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Make one attempt, within ``settings.timeout`` seconds; never raise for the
        receiver's sake (an exception counts as :attr:`DeliveryOutcome.RETRY`)."""
        ...
