"""parse_event / parse_verified_event: the documented envelope, clear errors otherwise."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.faststar import (
    InvalidWebhookEvent,
    PaymentEventData,
    SignatureMismatch,
    WebhookEvent,
    parse_event,
    parse_verified_event,
    signature_header,
)

EVENT: dict[str, Any] = {
    "id": "evt_123",
    "type": "payment.succeeded",
    "created": 1_700_000_000,
    "data": {"payment_id": "pi_9", "amount": 1999, "currency": "usd", "status": "succeeded"},
    "livemode": False,
    "api_version": "v1",
}


def body(**changes: Any) -> bytes:
    event = {**EVENT, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def test_parse_and_payment_view() -> None:
    event = parse_event(body())
    assert isinstance(event, WebhookEvent)
    assert (event.id, event.type, event.created, event.livemode, event.api_version) == (
        "evt_123",
        "payment.succeeded",
        1_700_000_000,
        False,
        "v1",
    )
    assert event.is_known_type
    assert event.payment() == PaymentEventData("pi_9", 1999, "USD", "succeeded")
    with pytest.raises(TypeError):
        event.data["x"] = 1  # type: ignore[index]


def test_unknown_types_still_parse() -> None:
    event = parse_event(body(type="payout.created"))
    assert not event.is_known_type
    with pytest.raises(InvalidWebhookEvent, match="not a payment event"):
        event.payment()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON: Expecting property name"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, got a JSON list"),
        (body(id="ev_1"), "'id' must be an 'evt_' id"),
        (body(id=...), "'id' must be an 'evt_' id, got missing"),
        (body(type="succeeded"), "'type' must be a dotted event type"),
        (body(created="1700000000"), "'created' must be a unix timestamp"),
        (body(created=True), "'created' must be a unix timestamp"),
        (body(data=[]), "'data' must be an object, got a list"),
        (body(livemode="false"), "'livemode' must be a boolean"),
        (body(api_version=...), "'api_version' must be a non-empty string"),
    ],
)
def test_bad_envelopes(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidWebhookEvent, match=message.replace("(", r"\(")):
        parse_event(raw)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": 1, "currency": "USD", "status": "x"}, "payment_id"),
        ({"payment_id": "pi_1", "amount": "1", "currency": "USD", "status": "x"}, "amount"),
        ({"payment_id": "pi_1", "amount": 1, "status": "x"}, "currency"),
        ({"payment_id": "pi_1", "amount": 1, "currency": "USD"}, "status"),
    ],
)
def test_bad_payment_data(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidWebhookEvent, match=message):
        parse_event(body(data=data)).payment()


def test_parse_verified_event_checks_the_signature_first() -> None:
    raw = body()
    header = signature_header("whsec_x", 1_700_000_000, raw)
    event = parse_verified_event(["whsec_old", "whsec_x"], header, raw, now=1_700_000_100)
    assert event.id == "evt_123"
    with pytest.raises(SignatureMismatch):
        parse_verified_event("whsec_y", header, raw, now=1_700_000_100)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_webhook_event(raw: bytes) -> None:
    with contextlib.suppress(InvalidWebhookEvent):
        parse_event(raw)
