"""Subscriptions created in bulk (an import, the API's create): one INSERT for a batch,
idempotent on the merchant's ``external_id``, and their audit rows in one more statement."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from renewals.domain.states import SubscriptionStatus
from renewals.models import AuditEvent, Subscription
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


__all__ = ["create_subscriptions"]
