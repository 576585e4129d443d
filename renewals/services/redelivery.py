"""A charge message that arrives while its renewal's charge is already in flight.

The broker delivers at least once: Redis hands a message out again when its acknowledgement
is overdue (the visibility timeout), and a worker that lost its connection gets its
reserved messages redelivered. Such a copy finds the renewal ``charging`` under the first
delivery's lease and sends nothing; the audit trail says so, so that whoever looks at a
renewal's history sees the second delivery and that it was refused.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from renewals import transitions
from renewals.models import Renewal

REFUSED = "charge_delivery_refused"
REASON = "the renewal's charge is in flight: this delivery of its message sends nothing"


def refuse_while_charging(session: Session, renewal: Renewal, *, now: datetime) -> str:
    """Record the refused delivery (the renewal is locked and ``charging``); the reason."""
    transitions.note(
        session,
        now=now,
        actor="worker",
        action=REFUSED,
        subscription_id=renewal.subscription_id,
        renewal_id=renewal.id,
        reason=REASON,
    )
    return REASON
