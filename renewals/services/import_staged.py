"""An import's checked rows against the database, set-based, through the staging table
(:mod:`renewals.models.import_staging`): one query finds every conflict, one counts the rows
already there, and a few ``INSERT … SELECT … ON CONFLICT DO NOTHING`` write customers, cards
and subscriptions (the last, which sets a status, in :mod:`renewals.transitions`).

The conflicts are the ones :func:`renewals.services.imports.compare` finds for the API's
create, with the same words (:mod:`renewals.services.import_conflicts`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, or_, select, text

from renewals import transitions
from renewals.domain.import_rows import RowError
from renewals.domain.subscription_input import NewSubscription
from renewals.models import Customer, PaymentMethod, Subscription
from renewals.models import import_staging as staged
from renewals.models.base import UTCDateTime
from renewals.services.import_conflicts import TERMS, card_taken, email_taken, terms_changed

Rows = Sequence[tuple[int, NewSubscription]]


def staged_rows(rows: Rows) -> Iterator[staged.StagedRow]:
    """The rows as the staging table holds them, in file order."""
    customers: set[str] = set()
    cards: set[str] = set()
    for line, sub in rows:
        first_customer = sub.customer_id not in customers
        first_card = sub.payment_method_id not in cards
        customers.add(sub.customer_id)
        cards.add(sub.payment_method_id)
        yield (
            line,
            sub.external_id,
            sub.email,
            sub.name,
            sub.customer_id,
            sub.payment_method_id,
            sub.money.amount,
            sub.money.currency,
            sub.interval.value,
            sub.interval_count,
            sub.renews_at,
            sub.price_id,
            first_customer,
            first_card,
        )


def create(connection: Connection) -> None:
    staged.create(connection)


def load(connection: Connection, rows: Iterator[staged.StagedRow]) -> None:
    """Rows made by :func:`staged_rows` into the staging table, in the current transaction."""
    staged.load(connection, rows)


def conflicts(connection: Connection) -> list[RowError]:
    """Every staged row that disagrees with the database, by line: a subscription with its
    ``external_id`` and other terms, a customer with another email, a card of another
    customer. One query over the staging table."""
    s = staged.staging
    sub = cast(Table, Subscription.__table__)
    customers = cast(Table, Customer.__table__)
    cards = cast(Table, PaymentMethod.__table__)
    sub_customer, sub_card = customers.alias("sub_customer"), cards.alias("sub_card")
    customer, card = customers.alias("customer"), cards.alias("card")
    owner = customers.alias("owner")
    differs: dict[str, Any] = {
        "customer_id": sub_customer.c.faststar_id != s.c.customer_id,
        "payment_method_id": sub_card.c.faststar_id != s.c.payment_method_id,
        "amount": sub.c.amount != s.c.amount,
        "currency": sub.c.currency != s.c.currency,
        "interval": sub.c.interval != s.c.interval,
        "interval_count": sub.c.interval_count != s.c.interval_count,
        "next_renewal_at": sub.c.anchor != s.c.anchor,
        "price_id": sub.c.price_id.is_distinct_from(s.c.price_id),
    }
    assert tuple(differs) == TERMS
    email_differs = customer.c.email != s.c.email
    owner_differs = owner.c.faststar_id != s.c.customer_id
    query = (
        select(
            s.c.line,
            sub.c.id,
            *(condition.label(f"d_{name}") for name, condition in differs.items()),
            email_differs.label("email_differs"),
            s.c.customer_id,
            s.c.payment_method_id,
            owner.c.faststar_id,
        )
        .select_from(
            s.outerjoin(sub, sub.c.external_id == s.c.external_id)
            .outerjoin(sub_customer, sub_customer.c.id == sub.c.customer_id)
            .outerjoin(sub_card, sub_card.c.id == sub.c.payment_method_id)
            .outerjoin(customer, customer.c.faststar_id == s.c.customer_id)
            .outerjoin(card, card.c.faststar_id == s.c.payment_method_id)
            .outerjoin(owner, owner.c.id == card.c.customer_id)
        )
        .where(
            or_(
                sub.c.id.is_not(None) & or_(*differs.values()),
                sub.c.id.is_(None) & or_(email_differs, owner_differs),
            )
        )
        .order_by(s.c.line)
    )
    found: list[RowError] = []
    for row in connection.execute(query):
        line, sub_id, *flags = row[: 2 + len(TERMS)]
        email_flag, customer_id, payment_method_id, owner_id = row[2 + len(TERMS) :]
        if sub_id is not None:
            differ = [term for term, flag in zip(TERMS, flags, strict=True) if flag]
            found.append(terms_changed(line, sub_id, differ))
        elif email_flag:
            found.append(email_taken(line, customer_id))
        else:
            found.append(card_taken(line, payment_method_id, owner_id))
    return found


def existing(connection: Connection) -> int:
    """Staged rows whose subscription exists already (with the same terms, once
    :func:`conflicts` found nothing)."""
    s = staged.staging
    sub = cast(Table, Subscription.__table__)
    query = select(func.count()).select_from(s.join(sub, sub.c.external_id == s.c.external_id))
    return connection.scalar(query) or 0


_CUSTOMERS = text(
    "INSERT INTO customers (faststar_id, email, name, created_at) "
    "SELECT customer_id, email, name, :now FROM import_rows "
    "WHERE first_customer AND line BETWEEN :lo AND :hi "
    "ON CONFLICT (faststar_id) DO NOTHING"
)
_CARDS = text(
    "INSERT INTO payment_methods (faststar_id, customer_id, created_at) "
    "SELECT s.payment_method_id, c.id, :now FROM import_rows s "
    "JOIN customers c ON c.faststar_id = s.customer_id "
    "WHERE s.first_card AND s.line BETWEEN :lo AND :hi "
    "ON CONFLICT (faststar_id) DO NOTHING"
)


def write(connection: Connection, *, lo: int, hi: int, now: datetime, actor: str) -> int:
    """Customers, cards (without their details) and subscriptions of the staged lines
    ``lo``..``hi``, in the current transaction; returns the subscriptions created. A row's
    customer and card come from the file's first row naming them, never later than the row
    itself, so writing the lines in ascending ranges always finds them written."""
    when = bindparam("now", now, type_=UTCDateTime())
    window = {"lo": lo, "hi": hi}
    connection.execute(_CUSTOMERS.bindparams(when), window)
    connection.execute(_CARDS.bindparams(when), window)
    return transitions.create_staged_subscriptions(connection, lo=lo, hi=hi, now=now, actor=actor)


def drop(connection: Connection) -> None:
    staged.drop(connection)
