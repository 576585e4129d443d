"""One helper for the audit trail, so every transition is written the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from renewals.models import AuditEvent


def audit(
    session: Session,
    *,
    now: datetime,
    actor: str,
    action: str,
    subscription_id: int | None,
    renewal_id: int | None = None,
    attempt_id: int | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            subscription_id=subscription_id,
            renewal_id=renewal_id,
            attempt_id=attempt_id,
            actor=actor,
            action=action,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            details=details,
            created_at=now,
        )
    )
