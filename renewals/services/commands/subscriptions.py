"""Operator commands on one subscription: pause, resume, cancel and retry.

Each locks the subscription and its open renewals (``FOR UPDATE``; on SQLite the
transaction's write lock), the same rows the engine's charge and follow-up lock, so a
command and the engine's own work on that subscription run one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.domain.catchup import CatchUpPolicy, next_period_to_charge
from renewals.domain.periods import period_start
from renewals.domain.states import (
    CHARGEABLE_SUBSCRIPTION_STATUSES,
    FINISHED_RENEWAL_STATUSES,
    RenewalEvent,
    RenewalStatus,
    SubscriptionEvent,
    SubscriptionStatus,
    can_subscription_transition,
)
from renewals.domain.work import Work
from renewals.faststar import CheckoutSession
from renewals.models import Renewal, Subscription
from renewals.models.db import unit_of_work
from renewals.services.checkout import (
    ask_sessions,
    late_watch,
    paid_session,
    renewal_session_ids,
    session_payment,
)
from renewals.services.commands.base import Arguments, Context, Outcome, Refusal, reason_of
from renewals.services.followups import FollowUps
from renewals.services.halt import is_halted
from renewals.services.payments import apply_reported_payment, open_unmatched_review
from renewals.transitions import Wake

# Renewals whose charge waits for its due time (a pause holds them without a job).
_WAITING_TO_CHARGE = (RenewalStatus.PENDING, RenewalStatus.RETRY_SCHEDULED)


def _lock(session: Session, subscription_id: int) -> tuple[Subscription, list[Renewal]]:
    """The subscription and its unfinished renewals, locked, oldest first."""
    sub = session.scalars(
        select(Subscription).where(Subscription.id == subscription_id).with_for_update()
    ).one_or_none()
    if sub is None:
        raise Refusal(f"no subscription {subscription_id}: `renewals subscriptions list`")
    renewals = session.scalars(
        select(Renewal)
        .where(Renewal.subscription_id == subscription_id)
        .where(Renewal.status.not_in(list(FINISHED_RENEWAL_STATUSES)))
        .order_by(Renewal.period_start)
        .with_for_update()
    ).all()
    return sub, list(renewals)


def _refuse_in_doubt(renewals: list[Renewal], doing: str) -> None:
    """A charge in flight or of unknown outcome comes first: nobody knows yet whether the
    period is paid."""
    for renewal in renewals:
        if renewal.status == RenewalStatus.CHARGING:
            raise Refusal(
                f"renewal {renewal.id} has a charge in flight: wait for its outcome "
                f"(`renewals subscriptions show {renewal.subscription_id}`), then {doing}"
            )
        if renewal.status == RenewalStatus.UNKNOWN:
            raise Refusal(
                f"renewal {renewal.id} is unknown: settle it with `renewals reconcile "
                f"{renewal.id} --paid pi_… | --not-charged --reason …`, then {doing}"
            )


# ------------------------------------------------------------------------------ pause


def pause(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    sub, renewals = _lock(session, args["subscription_id"])
    if sub.status == SubscriptionStatus.PAUSED:
        raise Refusal(f"subscription {sub.id} is paused already: `renewals resume {sub.id}`")
    if not can_subscription_transition(sub.status, SubscriptionEvent.PAUSED_BY_OPERATOR):
        raise Refusal(f"subscription {sub.id} is {sub.status}: it cannot be paused")
    waiting = next((r for r in renewals if r.status == RenewalStatus.REQUIRES_ACTION), None)
    if waiting is not None:
        # Its follow-up would keep emailing the customer a link to pay a paused period.
        raise Refusal(
            f"subscription {sub.id} waits for its customer to authenticate renewal "
            f"{waiting.id}: cancel it (`renewals cancel {sub.id}`) or wait for the payment"
        )
    before = sub.status
    transitions.move_subscription(
        session,
        sub,
        SubscriptionEvent.PAUSED_BY_OPERATOR,
        now=ctx.now,
        actor=ctx.actor,
        reason=reason_of(args, "paused by an operator"),
    )
    # Due renewals are held when their charge comes up (charging.begin_charge), so a
    # dunning retry keeps its date if the subscription is resumed before it.
    return Outcome(
        f"subscription {sub.id}: {before} -> paused; nothing is charged until "
        f"`renewals resume {sub.id}`"
    )


# ----------------------------------------------------------------------------- resume


def _realign(sub: Subscription, now: datetime) -> list[int]:
    """Periods that began and ended while the subscription was paused are not billed: the
    next period to materialise becomes the one running now (whatever the catch-up policy),
    which the sweep then charges. Returns the skipped period indices."""
    if sub.next_renewal_at > now:
        return []
    last = sub.next_period_index - 1 if sub.next_period_index > 0 else None
    current = next_period_to_charge(
        sub.anchor,
        sub.interval,
        sub.interval_count,
        now=now,
        last_settled_index=last,
        policy=CatchUpPolicy.LATEST,
    )
    if current is None or current <= sub.next_period_index:
        return []
    skipped = list(range(sub.next_period_index, current))
    sub.next_period_index = current
    sub.next_renewal_at = period_start(sub.anchor, sub.interval, sub.interval_count, current)
    return skipped


def resume(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    sub, renewals = _lock(session, args["subscription_id"])
    if sub.status != SubscriptionStatus.PAUSED:
        raise Refusal(f"subscription {sub.id} is {sub.status}, not paused: nothing to resume")
    reason = reason_of(args, "resumed by an operator")
    transitions.move_subscription(
        session,
        sub,
        SubscriptionEvent.RESUMED_BY_OPERATOR,
        now=ctx.now,
        actor=ctx.actor,
        reason=reason,
    )
    skipped = _realign(sub, ctx.now)
    if skipped:
        transitions.note(
            session,
            now=ctx.now,
            actor=ctx.actor,
            action="periods_skipped_while_paused",
            subscription_id=sub.id,
            reason=reason,
            details={"skipped_periods": skipped},
        )
    # Renewals held while paused get their charge now, handed straight to a worker (and
    # leased against a second hand-off by the sweep).
    follow = FollowUps()
    for renewal in renewals:
        if renewal.status in _WAITING_TO_CHARGE and renewal.wake is None:
            transitions.reschedule(
                renewal,
                Wake(Work.CHARGE, ctx.now),
                now=ctx.now,
                lease_seconds=ctx.settings.lease_seconds,
            )
            follow.add(Work.CHARGE, renewal.id)
    held = (
        f"; renewal(s) {', '.join(map(str, follow.ids(Work.CHARGE)))} charged now"
        if (follow.work)
        else ""
    )
    gap = f"; periods {skipped} ended while paused and are not billed" if skipped else ""
    return Outcome(f"subscription {sub.id}: paused -> active{held}{gap}", follow)


# ------------------------------------------------------------------------------ retry


def retry(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    sub, renewals = _lock(session, args["subscription_id"])
    if is_halted(session):
        raise Refusal("charges are halted: `renewals unhalt` first")
    if sub.status == SubscriptionStatus.PAUSED:
        raise Refusal(f"subscription {sub.id} is paused: `renewals resume {sub.id}` charges it")
    _refuse_in_doubt(renewals, "retry")
    if sub.status not in CHARGEABLE_SUBSCRIPTION_STATUSES:
        raise Refusal(f"subscription {sub.id} is {sub.status}: nothing is charged off-session")
    renewal = next(
        (r for r in renewals if r.status in _WAITING_TO_CHARGE and r.wake is Work.CHARGE), None
    )
    if renewal is None:
        raise Refusal(
            f"subscription {sub.id} has no renewal waiting for a charge: nothing to retry"
        )
    in_dunning = renewal.status == RenewalStatus.RETRY_SCHEDULED and renewal.declines > 0
    if in_dunning:
        renewal.retry_requested_by = ctx.actor
    transitions.reschedule(
        renewal, Wake(Work.CHARGE, ctx.now), now=ctx.now, lease_seconds=ctx.settings.lease_seconds
    )
    transitions.note(
        session,
        now=ctx.now,
        actor=ctx.actor,
        action="retry_requested",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        reason=reason_of(args, "retried by an operator"),
        details={"declines": renewal.declines},
    )
    follow = FollowUps()
    follow.add(Work.CHARGE, renewal.id)
    kept = (
        f"; a decline counts no dunning failure ({renewal.declines} so far)" if in_dunning else ""
    )
    return Outcome(f"renewal {renewal.id}: a new attempt now{kept}", follow)


# ----------------------------------------------------------------------------- cancel


@dataclass(frozen=True, slots=True)
class Asked:
    """FastStar's word on the checkout sessions of each renewal waiting for its customer."""

    sessions: dict[int, tuple[str, ...]]
    answers: dict[int, dict[str, CheckoutSession]]
    answered: dict[int, bool]


def prepare_cancel(ctx: Context, args: Arguments) -> Asked:
    """Before any final action on a renewal waiting for its customer, every checkout session
    opened for it is checked with FastStar (no transaction is open meanwhile)."""
    if args.get("at_period_end"):
        return Asked({}, {}, {})
    with unit_of_work(ctx.engine) as session:
        waiting = session.scalars(
            select(Renewal.id)
            .where(Renewal.subscription_id == args["subscription_id"])
            .where(Renewal.status == RenewalStatus.REQUIRES_ACTION)
        ).all()
        sessions = {renewal_id: renewal_session_ids(session, renewal_id) for renewal_id in waiting}
    answers: dict[int, dict[str, CheckoutSession]] = {}
    answered: dict[int, bool] = {}
    for renewal_id, ids in sessions.items():
        answers[renewal_id], answered[renewal_id] = ask_sessions(ctx.faststar, ids, renewal_id)
    return Asked(sessions, answers, answered)


def cancel(ctx: Context, session: Session, args: Arguments, prepared: object) -> Outcome:
    sub, renewals = _lock(session, args["subscription_id"])
    reason = reason_of(args, "canceled by an operator")
    if sub.status == SubscriptionStatus.CANCELED:
        raise Refusal(f"subscription {sub.id} is canceled already")
    if args.get("at_period_end"):
        if sub.cancel_at_period_end:
            raise Refusal(f"subscription {sub.id} is set to cancel at its period's end already")
        sub.cancel_at_period_end = True
        transitions.note(
            session,
            now=ctx.now,
            actor=ctx.actor,
            action="cancel_at_period_end",
            subscription_id=sub.id,
            reason=reason,
        )
        return Outcome(
            f"subscription {sub.id}: cancels when its period ends "
            f"({sub.next_renewal_at.isoformat()}); nothing more is charged"
        )
    if not can_subscription_transition(sub.status, SubscriptionEvent.CANCELED_BY_OPERATOR):
        raise Refusal(f"subscription {sub.id} is {sub.status}: it cannot be canceled")
    _refuse_in_doubt(renewals, "cancel")
    asked = prepared if isinstance(prepared, Asked) else Asked({}, {}, {})
    watch: dict[int, Wake | None] = {}
    for renewal in renewals:
        if renewal.status != RenewalStatus.REQUIRES_ACTION:
            continue
        if asked.sessions.get(renewal.id) != renewal_session_ids(session, renewal.id):
            raise Refusal(
                f"renewal {renewal.id} opened a checkout session meanwhile: run the cancel again"
            )
        if not asked.answered.get(renewal.id, False):
            raise Refusal(
                f"FastStar did not answer about the checkout sessions of renewal {renewal.id}, "
                "which may have been paid: nothing was canceled; try again later"
            )
        paid = paid_session(asked.answers[renewal.id])
        if paid is not None:
            return _book_instead(ctx, session, sub.id, renewal.id, paid)
        watch[renewal.id] = late_watch(asked.answers[renewal.id], ctx.now, ctx.settings)
    before = sub.status
    transitions.move_subscription(
        session,
        sub,
        SubscriptionEvent.CANCELED_BY_OPERATOR,
        now=ctx.now,
        actor=ctx.actor,
        reason=reason,
    )
    ended = []
    for renewal in renewals:
        # A session still open is watched until it closes: a late payment becomes a refund
        # due (the follow-up's late watch), never a silent charge.
        transitions.move_renewal(
            session,
            renewal,
            RenewalEvent.ABANDONED,
            now=ctx.now,
            actor=ctx.actor,
            wake=watch.get(renewal.id),
            reason=reason,
        )
        ended.append(renewal.id)
    abandoned = f"; renewal(s) {', '.join(map(str, ended))} abandoned" if ended else ""
    return Outcome(f"subscription {sub.id}: {before} -> canceled{abandoned}")


def _book_instead(
    ctx: Context, session: Session, subscription_id: int, renewal_id: int, paid: CheckoutSession
) -> Outcome:
    """The customer paid while the operator was deciding: the payment is booked and the
    subscription is not canceled; the operator is told (and may cancel again)."""
    payment = session_payment(paid)
    applied = apply_reported_payment(
        session, payment, source=ctx.actor, now=ctx.now, settings=ctx.settings
    )
    if applied.review is not None:
        open_unmatched_review(session, payment, applied.review, source=ctx.actor, now=ctx.now)
    follow = FollowUps()
    follow.add(Work.DELIVER, applied.receipt_id)
    return Outcome(
        f"not canceled: checkout session {paid.id} of renewal {renewal_id} was paid "
        f"({paid.payment_intent_id}), {applied.outcome}; `renewals cancel {subscription_id}` "
        "again if the subscription must end",
        follow,
        ok=False,
    )
