"""Bringing the customer back on-session after a 402: Checkout Sessions and their emails.

Two entry points, each two short transactions around at most one FastStar call:

* :func:`ensure_checkout_session` creates the renewal's first session and queues the
  "action required" email with its link. If the call fails the renewal keeps no session and
  the sweep hands it back later.
* :func:`follow_up_action_required` runs when the renewal's ``action_wakeup_at`` comes
  (:class:`~renewals.domain.dunning.ActionRequiredPolicy` is the timeline): it sends the due
  reminder, first replacing a link that has expired with a fresh session, or, once the
  timeline has run out, fails the renewal and applies the final action.

Sessions are created with an idempotency key derived from the renewal's attempt key, so a
retried task does not open a second session where FastStar honours keys (and a second open
session where it does not is harmless: it charges nothing by itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from renewals.config import Settings
from renewals.domain.dunning import ActionRequiredPolicy
from renewals.domain.states import (
    RenewalEvent,
    RenewalStatus,
    can_subscription_transition,
    renewal_transition,
    subscription_transition,
)
from renewals.faststar import CheckoutSession, FastStarClient, FastStarError, LineItem
from renewals.models import (
    ChargeAttempt,
    CheckoutSessionRecord,
    Customer,
    Renewal,
    Subscription,
)
from renewals.models.db import unit_of_work
from renewals.notifications.notices import queue_final_failure
from renewals.notifications.outbox import queue_email
from renewals.services.audit import audit
from renewals.services.charging import FollowUps, action_required_policy

log = structlog.get_logger(__name__)

ACTION_REQUIRED_EMAIL = "action_required"
REMINDER_EMAIL = "action_reminder"


@dataclass(frozen=True, slots=True)
class _SessionRequest:
    renewal_id: int
    amount: int
    currency: str
    price_id: str | None
    key: str


def _session_request(session: Session, renewal: Renewal, sub: Subscription) -> _SessionRequest:
    key = session.scalar(
        select(ChargeAttempt.idempotency_key)
        .where(ChargeAttempt.renewal_id == renewal.id)
        .order_by(ChargeAttempt.number.desc())
        .limit(1)
    )
    base = f"{key or renewal.id}-checkout"
    # A refreshed link gets a key of its own: the old key would replay the expired session.
    suffix = f"-{renewal.reminders_sent}" if renewal.checkout_session_id else ""
    return _SessionRequest(
        renewal.id, renewal.amount, renewal.currency, sub.price_id, base + suffix
    )


def _create_session(
    client: FastStarClient, request: _SessionRequest, settings: Settings
) -> CheckoutSession | None:
    """Call FastStar (no transaction is open here); None if it could not be done now."""
    if settings.merchant_of_record:
        if not request.price_id:
            log.error("checkout_needs_price_id", renewal_id=request.renewal_id)
            return None
        item = LineItem(price_id=request.price_id, quantity=1)
    else:
        item = LineItem(ad_hoc_amount=request.amount, ad_hoc_currency=request.currency)
    try:
        return client.create_checkout_session(
            mode="payment",
            presentation="link",
            line_items=[item],
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
            idempotency_key=request.key,
        )
    except FastStarError as exc:
        log.warning("checkout_session_failed", renewal_id=request.renewal_id, error=str(exc))
        return None


def _store_session(
    session: Session,
    renewal: Renewal,
    checkout: CheckoutSession,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    session.add(
        CheckoutSessionRecord(session_id=checkout.id, renewal_id=renewal.id, created_at=now)
    )
    renewal.checkout_poll_at = (
        now + timedelta(seconds=settings.checkout_poll_interval)
        if settings.checkout_poll_interval
        else None
    )
    renewal.checkout_session_id = checkout.id
    renewal.checkout_url = checkout.url
    renewal.checkout_expires_at = (
        datetime.fromtimestamp(checkout.expires_at, UTC) if checkout.expires_at else None
    )


def _link_context(
    renewal: Renewal, policy: ActionRequiredPolicy, entered: datetime
) -> dict[str, object]:
    return {
        "amount": renewal.amount,
        "currency": renewal.currency,
        "period_start": renewal.period_start.isoformat(),
        "checkout_url": renewal.checkout_url,
        "checkout_expires_at": (
            renewal.checkout_expires_at.isoformat() if renewal.checkout_expires_at else None
        ),
        "final_action_at": policy.final_action_at(entered).isoformat(),
        "final_action": policy.final_action.value,
    }


def _lock(session: Session, renewal_id: int) -> tuple[Renewal, Subscription, Customer] | None:
    row = session.execute(
        select(Renewal, Subscription, Customer)
        .join(Subscription, Subscription.id == Renewal.subscription_id)
        .join(Customer, Customer.id == Subscription.customer_id)
        .where(Renewal.id == renewal_id)
        .with_for_update(of=[Renewal, Subscription])
    ).one_or_none()
    return (row[0], row[1], row[2]) if row else None


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
        locked = _lock(session, renewal_id)
        if locked is None:
            return FollowUps()
        renewal, sub, _ = locked
        if renewal.status != RenewalStatus.REQUIRES_ACTION or renewal.checkout_session_id:
            return FollowUps()
        request = _session_request(session, renewal, sub)

    checkout = _create_session(client, request, settings)
    if checkout is None:
        return FollowUps()  # the sweep retries renewals in requires_action without a session

    now = clock()
    follow = FollowUps()
    policy = action_required_policy(settings)
    with unit_of_work(engine) as session:
        locked = _lock(session, renewal_id)
        assert locked is not None
        renewal, sub, customer = locked
        if renewal.checkout_session_id or renewal.status != RenewalStatus.REQUIRES_ACTION:
            return follow
        _store_session(session, renewal, checkout, now=now, settings=settings)
        entered = renewal.action_required_at or now
        renewal.lease_expires_at = None
        renewal.action_wakeup_at = policy.next_wakeup_at(entered, renewal.reminders_sent)
        renewal.updated_at = now
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
            context=_link_context(renewal, policy, entered),
        )
        if message_id is not None:
            follow.deliver_message_ids.append(message_id)
    return follow


def _expire(
    session: Session,
    renewal: Renewal,
    sub: Subscription,
    customer: Customer,
    policy: ActionRequiredPolicy,
    *,
    now: datetime,
) -> int | None:
    """The customer never paid on-session: the renewal fails, the final action applies."""
    previous = renewal.status
    renewal.status = renewal_transition(renewal.status, RenewalEvent.ACTION_EXPIRED)
    renewal.action_wakeup_at = None
    renewal.lease_expires_at = None
    renewal.updated_at = now
    event = policy.final_action.subscription_event
    if can_subscription_transition(sub.status, event):
        audit(
            session,
            now=now,
            actor="worker",
            action=f"subscription_{event}",
            subscription_id=sub.id,
            from_status=sub.status,
            to_status=policy.final_action.subscription_status,
            reason="authentication_expired",
        )
        sub.status = subscription_transition(sub.status, event)
        sub.status_changed_at = now
    audit(
        session,
        now=now,
        actor="worker",
        action="action_expired",
        subscription_id=sub.id,
        renewal_id=renewal.id,
        from_status=previous,
        to_status=renewal.status,
    )
    return queue_final_failure(
        session,
        renewal,
        customer,
        now=now,
        final_action=policy.final_action.value,
        reason="the payment was not confirmed",
    )


def follow_up_action_required(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """Send the due reminder (with a live link), or apply the final action when time is up."""
    policy = action_required_policy(settings)
    follow = FollowUps()
    now = clock()
    with unit_of_work(engine) as session:
        locked = _lock(session, renewal_id)
        if locked is None or locked[0].status != RenewalStatus.REQUIRES_ACTION:
            return follow
        renewal, sub, customer = locked
        entered = renewal.action_required_at or now
        if policy.is_expired(entered, now):
            message_id = _expire(session, renewal, sub, customer, policy, now=now)
            follow.deliver_message_ids += [message_id] if message_id is not None else []
            return follow
        due = policy.reminders_due(entered, now, already_sent=renewal.reminders_sent)
        if not due:
            renewal.action_wakeup_at = policy.next_wakeup_at(entered, renewal.reminders_sent)
            renewal.lease_expires_at = None
            return follow
        stale = policy.link_needs_refresh(renewal.checkout_expires_at, now)
        request = _session_request(session, renewal, sub)
        session_id = renewal.checkout_session_id

    if not stale and session_id is not None:
        # FastStar may have closed the session early (or the customer may be paying right
        # now): ask, rather than trusting our copy of its expiry.
        try:
            status = client.get_checkout_session(session_id).status
        except FastStarError as exc:
            log.warning("checkout_status_unavailable", renewal_id=renewal_id, error=str(exc))
            return follow  # the lease expires and the sweep tries again
        if status == "complete":
            return follow  # paid on-session: completion is recorded by reconciliation
        stale = status != "open"
    fresh = _create_session(client, request, settings) if stale else None
    if stale and fresh is None:
        return follow  # no live link to send yet: the lease expires and the sweep retries

    now = clock()
    with unit_of_work(engine) as session:
        locked = _lock(session, renewal_id)
        assert locked is not None
        renewal, sub, customer = locked
        if renewal.status != RenewalStatus.REQUIRES_ACTION or renewal.reminders_sent >= due[-1]:
            return follow
        if fresh is not None:
            _store_session(session, renewal, fresh, now=now, settings=settings)
            audit(
                session,
                now=now,
                actor="worker",
                action="checkout_session_refreshed",
                subscription_id=sub.id,
                renewal_id=renewal.id,
                details={"checkout_session_id": fresh.id},
            )
        # After downtime several reminders may be due: one email, all recorded as sent.
        renewal.reminders_sent = due[-1]
        renewal.action_wakeup_at = policy.next_wakeup_at(entered, renewal.reminders_sent)
        renewal.lease_expires_at = None
        renewal.updated_at = now
        context = _link_context(renewal, policy, entered)
        context["last_reminder"] = due[-1] == len(policy.reminder_days)
        message_id = queue_email(
            session,
            now=now,
            subscription_id=sub.id,
            renewal_id=renewal.id,
            period_start=renewal.period_start,
            kind=REMINDER_EMAIL,
            sequence=due[-1],
            recipient=customer.email,
            context=context,
        )
        if message_id is not None:
            follow.deliver_message_ids.append(message_id)
    return follow
