"""Events for the merchant's backend: which changes are told and under what name, what an
event's body holds, and the retry schedule of its delivery (docs/merchant-webhooks.md).

Pure: no database and no I/O. The state owner (``renewals.transitions``) writes the events
in the transaction of the change they tell; ``renewals.services.merchant_webhooks`` sends
them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from renewals.domain.states import SubscriptionEvent, SubscriptionStatus

__all__ = [
    "API_VERSION",
    "DeliverySchedule",
    "MerchantEventType",
    "encode_body",
    "iso",
    "new_event_id",
    "subscription_event_type",
]

# In every body, so a receiver can tell a future incompatible shape from this one.
API_VERSION = "2026-12-01"


class MerchantEventType(StrEnum):
    # A period was paid (off-session, by a dunning retry, or on-session after a 402).
    RENEWED = "subscription.renewed"
    ACTION_REQUIRED = "subscription.action_required"
    PAST_DUE = "subscription.past_due"
    CANCELED = "subscription.canceled"
    UNPAID = "subscription.unpaid"
    PAUSED = "subscription.paused"
    RESUMED = "subscription.resumed"
    # FastStar reported a refund (full or partial) of a renewal's payment.
    REFUNDED = "renewal.refunded"
    # FastStar reported a dispute of a renewal's payment opened, changed or closed.
    DISPUTED = "renewal.disputed"


_BY_STATUS: Mapping[SubscriptionStatus, MerchantEventType] = {
    SubscriptionStatus.ACTION_REQUIRED: MerchantEventType.ACTION_REQUIRED,
    SubscriptionStatus.PAST_DUE: MerchantEventType.PAST_DUE,
    SubscriptionStatus.CANCELED: MerchantEventType.CANCELED,
    SubscriptionStatus.UNPAID: MerchantEventType.UNPAID,
    SubscriptionStatus.PAUSED: MerchantEventType.PAUSED,
}
_PAID = frozenset({SubscriptionEvent.CHARGE_SUCCEEDED, SubscriptionEvent.PAID_ON_SESSION})


def subscription_event_type(
    event: SubscriptionEvent, before: SubscriptionStatus, after: SubscriptionStatus
) -> MerchantEventType | None:
    """What the merchant hears of a subscription transition, or None.

    A paid period is ``renewed`` whether or not the status changed (``active`` stays
    ``active``; ``past_due`` or ``action_required`` become ``active``), so a return to
    ``active`` by payment is told once, as the renewal. A resume is ``resumed``. Otherwise
    only a change of status is told (a further decline of a ``past_due`` subscription is
    not a change)."""
    if event in _PAID:
        return MerchantEventType.RENEWED
    if event is SubscriptionEvent.RESUMED_BY_OPERATOR:
        return MerchantEventType.RESUMED
    if after == before:
        return None
    return _BY_STATUS.get(after)


def new_event_id() -> str:
    """``evt_`` and 32 random hex digits: unique, and what the receiver dedupes on."""
    return f"evt_{secrets.token_hex(16)}"


def iso(value: datetime | None) -> str | None:
    """An instant as ``2026-01-31T09:00:00Z`` (every instant here is UTC)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_body(
    event_id: str, event_type: MerchantEventType, created: datetime, data: Mapping[str, Any]
) -> str:
    """The event's body, encoded once when it is written: every delivery sends these exact
    bytes (ASCII JSON), so a signature a receiver checks is over what was stored."""
    envelope = {
        "id": event_id,
        "type": event_type.value,
        "created": int(created.timestamp()),
        "api_version": API_VERSION,
        "data": dict(data),
    }
    return json.dumps(envelope, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DeliverySchedule:
    """After the n-th failed send, wait ``delays[n-1]``; after the last delay's send fails
    too, the event is ``failed`` (``len(delays) + 1`` sends in all)."""

    delays: tuple[timedelta, ...]

    def __post_init__(self) -> None:
        if any(delay <= timedelta(0) for delay in self.delays):
            raise ValueError("every retry delay must be positive")

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def retry_at(self, now: datetime, attempts: int) -> datetime | None:
        """When to send again after ``attempts`` failed sends; None: give up."""
        if attempts < 1:
            raise ValueError("attempts counts the sends made, at least 1")
        if attempts > len(self.delays):
            return None
        return now + self.delays[attempts - 1]
