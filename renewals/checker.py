"""The checker: our books against the provider's executed-charge ledger, once a run is quiet.

The sandbox logs every charge it executed (``GET /api/v1/sandbox/charges``); that log is the
ground truth a failure-laden run is judged by. Once nothing is in flight any more,
:func:`check` compares it with the database and lists every breach of the engine's promises:

- **double charges**: a period (renewal) charged more than once;
- **unbooked**: an executed charge that is neither booked on a renewal with the same payment
  id and amount, nor held in ``unknown`` (its attempt's outcome is being reconciled), nor in
  a payment review. Never silently missing. Also the converse, a renewal booked with a
  payment id the provider never executed;
- **stuck**: a renewal left claimed or ``charging`` past its lease, due work nobody took
  (``pending`` or a due job past its time plus a grace), an attempt in flight on a renewal
  that is not charging, an email ``sending`` past its lease or due and never sent;
- **attempts over the limit**: more attempts on a renewal than 1 + the dunning retry days
  (an operator's ``retry`` and attempts closed as not charged are not the schedule's; sends
  of the same attempt under its own key are counted separately, as ``same_key_resends``);
- **duplicate emails** (when the accepted emails are given): an outbox row delivered more
  than once under different Message-IDs (and, as **lost emails**, a row marked sent that
  never arrived). A resend
  in the window between the SMTP server's acceptance and our commit carries the same
  Message-ID: it is counted (``email_resends``), not a violation.

Pure apart from reading: it never changes a row. ``renewals check`` is its command.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.domain.states import AttemptStatus, OutboxStatus, RenewalStatus
from renewals.models import (
    ChargeAttempt,
    CheckoutSessionRecord,
    OutboxMessage,
    PaymentReview,
    Renewal,
)
from renewals.models.db import unit_of_work

__all__ = [
    "CheckReport",
    "DeliveredEmail",
    "ExecutedCharge",
    "Violation",
    "check",
    "fetch_ledger",
    "read_deliveries",
]


@dataclass(frozen=True, slots=True)
class ExecutedCharge:
    """One charge the provider executed (a row of the sandbox's charge log)."""

    payment_intent_id: str
    amount: int
    currency: str
    customer_id: str | None = None
    idempotency_key: str | None = None
    checkout_session_id: str | None = None
    source: str = "off_session"

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ExecutedCharge:
        return cls(
            payment_intent_id=str(row["payment_intent_id"]),
            amount=int(row["amount"]),
            currency=str(row["currency"]).upper(),
            customer_id=row.get("customer_id"),
            idempotency_key=row.get("idempotency_key"),
            checkout_session_id=row.get("checkout_session_id"),
            source=str(row.get("source") or "off_session"),
        )


@dataclass(frozen=True, slots=True)
class DeliveredEmail:
    """One email an SMTP server accepted: the outbox row's key and the Message-ID."""

    key: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach: which invariant (``kind``), of what (``subject``), and how."""

    kind: str
    subject: str
    detail: str


@dataclass
class CheckReport:
    charges_executed: int = 0
    renewals: int = 0
    attempts: int = 0
    same_key_resends: int = 0
    held_unknown: int = 0
    held_in_review: int = 0
    emails_checked: bool = False
    emails_sent: int = 0
    email_resends: int = 0
    """Same-Message-ID resends in the acceptance-to-commit window: counted, allowed."""
    double_charges: list[Violation] = field(default_factory=list)
    unbooked: list[Violation] = field(default_factory=list)
    stuck: list[Violation] = field(default_factory=list)
    attempts_over_limit: list[Violation] = field(default_factory=list)
    duplicate_emails: list[Violation] = field(default_factory=list)
    lost_emails: list[Violation] = field(default_factory=list)

    @property
    def violations(self) -> list[Violation]:
        return [
            *self.double_charges,
            *self.unbooked,
            *self.stuck,
            *self.attempts_over_limit,
            *self.duplicate_emails,
            *self.lost_emails,
        ]

    @property
    def ok(self) -> bool:
        return not self.violations

    def figures(self) -> dict[str, int]:
        """The counts a run prints: what happened, and each invariant's breaches."""
        return {
            "charges_executed": self.charges_executed,
            "renewals": self.renewals,
            "attempts": self.attempts,
            "same_key_resends": self.same_key_resends,
            "held_unknown": self.held_unknown,
            "held_in_review": self.held_in_review,
            "emails_sent": self.emails_sent,
            "email_resends": self.email_resends,
            "double_charges": len(self.double_charges),
            "unbooked": len(self.unbooked),
            "stuck": len(self.stuck),
            "attempts_over_limit": len(self.attempts_over_limit),
            "duplicate_emails": len(self.duplicate_emails),
            "lost_emails": len(self.lost_emails),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "emails_checked": self.emails_checked,
            "figures": self.figures(),
            "violations": [asdict(v) for v in self.violations],
        }


def fetch_ledger(base_url: str, *, client: httpx.Client | None = None) -> list[ExecutedCharge]:
    """The sandbox's executed-charge log; ``base_url`` is the API's (``…/api/v1``)."""
    url = f"{base_url.rstrip('/')}/sandbox/charges"
    own = client is None
    http = client or httpx.Client(timeout=30.0)
    try:
        response = http.get(url)
        response.raise_for_status()
        envelope = response.json()
    finally:
        if own:
            http.close()
    if not envelope.get("success"):
        raise RuntimeError(f"the sandbox refused GET /sandbox/charges: {envelope.get('message')}")
    return [ExecutedCharge.from_json(row) for row in envelope["data"]]


def read_deliveries(path: Path) -> list[DeliveredEmail]:
    """Accepted emails from a JSON-lines file of ``{"key": …, "message_id": …}`` objects."""
    deliveries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            deliveries.append(DeliveredEmail(str(row["key"]), str(row["message_id"])))
    return deliveries


@dataclass(frozen=True, slots=True)
class _Renewal:
    id: int
    status: RenewalStatus
    amount: int
    currency: str
    payment_intent_id: str | None
    wake_at: datetime | None
    lease_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Attempt:
    id: int
    renewal_id: int
    status: AttemptStatus
    idempotency_key: str
    sends: int
    requested_by: str | None


def check(
    engine: Engine,
    ledger: Sequence[ExecutedCharge],
    *,
    now: datetime,
    settings: Settings,
    emails: Iterable[DeliveredEmail] | None = None,
    grace: timedelta | None = None,
) -> CheckReport:
    """Compare the books in ``engine`` with ``ledger`` (see the module docstring).

    ``grace``: how long due work may wait for its sweep before it counts as stuck (default
    two sweep intervals). ``emails``: what the SMTP server accepted; None skips that check.
    """
    grace = grace if grace is not None else timedelta(seconds=2 * settings.sweep_interval)
    with unit_of_work(engine) as session:
        renewals = [
            _Renewal(*row)
            for row in session.execute(
                select(
                    Renewal.id,
                    Renewal.status,
                    Renewal.amount,
                    Renewal.currency,
                    Renewal.payment_intent_id,
                    Renewal.wake_at,
                    Renewal.lease_expires_at,
                )
            )
        ]
        attempts = [
            _Attempt(*row)
            for row in session.execute(
                select(
                    ChargeAttempt.id,
                    ChargeAttempt.renewal_id,
                    ChargeAttempt.status,
                    ChargeAttempt.idempotency_key,
                    ChargeAttempt.sends,
                    ChargeAttempt.requested_by,
                )
            )
        ]
        sessions = dict(
            session.execute(
                select(CheckoutSessionRecord.session_id, CheckoutSessionRecord.renewal_id)
            )
            .tuples()
            .all()
        )
        reviewed = set(
            session.scalars(
                select(PaymentReview.payment_intent_id).where(
                    PaymentReview.payment_intent_id.is_not(None)
                )
            )
        )
        outbox = list(
            session.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.dedupe_key,
                    OutboxMessage.status,
                    OutboxMessage.next_attempt_at,
                    OutboxMessage.lease_expires_at,
                )
            ).tuples()
        )

    report = CheckReport(
        charges_executed=len(ledger),
        renewals=len(renewals),
        attempts=len(attempts),
        same_key_resends=sum(max(a.sends - 1, 0) for a in attempts),
    )
    by_id = {r.id: r for r in renewals}
    by_key = {a.idempotency_key: a for a in attempts}
    _check_charges(report, ledger, by_id, by_key, sessions, reviewed)
    _check_stuck(report, renewals, attempts, outbox, now=now, grace=grace)
    _check_attempts(report, attempts, limit=1 + len(settings.dunning_days))
    if emails is not None:
        _check_emails(report, list(emails), outbox)
    return report


def _check_charges(
    report: CheckReport,
    ledger: Sequence[ExecutedCharge],
    renewals: dict[int, _Renewal],
    attempts: dict[str, _Attempt],
    sessions: dict[str, int],
    reviewed: set[str | None],
) -> None:
    booked = {r.payment_intent_id: r for r in renewals.values() if r.payment_intent_id}
    charged: dict[int, list[str]] = defaultdict(list)
    executed: set[str] = set()
    for charge in ledger:
        pi = charge.payment_intent_id
        executed.add(pi)
        attempt = attempts.get(charge.idempotency_key or "")
        renewal = booked.get(pi)
        renewal_id = (
            renewal.id
            if renewal is not None
            else attempt.renewal_id
            if attempt is not None
            else sessions.get(charge.checkout_session_id or "")
        )
        if renewal_id is not None:
            charged[renewal_id].append(pi)
        if renewal is not None:
            if (renewal.amount, renewal.currency.upper()) != (charge.amount, charge.currency):
                report.unbooked.append(
                    Violation(
                        "amount_mismatch",
                        pi,
                        f"executed {charge.amount} {charge.currency}, renewal {renewal.id} "
                        f"booked {renewal.amount} {renewal.currency}",
                    )
                )
        elif attempt is not None and attempt.status == AttemptStatus.UNKNOWN:
            report.held_unknown += 1
        elif pi in reviewed:
            report.held_in_review += 1
        else:
            where = f"renewal {renewal_id}" if renewal_id is not None else "no renewal of ours"
            report.unbooked.append(
                Violation(
                    "unbooked",
                    pi,
                    f"executed {charge.amount} {charge.currency} ({charge.source}, {where}); "
                    "not booked, not unknown, not in a review",
                )
            )
    for renewal_id, pis in sorted(charged.items()):
        if len(pis) > 1:
            report.double_charges.append(
                Violation(
                    "double_charge",
                    f"renewal {renewal_id}",
                    f"{len(pis)} executed charges: {', '.join(pis)}",
                )
            )
    for pi, renewal in sorted(booked.items(), key=lambda item: item[1].id):
        if pi not in executed:
            report.unbooked.append(
                Violation(
                    "booked_not_executed",
                    f"renewal {renewal.id}",
                    f"booked {pi}, which the provider never executed",
                )
            )


def _check_stuck(
    report: CheckReport,
    renewals: Sequence[_Renewal],
    attempts: Sequence[_Attempt],
    outbox: Sequence[tuple[int, str, str, datetime | None, datetime | None]],
    *,
    now: datetime,
    grace: timedelta,
) -> None:
    overdue = now - grace

    def stuck(kind: str, subject: str, detail: str) -> None:
        report.stuck.append(Violation(kind, subject, detail))

    for r in renewals:
        subject = f"renewal {r.id}"
        if r.lease_expires_at is not None and r.lease_expires_at <= overdue:
            stuck("lease_expired", subject, f"{r.status}, lease expired {r.lease_expires_at}")
        elif r.status == RenewalStatus.CHARGING and r.lease_expires_at is None:
            stuck("charging_unleased", subject, "charging without a lease")
        elif r.lease_expires_at is None and r.wake_at is not None and r.wake_at <= overdue:
            stuck("due_not_taken", subject, f"{r.status}, due {r.wake_at} and not claimed")
    charging = {r.id for r in renewals if r.status == RenewalStatus.CHARGING}
    for a in attempts:
        if a.status == AttemptStatus.IN_FLIGHT and a.renewal_id not in charging:
            stuck("attempt_in_flight", f"attempt {a.id}", f"renewal {a.renewal_id} not charging")
    for message_id, _key, status, next_at, lease in outbox:
        subject = f"email {message_id}"
        if status == OutboxStatus.SENDING and (lease is None or lease <= overdue):
            stuck("email_sending", subject, f"sending, lease expired {lease}")
        elif status == OutboxStatus.PENDING and (next_at is None or next_at <= overdue):
            stuck("email_not_sent", subject, f"pending, due {next_at}")


def _check_attempts(report: CheckReport, attempts: Sequence[_Attempt], *, limit: int) -> None:
    scheduled = Counter(
        a.renewal_id
        for a in attempts
        if a.requested_by is None and a.status != AttemptStatus.NOT_CHARGED
    )
    for renewal_id, count in sorted(scheduled.items()):
        if count > limit:
            report.attempts_over_limit.append(
                Violation(
                    "attempts_over_limit",
                    f"renewal {renewal_id}",
                    f"{count} scheduled attempts, at most {limit} allowed",
                )
            )


def _check_emails(
    report: CheckReport,
    emails: Sequence[DeliveredEmail],
    outbox: Sequence[tuple[int, str, str, datetime | None, datetime | None]],
) -> None:
    report.emails_checked = True
    received: dict[str, list[str]] = defaultdict(list)
    for email in emails:
        received[email.key].append(email.message_id)
    report.emails_sent = len(emails)
    for key, ids in sorted(received.items()):
        if len(ids) < 2:
            continue
        if len(set(ids)) == 1:
            report.email_resends += len(ids) - 1
        else:
            report.duplicate_emails.append(
                Violation(
                    "duplicate_email",
                    key,
                    f"delivered {len(ids)} times under {len(set(ids))} Message-IDs",
                )
            )
    for message_id, key, status, _next_at, _lease in outbox:
        if status == OutboxStatus.SENT and key not in received:
            report.lost_emails.append(
                Violation("email_lost", f"email {message_id}", "marked sent, never accepted")
            )
