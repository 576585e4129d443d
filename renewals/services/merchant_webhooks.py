"""Delivering merchant events: claim under lock, POST outside any transaction, record.

Each event is POSTed to ``RENEWALS_MERCHANT_WEBHOOK_URL`` with its stored body, unchanged,
and two headers: ``Renewals-Event-Id`` (what the receiver dedupes on) and
``Renewals-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, keyed with
``RENEWALS_MERCHANT_WEBHOOK_SECRET`` (the scheme FastStar signs its own webhooks with). A 2xx
answer delivers it; anything else (another status, a timeout, a refused connection) is
retried on the schedule of ``RENEWALS_MERCHANT_WEBHOOK_RETRY_DELAYS``, after which the event
is ``failed`` and counted by ``renewals report``.

At least once: a worker that dies after the POST but before recording it leaves the event
``sending``; the sweep hands it out again when its lease expires, so the merchant may see an
event twice (same id, same body) but never misses one.

In order per subscription: an event is sent only once every earlier event of its
subscription is ``sent`` or ``failed``. The sweep claims only such events, a delivery that
finds an earlier one unsent leaves its event for later, and a finished delivery hands on
the subscription's next event at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import Engine, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from renewals import transitions
from renewals.config import Settings
from renewals.domain.merchant_events import DeliverySchedule
from renewals.domain.states import OutboxEvent, OutboxStatus
from renewals.domain.work import Work
from renewals.faststar.signatures import signature_header
from renewals.logs import redact_text
from renewals.models import MerchantEvent
from renewals.models.db import unit_of_work
from renewals.services.followups import FollowUps

log = structlog.get_logger(__name__)

ACTOR = "worker"
USER_AGENT = "renewals-webhooks/1"
EVENT_ID_HEADER = "Renewals-Event-Id"
SIGNATURE_HEADER = "Renewals-Signature"
# Rows one sweep hands out.
BATCH = 500

PENDING = OutboxStatus.PENDING.value
SENDING = OutboxStatus.SENDING.value
SENT = OutboxStatus.SENT.value
FAILED = OutboxStatus.FAILED.value
UNFINISHED = (PENDING, SENDING)


def delivery_headers(
    secret: str, event_id: str, event_type: str, body: bytes, *, timestamp: int
) -> dict[str, str]:
    """Every header of one delivery; the signature is made afresh for each send."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        "Renewals-Event-Type": event_type,
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST came to: delivered, or the (redacted) reason it was not."""

    delivered: bool
    http_status: int | None = None
    error: str | None = None


Post = Callable[[str, bytes, dict[str, str], float], Answer]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Answer(False, None, f"{type(exc).__name__}: {str(exc)[:200]}")
    if response.is_success:
        return Answer(True, response.status_code)
    # The receiver's body stays out: it could hold anything.
    return Answer(False, response.status_code, f"HTTP {response.status_code}")


def deliver_merchant_event(
    engine: Engine,
    row_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
    post: Post = http_post,
) -> FollowUps:
    """Send one merchant event (see the module docstring); hands on the subscription's next
    event once this one is finished."""
    follow = FollowUps()
    url = settings.merchant_webhook_url
    if url is None:  # no receiver (any more): the rows wait until one is configured
        return follow
    now = clock()
    with unit_of_work(engine) as session:
        row = session.scalars(
            select(MerchantEvent).where(MerchantEvent.id == row_id).with_for_update()
        ).one_or_none()
        if row is None or row.status != PENDING:
            return follow
        if _earlier_unfinished(session, row):
            # Not its turn (a stray message): unleased, so the delivery that finishes the
            # earlier event hands it on, or the next sweep does.
            row.lease_expires_at = None
            return follow
        transitions.move_merchant_event(
            session,
            row,
            OutboxEvent.CLAIMED,
            now=now,
            actor=ACTOR,
            lease_seconds=settings.lease_seconds,
        )
        body, event_id, event_type = row.body.encode("utf-8"), row.event_id, row.type
        attempts, subscription_id = row.attempts, row.subscription_id

    # Wall-clock time, not the injected clock: the receiver checks it against its own clock.
    headers = delivery_headers(
        settings.merchant_webhook_secret.get_secret_value(),
        event_id,
        event_type,
        body,
        timestamp=int(time.time()),
    )
    answer = post(url, body, headers, settings.merchant_webhook_timeout)

    done = clock()
    with unit_of_work(engine) as session:
        row = session.get_one(MerchantEvent, row_id, with_for_update=True)
        if row.status != SENDING or row.attempts != attempts:
            return follow  # the sweep reclaimed it meanwhile; the newer claim records
        error = redact_text(answer.error, settings.secrets()) if answer.error else None
        if answer.delivered:
            event, retry_at = OutboxEvent.SENT, None
        else:
            retry_at = DeliverySchedule(settings.merchant_retry_delays).retry_at(done, attempts)
            event = OutboxEvent.DEFERRED if retry_at is not None else OutboxEvent.REJECTED
        transitions.move_merchant_event(
            session,
            row,
            event,
            now=done,
            actor=ACTOR,
            retry_at=retry_at,
            error=error,
            http_status=answer.http_status,
        )
        status = row.status
        if status != PENDING:
            follow.add(
                Work.MERCHANT_EVENT,
                _lease_next(session, subscription_id, row_id, now=done, settings=settings),
            )
    fields = {"event_id": event_id, "type": event_type, "attempts": attempts}
    if status == SENT:
        log.info("merchant_event_sent", **fields)
    else:
        log.warning(f"merchant_event_{status}", error=error, **fields)
    return follow


def _earlier_unfinished(session: Session, row: MerchantEvent) -> bool:
    return (
        session.scalar(
            select(MerchantEvent.id)
            .where(
                MerchantEvent.subscription_id == row.subscription_id,
                MerchantEvent.id < row.id,
                MerchantEvent.status.in_(UNFINISHED),
            )
            .limit(1)
        )
        is not None
    )


def _lease_next(
    session: Session, subscription_id: int, after_id: int, *, now: datetime, settings: Settings
) -> int | None:
    """The subscription's next event, leased for its hand-off, if it is due now."""
    row = session.execute(
        select(MerchantEvent.id, MerchantEvent.status, MerchantEvent.lease_expires_at)
        .where(
            MerchantEvent.subscription_id == subscription_id,
            MerchantEvent.id > after_id,
            MerchantEvent.status.in_(UNFINISHED),
        )
        .order_by(MerchantEvent.id)
        .limit(1)
        .with_for_update()
    ).first()
    if row is None or row.status != PENDING:
        return None
    if row.lease_expires_at is not None and row.lease_expires_at > now:
        return None  # already handed out
    session.execute(
        update(MerchantEvent)
        .where(MerchantEvent.id == row.id)
        .values(lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
    )
    return int(row.id)


def claim_due_merchant_events(
    session: Session, *, now: datetime, settings: Settings, limit: int = BATCH
) -> list[int]:
    """For the sweep: events due and first in line for their subscription, leased so a
    second sweep does not hand them out again (a lost message comes back when the lease
    expires). Events left ``sending`` by a worker that died are pending again first."""
    if settings.merchant_webhook_url is None:
        return []
    transitions.expire_merchant_event_leases(session, now=now)
    earlier = aliased(MerchantEvent)
    blocked = exists().where(
        earlier.subscription_id == MerchantEvent.subscription_id,
        earlier.id < MerchantEvent.id,
        earlier.status.in_(UNFINISHED),
    )
    ids = list(
        session.scalars(
            select(MerchantEvent.id)
            .where(MerchantEvent.status == PENDING, MerchantEvent.next_attempt_at <= now)
            .where(
                or_(
                    MerchantEvent.lease_expires_at.is_(None),
                    MerchantEvent.lease_expires_at <= now,
                )
            )
            .where(~blocked)
            .order_by(MerchantEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(
            update(MerchantEvent)
            .where(MerchantEvent.id.in_(ids))
            .values(lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
            .execution_options(synchronize_session=False)
        )
    return ids
