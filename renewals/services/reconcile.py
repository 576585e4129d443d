"""Operators settling an unknown outcome: ``renewals reconcile ID --paid pi_… |
--not-charged --reason …``. Both are refused unless the renewal is ``unknown``, and both are
written to the audit trail with the actor and the reason."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import AttemptEvent, AttemptStatus, RenewalEvent, RenewalStatus
from renewals.domain.work import Work
from renewals.models import ChargeAttempt, Renewal
from renewals.models.db import unit_of_work
from renewals.services.followups import FollowUps
from renewals.services.payments import book_unknown_attempt
from renewals.transitions import Wake


def reconcile_paid(
    engine: Engine,
    renewal_id: int,
    payment_intent_id: str,
    *,
    now: datetime,
    settings: Settings,
    actor: str,
    reason: str,
) -> tuple[str, FollowUps]:
    """The unknown attempt did charge, as payment ``payment_intent_id``."""
    follow = FollowUps()
    with unit_of_work(engine) as session:
        status = session.scalar(select(Renewal.status).where(Renewal.id == renewal_id))
        if status != RenewalStatus.UNKNOWN:
            return f"renewal is {status or 'missing'}", follow
        booked_on = session.scalar(
            select(Renewal.id).where(Renewal.payment_intent_id == payment_intent_id)
        )
        if booked_on is not None:
            return f"{payment_intent_id} is already booked on renewal {booked_on}", follow
        applied = book_unknown_attempt(
            session,
            renewal_id,
            payment_intent_id,
            actor=actor,
            reason=reason,
            now=now,
            settings=settings,
        )
        follow.add(Work.DELIVER, applied.receipt_id)
    return applied.outcome, follow


def resolve_unknown_as_not_charged(
    session: Session, renewal_id: int, *, now: datetime, actor: str, reason: str
) -> str:
    """The unknown attempt provably charged nothing: close it (its key is never sent again)
    and schedule a fresh attempt under a new key."""
    renewal = session.scalar(select(Renewal).where(Renewal.id == renewal_id).with_for_update())
    attempt = session.scalar(
        select(ChargeAttempt)
        .where(ChargeAttempt.renewal_id == renewal_id)
        .where(ChargeAttempt.status == AttemptStatus.UNKNOWN)
        .with_for_update()
    )
    if renewal is None or renewal.status != RenewalStatus.UNKNOWN or attempt is None:
        return f"renewal is {renewal.status if renewal else 'missing'}"
    attempt.error = f"resolved not charged by {actor}: {reason}"
    transitions.move_renewal(
        session,
        renewal,
        RenewalEvent.RESOLVED_NOT_CHARGED,
        now=now,
        actor=actor,
        wake=Wake(Work.CHARGE, now),
        attempt=attempt,
        attempt_event=AttemptEvent.CLOSED_NOT_CHARGED,
        reason=reason,
    )
    return "resolved not charged; a fresh attempt is scheduled"
