"""Masked card details (brand, last4, expiry) for cards we know only by their ``pm_`` id.

An import (or the API's create and change of card) stores a card by id, without asking
FastStar anything per row. This service fills the details in afterwards, in batches: the
cards still missing them are found in the database (the partial index
``ix_payment_methods_details_missing`` holds exactly those), grouped by customer, and each
customer's saved cards are read with one ``GET /public/customers/:id/payment-methods``.

The database is the queue of record: the import sends ``renewals.cards.fetch_details`` once
as a hint, the beat sends it every few minutes, and whatever a lost message or a FastStar
outage left behind is found again the next time. One chain runs at a time (the named lease
:data:`LEASE`); no transaction is open during a FastStar call.

Charging never waits for these details: a charge names the ``pm_`` id only. Until they are
known, emails say "your saved card" and no card-expiring warning is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import structlog
from sqlalchemy import BindParameter, Engine, Table, bindparam, select, update
from sqlalchemy.orm import Session

from renewals.faststar import FastStarClient, FastStarError, FastStarRequestRejected
from renewals.faststar import PaymentMethod as Card
from renewals.models import Customer, PaymentMethod
from renewals.models.db import unit_of_work
from renewals.services.leases import hold, release

log = structlog.get_logger(__name__)

LEASE = "card_details"
LEASE_TTL = timedelta(seconds=300)
# Customers per batch: one FastStar call each, at the client's rate limit.
BATCH = 50


@dataclass(frozen=True, slots=True)
class Fetched:
    holder: str
    customers: int  # asked about in this batch
    filled: int  # cards whose details were stored
    not_found: int  # cards FastStar does not list for their customer
    # More cards wait, and this batch made progress: hand on to the next one now.
    more: bool


def _waiting(session: Session, limit: int) -> list[tuple[int, str]]:
    """Customers with at least one card missing its details: (id, cus_ id)."""
    ids = (
        select(PaymentMethod.customer_id)
        .where(PaymentMethod.details_fetched_at.is_(None))
        .distinct()
        .limit(limit)
        .subquery()
    )
    return list(
        session.execute(
            select(Customer.id, Customer.faststar_id).where(Customer.id.in_(select(ids)))
        ).tuples()
    )


def fetch_batch(
    engine: Engine,
    faststar: FastStarClient,
    clock: Callable[[], datetime],
    *,
    holder: str | None = None,
    batch: int = BATCH,
) -> Fetched:
    """One batch: up to ``batch`` customers' cards, read from FastStar and stored."""
    holder = holder or uuid.uuid4().hex
    with unit_of_work(engine) as session:
        if not hold(session, LEASE, holder, now=clock(), ttl=LEASE_TTL):
            return Fetched(holder, 0, 0, 0, more=False)
        customers = _waiting(session, batch)
    answers: dict[int, list[Card]] = {}
    for customer_id, faststar_id in customers:
        try:
            answers[customer_id] = faststar.list_payment_methods(faststar_id)
        except FastStarRequestRejected as exc:
            # The customer is unknown to FastStar (or not ours): asking again will not
            # help. Its cards are marked fetched, without details, and a person is told.
            log.warning(
                "card_details_refused",
                customer=faststar_id,
                http_status=exc.status_code,
                error=str(exc),
            )
            answers[customer_id] = []
        except FastStarError as exc:
            # An outage or a timeout: what is left is found again by the next batch.
            log.warning("card_details_unavailable", customer=faststar_id, error=str(exc))
            break
    filled, not_found = _store(engine, answers, now=clock())
    with unit_of_work(engine) as session:
        more = bool(answers) and bool(_waiting(session, 1))
        if not more:
            release(session, LEASE, holder)
    if answers:
        log.info("card_details_fetched", customers=len(answers), filled=filled, missing=not_found)
    return Fetched(holder, len(answers), filled, not_found, more)


def _store(engine: Engine, answers: dict[int, list[Card]], *, now: datetime) -> tuple[int, int]:
    """The details of every card asked about; cards FastStar did not list are marked
    fetched without details (detached or a wrong id: charging will tell)."""
    if not answers:
        return 0, 0
    table = cast(Table, PaymentMethod.__table__)
    with unit_of_work(engine) as session:
        waiting = session.execute(
            select(PaymentMethod.id, PaymentMethod.customer_id, PaymentMethod.faststar_id)
            .where(PaymentMethod.customer_id.in_(answers))
            .where(PaymentMethod.details_fetched_at.is_(None))
        ).tuples()
        found: list[dict[str, object]] = []
        missing: list[dict[str, object]] = []
        for pm_id, customer_id, faststar_id in waiting:
            card = next((c for c in answers[customer_id] if c.id == faststar_id), None)
            if card is None:
                missing.append({"pm": pm_id})
                log.warning("card_not_listed", payment_method=faststar_id)
                continue
            found.append(
                {
                    "pm": pm_id,
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                }
            )
        pm: BindParameter[int] = bindparam("pm")
        if found:
            session.execute(
                update(table)
                .where(table.c.id == pm, table.c.details_fetched_at.is_(None))
                .values(
                    brand=bindparam("brand"),
                    last4=bindparam("last4"),
                    exp_month=bindparam("exp_month"),
                    exp_year=bindparam("exp_year"),
                    details_fetched_at=now,
                ),
                found,
            )
        if missing:
            session.execute(
                update(table)
                .where(table.c.id == pm, table.c.details_fetched_at.is_(None))
                .values(details_fetched_at=now),
                missing,
            )
    return len(found), len(missing)


def fetch_all(
    engine: Engine, faststar: FastStarClient, clock: Callable[[], datetime], *, batch: int = BATCH
) -> int:
    """Every batch in turn, here (tests, the demo); returns the cards filled in."""
    filled = 0
    holder = None
    while True:
        done = fetch_batch(engine, faststar, clock, holder=holder, batch=batch)
        filled += done.filled
        holder = done.holder
        if not done.more:
            return filled
