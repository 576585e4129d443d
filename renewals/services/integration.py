"""Changes a merchant's backend makes to one subscription: its price from the next period,
its card. (Create is :mod:`renewals.services.imports`' path, pause and cancel the operator
commands'.) Each locks the subscription row, as the sweep and the charge path do.

"From the next period", precisely: a change applies to every period that **starts after
the change is made**, that is from index ``max(next_period_index, current + 1)``, where
``current`` is the period running now. A period that has started keeps its price even when
the sweep has not materialised its renewal yet, and a renewal once materialised is never
re-priced, whatever its status (pending, claimed, charging, in dunning). The change waits
in ``pending_*`` until the sweep materialises the first period it applies to, and is
folded into the subscription in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.money import InvalidChargeError, validate_charge
from renewals.domain.periods import period_index_at
from renewals.domain.states import SubscriptionStatus
from renewals.domain.subscription_input import (
    SubscriptionInputError,
    check_external_id,
    check_faststar_id,
)
from renewals.models import PaymentMethod, Subscription


class NotFound(LookupError):
    """No subscription with that id or external id."""


class Refused(ValueError):
    """The change is well-formed but cannot be made in the subscription's state."""


# A number is our id; text is the merchant's external id.
SubscriptionRef = int | str


def find_id(session: Session, ref: SubscriptionRef) -> int:
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise SubscriptionInputError(
            "subscription must be our id (a number) or your external_id (text)",
            field="subscription",
        )
    if isinstance(ref, int):
        found = session.scalar(select(Subscription.id).where(Subscription.id == ref))
    else:
        check_external_id(ref, "subscription")
        found = session.scalar(select(Subscription.id).where(Subscription.external_id == ref))
    if found is None:
        raise NotFound(f"no subscription {ref!r}")
    return found


def lock(session: Session, ref: SubscriptionRef) -> Subscription:
    sub_id = find_id(session, ref)
    return session.scalars(
        select(Subscription).where(Subscription.id == sub_id).with_for_update()
    ).one()


def first_changeable_index(sub: Subscription, now: datetime) -> int:
    """The first period that starts after ``now`` and has no renewal yet."""
    if now < sub.anchor:
        return sub.next_period_index
    running = period_index_at(sub.anchor, sub.interval, sub.interval_count, now)
    return max(sub.next_period_index, running + 1)


@dataclass(frozen=True, slots=True)
class Scheduled:
    subscription_id: int
    amount: int
    price_id: str | None
    from_index: int


def change_price(
    session: Session,
    ref: SubscriptionRef,
    *,
    amount: int,
    price_id: str | None,
    settings: Settings,
    now: datetime,
    actor: str,
) -> Scheduled:
    """Schedule a new amount (and catalog price) for the periods starting after ``now``;
    a second change before the first applies replaces it."""
    if price_id is not None:
        check_faststar_id(price_id, "price_", "price_id")
    sub = lock(session, ref)
    try:
        money = validate_charge(amount, sub.currency, max_amount=settings.max_charge_amount)
    except InvalidChargeError as exc:
        raise SubscriptionInputError(exc.reason, field=exc.field) from None
    if sub.status == SubscriptionStatus.CANCELED:
        raise Refused(f"subscription {sub.id} is canceled: nothing more is charged")
    from_index = first_changeable_index(sub, now)
    replaced = sub.pending_amount
    sub.pending_amount = money.amount
    sub.pending_price_id = price_id
    sub.pending_from_index = from_index
    transitions.note(
        session,
        now=now,
        actor=actor,
        action="price_change_scheduled",
        subscription_id=sub.id,
        details={
            "amount": [sub.amount, money.amount],
            "price_id": [sub.price_id, price_id] if price_id else None,
            "from_period_index": from_index,
            **({"replaces_pending_amount": replaced} if replaced is not None else {}),
        },
    )
    return Scheduled(sub.id, money.amount, price_id, from_index)


def change_card(
    session: Session, ref: SubscriptionRef, *, payment_method_id: str, now: datetime, actor: str
) -> tuple[int, bool]:
    """Charge another saved card of the same customer from the next attempt on (a charge
    already in flight keeps its card). Returns the subscription id, and whether the card is
    new to us (its details are then fetched like an imported card's)."""
    check_faststar_id(payment_method_id, "pm_", "payment_method_id")
    sub = lock(session, ref)
    if sub.status == SubscriptionStatus.CANCELED:
        raise Refused(f"subscription {sub.id} is canceled: nothing more is charged")
    card = session.scalar(
        select(PaymentMethod).where(PaymentMethod.faststar_id == payment_method_id)
    )
    new = card is None
    if card is None:
        card = PaymentMethod(
            faststar_id=payment_method_id, customer_id=sub.customer_id, created_at=now
        )
        session.add(card)
        session.flush()
    elif card.customer_id != sub.customer_id:
        raise SubscriptionInputError(
            f"{payment_method_id} is saved for another customer", field="payment_method_id"
        )
    if card.id == sub.payment_method_id:
        return sub.id, False
    before = sub.payment_method_id
    sub.payment_method_id = card.id
    transitions.note(
        session,
        now=now,
        actor=actor,
        action="card_changed",
        subscription_id=sub.id,
        details={"payment_method": [before, card.id]},
    )
    return sub.id, new
