"""``renewals report``: how renewals went over a window, straight from the database.

The window holds the renewals whose period started in it (``since`` to ``now``): a period
belongs to the window in which it fell due, whenever its outcome came. Money is summed per
currency only; adding USD to JPY means nothing.

- **by outcome**: each renewal's status now, with its count and amounts per currency;
  ``succeeded`` is the revenue collected, ``failed`` the revenue lost.
- **recovered**: succeeded renewals that had a declined attempt or a 402 first: money that
  dunning or the on-session checkout brought back.
- **SCA completion**: of the renewals that met a 402 (an attempt in ``requires_action``),
  how many were then paid on-session. A renewal leaves ``requires_action`` only by an
  on-session payment (to ``succeeded``) or by expiring (to ``failed``), so a succeeded
  renewal with a 402 attempt was paid on-session.
- **backlogs** (not windowed, they are the present): unknown outcomes waiting for an answer
  and their age, emails not yet delivered, merchant events not yet delivered or failed
  for good, open reviews.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from renewals.domain.states import (
    AttemptStatus,
    OutboxStatus,
    RenewalStatus,
    ReviewStatus,
    SubscriptionStatus,
)
from renewals.models import (
    ChargeAttempt,
    MerchantEvent,
    OutboxMessage,
    PaymentReview,
    Renewal,
    Subscription,
)
from renewals.services.views import money


def _amounts(pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [
        {"currency": currency, "amount": int(amount), "display": money(int(amount), currency)}
        for currency, amount in sorted(pairs)
    ]


def _had_attempt(*statuses: AttemptStatus) -> Any:
    return exists().where(
        and_(ChargeAttempt.renewal_id == Renewal.id, ChargeAttempt.status.in_(statuses))
    )


def _hours(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds() / 3600, 2)


def build_report(session: Session, *, now: datetime, since: datetime) -> dict[str, Any]:
    """The report's ``--json`` shape (see the module docstring)."""
    in_window = and_(Renewal.period_start >= since, Renewal.period_start <= now)

    subscriptions = dict.fromkeys((s.value for s in SubscriptionStatus), 0)
    for sub_status, count in session.execute(
        select(Subscription.status, func.count()).group_by(Subscription.status)
    ).tuples():
        subscriptions[sub_status.value] = count

    outcomes: dict[str, dict[str, Any]] = {}
    for status, currency, count, total in session.execute(
        select(Renewal.status, Renewal.currency, func.count(), func.sum(Renewal.amount))
        .where(in_window)
        .group_by(Renewal.status, Renewal.currency)
    ).tuples():
        row = outcomes.setdefault(status.value, {"outcome": status.value, "count": 0, "pairs": []})
        row["count"] += count
        row["pairs"].append((currency, total))
    by_outcome = [
        {"outcome": r["outcome"], "count": r["count"], "amounts": _amounts(r["pairs"])}
        for r in sorted(
            outcomes.values(), key=lambda r: [s.value for s in RenewalStatus].index(r["outcome"])
        )
    ]

    succeeded = and_(in_window, Renewal.status == RenewalStatus.SUCCEEDED)
    recovered_rows = session.execute(
        select(Renewal.currency, func.count(), func.sum(Renewal.amount))
        .where(succeeded)
        .where(_had_attempt(AttemptStatus.DECLINED, AttemptStatus.REQUIRES_ACTION))
        .group_by(Renewal.currency)
    ).all()
    recovered = {
        "count": sum(count for _, count, _ in recovered_rows),
        "amounts": _amounts([(currency, total) for currency, _, total in recovered_rows]),
    }

    sca: dict[str, Any] = {"required": 0, "paid_on_session": 0, "waiting": 0, "expired": 0}
    sca_keys = {
        RenewalStatus.SUCCEEDED: "paid_on_session",
        RenewalStatus.REQUIRES_ACTION: "waiting",
        RenewalStatus.FAILED: "expired",
    }
    for renewal_status, count in session.execute(
        select(Renewal.status, func.count())
        .where(in_window)
        .where(_had_attempt(AttemptStatus.REQUIRES_ACTION))
        .group_by(Renewal.status)
    ).tuples():
        sca["required"] += count
        key = sca_keys.get(renewal_status)
        if key:
            sca[key] += count
    sca["completion_rate"] = (
        round(sca["paid_on_session"] / sca["required"], 4) if sca["required"] else None
    )

    unknown_count, oldest_sent = unknown_backlog(session)
    pending, oldest_pending, failed_emails = outbox_backlog(session)
    events_waiting, oldest_event, failed_events = merchant_event_backlog(session)
    reviews = open_reviews(session)
    return {
        "window": {"since": since.isoformat(), "until": now.isoformat()},
        "subscriptions": subscriptions,
        "renewals_by_outcome": by_outcome,
        "recovered": recovered,
        "sca": sca,
        "unknown_backlog": {
            "count": unknown_count,
            "oldest_sent_at": oldest_sent.isoformat() if oldest_sent else None,
            "oldest_age_hours": _hours(now, oldest_sent),
        },
        "outbox_backlog": {
            "waiting": pending,
            "failed": failed_emails,
            "oldest_waiting_since": oldest_pending.isoformat() if oldest_pending else None,
            "oldest_age_hours": _hours(now, oldest_pending),
        },
        "merchant_events": {
            "waiting": events_waiting,
            "failed": failed_events,
            "oldest_waiting_since": oldest_event.isoformat() if oldest_event else None,
            "oldest_age_hours": _hours(now, oldest_event),
        },
        "open_reviews": reviews,
    }


# The backlogs: the present, not windowed. The metrics endpoint reads them at every scrape
# (renewals.services.backlog_gauges), so each is one statement on an index but the unknown one.


def unknown_backlog(session: Session) -> tuple[int, datetime | None]:
    """Renewals whose charge outcome is unknown: how many, and the oldest one's send time."""
    count, oldest_sent = session.execute(
        select(func.count(), func.min(ChargeAttempt.sent_at))
        .select_from(Renewal)
        .join(ChargeAttempt, ChargeAttempt.renewal_id == Renewal.id)
        .where(Renewal.status == RenewalStatus.UNKNOWN)
        .where(ChargeAttempt.status == AttemptStatus.UNKNOWN)
    ).one()
    return int(count or 0), as_utc(oldest_sent)


def outbox_backlog(session: Session) -> tuple[int, datetime | None, int]:
    """Emails waiting to go out (pending or sending), the oldest one's queueing time, and
    the emails that failed for good."""
    waiting = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status.in_(waiting)
        )
    ).one()
    failed = session.scalar(
        select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED.value)
    )
    return int(count or 0), as_utc(oldest), int(failed or 0)


def merchant_event_backlog(session: Session) -> tuple[int, datetime | None, int]:
    """Events for the merchant's backend waiting to go out, the oldest one's creation time,
    and the events that failed for good."""
    waiting = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)
    count, oldest = session.execute(
        select(func.count(), func.min(MerchantEvent.created_at)).where(
            MerchantEvent.status.in_(waiting)
        )
    ).one()
    failed = session.scalar(
        select(func.count()).where(MerchantEvent.status == OutboxStatus.FAILED.value)
    )
    return int(count or 0), as_utc(oldest), int(failed or 0)


def open_reviews(session: Session) -> int:
    return int(
        session.scalar(select(func.count()).where(PaymentReview.status == ReviewStatus.OPEN.value))
        or 0
    )


def as_utc(value: datetime | None) -> datetime | None:
    # Aggregates bypass the UTCDateTime column type: SQLite hands back a naive datetime
    # (or its text), PostgreSQL an aware one.
    from datetime import UTC

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
