"""Read-only views for people: what each subscription does next, its history in time order,
and how an operator settles each row of ``renewals unknown`` / ``renewals reviews``.

Nothing here writes; every function takes a session and returns plain dicts (the ``--json``
shapes). Amounts stay integers in minor units next to an ``*_display`` string formatted by
:func:`renewals.domain.money.format_amount`, so that a script never parses ``19.99 USD``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from renewals.domain.money import format_amount
from renewals.domain.states import (
    CHARGEABLE_SUBSCRIPTION_STATUSES,
    OPEN_RENEWAL_STATUSES,
    RenewalStatus,
    ReviewKind,
)
from renewals.domain.work import Work
from renewals.models import AuditEvent, ChargeAttempt, OutboxMessage, Renewal, Subscription

# What a renewal's next job means to a person.
WORK_LABELS = {
    Work.CHARGE: "charge",
    Work.RECHECK: "check unknown outcome",
    Work.FOLLOW_UP: "follow up checkout",
}


def money(amount: int, currency: str) -> str:
    """``19.99 USD``; a currency we do not know (old data) falls back to minor units."""
    try:
        return format_amount(amount, currency)
    except ValueError:
        return f"{amount} {currency} (minor units)"


def mask_email(address: str) -> str:
    """``j***@example.com``: enough to recognise a customer, not to harvest an address."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def next_action(
    sub: Subscription, renewals: Sequence[Renewal]
) -> tuple[str | None, datetime | None]:
    """The subscription's next step and when: the open renewal's one job if it has one,
    else the next period's renewal while the subscription is chargeable."""
    open_ = [r for r in renewals if r.status in OPEN_RENEWAL_STATUSES]
    scheduled = sorted(
        (r for r in open_ if r.wake is not None and r.wake_at is not None),
        key=lambda r: (r.wake_at, r.id),
    )
    if scheduled:
        first = scheduled[0]
        assert first.wake is not None
        label = WORK_LABELS.get(first.wake, first.wake.value)
        if first.wake == Work.CHARGE and first.declines:
            label = f"retry charge (after {first.declines} decline(s))"
        return label, first.wake_at
    for r in open_:
        if r.status == RenewalStatus.UNKNOWN:  # handed to operators: no timer runs
            return f"reconcile renewal {r.id} (operator)", None
    if open_:  # charging right now, or a job the sweep has not scheduled yet
        return f"renewal {open_[0].id} {open_[0].status.value}", None
    if sub.status in CHARGEABLE_SUBSCRIPTION_STATUSES:
        if sub.cancel_at_period_end:
            return "cancel at period end", sub.next_renewal_at
        return "renew", sub.next_renewal_at
    return None, None


def decline_reason(renewals: Sequence[Renewal]) -> str | None:
    """The decline code of the newest period, if that period was declined (an old decline
    that was recovered since is history, shown by ``show``, not a current reason)."""
    if not renewals:
        return None
    latest = max(renewals, key=lambda r: r.period_start)
    return latest.last_decline_code


def summaries(session: Session, subs: Sequence[Subscription]) -> dict[int, dict[str, Any]]:
    """Per subscription id: display amount, next action and its date, decline reason."""
    if not subs:
        return {}
    renewals: dict[int, list[Renewal]] = {}
    for r in session.scalars(
        select(Renewal).where(Renewal.subscription_id.in_([s.id for s in subs]))
    ):
        renewals.setdefault(r.subscription_id, []).append(r)
    result: dict[int, dict[str, Any]] = {}
    for sub in subs:
        own = renewals.get(sub.id, [])
        action, at = next_action(sub, own)
        result[sub.id] = {
            "amount_display": money(sub.amount, sub.currency),
            "next_action": action,
            "next_action_at": _iso(at),
            "decline_reason": decline_reason(own),
        }
    return result


def timeline(session: Session, subscription_id: int) -> list[dict[str, Any]]:
    """Everything that happened to one subscription, oldest first: periods, charge attempts,
    emails and audit rows. Recipients are masked; amounts are shown in major units."""
    renewals = session.scalars(
        select(Renewal).where(Renewal.subscription_id == subscription_id)
    ).all()
    ids = [r.id for r in renewals]
    attempts = session.scalars(select(ChargeAttempt).where(ChargeAttempt.renewal_id.in_(ids))).all()
    emails = session.scalars(
        select(OutboxMessage).where(OutboxMessage.subscription_id == subscription_id)
    ).all()
    audit = session.scalars(
        select(AuditEvent).where(
            or_(AuditEvent.subscription_id == subscription_id, AuditEvent.renewal_id.in_(ids))
        )
    ).all()
    rows: list[tuple[datetime, int, int, dict[str, Any]]] = []

    def add(at: datetime, order: int, key: int, kind: str, text: str, **ids: Any) -> None:
        rows.append((at, order, key, {"at": at.isoformat(), "kind": kind, "text": text, **ids}))

    for r in renewals:
        add(
            r.period_start,
            0,
            r.id,
            "period",
            f"period {r.period_index}: {r.period_start:%Y-%m-%d} to {r.period_end:%Y-%m-%d}, "
            f"{money(r.amount, r.currency)}, now {r.status.value}",
            renewal_id=r.id,
        )
    for a in attempts:
        outcome = a.status.value
        if a.decline_code:
            outcome += f" ({a.decline_code})"
        if a.http_status:
            outcome += f", HTTP {a.http_status}"
        if a.payment_intent_id:
            outcome += f", {a.payment_intent_id}"
        add(
            a.sent_at or a.created_at,
            1,
            a.id,
            "attempt",
            f"attempt {a.number} on renewal {a.renewal_id}: {money(a.amount, a.currency)}, "
            f"{outcome}" + (f": {a.error}" if a.error else ""),
            renewal_id=a.renewal_id,
        )
    for m in emails:
        state = m.status + (f" at {m.sent_at:%Y-%m-%d %H:%M}" if m.sent_at else "")
        if m.last_error:
            state += f" ({m.last_error})"
        # The id is what `renewals resend-email` takes.
        add(
            m.created_at,
            2,
            m.id,
            "email",
            f"email {m.id}: {m.kind} to {mask_email(m.recipient)}: {state}",
            message_id=m.id,
        )
    for e in audit:
        change = f" -> {e.to_status}" if e.to_status else ""
        if e.from_status:
            change = f" {e.from_status}{change}"
        add(
            e.created_at,
            3,
            e.id,
            "audit",
            f"{e.actor}: {e.action}{change}" + (f" ({e.reason})" if e.reason else ""),
        )
    rows.sort(key=lambda row: row[:3])
    return [row[3] for row in rows]


# ------------------------------------------------------------------ operators' rows


def unknown_settlement(renewal_id: int) -> str:
    return f"renewals reconcile {renewal_id} --paid pi_… | --not-charged --reason …"


def review_settlement(row: dict[str, Any], unknown_ids: Iterable[int]) -> str:
    """How an operator settles an open review of ``payments_to_review``."""
    pi = row["payment_intent_id"] or "the payment"
    renewal_id = row["renewal_id"]
    kind = row["kind"]
    if kind == ReviewKind.REFUND_DUE:
        return f"refund {pi} in the FastStar dashboard (its period is no longer billed)"
    if kind in (ReviewKind.REFUNDED, ReviewKind.DISPUTED) and renewal_id is not None:
        return (
            f"{kind} on renewal {renewal_id} (the merchant's backend was told); once handled: "
            f"renewals reviews resolve {row['id']} --dismiss --reason …"
        )
    if kind in (ReviewKind.REFUNDED, ReviewKind.DISPUTED):
        return f"find what {pi} paid for in the FastStar dashboard; no renewal of ours carries it"
    if kind == ReviewKind.FINAL_ACTION_UNCONFIRMED:
        return (
            f"check renewal {renewal_id}'s checkout sessions in the FastStar dashboard; "
            "the follow-up applies the final action once FastStar answers"
        )
    if renewal_id is not None and renewal_id in set(unknown_ids):
        return f"renewals reconcile {renewal_id} --paid {pi}"
    return (
        f"find what {pi} pays for: renewals reconcile RENEWAL_ID --paid {pi} if it is an "
        "unknown renewal of ours, else refund it in the FastStar dashboard"
    )


def with_settlements(
    unknown: list[dict[str, Any]], reviews: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``unknown_renewals`` and ``payments_to_review`` with a ``settle`` line and
    the amount in major units."""
    unknown_ids = {row["renewal_id"] for row in unknown}
    return (
        [
            {
                **row,
                "amount_display": money(row["amount"], row["currency"]),
                "settle": unknown_settlement(row["renewal_id"]),
            }
            for row in unknown
        ],
        [
            {
                **row,
                "amount_display": money(row["amount"], row["currency"]),
                "settle": review_settlement(row, unknown_ids),
            }
            for row in reviews
        ],
    )
