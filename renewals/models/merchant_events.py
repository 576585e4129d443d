"""The merchant-event outbox: written in the transaction of the change it tells."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from renewals.models.base import Base, BigId, UTCDateTime


class MerchantEvent(Base):
    """One event for the merchant's backend (docs/merchant-webhooks.md).

    ``body`` is the JSON encoded once at write time; every delivery POSTs exactly it, signed
    afresh. The status is an outbox status (``domain.states.OutboxStatus``); a subscription's
    events go out in ``id`` order, one at a time."""

    __tablename__ = "merchant_events"
    __table_args__ = (
        Index("ix_merchant_events_due", "status", "next_attempt_at"),
        # "Is an earlier event of this subscription still unsent?" for in-order delivery.
        Index("ix_merchant_events_subscription", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)  # evt_…
    type: Mapped[str] = mapped_column(String(40))  # domain.merchant_events.MerchantEventType
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    renewal_id: Mapped[int | None] = mapped_column(ForeignKey("renewals.id"))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
