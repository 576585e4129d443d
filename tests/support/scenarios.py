"""Every call the "money after the fact" regression tests make into the engine, in one place:
if a service's signature changes, this module is the one to adapt.

The helpers take the test's engine, settings and clock, and return plain ORM rows (sessions
do not expire on commit, so the attributes stay readable) or dicts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import SubscriptionEvent
from renewals.domain.work import Work
from renewals.faststar import ChargeOutcome, FastStarClient, WebhookEvent
from renewals.models import (
    AuditEvent,
    Customer,
    InboxEvent,
    OutboxMessage,
    PaymentMethod,
    Renewal,
    Subscription,
)
from renewals.models.db import unit_of_work
from renewals.notifications.notices import FINAL_FAILURE
from renewals.sandbox.testing import RunningSandbox, envelope_data
from renewals.services.charge_checks import ChargeOrder, begin_charge
from renewals.services.charge_outcomes import record_outcome
from renewals.services.checkout import REMINDER_EMAIL
from renewals.services.followups import FollowUps
from renewals.services.inbox import process_inbox_event
from renewals.services.operators import payments_to_review
from renewals.services.reconcile import reconcile_paid, resolve_unknown_as_not_charged
from renewals.services.subscriptions import SavedCard, create_subscription
from renewals.services.sweep import sweep
from renewals.webhooks.inbox import store_event
from tests.support.factories import Clock

__all__ = [
    "ACTION_REMINDER_KIND",
    "DOCUMENTED_PAYMENT_FIELDS",
    "FINAL_FAILURE_KIND",
    "Work",
    "attach_card",
    "audit_rows",
    "begin",
    "cancel_by_operator",
    "customer_of",
    "deliver_event",
    "documented",
    "inbox_event",
    "only_renewal",
    "open_reviews",
    "operator_not_charged",
    "operator_paid",
    "outbox_kinds",
    "record",
    "renewal",
    "subscribe",
    "subscription",
    "sweep_only",
    "switch_card",
]

FINAL_FAILURE_KIND = FINAL_FAILURE
ACTION_REMINDER_KIND = REMINDER_EMAIL
# FastStar's documented ``data`` of a payment event (faststar-api.md, Part A): nothing else.
DOCUMENTED_PAYMENT_FIELDS = ("payment_id", "amount", "currency", "status")


# --------------------------------------------------------------------------- webhooks


def documented(event: dict[str, Any]) -> dict[str, Any]:
    """The event as FastStar documents it: ``data`` cut down to the documented fields (no
    customer_id, no checkout_session_id, no payment_method_id)."""
    data = event["data"]
    return {**event, "data": {k: data[k] for k in DOCUMENTED_PAYMENT_FIELDS}}


def deliver_event(engine: Engine, settings: Settings, clock: Clock, event: dict[str, Any]) -> int:
    """Store a webhook event in the inbox and process it at once (what the receiver and its
    task do, without HTTP). Returns the inbox id."""
    webhook = WebhookEvent(
        id=event["id"],
        type=event["type"],
        created=event["created"],
        data=dict(event["data"]),
        livemode=event.get("livemode", False),
        api_version=event.get("api_version", "v1"),
    )
    inbox_id = store_event(engine, webhook, now=clock())
    assert inbox_id is not None, f"event {event['id']} was already stored"
    process_inbox_event(engine, inbox_id, clock=clock, settings=settings)
    return inbox_id


def inbox_event(engine: Engine, inbox_id: int) -> InboxEvent:
    with unit_of_work(engine) as session:
        return session.get_one(InboxEvent, inbox_id)


# --------------------------------------------------------------------------- operators


def operator_paid(
    engine: Engine, settings: Settings, clock: Clock, renewal_id: int, payment_intent_id: str
) -> str:
    """An operator books the unknown renewal as paid with ``payment_intent_id``."""
    outcome, _ = reconcile_paid(
        engine,
        renewal_id,
        payment_intent_id,
        now=clock(),
        settings=settings,
        actor="operator:alice",
        reason="FastStar dashboard shows the payment",
    )
    return outcome


def operator_not_charged(engine: Engine, clock: Clock, renewal_id: int) -> str:
    with unit_of_work(engine) as session:
        return resolve_unknown_as_not_charged(
            session,
            renewal_id,
            now=clock(),
            actor="operator:alice",
            reason="FastStar support: no such charge",
        )


def open_reviews(engine: Engine) -> list[dict[str, Any]]:
    """The payments operators still have to act on (open reviews only)."""
    with unit_of_work(engine) as session:
        return payments_to_review(session)


def cancel_by_operator(engine: Engine, subscription_id: int, now: datetime) -> None:
    """No operator command exists yet (it comes with the task-queue commands): the test
    moves the subscription through the state owner as that command will."""
    with unit_of_work(engine) as session:
        sub = session.get_one(Subscription, subscription_id, with_for_update=True)
        transitions.move_subscription(
            session, sub, SubscriptionEvent.CANCELED_BY_OPERATOR, now=now, actor="operator:test"
        )


# --------------------------------------------------------------------------- engine steps


def sweep_only(engine: Engine, settings: Settings, clock: Clock) -> FollowUps:
    """One sweep, running none of the tasks it hands out (e.g. to charge by hand)."""
    with unit_of_work(engine) as session:
        return sweep(session, now=clock(), settings=settings)


def begin(engine: Engine, settings: Settings, clock: Clock, renewal_id: int) -> ChargeOrder:
    """Step 1 of a charge: the attempt is committed; the charge call is the caller's."""
    with unit_of_work(engine) as session:
        order = begin_charge(session, renewal_id, now=clock(), settings=settings)
    assert isinstance(order, ChargeOrder), order
    return order


def record(
    engine: Engine, settings: Settings, clock: Clock, order: ChargeOrder, outcome: ChargeOutcome
) -> FollowUps:
    """Step 3 of a charge: record what FastStar answered."""
    with unit_of_work(engine) as session:
        return record_outcome(session, order, outcome, now=clock(), settings=settings)


# --------------------------------------------------------------------------- customers


def attach_card(
    settings: Settings, sandbox: RunningSandbox, customer_id: str, number: str
) -> SavedCard:
    """Attach one more test card to an existing sandbox customer (the seed guide's steps)."""
    with sandbox.api_client(timeout=10.0) as http:
        intent = envelope_data(http.post(f"/public/customers/{customer_id}/setup-intent"))
        setup_intent_id = str(intent["setup_intent_id"])
        sandbox.add_card(setup_intent_id, number)
        attached = envelope_data(
            http.post(
                f"/public/customers/{customer_id}/payment-methods",
                json={"setup_intent_id": setup_intent_id},
            )
        )
    pm = str(attached["id"])
    api_key = settings.faststar_api_key.get_secret_value()
    with FastStarClient(settings.faststar_base_url, api_key) as client:
        card = next(c for c in client.list_payment_methods(customer_id) if c.id == pm)
    return SavedCard(customer_id, pm, card.brand, card.last4, card.exp_month, card.exp_year)


def subscribe(
    engine: Engine,
    settings: Settings,
    card: SavedCard,
    *,
    renews_at: datetime,
    amount: int = 1999,
    currency: str = "USD",
) -> int:
    """A monthly subscription on ``card`` (whose customer may already have others)."""
    with unit_of_work(engine) as session:
        sub = create_subscription(
            session,
            now=renews_at,
            settings=settings,
            email=f"{card.customer_id}@example.com",
            name="Buyer",
            card=card,
            amount=amount,
            currency=currency,
            interval="month",
            interval_count=1,
            renews_at=renews_at,
        )
        return sub.id


def switch_card(engine: Engine, subscription_id: int, card: SavedCard, now: datetime) -> None:
    """Point the subscription at another saved card of its customer (a direct update)."""
    with unit_of_work(engine) as session:
        sub = session.get_one(Subscription, subscription_id)
        method = PaymentMethod(
            faststar_id=card.payment_method_id,
            customer_id=sub.customer_id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            created_at=now,
        )
        session.add(method)
        session.flush()
        sub.payment_method_id = method.id


def customer_of(engine: Engine, subscription_id: int) -> str:
    """The subscription's FastStar customer id (``cus_…``)."""
    with unit_of_work(engine) as session:
        return session.scalars(
            select(Customer.faststar_id)
            .join(Subscription, Subscription.customer_id == Customer.id)
            .where(Subscription.id == subscription_id)
        ).one()


# --------------------------------------------------------------------------- reading state


def renewal(engine: Engine, renewal_id: int) -> Renewal:
    with unit_of_work(engine) as session:
        return session.get_one(Renewal, renewal_id)


def only_renewal(engine: Engine, subscription_id: int) -> Renewal:
    """The subscription's one renewal (the tests bill a single period)."""
    with unit_of_work(engine) as session:
        return session.scalars(
            select(Renewal).where(Renewal.subscription_id == subscription_id)
        ).one()


def subscription(engine: Engine, subscription_id: int) -> Subscription:
    with unit_of_work(engine) as session:
        return session.get_one(Subscription, subscription_id)


def audit_rows(
    engine: Engine, *, renewal_id: int | None = None, subscription_id: int | None = None
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if renewal_id is not None:
        query = query.where(AuditEvent.renewal_id == renewal_id)
    if subscription_id is not None:
        query = query.where(AuditEvent.subscription_id == subscription_id)
    with unit_of_work(engine) as session:
        return list(session.scalars(query))


def outbox_kinds(engine: Engine, *, renewal_id: int) -> list[str]:
    """The kinds of the emails queued for a renewal, oldest first."""
    with unit_of_work(engine) as session:
        return list(
            session.scalars(
                select(OutboxMessage.kind)
                .where(OutboxMessage.renewal_id == renewal_id)
                .order_by(OutboxMessage.id)
            )
        )
