"""Running the engine in the test process: the same table of services the tasks run
(``renewals.services.work.SERVICES``), in order, with the test's clock. (The worker tests
run the same through a real Celery worker.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models import AuditEvent
from renewals.models.db import unit_of_work
from renewals.notifications.senders import Sender, sender_from_url
from renewals.services.followups import FollowUps
from renewals.services.subscriptions import subscription_views
from renewals.services.sweep import sweep
from renewals.services.work import SERVICES
from tests.support.factories import Clock


@dataclass(frozen=True)
class InlineDeps:
    settings: Settings
    engine: Engine
    faststar: FastStarClient
    sender: Sender
    test_clock: Clock

    def clock(self) -> Any:
        return self.test_clock()


def deps(engine: Engine, client: FastStarClient, settings: Settings, clock: Clock) -> InlineDeps:
    return InlineDeps(settings, engine, client, sender_from_url(settings.mail_url), clock)


def run_follow_ups(
    engine: Engine, client: FastStarClient, settings: Settings, clock: Clock, follow: FollowUps
) -> FollowUps:
    """Run every piece of handed-on work, and what it hands on, until nothing is left;
    returns everything that ran."""
    ran = FollowUps()
    d = deps(engine, client, settings, clock)
    queue = list(follow.work)
    while queue:
        kind, item_id = queue.pop(0)
        ran.add(kind, item_id)
        queue += SERVICES[kind](d, item_id).work
    return ran


def run_sweep(
    engine: Engine, client: FastStarClient, settings: Settings, clock: Clock
) -> FollowUps:
    """One sweep and every task it would enqueue (and theirs), run inline; returns what the
    sweep claimed."""
    with unit_of_work(engine) as session:
        claimed = sweep(session, now=clock(), settings=settings)
    run_follow_ups(engine, client, settings, clock, claimed)
    return claimed


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
