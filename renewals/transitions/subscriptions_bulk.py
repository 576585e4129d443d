"""Subscriptions created in bulk, idempotent on the merchant's ``external_id``, with their
audit rows: the API's create (rows given as values) and an import (rows read from its
staging table, set-based)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, text
from sqlalchemy.orm import Session

from renewals.domain.states import SubscriptionStatus
from renewals.models import AuditEvent, Subscription
from renewals.models.base import UTCDateTime
from renewals.models.bulk import insert_rows
from renewals.transitions._audit import audit_row


def create_subscriptions(
    session: Session, rows: list[dict[str, Any]], *, now: datetime, actor: str
) -> dict[str, int]:
    """Insert active subscriptions (each row has an ``external_id``), skipping any whose
    ``external_id`` exists already (a second import, a concurrent create). Returns the new
    ones as ``external_id -> id``; a row absent from the answer changed nothing."""
    if not rows:
        return {}
    values = [
        {
            **row,
            "status": SubscriptionStatus.ACTIVE.value,
            "status_changed_at": now,
            "created_at": now,
        }
        for row in rows
    ]
    # The table, not the mapped class: the ORM's bulk path would track every new key.
    table = cast(Table, Subscription.__table__)
    created = insert_rows(
        session,
        table,
        values,
        conflict=["external_id"],
        returning=[table.c.id, table.c.external_id],
    )
    insert_rows(
        session,
        cast(Table, AuditEvent.__table__),
        [
            audit_row(
                now=now,
                actor=actor,
                action="subscription_created",
                subscription_id=subscription_id,
                to_status=SubscriptionStatus.ACTIVE,
                details={"external_id": external_id},
            )
            for subscription_id, external_id in created
        ],
        conflict=None,
    )
    return {str(external_id): subscription_id for subscription_id, external_id in created}


# The staged rows of lines lo..hi whose customer and card exist (the import wrote them just
# before), in file order. The card must be the customer's: a card another import saved for
# someone else in the meantime is never attached.
_FROM_STAGED = """
    SELECT s.external_id, c.id, pm.id, s.amount, s.currency, s."interval", s.interval_count,
           s.anchor, s.price_id, :status, :now, false, 0, s.anchor, :now
    FROM import_rows s
    JOIN customers c ON c.faststar_id = s.customer_id
    JOIN payment_methods pm ON pm.faststar_id = s.payment_method_id AND pm.customer_id = c.id
    WHERE s.line BETWEEN :lo AND :hi
    ORDER BY s.line
"""
_INSERT = """
    INSERT INTO subscriptions (external_id, customer_id, payment_method_id, amount, currency,
        "interval", interval_count, anchor, price_id, status, status_changed_at,
        cancel_at_period_end, next_period_index, next_renewal_at, created_at)
"""
_ON_CONFLICT = "ON CONFLICT (external_id) DO NOTHING"
_AUDIT = """
    INSERT INTO audit_events (subscription_id, actor, action, to_status, details, created_at)
"""

# The statements are built from the constants above only; every value is a parameter.
# PostgreSQL: the subscriptions and their audit rows in one statement; the ids never travel.
_POSTGRES = text(
    f"WITH created AS ({_INSERT} {_FROM_STAGED} {_ON_CONFLICT} RETURNING id, external_id) "  # noqa: S608
    f"{_AUDIT} SELECT id, :actor, 'subscription_created', :status, "
    "json_build_object('external_id', external_id), :now FROM created"
)
# SQLite has no INSERT in a WITH; the statement runs under the database's one write lock, so
# the rows it created are exactly those above the highest id before it.
_SQLITE_SUBSCRIPTIONS = text(f"{_INSERT} {_FROM_STAGED} {_ON_CONFLICT}")
_SQLITE_AUDIT = text(
    f"{_AUDIT} SELECT id, :actor, 'subscription_created', :status, "  # noqa: S608
    "json_object('external_id', external_id), :now FROM subscriptions WHERE id > :above"
)


def create_staged_subscriptions(
    connection: Connection, *, lo: int, hi: int, now: datetime, actor: str
) -> int:
    """Insert active subscriptions for the rows of the import's staging table
    (:mod:`renewals.models.import_staging`) from line ``lo`` to ``hi``, with their audit rows,
    skipping any whose ``external_id`` exists already. Returns how many were created."""
    params = {
        "status": SubscriptionStatus.ACTIVE.value,
        "lo": lo,
        "hi": hi,
        "actor": actor,
    }
    when = bindparam("now", now, type_=UTCDateTime())
    if connection.dialect.name == "postgresql":
        done = connection.execute(_POSTGRES.bindparams(when), params)
        return done.rowcount
    above = connection.scalar(text("SELECT coalesce(max(id), 0) FROM subscriptions"))
    connection.execute(_SQLITE_SUBSCRIPTIONS.bindparams(when), params)
    done = connection.execute(_SQLITE_AUDIT.bindparams(when), {**params, "above": above})
    return done.rowcount


__all__ = ["create_staged_subscriptions", "create_subscriptions"]
