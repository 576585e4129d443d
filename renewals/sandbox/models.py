"""The sandbox's records and the public JSON each one shows.

Field sets follow Part A where FastStar documents them; extras (``customer_id`` and
``is_default`` in card listings, a customer's ``default_payment_method_id`` kept internally,
the whole checkout session object beyond its amounts) are our Part B choices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Self

from renewals.sandbox.responses import JSON


class Record:
    """Dataclass records round-trip through a JSON row for the state file."""

    __slots__ = ()

    def to_row(self) -> JSON:
        # Every subclass is a dataclass, which mypy cannot see from this base class.
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_row(cls, row: JSON) -> Self:
        return cls(**row)


@dataclass(slots=True)
class Customer(Record):
    id: str
    email: str
    name: str | None
    created: int
    default_payment_method_id: str | None = None

    def public(self) -> JSON:
        return {"id": self.id, "email": self.email, "name": self.name, "created": self.created}


@dataclass(slots=True)
class SetupIntent(Record):
    id: str
    customer_id: str
    client_secret: str
    created: int
    # Filled by the stand-in card popup; the full number is never kept (see cards.py).
    card_brand: str | None = None
    card_last4: str | None = None
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    card_behaviour: str | None = None
    payment_method_id: str | None = None


@dataclass(slots=True)
class PaymentMethod(Record):
    id: str
    customer_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    behaviour: str
    created: int
    detached: bool = False

    def masked(self) -> JSON:
        """The documented masked card."""
        return {
            "id": self.id,
            "brand": self.brand,
            "last4": self.last4,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
        }

    def listed(self, is_default: bool) -> JSON:
        """Masked card plus our Part B listing fields."""
        data = self.masked()
        data["is_default"] = is_default
        data["customer_id"] = self.customer_id
        return data


@dataclass(slots=True)
class CheckoutSession(Record):
    id: str
    url: str
    mode: str
    presentation: str
    line_items: list[JSON]
    success_url: str | None
    cancel_url: str | None
    buyer_country: str | None
    currency: str | None
    amount_subtotal: int
    amount_tax: int
    amount_total: int
    created: int
    expires_at: int
    status: str = "open"
    payment_intent_id: str | None = None
    customer_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def current_status(self, now: int) -> str:
        """An open session past ``expires_at`` reads as expired (Part B)."""
        if self.status == "open" and now >= self.expires_at:
            return "expired"
        return self.status

    def public(self, now: int) -> JSON:
        return {
            "id": self.id,
            "url": self.url,
            "status": self.current_status(now),
            "mode": self.mode,
            "presentation": self.presentation,
            "currency": self.currency,
            "amount_subtotal": self.amount_subtotal,
            "amount_tax": self.amount_tax,
            "amount_total": self.amount_total,
            "line_items": self.line_items,
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
            "buyer_country": self.buyer_country,
            "expires_at": self.expires_at,
            "created": self.created,
            "payment_intent_id": self.payment_intent_id,
            "customer_id": self.customer_id,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class Product(Record):
    id: str
    name: str
    description: str | None
    tax_category: str | None
    images: list[str]
    metadata: dict[str, str]
    created: int
    active: bool = True

    def public(self) -> JSON:
        return self.to_row()


@dataclass(slots=True)
class Price(Record):
    id: str
    product_id: str
    currency: str
    unit_amount: int
    type: str
    recurring_interval: str | None
    recurring_interval_count: int | None
    trial_period_days: int | None
    created: int
    active: bool = True

    def public(self) -> JSON:
        return self.to_row()


@dataclass(slots=True)
class Refund(Record):
    """A refund of (part of) an executed charge (Part B: ``re_`` ids)."""

    id: str
    payment_id: str
    amount: int
    currency: str
    created: int

    def public(self) -> JSON:
        return self.to_row()


@dataclass(slots=True)
class Dispute(Record):
    """A cardholder's dispute of an executed charge (Part B: ``dp_`` ids and statuses
    ``needs_response``, ``under_review``, ``won``, ``lost``)."""

    id: str
    payment_id: str
    amount: int
    currency: str
    reason: str
    status: str
    created: int

    def public(self) -> JSON:
        return self.to_row()
