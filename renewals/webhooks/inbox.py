"""Storing a verified webhook event once (the inbox is unique on the event id)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from renewals.faststar import WebhookEvent
from renewals.models import InboxEvent
from renewals.models.db import unit_of_work

# The task enqueued on receipt normally processes the event at once; the sweep picks up any
# event still pending after this (a lost message).
HANDOFF_LEASE = timedelta(seconds=60)


def store_event(engine: Engine, event: WebhookEvent, *, now: datetime) -> int | None:
    """Insert the event; returns its inbox id, or None when it was already stored."""
    with unit_of_work(engine) as session:
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        inbox_id = session.execute(
            insert(InboxEvent)
            .values(
                event_id=event.id,
                type=event.type,
                payload={
                    "id": event.id,
                    "type": event.type,
                    "created": event.created,
                    "data": dict(event.data),
                    "livemode": event.livemode,
                    "api_version": event.api_version,
                },
                status="pending",
                received_at=now,
                lease_expires_at=now + HANDOFF_LEASE,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(InboxEvent.id)
        ).scalar_one_or_none()
    return int(inbox_id) if inbox_id is not None else None
