"""Typed results of the FastStar client: request values, resources and charge outcomes.

Frozen, slotted dataclasses rather than pydantic models: they are built by the hand-written
parsers in ``_parse.py`` (cheap on the charge hot path) and are plain values afterwards.

Fields marked *Part A* are documented by FastStar; fields marked *Part B* come from our
sandbox's conventions (or are undocumented) and are therefore optional: the client must keep
working if production FastStar omits them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

__all__ = [
    "AuthenticationRequired",
    "ChargeOutcome",
    "CheckoutMode",
    "CheckoutPresentation",
    "CheckoutSession",
    "Customer",
    "Declined",
    "LineItem",
    "NotSent",
    "Paid",
    "PaymentMethod",
    "Price",
    "PriceType",
    "Product",
    "RecurringInterval",
    "SetupIntent",
    "Unknown",
]

CheckoutMode = Literal["payment", "subscription", "setup"]
CheckoutPresentation = Literal["iframe", "link"]
PriceType = Literal["one_time", "recurring"]
# Part A names the field but not its values; these are the usual ones.
RecurringInterval = Literal["day", "week", "month", "year"]


# --------------------------------------------------------------------------- charge outcomes


@dataclass(frozen=True, slots=True)
class Paid:
    """FastStar confirmed the charge: 2xx, ``success: true``, ``status == "succeeded"``,
    a ``pi_`` id, and amount/currency/payment method equal to what we asked for."""

    kind: ClassVar[str] = "paid"
    payment_intent_id: str
    amount: int
    currency: str
    payment_method_id: str


@dataclass(frozen=True, slots=True)
class AuthenticationRequired:
    """The bank demands SCA (HTTP 402, documented). Nothing was charged: bring the customer
    back on-session."""

    kind: ClassVar[str] = "authentication_required"
    message: str
    http_status: int | None = 402


@dataclass(frozen=True, slots=True)
class Declined:
    """A definite refusal: nothing was charged. ``reason_code`` is a decline code such as
    ``card_declined`` found in the response (FastStar documents no machine code, so it may be
    ``None``); deciding which codes are hard declines is the domain's job."""

    kind: ClassVar[str] = "declined"
    reason_code: str | None
    message: str
    http_status: int


@dataclass(frozen=True, slots=True)
class NotSent:
    """The charge provably did not execute (connect failure, 429 ...): retry the *same*
    attempt (same idempotency key) later, no earlier than ``retry_after`` seconds if given."""

    kind: ClassVar[str] = "not_sent"
    reason: str
    retry_after: float | None = None
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """The charge may or may not have executed. Never guess: park the attempt as unknown
    until reconciliation (webhooks, operator) settles it."""

    kind: ClassVar[str] = "unknown"
    reason: str
    http_status: int | None = None


ChargeOutcome = Paid | AuthenticationRequired | Declined | NotSent | Unknown


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True, slots=True)
class Customer:
    """A FastStar customer. Part A does not show the id field; we read ``id``."""

    id: str
    # Kept out of repr so that logging a Customer never logs an email address.
    email: str | None = field(default=None, repr=False)
    name: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SetupIntent:
    """Result of ``POST /public/customers/:id/setup-intent`` (Part A)."""

    setup_intent_id: str
    # The client secret is for the buyer's browser only; keep it out of logs.
    client_secret: str = field(repr=False)
    publishable_key: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    """A saved, masked card. ``is_default`` and ``customer_id`` are Part B (list endpoint)."""

    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool = False
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class LineItem:
    """One checkout line item (Part A): a catalog ``price_id`` or ``product_id`` with a
    ``quantity``, or (Direct/PSP merchants only) ``ad_hoc_amount`` + ``ad_hoc_currency``."""

    price_id: str | None = None
    product_id: str | None = None
    quantity: int = 1
    ad_hoc_amount: int | None = None
    ad_hoc_currency: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        catalog = (self.price_id is not None) + (self.product_id is not None)
        ad_hoc = self.ad_hoc_amount is not None or self.ad_hoc_currency is not None
        if catalog + ad_hoc != 1:
            raise ValueError(
                "a line item needs exactly one of price_id, product_id or "
                "ad_hoc_amount + ad_hoc_currency"
            )
        if ad_hoc and (self.ad_hoc_amount is None or self.ad_hoc_currency is None):
            raise ValueError("ad_hoc_amount and ad_hoc_currency go together")
        if isinstance(self.quantity, bool) or self.quantity < 1:
            raise ValueError(f"quantity must be a positive integer, got {self.quantity!r}")
        if self.ad_hoc_amount is not None and (
            isinstance(self.ad_hoc_amount, bool) or self.ad_hoc_amount < 1
        ):
            raise ValueError("ad_hoc_amount must be a positive integer (smallest unit)")

    def to_json(self) -> dict[str, object]:
        """The request representation: only the fields that are set."""
        out: dict[str, object] = {"quantity": self.quantity}
        for key in ("price_id", "product_id", "ad_hoc_amount", "ad_hoc_currency", "description"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """A hosted checkout session. Part A documents ``url``, a status and the three amounts;
    the id field, status values (``open``/``complete``/``expired``), ``expires_at`` and the
    ``cs_`` prefix are Part B. ``url`` is guaranteed on the result of ``create``."""

    id: str
    url: str | None
    status: str | None = None
    mode: str | None = None
    amount_subtotal: int | None = None
    amount_tax: int | None = None
    amount_total: int | None = None
    currency: str | None = None
    expires_at: int | None = None
    # Not in Part A; our sandbox returns them (Part B). None when absent.
    payment_intent_id: str | None = None
    customer_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Product:
    """A catalog product (Part A fields)."""

    id: str
    name: str
    description: str | None = None
    tax_category: str | None = None
    images: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Price:
    """A catalog price (Part A fields)."""

    id: str
    product_id: str
    currency: str
    unit_amount: int
    type: str | None = None
    recurring_interval: str | None = None
    recurring_interval_count: int | None = None
    trial_period_days: int | None = None
