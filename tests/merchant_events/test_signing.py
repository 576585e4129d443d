"""The pure parts: the signature a delivery carries (checked with the documented snippet and
with our own FastStar verifier, which shares the scheme), what each subscription transition
tells, the body's encoding, and the retry schedule."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from renewals.domain.merchant_events import (
    DeliverySchedule,
    MerchantEventType,
    encode_body,
    subscription_event_type,
)
from renewals.domain.states import SUBSCRIPTION_TRANSITIONS, SubscriptionEvent, SubscriptionStatus
from renewals.faststar.signatures import verify_signature
from renewals.services.merchant_webhooks import delivery_headers
from tests.support.merchant_receiver import DOC, documented_verifier

SECRET = "merchant-signing-secret-0123456789abcdef"
BODY = encode_body(
    "evt_0123", MerchantEventType.PAUSED, datetime(2026, 1, 1, tzinfo=UTC), {"note": "café"}
).encode()


def _signature(body: bytes = BODY, *, at: int | None = None, secret: str = SECRET) -> str:
    timestamp = int(time.time()) if at is None else at
    headers = delivery_headers(secret, "evt_0123", "subscription.paused", body, timestamp=timestamp)
    assert headers["Renewals-Event-Id"] == "evt_0123"
    return headers["Renewals-Signature"]


def test_the_documented_snippet_accepts_a_delivery_and_nothing_else() -> None:
    verify = documented_verifier()
    now = int(time.time())
    assert verify(SECRET, _signature(), BODY, 300)
    assert not verify(SECRET, _signature(), BODY + b" ", 300)  # the body changed
    assert not verify("another-secret", _signature(), BODY, 300)
    assert not verify(SECRET, _signature(at=now - 301), BODY, 300)  # a replay
    assert not verify(SECRET, _signature(at=now + 301), BODY, 300)
    assert not verify(SECRET, "v1=abc", BODY, 300)  # no timestamp
    assert not verify(SECRET, "garbage", BODY, 300)
    assert not verify(SECRET, "", BODY, 300)


def test_the_snippet_compares_in_constant_time_with_the_standard_library_only() -> None:
    text = DOC.read_text(encoding="utf-8")
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "hmac.compare_digest" in snippet
    imports = {line.split()[1] for line in snippet.splitlines() if line.startswith("import ")}
    assert imports == {"hashlib", "hmac", "time"}


def test_the_signature_is_faststar_s_scheme() -> None:
    now = int(time.time())
    assert verify_signature(SECRET, _signature(at=now), BODY, now=now) == now


def test_the_body_is_compact_ascii_json() -> None:
    assert BODY.isascii()
    envelope = json.loads(BODY)
    assert envelope == {
        "id": "evt_0123",
        "type": "subscription.paused",
        "created": 1767225600,
        "api_version": "2026-12-01",
        "data": {"note": "café"},
    }


def test_what_each_subscription_transition_tells() -> None:
    told = {
        (before, event): subscription_event_type(event, before, after)
        for before, event, after in SUBSCRIPTION_TRANSITIONS.items()
    }
    S, E, T = SubscriptionStatus, SubscriptionEvent, MerchantEventType
    # Every payment is a renewal, whatever the status was; a resume is a resume.
    for (before, event), event_type in told.items():
        if event in (E.CHARGE_SUCCEEDED, E.PAID_ON_SESSION):
            assert event_type is T.RENEWED, (before, event)
        if event is E.RESUMED_BY_OPERATOR:
            assert event_type is T.RESUMED
    assert told[(S.PAST_DUE, E.DECLINED)] is None  # still past_due: not a change
    assert told[(S.ACTIVE, E.DECLINED)] is T.PAST_DUE
    assert told[(S.PAST_DUE, E.AUTHENTICATION_REQUIRED)] is T.ACTION_REQUIRED
    assert told[(S.ACTIVE, E.FINAL_ACTION_UNPAID)] is T.UNPAID
    assert told[(S.UNPAID, E.CANCELED_BY_OPERATOR)] is T.CANCELED
    assert told[(S.ACTION_REQUIRED, E.PAUSED_BY_OPERATOR)] is T.PAUSED
    # Every change of status is told, as exactly one event.
    for (before, event), event_type in told.items():
        after = SUBSCRIPTION_TRANSITIONS.apply(before, event)
        if after != before:
            assert event_type is not None, (before, event)


def test_the_retry_schedule() -> None:
    schedule = DeliverySchedule((timedelta(minutes=1), timedelta(minutes=5)))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.retry_at(now, 1) == now + timedelta(minutes=1)
    assert schedule.retry_at(now, 2) == now + timedelta(minutes=5)
    assert schedule.retry_at(now, 3) is None
    assert schedule.max_attempts == 3
    with pytest.raises(ValueError, match="positive"):
        DeliverySchedule((timedelta(0),))
