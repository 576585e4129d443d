"""Audit rows: one per transition, written the same way whoever moves what."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from renewals.models import AuditEvent


def audit_row(
    *,
    now: datetime,
    actor: str,
    action: str,
    subscription_id: int | None = None,
    renewal_id: int | None = None,
    attempt_id: int | None = None,
    entity: str | None = None,
    entity_id: int | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "renewal_id": renewal_id,
        "attempt_id": attempt_id,
        "entity": entity,
        "entity_id": entity_id,
        "actor": actor,
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "details": details,
        "created_at": now,
    }


def write(session: Session, **row: Any) -> None:
    """One audit row, flushed with the rest of the unit of work."""
    session.add(AuditEvent(**audit_row(**row)))


def write_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Audit rows of a batch in one statement (an executemany the driver batches)."""
    if rows:
        # The table, not the mapped class: no ORM bookkeeping per row.
        session.execute(insert(cast(Table, AuditEvent.__table__)), list(rows))


def note(
    session: Session,
    *,
    now: datetime,
    actor: str,
    action: str,
    subscription_id: int | None,
    renewal_id: int | None = None,
    attempt_id: int | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """An audit row for something that happened without a status change (an escalation, a
    refreshed link, a subscription created)."""
    write(
        session,
        now=now,
        actor=actor,
        action=action,
        subscription_id=subscription_id,
        renewal_id=renewal_id,
        attempt_id=attempt_id,
        reason=reason,
        details=details,
    )
