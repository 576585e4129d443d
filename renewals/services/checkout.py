"""Bringing the customer back on-session after a 402: a Checkout Session and an email.

Like a charge, this is two short transactions around one FastStar call. The session is
created with an idempotency key derived from the renewal's attempt key, so a retried task
does not open a second session where FastStar honours keys (and a second open session where
it does not is harmless: it charges nothing by itself). If the call fails the renewal keeps
no session, and the sweep hands it back to this service later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.domain.dunning import ActionRequiredPolicy, FinalAction
from renewals.domain.states import RenewalStatus
from renewals.faststar import FastStarClient, FastStarError, LineItem
from renewals.models import ChargeAttempt, Customer, Renewal, Subscription
from renewals.models.db import unit_of_work
from renewals.notifications.outbox import queue_email
from renewals.services.audit import audit
from renewals.services.charging import FollowUps

log = structlog.get_logger(__name__)

ACTION_REQUIRED_EMAIL = "action_required"


def action_required_policy(settings: Settings) -> ActionRequiredPolicy:
    return ActionRequiredPolicy(final_action=FinalAction(settings.final_action))


def ensure_checkout_session(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """Create the renewal's Checkout Session if it has none, and queue the email with its link."""
    with unit_of_work(engine) as session:
        row = session.execute(
            select(Renewal, Subscription)
            .join(Subscription, Subscription.id == Renewal.subscription_id)
            .where(Renewal.id == renewal_id)
        ).one_or_none()
        if row is None:
            return FollowUps()
        renewal, sub = row
        if renewal.status != RenewalStatus.REQUIRES_ACTION or renewal.checkout_session_id:
            return FollowUps()
        key = session.scalar(
            select(ChargeAttempt.idempotency_key)
            .where(ChargeAttempt.renewal_id == renewal.id)
            .order_by(ChargeAttempt.number.desc())
            .limit(1)
        )
        amount, currency, price_id = renewal.amount, renewal.currency, sub.price_id

    if settings.merchant_of_record:
        if not price_id:
            log.error("checkout_needs_price_id", renewal_id=renewal_id)
            return FollowUps()
        item = LineItem(price_id=price_id, quantity=1)
    else:
        item = LineItem(ad_hoc_amount=amount, ad_hoc_currency=currency, quantity=1)
    try:
        checkout = client.create_checkout_session(
            mode="payment",
            presentation="link",
            line_items=[item],
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
            idempotency_key=f"{key or renewal_id}-checkout",
        )
    except FastStarError as exc:
        # The sweep retries renewals in requires_action that have no session.
        log.warning("checkout_session_failed", renewal_id=renewal_id, error=str(exc))
        return FollowUps()

    now = clock()
    follow = FollowUps()
    with unit_of_work(engine) as session:
        renewal = session.get_one(Renewal, renewal_id, with_for_update=True)
        if renewal.checkout_session_id or renewal.status != RenewalStatus.REQUIRES_ACTION:
            return follow
        sub = session.get_one(Subscription, renewal.subscription_id)
        customer = session.get_one(Customer, sub.customer_id)
        expires_at = (
            datetime.fromtimestamp(checkout.expires_at, UTC) if checkout.expires_at else None
        )
        renewal.checkout_session_id = checkout.id
        renewal.checkout_url = checkout.url
        renewal.checkout_expires_at = expires_at
        renewal.lease_expires_at = None
        renewal.updated_at = now
        entered = renewal.action_required_at or now
        final_at = action_required_policy(settings).final_action_at(entered)
        audit(
            session,
            now=now,
            actor="worker",
            action="checkout_session_created",
            subscription_id=sub.id,
            renewal_id=renewal.id,
            details={"checkout_session_id": checkout.id},
        )
        message_id = queue_email(
            session,
            now=now,
            subscription_id=sub.id,
            renewal_id=renewal.id,
            period_start=renewal.period_start,
            kind=ACTION_REQUIRED_EMAIL,
            sequence=0,
            recipient=customer.email,
            context={
                "amount": renewal.amount,
                "currency": renewal.currency,
                "period_start": renewal.period_start.isoformat(),
                "checkout_url": checkout.url,
                "checkout_expires_at": expires_at.isoformat() if expires_at else None,
                "final_action_at": final_at.isoformat(),
                "final_action": settings.final_action,
            },
        )
        if message_id is not None:
            follow.deliver_message_ids.append(message_id)
    return follow
