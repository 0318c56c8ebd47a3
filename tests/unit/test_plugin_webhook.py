"""The webhook plugin's signature and its sending, against real local HTTP receivers."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
import time
from pathlib import Path

from taskframe.core.webhooks import Delivery, DeliveryOutcome, OutboxSettings
from taskframe.plugins.http_guard import Policy, parse_rules
from taskframe.plugins.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    event_body,
    sign,
    verify,
)
from tests.stub_http import QuietHandler, serve

SECRET = "s3cret"
BODY = b'{"event":"job.finished","job":{"id":7}}'


def test_the_signature_covers_the_timestamp_and_the_body():
    signature = sign(SECRET, "1700000000", BODY)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert verify(SECRET, BODY, signature, "1700000000", now=1_700_000_000)
    assert not verify("another", BODY, signature, "1700000000", now=1_700_000_000)
    assert not verify(SECRET, BODY + b" ", signature, "1700000000", now=1_700_000_000)
    # The timestamp cannot be moved forward to make an old request look new.
    assert not verify(SECRET, BODY, signature, "1700000290", now=1_700_000_290)


def test_a_replay_is_refused_once_its_timestamp_is_too_old():
    timestamp = str(int(time.time()))
    signature = sign(SECRET, timestamp, BODY)
    assert verify(SECRET, BODY, signature, timestamp)
    sent = int(timestamp)
    assert verify(SECRET, BODY, signature, timestamp, now=sent + 299)
    assert not verify(SECRET, BODY, signature, timestamp, now=sent + 301)
    assert not verify(SECRET, BODY, signature, timestamp, now=sent - 301)  # clock skew too
    assert not verify(SECRET, BODY, signature, "not a number")
    assert not verify(SECRET, BODY, None, timestamp)
    assert not verify(SECRET, BODY, signature, None)


def _notifier(**settings) -> WebhookNotifier:
    policy = Policy(allow=parse_rules(""), deny=parse_rules("169.254.0.0/16"))
    return WebhookNotifier(SECRET, policy, OutboxSettings(**settings))


def test_a_delivery_is_signed_with_the_time_it_was_sent():
    seen: list[tuple[dict[str, str], bytes]] = []

    class Receiver(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.reply(204)

    with serve(Receiver) as url:
        delivery = Delivery("d1", 7, f"{url}/hook", '{"id":7}', 1)
        result = _notifier().deliver(delivery)
    assert result.outcome is DeliveryOutcome.DELIVERED
    [(headers, body)] = seen
    assert body == event_body('{"id":7}') == BODY
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert verify(SECRET, body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    assert headers[DELIVERY_HEADER] == "d1" and headers["X-Taskframe-Job"] == "7"


def test_answers_decide_retry_or_refusal_and_only_their_start_is_kept():
    answers = iter([(503, b"busy " * 10_000), (404, b"no such hook"), (302, b""), (200, b"ok")])

    class Receiver(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            status, body = next(answers)
            self.reply(status, body, {"Location": "http://elsewhere.example/"})

    notifier = _notifier()
    with serve(Receiver) as url:
        results = [notifier.deliver(Delivery("d", 1, url, "{}", n)) for n in range(1, 5)]
    assert [r.outcome for r in results] == [
        DeliveryOutcome.RETRY,
        DeliveryOutcome.REFUSED,
        DeliveryOutcome.REFUSED,
        DeliveryOutcome.DELIVERED,
    ]
    assert "answered 503: 'busy busy" in results[0].detail and len(results[0].detail) < 400
    assert "answered 404: 'no such hook'" in results[1].detail
    assert "redirects are not followed" in results[2].detail


def test_a_denied_address_is_refused_before_anything_is_sent():
    result = _notifier().deliver(Delivery("d", 1, "http://169.254.169.254/latest", "{}", 1))
    assert result.outcome is DeliveryOutcome.REFUSED
    assert "--webhook-deny (169.254.0.0/16)" in result.detail


def test_the_docs_receiver_code_accepts_a_delivery_and_refuses_replays():
    page = (Path(__file__).parents[2] / "docs" / "how-to" / "webhooks.md").read_text()
    section = page.split("### Checking by hand", 1)[1]
    code = textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])
    namespace: dict = {}
    exec(compile(code, "webhooks.md", "exec"), namespace)  # noqa: S102 - our own docs
    check = namespace["check"]
    timestamp = str(int(time.time()))
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(SECRET, timestamp, BODY),
        DELIVERY_HEADER: "d1",
    }
    seen: set[str] = set()
    assert check(SECRET.encode(), BODY, headers, seen) == "new"
    assert check(SECRET.encode(), BODY, headers, seen) == "duplicate"
    assert check(SECRET.encode(), BODY + b"x", headers, set()) == "refuse"
    old = str(int(time.time()) - 301)
    replay = {**headers, TIMESTAMP_HEADER: old, SIGNATURE_HEADER: sign(SECRET, old, BODY)}
    assert check(SECRET.encode(), BODY, replay, set()) == "refuse"
