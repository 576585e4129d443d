"""Operator commands on payments: reconcile an unknown outcome, resolve a review."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.domain.states import (
    RenewalEvent,
    RenewalStatus,
    ReviewStatus,
    SubscriptionEvent,
    can_renewal_transition,
    can_subscription_transition,
)
from renewals.domain.work import Work
from renewals.models import PaymentReview, Renewal
from renewals.services.booking import book, lock_renewal
from renewals.services.commands.base import Arguments, Context, Outcome, Refusal, reason_of
from renewals.services.followups import FollowUps
from renewals.services.payments import book_unknown_attempt
from renewals.services.reconcile import resolve_unknown_as_not_charged


def _booked_on(session: Session, payment_intent_id: str) -> int | None:
    return session.scalar(select(Renewal.id).where(Renewal.payment_intent_id == payment_intent_id))


# -------------------------------------------------------------------------- reconcile


def check_reconcile(args: Arguments) -> str | None:
    paid, not_charged = args.get("paid"), bool(args.get("not_charged"))
    if (paid is None) == (not not_charged):
        return "give exactly one of paid (a pi_ id) or not_charged"
    if paid is not None and not str(paid).startswith("pi_"):
        return "a FastStar payment id starts with pi_"
    if not_charged and not args.get("reason"):
        return "not_charged needs a reason"
    return None


def reconcile(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    """Settle a renewal whose charge outcome is unknown (``renewals reconcile``)."""
    renewal_id: int = args["renewal_id"]
    status = session.scalar(select(Renewal.status).where(Renewal.id == renewal_id))
    if status is None:
        raise Refusal(f"no renewal {renewal_id}: `renewals unknown` lists the unknown ones")
    if status != RenewalStatus.UNKNOWN:
        raise Refusal(f"renewal {renewal_id} is {status}: only an unknown outcome is reconciled")
    paid = args.get("paid")
    if paid is None:
        outcome = resolve_unknown_as_not_charged(
            session, renewal_id, now=ctx.now, actor=ctx.actor, reason=str(args["reason"])
        )
        if not outcome.startswith("resolved"):
            raise Refusal(f"renewal {renewal_id}: {outcome}")
        return Outcome(f"renewal {renewal_id}: {outcome}")
    booked_on = _booked_on(session, paid)
    if booked_on is not None:
        raise Refusal(f"{paid} is already booked on renewal {booked_on}")
    applied = book_unknown_attempt(
        session,
        renewal_id,
        paid,
        actor=ctx.actor,
        reason=reason_of(args, "confirmed paid by an operator"),
        now=ctx.now,
        settings=ctx.settings,
    )
    if applied.outcome != "unknown resolved as paid":
        raise Refusal(f"renewal {renewal_id}: {applied.outcome}")
    follow = FollowUps()
    follow.add(Work.DELIVER, applied.receipt_id)
    return Outcome(f"renewal {renewal_id}: {applied.outcome}", follow)


# --------------------------------------------------------------------- resolve review

RESOLUTIONS = ("refunded", "dismissed", "book")


def check_resolve_review(args: Arguments) -> str | None:
    resolution = args.get("resolution")
    if resolution not in RESOLUTIONS:
        return f"resolution must be one of {', '.join(RESOLUTIONS)}"
    if (resolution == "book") != (args.get("renewal_id") is not None):
        return "renewal_id goes with resolution book, and only with it"
    if not args.get("reason"):
        return "a review is resolved with a reason"
    return None


def resolve_review(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    """Close a review: the payment was refunded, the review is dismissed, or its payment is
    booked on a renewal that can take it (through the one booking code)."""
    review_id: int = args["review_id"]
    review = session.scalars(
        select(PaymentReview).where(PaymentReview.id == review_id).with_for_update()
    ).one_or_none()
    if review is None:
        raise Refusal(f"no review {review_id}: `renewals reviews` lists the open ones")
    if review.status != ReviewStatus.OPEN.value:
        raise Refusal(f"review {review_id} is resolved already: {review.resolution}")
    reason = str(args["reason"])
    if args["resolution"] != "book":
        resolution = f"{args['resolution']}: {reason}"
        transitions.resolve_review(
            session, review, now=ctx.now, actor=ctx.actor, resolution=resolution
        )
        return Outcome(f"review {review_id} resolved ({resolution})")
    return _book_review(ctx, session, review, args["renewal_id"], reason)


def _book_review(
    ctx: Context, session: Session, review: PaymentReview, renewal_id: int, reason: str
) -> Outcome:
    payment = review.payment_intent_id
    if payment is None:
        raise Refusal(f"review {review.id} names no payment: nothing to book; --dismiss it")
    booked_on = _booked_on(session, payment)
    if booked_on is not None:
        raise Refusal(f"{payment} is already booked on renewal {booked_on}")
    locked = lock_renewal(session, renewal_id)
    if locked is None:
        raise Refusal(f"no renewal {renewal_id}")
    renewal, sub = locked.renewal, locked.sub
    if review.currency != renewal.currency or review.amount < renewal.amount:
        raise Refusal(
            f"{payment} ({review.amount} {review.currency}) does not pay renewal {renewal_id} "
            f"({renewal.amount} {renewal.currency})"
        )
    if renewal.payment_intent_id is not None:
        raise Refusal(
            f"renewal {renewal_id} is paid already ({renewal.payment_intent_id}): a second "
            "payment is refunded (--refunded once done)"
        )
    follow = FollowUps()
    if renewal.status == RenewalStatus.UNKNOWN:
        applied = book_unknown_attempt(
            session,
            renewal_id,
            payment,
            actor=ctx.actor,
            reason=reason,
            now=ctx.now,
            settings=ctx.settings,
        )
        if applied.outcome != "unknown resolved as paid":
            raise Refusal(f"renewal {renewal_id}: {applied.outcome}")
        follow.add(Work.DELIVER, applied.receipt_id)
        how = "its unknown attempt resolved as paid"
    elif can_renewal_transition(
        renewal.status, RenewalEvent.PAID_ON_SESSION
    ) and can_subscription_transition(sub.status, SubscriptionEvent.PAID_ON_SESSION):
        follow.add(
            Work.DELIVER,
            book(
                session,
                locked,
                payment,
                renewal_event=RenewalEvent.PAID_ON_SESSION,
                actor=ctx.actor,
                now=ctx.now,
                settings=ctx.settings,
                reason=reason,
            ),
        )
        how = "paid on session"
    else:
        raise Refusal(
            f"renewal {renewal_id} is {renewal.status} (subscription {sub.status}): it cannot "
            "take this payment; --refunded or --dismiss the review"
        )
    if review.status == ReviewStatus.OPEN.value:  # booking closes the payment's reviews
        transitions.resolve_review(
            session, review, now=ctx.now, actor=ctx.actor, resolution=f"booked: {reason}"
        )
    return Outcome(f"review {review.id}: {payment} booked on renewal {renewal_id}, {how}", follow)
