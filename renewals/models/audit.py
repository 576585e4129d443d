"""The audit trail: one row for every state transition and every refused charge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from renewals.models.base import Base, BigId, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subscription_id", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    renewal_id: Mapped[int | None] = mapped_column(ForeignKey("renewals.id"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("charge_attempts.id"))
    # What changed when it is neither a subscription nor a renewal: "outbox", "inbox" or
    # "review", with that row's id.
    entity: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))  # "sweep", "worker", "operator:<name>", …
    action: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
