"""What closes the loops: the webhook inbox, every Checkout Session we opened, and the
payments an operator must look at (refunds due, payments that match nothing of ours)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
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
    status: Mapped[str] = mapped_column(String(16))  # pending | processed | ignored
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
    """A payment FastStar reports that an operator must act on: ``refund_due`` (paid for a
    period we no longer bill, e.g. after cancellation) or ``unmatched`` (matches nothing)."""

    __tablename__ = "payment_reviews"
    __table_args__ = (UniqueConstraint("kind", "payment_intent_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payment_intent_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    customer_faststar_id: Mapped[str | None] = mapped_column(String(64))
    renewal_id: Mapped[int | None] = mapped_column(ForeignKey("renewals.id"))
    source: Mapped[str] = mapped_column(String(32))  # webhook | poll | operator
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
