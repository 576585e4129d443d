"""Storing a verified webhook event once (the inbox is unique on the event id)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from renewals import transitions
from renewals.faststar import WebhookEvent
from renewals.models.db import unit_of_work

# The task enqueued on receipt normally processes the event at once; the sweep picks up any
# event still pending after this (a lost message).
HANDOFF_LEASE = timedelta(seconds=60)


def store_event(engine: Engine, event: WebhookEvent, *, now: datetime) -> int | None:
    """Insert the event; returns its inbox id, or None when it was already stored."""
    with unit_of_work(engine) as session:
        return transitions.store_inbox_event(
            session,
            now=now,
            handoff_lease=HANDOFF_LEASE,
            event_id=event.id,
            type=event.type,
            payment_intent_id=_data_str(event, "payment_id"),
            customer_id=_data_str(event, "customer_id"),
            payload={
                "id": event.id,
                "type": event.type,
                "created": event.created,
                "data": dict(event.data),
                "livemode": event.livemode,
                "api_version": event.api_version,
            },
        )


def _data_str(event: WebhookEvent, key: str) -> str | None:
    value = event.data.get(key)
    return value if isinstance(value, str) else None
