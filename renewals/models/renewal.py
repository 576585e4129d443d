"""Renewals (one per subscription period) and charge attempts (one per FastStar charge call).

The constraints are the last line of defence for I1 (at most one successful charge per
period): one renewal per ``(subscription_id, period_start)``, one unique idempotency key per
attempt, at most one *open* attempt (in flight, not sent yet, or of unknown outcome) per
renewal, and unique ``pi_`` ids.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from renewals.domain.states import OPEN_ATTEMPT_STATUSES, AttemptStatus, RenewalStatus
from renewals.domain.work import Work
from renewals.models.base import Base, BigId, StrEnumType, UTCDateTime

# Attempts that may still turn into a charge; a renewal may have one at most.
OPEN_ATTEMPT_SQL = "status IN ({})".format(
    ", ".join(f"'{status.value}'" for status in sorted(OPEN_ATTEMPT_STATUSES))
)

# The partial indexes' conditions; the sweep's queries repeat them so both databases use them.
CLAIMABLE_SQL = "wake IS NOT NULL AND lease_expires_at IS NULL"
LEASED_SQL = "lease_expires_at IS NOT NULL"


class Renewal(Base):
    __tablename__ = "renewals"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start"),
        # The sweep's claim query: renewals with a next job and no lease, by due time. Only
        # those rows are in it, so claimed rows (leased) and finished ones (no job) drop out
        # and a claim never re-reads what earlier claims took.
        Index(
            "ix_renewals_claimable",
            "wake_at",
            sqlite_where=text(CLAIMABLE_SQL),
            postgresql_where=text(CLAIMABLE_SQL),
        ),
        # Leased rows only (work in flight, a few batches): expired claims, charges whose
        # worker vanished, and the claimed-but-unstarted count the backpressure reads.
        Index(
            "ix_renewals_leased",
            "lease_expires_at",
            sqlite_where=text(LEASED_SQL),
            postgresql_where=text(LEASED_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    period_index: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    # Copied from the subscription when the period is materialised: the price of this period.
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[RenewalStatus] = mapped_column(StrEnumType(RenewalStatus))
    # The renewal's one next job and when it is due (None: nothing to do). Only
    # renewals.transitions sets these, together with the status.
    wake: Mapped[Work | None] = mapped_column(StrEnumType(Work))
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A claimed renewal is leased: a lost message is rediscovered once the lease expires.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    declines: Mapped[int] = mapped_column(Integer, default=0)
    first_declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_decline_code: Mapped[str | None] = mapped_column(String(64))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    action_required_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkout_session_id: Mapped[str | None] = mapped_column(String(64))
    checkout_url: Mapped[str | None] = mapped_column(Text)
    checkout_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Waiting for the customer (requires_action): reminders sent so far (0: the first
    # "action required" email; the timeline is ActionRequiredPolicy's).
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    # Set by an operator's ``retry``: the next attempt is theirs, outside the dunning
    # schedule (its decline counts no dunning failure). Moved onto that attempt when sent.
    retry_requested_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What FastStar reported after the payment: the total refunded so far, and the payment's
    # dispute (its FastStar id and status). Only renewals.transitions.adjustments sets them.
    refunded_amount: Mapped[int | None] = mapped_column(BigInteger)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispute_id: Mapped[str | None] = mapped_column(String(64))
    dispute_status: Mapped[str | None] = mapped_column(String(32))
    dispute_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChargeAttempt(Base):
    __tablename__ = "charge_attempts"
    __table_args__ = (
        UniqueConstraint("renewal_id", "number"),
        Index(
            "uq_charge_attempts_open_per_renewal",
            "renewal_id",
            unique=True,
            sqlite_where=text(OPEN_ATTEMPT_SQL),
            postgresql_where=text(OPEN_ATTEMPT_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    renewal_id: Mapped[int] = mapped_column(ForeignKey("renewals.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … within the renewal
    # Sent as FastStar's Idempotency-Key on every send of this attempt (and only this one).
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[AttemptStatus] = mapped_column(StrEnumType(AttemptStatus))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    sends: Mapped[int] = mapped_column(Integer, default=0)
    # Unknown outcome only: how often the janitor has looked at it (its backoff), and when
    # it was handed to operators (nothing settled it and no same-key retry was allowed).
    checks: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The operator whose ``retry`` asked for this attempt; None for the dunning schedule's.
    requested_by: Mapped[str | None] = mapped_column(String(64))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    http_status: Mapped[int | None] = mapped_column(Integer)
    decline_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
