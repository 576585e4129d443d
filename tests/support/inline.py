"""Running the engine in the test process: the same services the tasks call, in order,
with the test's clock. (The worker tests run the same through a real Celery worker.)"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import AuditEvent
from renewals.models.db import unit_of_work
from renewals.notifications.delivery import deliver
from renewals.notifications.senders import sender_from_url
from renewals.scheduler.sweep import SweepResult, sweep
from renewals.services.charging import FollowUps, charge_renewal
from renewals.services.checkout import ensure_checkout_session, follow_up_action_required
from renewals.services.reconciliation import (
    poll_checkout_session,
    process_inbox_event,
    recheck_unknown,
)
from renewals.services.subscriptions import subscription_views
from tests.support.factories import Clock


def run_follow_ups(
    engine: Engine, client: FastStarClient, settings: Settings, clock: Clock, follow: FollowUps
) -> None:
    sender = sender_from_url(settings.mail_url)
    for renewal_id in follow.checkout_renewal_ids:
        more = ensure_checkout_session(engine, client, renewal_id, clock=clock, settings=settings)
        run_follow_ups(engine, client, settings, clock, more)
    for message_id in follow.deliver_message_ids:
        deliver(engine, message_id, clock=clock, settings=settings, sender=sender)


def run_sweep(
    engine: Engine, client: FastStarClient, settings: Settings, clock: Clock
) -> SweepResult:
    """One sweep and every task it would enqueue, run inline."""
    with unit_of_work(engine) as session:
        result = sweep(session, now=clock(), settings=settings)
    follow = FollowUps(
        checkout_renewal_ids=list(result.checkout), deliver_message_ids=list(result.deliver)
    )
    for renewal_id in result.action_follow_up:
        more = follow_up_action_required(engine, client, renewal_id, clock=clock, settings=settings)
        follow.deliver_message_ids += more.deliver_message_ids
    for inbox_id in result.webhooks:
        more = process_inbox_event(engine, inbox_id, clock=clock, settings=settings)
        follow.deliver_message_ids += more.deliver_message_ids
    for renewal_id in result.recheck_unknown:
        more = recheck_unknown(engine, client, renewal_id, clock=clock, settings=settings)
        follow.deliver_message_ids += more.deliver_message_ids
    for renewal_id in result.poll_checkout:
        more = poll_checkout_session(engine, client, renewal_id, clock=clock, settings=settings)
        follow.deliver_message_ids += more.deliver_message_ids
    for renewal_id in result.charge:
        more = charge_renewal(engine, client, renewal_id, clock=clock, settings=settings)
        follow.checkout_renewal_ids += more.checkout_renewal_ids
        follow.deliver_message_ids += more.deliver_message_ids
    run_follow_ups(engine, client, settings, clock, follow)
    return result


def view(engine: Engine, subscription_id: int) -> dict[str, Any]:
    from renewals.models import Subscription

    with unit_of_work(engine) as session:
        sub = session.get_one(Subscription, subscription_id)
        return subscription_views(session, [sub])[0]


def audit_actions(engine: Engine, subscription_id: int) -> list[str]:
    with unit_of_work(engine) as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subscription_id == subscription_id)
                .order_by(AuditEvent.id)
            )
        )
