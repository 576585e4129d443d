"""Writing checked subscriptions: ``renewals subscriptions import`` and the API's create
share :mod:`renewals.domain.subscription_input`'s checks and the conflict rules
(:mod:`renewals.services.import_conflicts`).

An import, after every row passed its checks, works on one connection:

1. **Stage**: the rows are loaded into a temporary table (``COPY`` on PostgreSQL, one
   ``executemany`` on SQLite; :mod:`renewals.models.import_staging`).
2. **Compare**: one query over the staging table finds every conflict (a subscription with
   the row's ``external_id`` and other terms, a ``cus_`` stored with another email, a ``pm_``
   stored for another customer). Any conflict is reported like an invalid row and nothing is
   written. A subscription with the same terms is *unchanged*.
3. **Write**: customers and cards (``INSERT … SELECT … ON CONFLICT DO NOTHING`` on their
   FastStar ids), then the subscriptions with their audit rows
   (:func:`renewals.transitions.create_staged_subscriptions`, idempotent on
   ``external_id``). On PostgreSQL stage, compare and write are one transaction. On SQLite,
   where every transaction holds the only write lock, loading and writing go in ranges of
   :data:`SQLITE_WRITE_ROWS` lines, one transaction each, so the sweep and webhooks wait at
   most one range; an import stopped halfway and run again creates only what is missing.

The API's create (one row) compares and writes with :func:`compare` and :func:`write_chunk`
instead: a temporary table for one row would cost more than it saves.

No FastStar call is made per row: the cards are written without brand, last4 and expiry,
which :mod:`renewals.services.cards` fetches afterwards in batches.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, String, Table, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.config import Settings
from renewals.domain.import_rows import FileFormat, RowError, check_rows, read_rows
from renewals.domain.subscription_input import NewSubscription
from renewals.models import Customer, PaymentMethod, Subscription
from renewals.models.bulk import insert_rows
from renewals.models.db import unit_of_work
from renewals.models.import_staging import line_ranges
from renewals.services import import_staged
from renewals.services.import_conflicts import card_taken, email_taken, terms_changed

# Lines per write transaction of an import on SQLite: a few hundred milliseconds of the one
# write lock, so that the sweep and webhooks wait at most that long for theirs.
SQLITE_WRITE_ROWS = 25_000
# Keys per IN (...) list when the API's create compares with the database.
LOOKUP = 5000

Progress = Callable[[int], None]


@dataclass(slots=True)
class Compared:
    """Rows to create, rows already there as given (by external id), and conflicts."""

    new: list[tuple[int, NewSubscription]] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)  # external_id -> subscription id
    conflicts: list[RowError] = field(default_factory=list)


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
                    found.conflicts.append(terms_changed(line, sub_id, differ))
                else:
                    found.unchanged[sub.external_id] = sub_id
                continue
            email = emails.get(sub.customer_id)
            if email is not None and email != sub.email:
                found.conflicts.append(email_taken(line, sub.customer_id))
                continue
            owner = owners.get(sub.payment_method_id)
            if owner is not None and owner != sub.customer_id:
                found.conflicts.append(card_taken(line, sub.payment_method_id, owner))
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
    with _collector_paused():
        checked = check_rows(
            read_rows(lines, fmt), max_amount=settings.max_charge_amount, on_row=tick
        )
    if checked.errors:
        return ImportReport(checked.read, 0, 0, sorted(checked.errors, key=_line), 0)
    rows = checked.rows
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            outcome = _import_postgres(connection, rows, now=now, actor=actor, progress=progress)
        else:
            outcome = _import_sqlite(connection, rows, now=now, actor=actor, progress=progress)
    if isinstance(outcome, list):
        return ImportReport(checked.read, 0, 0, outcome, 0)
    with unit_of_work(engine) as session:
        to_fetch = missing_details(session)
    return ImportReport(checked.read, outcome, len(rows) - outcome, [], to_fetch)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the rows are read: the 100,000s of objects they
    make hold no cycles, yet each collection would walk all of them again (a third of the
    time it takes to check a large file)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


Rows = Sequence[tuple[int, NewSubscription]]


def _import_postgres(
    connection: Connection, rows: Rows, *, now: datetime, actor: str, progress: Progress | None
) -> list[RowError] | int:
    """Stage, compare and write in one transaction: the conflicts, or how many were created."""
    with connection.begin() as transaction:
        # Enough to hash and sort 100,000s of staged rows in memory, not in temporary files.
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        import_staged.create(connection)
        import_staged.load(connection, import_staged.staged_rows(rows))
        found = import_staged.conflicts(connection)
        if found:
            transaction.rollback()
            return found
        created = 0
        if import_staged.existing(connection) < len(rows):
            created = import_staged.write(
                connection, lo=rows[0][0], hi=rows[-1][0], now=now, actor=actor
            )
        import_staged.drop(connection)
    if progress is not None:
        progress(2 * len(rows))
    return created


def _import_sqlite(
    connection: Connection, rows: Rows, *, now: datetime, actor: str, progress: Progress | None
) -> list[RowError] | int:
    """Every step in transactions of at most :data:`SQLITE_WRITE_ROWS` rows: the conflicts, or
    how many were created."""
    ranges = line_ranges([line for line, _ in rows], SQLITE_WRITE_ROWS)
    try:
        with connection.begin():
            import_staged.create(connection)
        staged = import_staged.staged_rows(rows)
        for _ in ranges:
            with connection.begin():
                import_staged.load(connection, islice(staged, SQLITE_WRITE_ROWS))
        with connection.begin():
            found = import_staged.conflicts(connection)
            there = 0 if found else import_staged.existing(connection)
        if found:
            return found
        if progress is not None:
            progress(len(rows))
        created = 0
        for lo, hi in ranges if there < len(rows) else []:
            with connection.begin():
                created += import_staged.write(connection, lo=lo, hi=hi, now=now, actor=actor)
            if progress is not None:
                progress(sum(1 for line, _ in rows if lo <= line <= hi))
        return created
    finally:
        with connection.begin():
            import_staged.drop(connection)


def _line(error: RowError) -> int:
    return error.line
