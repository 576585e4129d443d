"""Typed FastStar webhook events (docs/faststar.md, Part A, "Webhooks").

Verify first (``signatures.verify_signature`` on the raw body), then parse. Event types we
do not know are still parsed (FastStar may add types); the caller decides what to ignore.
Messages name the field that is wrong but never quote the body, which can carry customer data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ._errors import InvalidWebhookEvent
from .signatures import DEFAULT_TOLERANCE_S, verify_signature

__all__ = [
    "KNOWN_EVENT_TYPES",
    "PAYMENT_EVENT_TYPES",
    "InvalidWebhookEvent",
    "PaymentEventData",
    "WebhookEvent",
    "parse_event",
    "parse_verified_event",
]

PAYMENT_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {"payment.succeeded", "payment.failed", "payment.canceled", "payment.refunded"}
)
KNOWN_EVENT_TYPES: Final[frozenset[str]] = PAYMENT_EVENT_TYPES | frozenset(
    {
        "refund.succeeded",
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
        "invoice.paid",
        "invoice.payment_failed",
        "dispute.created",
        "dispute.updated",
        "dispute.closed",
        "settlement.succeeded",
    }
)
_EVENT_ID: Final = re.compile(r"evt_[A-Za-z0-9_\-]+")
_EVENT_TYPE: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_PAYMENT_ID: Final = re.compile(r"pi_[A-Za-z0-9_\-]+")


@dataclass(frozen=True, slots=True)
class PaymentEventData:
    """``data`` of a ``payment.*`` event: ``payment_id`` (``pi_``), amount, currency, status."""

    payment_id: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """The event envelope. ``data`` is read-only; use ``payment()`` for payment events."""

    id: str
    type: str
    created: int
    data: Mapping[str, object]
    livemode: bool
    api_version: str

    @property
    def is_known_type(self) -> bool:
        return self.type in KNOWN_EVENT_TYPES

    def payment(self) -> PaymentEventData:
        """The typed ``data`` of a ``payment.*`` event; ``InvalidWebhookEvent`` otherwise."""
        if self.type not in PAYMENT_EVENT_TYPES:
            raise InvalidWebhookEvent(f"event {self.id} is {self.type!r}, not a payment event")
        data = self.data
        payment_id = data.get("payment_id")
        if not isinstance(payment_id, str) or _PAYMENT_ID.fullmatch(payment_id) is None:
            raise InvalidWebhookEvent(f"event {self.id}: data.payment_id is not a pi_ id")
        amount = data.get("amount")
        if type(amount) is not int:
            raise InvalidWebhookEvent(f"event {self.id}: data.amount is not an integer")
        currency = data.get("currency")
        if not isinstance(currency, str) or not currency:
            raise InvalidWebhookEvent(f"event {self.id}: data.currency is not a string")
        status = data.get("status")
        if not isinstance(status, str) or not status:
            raise InvalidWebhookEvent(f"event {self.id}: data.status is not a string")
        return PaymentEventData(
            payment_id=payment_id, amount=amount, currency=currency.upper(), status=status
        )


def parse_event(body: bytes | str) -> WebhookEvent:
    """Parse a (verified) webhook body into a ``WebhookEvent`` or raise ``InvalidWebhookEvent``."""
    try:
        # Decode explicitly: json.loads would sniff UTF-16/32 from bytes; JSON on the wire is
        # UTF-8 (RFC 8259) and anything else is a malformed event.
        raw = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except UnicodeDecodeError as exc:
        raise InvalidWebhookEvent(f"webhook body is not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InvalidWebhookEvent(
            f"webhook body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. absurdly long ints, deep nesting
        raise InvalidWebhookEvent(f"webhook body cannot be parsed: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise InvalidWebhookEvent(
            f"webhook body must be a JSON object, got a JSON {type(raw).__name__}"
        )

    def fail(field: str, expected: str) -> InvalidWebhookEvent:
        present = "missing" if field not in raw else f"a {type(raw[field]).__name__}"
        return InvalidWebhookEvent(
            f"webhook event field {field!r} must be {expected}, got {present}"
        )

    event_id = raw.get("id")
    if not isinstance(event_id, str) or _EVENT_ID.fullmatch(event_id) is None:
        raise fail("id", "an 'evt_' id")
    event_type = raw.get("type")
    if not isinstance(event_type, str) or _EVENT_TYPE.fullmatch(event_type) is None:
        raise fail("type", "a dotted event type like 'payment.succeeded'")
    created = raw.get("created")
    if type(created) is not int or created < 0:
        raise fail("created", "a unix timestamp (non-negative integer)")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise fail("data", "an object")
    livemode = raw.get("livemode")
    if not isinstance(livemode, bool):
        raise fail("livemode", "a boolean")
    api_version = raw.get("api_version")
    if not isinstance(api_version, str) or not api_version:
        raise fail("api_version", "a non-empty string like 'v1'")
    return WebhookEvent(
        id=event_id,
        type=event_type,
        created=created,
        data=MappingProxyType(data),
        livemode=livemode,
        api_version=api_version,
    )


def parse_verified_event(
    secret_or_secrets: str | Sequence[str],
    signature: str,
    body: bytes,
    *,
    now: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> WebhookEvent:
    """``verify_signature`` on the raw body, then ``parse_event``: the order Part A asks for."""
    verify_signature(secret_or_secrets, signature, body, now=now, tolerance_s=tolerance_s)
    return parse_event(body)
