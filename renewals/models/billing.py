"""Customers, their saved cards, and subscriptions: what we charge, whom, and when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from renewals.domain.periods import Interval
from renewals.domain.states import SubscriptionStatus
from renewals.models.base import Base, BigId, StrEnumType, UTCDateTime


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    faststar_id: Mapped[str] = mapped_column(String(64), unique=True)  # cus_…
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# A saved card whose masked details (brand, last4, expiry) have not been read from FastStar
# yet: imported cards and cards changed through the API; renewals.services.cards reads them
# in batches. The partial index holds exactly those rows.
DETAILS_MISSING_SQL = "details_fetched_at IS NULL"


class PaymentMethod(Base):
    """The masked card FastStar returned on attach; the card number never reaches us.

    Brand, last4 and expiry are unknown (NULL) until ``details_fetched_at`` is set: a card
    imported by its ``pm_`` id is charged by that id alone, and its details are only for
    emails (receipt, card expiring) and people."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        Index(
            "ix_payment_methods_details_missing",
            "customer_id",
            sqlite_where=text(DETAILS_MISSING_SQL),
            postgresql_where=text(DETAILS_MISSING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    faststar_id: Mapped[str] = mapped_column(String(64), unique=True)  # pm_…
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    brand: Mapped[str | None] = mapped_column(String(32))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    # When FastStar's masked details were read (NULL: still to fetch).
    details_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# A subscription whose next period has not had its pre-renewal notices; the sweep's query
# repeats this condition word for word so that both databases use the partial index.
NOTICE_DUE_SQL = "notices_period_index IS NULL OR notices_period_index < next_period_index"


class Subscription(Base):
    """A recurring charge of ``amount`` every ``interval_count`` ``interval`` from ``anchor``.

    Period *n* starts at ``anchor + n intervals`` (see :mod:`renewals.domain.periods`).
    ``next_period_index`` is the first period not yet materialised as a renewal, and
    ``next_renewal_at`` its start: a copy kept only so the sweep can find due work by index.

    ``pending_*`` is a change of price asked for through the API: it applies to periods
    from ``pending_from_index`` on, and the sweep folds it into ``amount``/``price_id`` when
    it materialises the first of them (see docs/integration.md, "From the next period").
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_due", "status", "next_renewal_at"),
        # The sweep's pre-renewal notice query: only subscriptions whose coming period has
        # not had its notices yet, so rows already handled in the window are never re-read.
        Index(
            "ix_subscriptions_notice_due",
            "status",
            "next_renewal_at",
            sqlite_where=text(NOTICE_DUE_SQL),
            postgresql_where=text(NOTICE_DUE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The merchant's own id (import, API); NULL for subscriptions added from the CLI.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    payment_method_id: Mapped[int] = mapped_column(ForeignKey("payment_methods.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[Interval] = mapped_column(StrEnumType(Interval))
    interval_count: Mapped[int] = mapped_column(Integer)
    anchor: Mapped[datetime] = mapped_column(UTCDateTime)
    price_id: Mapped[str | None] = mapped_column(String(64))  # catalog price_…, for MoR
    status: Mapped[SubscriptionStatus] = mapped_column(StrEnumType(SubscriptionStatus))
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    next_period_index: Mapped[int] = mapped_column(Integer, default=0)
    next_renewal_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The period whose pre-renewal notices (upcoming renewal, card expiring) were handled.
    notices_period_index: Mapped[int | None] = mapped_column(Integer)
    # The newest period that has been paid for (off-session or on-session).
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pending_amount: Mapped[int | None] = mapped_column(BigInteger)
    pending_price_id: Mapped[str | None] = mapped_column(String(64))
    pending_from_index: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def next_amount(self) -> int:
        """What the next period to materialise will cost (a pending change included)."""
        pending, start = self.pending_amount, self.pending_from_index
        if pending is not None and start is not None and self.next_period_index >= start:
            return pending
        return self.amount

    customer: Mapped[Customer] = relationship(lazy="raise")
    payment_method: Mapped[PaymentMethod] = relationship(lazy="raise")
