"""Subscriptions created in bulk (an import, the API's create): one INSERT for a batch,
idempotent on the merchant's ``external_id``, and their audit rows in one more statement."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from renewals.domain.states import SubscriptionStatus
from renewals.models import Subscription
from renewals.transitions._audit import audit_row, write_many


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
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # The table, not the mapped class: the ORM's bulk path would track every new key.
    created = session.execute(
        insert_(cast(Table, Subscription.__table__))
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(Subscription.id, Subscription.external_id),
        values,
    ).all()
    write_many(
        session,
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
    )
    return {str(external_id): subscription_id for subscription_id, external_id in created}


__all__ = ["create_subscriptions"]
