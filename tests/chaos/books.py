"""The fault scenarios' verdict: FastStar's ledger of executed charges against our books.

The sandbox's charge log is the ground truth of what happened to the money; the database is
what we believe; the SMTP server's mailbox is what customers received. A scenario passes
when, for the renewals it made:

* no period is charged twice (two executed charges for one renewal);
* every executed charge is booked on its renewal (``payment_intent_id``);
* nothing is stuck: no renewal still ``charging`` or claimed past its lease, no email still
  ``pending`` or ``sending``;
* every email was received at most once (a Message-ID seen twice is a duplicate).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine, select

from renewals.models import ChargeAttempt, Customer, OutboxMessage, Renewal, Subscription
from renewals.models.db import unit_of_work

OPEN_EMAIL = ("pending", "sending")


@dataclass(frozen=True)
class Figures:
    renewals: int
    booked: int
    charges_executed: int
    double_charges: int
    unbooked: int
    stuck: int
    emails_open: int
    emails_received: int
    duplicate_emails: int
    problems: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(
    engine: Engine,
    subscription_ids: list[int],
    charges: list[dict[str, Any]],
    mailbox: list[EmailMessage],
    *,
    now: datetime,
) -> Figures:
    """Compare the ledger ``charges`` (the sandbox's, all of them) and the ``mailbox`` with
    the books of ``subscription_ids``; ``problems`` names each offending row."""
    problems: list[str] = []
    with unit_of_work(engine) as session:
        renewals = session.execute(
            select(Renewal, Customer.faststar_id)
            .join(Subscription, Subscription.id == Renewal.subscription_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .where(Renewal.subscription_id.in_(subscription_ids))
        ).all()
        keys = dict(
            session.execute(
                select(ChargeAttempt.idempotency_key, ChargeAttempt.renewal_id).where(
                    ChargeAttempt.renewal_id.in_([r.id for r, _ in renewals])
                )
            )
            .tuples()
            .all()
        )
        emails = session.scalars(
            select(OutboxMessage).where(OutboxMessage.subscription_id.in_(subscription_ids))
        ).all()
    customers = {customer for _, customer in renewals}
    ours = [c for c in charges if c["customer_id"] in customers]
    booked = {r.payment_intent_id: r.id for r, _ in renewals if r.payment_intent_id}

    per_renewal = Counter(keys.get(c["idempotency_key"]) for c in ours)
    doubles = [rid for rid, n in per_renewal.items() if rid is not None and n > 1]
    problems += [f"renewal {rid} charged {per_renewal[rid]} times" for rid in doubles]
    unbooked = [c for c in ours if booked.get(c["payment_intent_id"]) is None]
    problems += [f"charge {c['payment_intent_id']} is not booked" for c in unbooked]
    misbooked = [
        c
        for c in ours
        if c["payment_intent_id"] in booked
        and booked[c["payment_intent_id"]] != keys.get(c["idempotency_key"])
    ]
    problems += [f"charge {c['payment_intent_id']} booked on another renewal" for c in misbooked]

    stuck = [
        r
        for r, _ in renewals
        if r.status == "charging" or (r.lease_expires_at is not None and r.lease_expires_at < now)
    ]
    problems += [f"renewal {r.id} stuck {r.status} (lease {r.lease_expires_at})" for r in stuck]
    open_emails = [e for e in emails if e.status in OPEN_EMAIL]
    problems += [f"email {e.id} ({e.kind}) still {e.status}" for e in open_emails]

    # Only the messages of these subscriptions, known by the outbox key each one carries.
    wanted = {e.dedupe_key for e in emails}
    received = Counter(str(m["Message-ID"]) for m in mailbox if m["X-Renewals-Key"] in wanted)
    duplicates = sum(n - 1 for n in received.values())
    problems += [f"email {mid} received {n} times" for mid, n in received.items() if n > 1]
    return Figures(
        renewals=len(renewals),
        booked=len(booked),
        charges_executed=len(ours),
        double_charges=len(doubles),
        unbooked=len(unbooked) + len(misbooked),
        stuck=len(stuck),
        emails_open=len(open_emails),
        emails_received=len(received),
        duplicate_emails=duplicates,
        problems=tuple(problems),
    )
