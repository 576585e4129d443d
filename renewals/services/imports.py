"""Writing checked subscriptions in bulk: ``renewals subscriptions import`` and the API's
create share this path (and :mod:`renewals.domain.subscription_input`'s checks).

Two passes, both in chunks:

1. **Compare** (read only): each row against what the database holds. A subscription with
   the row's ``external_id`` and the same terms is *unchanged*; with other terms it is a
   *conflict*, as is a ``cus_`` stored with another email or a ``pm_`` stored for another
   customer. Conflicts are reported like invalid rows, and nothing is written.
2. **Write**: customers and cards (INSERT … ON CONFLICT DO NOTHING on their FastStar ids),
   then the subscriptions through :func:`renewals.transitions.create_subscriptions`
   (idempotent on ``external_id``) with their audit rows; one transaction per chunk, so a
   second import, or one stopped halfway and run again, creates only what is missing.

No FastStar call is made per row: the cards are written without brand, last4 and expiry,
which :mod:`renewals.services.cards` fetches afterwards in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, String, Table, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.import_rows import FileFormat, RowError, check_rows, read_rows
from renewals.domain.subscription_input import NewSubscription
from renewals.models import Customer, PaymentMethod, Subscription
from renewals.models.bulk import insert_rows
from renewals.models.db import unit_of_work

# Rows per statement batch and per write transaction: large enough that round trips are
# shared by thousands of rows, small enough that a transaction (and SQLite's write lock)
# lasts well under a second, so the sweep and webhooks are never held up for long.
CHUNK = 5000
# Keys per IN (...) list when comparing with the database.
LOOKUP = 5000

Progress = Callable[[int], None]


@dataclass(slots=True)
class Compared:
    """Rows to create, rows already there as given (by external id), and conflicts."""

    new: list[tuple[int, NewSubscription]] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)  # external_id -> subscription id
    conflicts: list[RowError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Written:
    created: dict[str, int]  # external_id -> new subscription id
    # Rows found already there at write time (a concurrent import or create won the race).
    raced: int
    # Cards written without their details, for the fetch task.
    cards_to_fetch: int


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _terms(sub: NewSubscription) -> dict[str, object]:
    return {
        "customer_id": sub.customer_id,
        "payment_method_id": sub.payment_method_id,
        "amount": sub.money.amount,
        "currency": sub.money.currency,
        "interval": sub.interval.value,
        "interval_count": sub.interval_count,
        "next_renewal_at": sub.renews_at,
        "price_id": sub.price_id,
    }


def _among(session: Session, column: Any, values: Iterable[str]) -> Any:
    """``column IN values``; on PostgreSQL as ``= ANY(array)``, one parameter for them all."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    return column.in_(list(values))


def compare(
    session: Session, rows: Sequence[tuple[int, NewSubscription]], progress: Progress | None = None
) -> Compared:
    """Pass 1 (module docstring): read only."""
    found = Compared()
    for chunk in _chunks(rows, LOOKUP):
        subs = _existing_subscriptions(session, [s.external_id or "" for _, s in chunk])
        emails = dict(
            session.execute(
                select(Customer.faststar_id, Customer.email).where(
                    _among(session, Customer.faststar_id, {s.customer_id for _, s in chunk})
                )
            )
            .tuples()
            .all()
        )
        owners = dict(
            session.execute(
                select(PaymentMethod.faststar_id, Customer.faststar_id)
                .join(Customer, Customer.id == PaymentMethod.customer_id)
                .where(
                    _among(
                        session, PaymentMethod.faststar_id, {s.payment_method_id for _, s in chunk}
                    )
                )
            )
            .tuples()
            .all()
        )
        for line, sub in chunk:
            assert sub.external_id is not None
            stored = subs.get(sub.external_id)
            if stored is not None:
                sub_id, terms = stored
                differ = [k for k, v in _terms(sub).items() if terms[k] != v]
                if differ:
                    found.conflicts.append(
                        RowError(
                            line,
                            differ[0],
                            f"external_id exists as subscription {sub_id} with another "
                            f"{', '.join(differ)}: not updated (change it through the API)",
                        )
                    )
                else:
                    found.unchanged[sub.external_id] = sub_id
                continue
            email = emails.get(sub.customer_id)
            if email is not None and email != sub.email:
                found.conflicts.append(
                    RowError(line, "email", f"customer {sub.customer_id} exists with another email")
                )
                continue
            owner = owners.get(sub.payment_method_id)
            if owner is not None and owner != sub.customer_id:
                found.conflicts.append(
                    RowError(
                        line,
                        "payment_method_id",
                        f"{sub.payment_method_id} is saved for another customer ({owner})",
                    )
                )
                continue
            found.new.append((line, sub))
        if progress is not None:
            progress(len(chunk))
    return found


def _existing_subscriptions(
    session: Session, external_ids: list[str]
) -> dict[str, tuple[int, dict[str, object]]]:
    found = session.execute(
        select(
            Subscription.external_id,
            Subscription.id,
            Customer.faststar_id,
            PaymentMethod.faststar_id,
            Subscription.amount,
            Subscription.currency,
            Subscription.interval,
            Subscription.interval_count,
            Subscription.anchor,
            Subscription.price_id,
        )
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
        .where(_among(session, Subscription.external_id, external_ids))
    ).tuples()
    return {
        str(external_id): (
            sub_id,
            {
                "customer_id": customer,
                "payment_method_id": method,
                "amount": amount,
                "currency": currency,
                "interval": str(interval),
                "interval_count": count,
                "next_renewal_at": anchor,
                "price_id": price_id,
            },
        )
        for external_id, sub_id, customer, method, amount, currency, interval, count, anchor, price_id in found  # noqa: E501
    }


def write_chunk(
    session: Session, chunk: Sequence[tuple[int, NewSubscription]], *, now: datetime, actor: str
) -> dict[str, int]:
    """Pass 2 for one chunk, in the caller's transaction; returns the subscriptions created."""
    customers: dict[str, NewSubscription] = {}
    for _, sub in chunk:
        customers.setdefault(sub.customer_id, sub)
    insert_rows(
        session,
        cast(Table, Customer.__table__),
        [
            {"faststar_id": cus, "email": sub.email, "name": sub.name, "created_at": now}
            for cus, sub in customers.items()
        ],
        conflict=["faststar_id"],
    )
    customer_ids = dict(
        session.execute(
            select(Customer.faststar_id, Customer.id).where(
                _among(session, Customer.faststar_id, customers)
            )
        )
        .tuples()
        .all()
    )
    methods = {sub.payment_method_id: sub.customer_id for _, sub in chunk}
    insert_rows(
        session,
        cast(Table, PaymentMethod.__table__),
        [
            {"faststar_id": pm, "customer_id": customer_ids[cus], "created_at": now}
            for pm, cus in methods.items()
        ],
        conflict=["faststar_id"],
    )
    method_ids = dict(
        session.execute(
            select(PaymentMethod.faststar_id, PaymentMethod.id).where(
                _among(session, PaymentMethod.faststar_id, methods)
            )
        )
        .tuples()
        .all()
    )
    return transitions.create_subscriptions(
        session,
        [
            {
                "external_id": sub.external_id,
                "customer_id": customer_ids[sub.customer_id],
                "payment_method_id": method_ids[sub.payment_method_id],
                "amount": sub.money.amount,
                "currency": sub.money.currency,
                "interval": sub.interval.value,
                "interval_count": sub.interval_count,
                "anchor": sub.renews_at,
                "price_id": sub.price_id,
                "cancel_at_period_end": False,
                "next_period_index": 0,
                "next_renewal_at": sub.renews_at,
            }
            for _, sub in chunk
        ],
        now=now,
        actor=actor,
    )


def write(
    engine: Engine,
    rows: Sequence[tuple[int, NewSubscription]],
    *,
    now: datetime,
    actor: str,
    progress: Progress | None = None,
) -> Written:
    """Pass 2: every chunk in its own transaction."""
    created: dict[str, int] = {}
    for chunk in _chunks(rows, CHUNK):
        with unit_of_work(engine) as session:
            created.update(write_chunk(session, chunk, now=now, actor=actor))
        if progress is not None:
            progress(len(chunk))
    with unit_of_work(engine) as session:
        to_fetch = missing_details(session)
    return Written(created, len(rows) - len(created), to_fetch)


def missing_details(session: Session, limit: int = 1_000_000) -> int:
    """Cards whose masked details are still to fetch (counted up to ``limit``)."""
    waiting = (
        select(PaymentMethod.id)
        .where(PaymentMethod.details_fetched_at.is_(None))
        .limit(limit)
        .subquery()
    )
    return session.scalar(select(func.count()).select_from(waiting)) or 0


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import found and did. ``errors`` (invalid rows and conflicts, by line) non-empty
    means nothing was written."""

    read: int
    created: int
    unchanged: int
    errors: list[RowError]
    cards_to_fetch: int

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rows": self.read,
            "created": self.created,
            "unchanged": self.unchanged,
            "errors": [{"line": e.line, "field": e.field, "reason": e.reason} for e in self.errors],
            "cards_to_fetch": self.cards_to_fetch,
        }


def import_subscriptions(
    engine: Engine,
    settings: Settings,
    lines: Iterable[str],
    fmt: FileFormat,
    *,
    now: datetime,
    actor: str,
    progress: Progress | None = None,
) -> ImportReport:
    """Check every row, compare them with the database, and only if nothing is wrong write
    the new ones (module docstring). ``progress`` is told of rows done, three times per row
    (checked, compared, written or found unchanged)."""
    tick = (lambda: progress(1)) if progress is not None else None
    checked = check_rows(read_rows(lines, fmt), max_amount=settings.max_charge_amount, on_row=tick)
    if checked.errors:
        return ImportReport(checked.read, 0, 0, sorted(checked.errors, key=_line), 0)
    with unit_of_work(engine) as session:
        compared = compare(session, checked.rows, progress)
    if compared.conflicts:
        return ImportReport(checked.read, 0, 0, compared.conflicts, 0)
    if progress is not None:
        progress(len(compared.unchanged))
    written = write(engine, compared.new, now=now, actor=actor, progress=progress)
    return ImportReport(
        checked.read,
        len(written.created),
        len(compared.unchanged) + written.raced,
        [],
        written.cards_to_fetch,
    )


def _line(error: RowError) -> int:
    return error.line
