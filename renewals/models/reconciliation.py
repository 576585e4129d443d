"""What closes the loops: the webhook inbox, every Checkout Session we opened, and the
payments an operator must look at (refunds due, payments that match nothing of ours)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from renewals.models.base import Base, BigId, UTCDateTime


class InboxEvent(Base):
    """One FastStar webhook event, stored once (unique event id) before it is processed."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        Index("ix_inbox_events_due", "status", "received_at"),
        # The janitor looks for a customer's payments received since an unknown attempt.
        Index("ix_inbox_events_customer", "customer_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)  # evt_…
    type: Mapped[str] = mapped_column(String(64))
    # Copied from a payment event's data (pi_…, cus_…) so they can be looked up.
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # domain.states.InboxStatus
    outcome: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CheckoutSessionRecord(Base):
    """Every Checkout Session opened for a renewal: a refreshed link replaces the renewal's
    current one, but a customer may still pay through an older one."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), unique=True)  # cs_…
    renewal_id: Mapped[int] = mapped_column(ForeignKey("renewals.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentReview(Base):
    """Something an operator must act on (``domain.states.ReviewKind``): a payment for a
    period we no longer bill (``refund_due``), a payment that identifies no renewal of ours
    or several (``unmatched``), or a final action FastStar could not confirm for a day.

    ``dedupe_key`` (kind and payment id, or kind and renewal) keeps every review single."""

    __tablename__ = "payment_reviews"
    __table_args__ = (Index("ix_payment_reviews_open", "status", "payment_intent_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # domain.states.ReviewStatus
    payment_intent_id: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    customer_faststar_id: Mapped[str | None] = mapped_column(String(64))
    renewal_id: Mapped[int | None] = mapped_column(ForeignKey("renewals.id"))
    source: Mapped[str] = mapped_column(String(32))  # webhook | poll | operator
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How it was settled: the route that booked the payment, or the operator's words.
    resolution: Mapped[str | None] = mapped_column(Text)
