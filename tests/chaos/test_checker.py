"""The checker on seeded rows (SQLite and PostgreSQL): each invariant's breach is found, and
a run whose books agree with the ledger is reported clean."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from renewals.checker import DeliveredEmail, ExecutedCharge, check
from renewals.config import Settings
from renewals.models import (
    ChargeAttempt,
    Customer,
    OutboxMessage,
    PaymentMethod,
    PaymentReview,
    Renewal,
    Subscription,
)
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


class Books:
    """Rows inserted as a run would leave them, one subscription per renewal."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with unit_of_work(engine) as session:
            self.customer = session.scalar(
                insert(Customer)
                .values(
                    faststar_id=f"cus_{uuid.uuid4().hex}", email="c@example.com", created_at=NOW
                )
                .returning(Customer.id)
            )
            self.card = session.scalar(
                insert(PaymentMethod)
                .values(
                    faststar_id=f"pm_{uuid.uuid4().hex}",
                    customer_id=self.customer,
                    brand="visa",
                    last4="4242",
                    exp_month=12,
                    exp_year=2030,
                    created_at=NOW,
                )
                .returning(PaymentMethod.id)
            )

    def renewal(self, status: str = "succeeded", **values: Any) -> int:
        with unit_of_work(self.engine) as session:
            sub = session.scalar(
                insert(Subscription)
                .values(
                    customer_id=self.customer,
                    payment_method_id=self.card,
                    amount=1999,
                    currency="USD",
                    interval="month",
                    interval_count=1,
                    anchor=NOW,
                    status="active",
                    status_changed_at=NOW,
                    cancel_at_period_end=False,
                    next_period_index=1,
                    next_renewal_at=NOW + timedelta(days=31),
                    created_at=NOW,
                )
                .returning(Subscription.id)
            )
            return int(
                session.scalar(
                    insert(Renewal)
                    .values(
                        subscription_id=sub,
                        period_index=0,
                        period_start=NOW,
                        period_end=NOW + timedelta(days=31),
                        amount=1999,
                        currency="USD",
                        status=status,
                        declines=0,
                        reminders_sent=0,
                        created_at=NOW,
                        updated_at=NOW,
                        **values,
                    )
                    .returning(Renewal.id)
                )
            )

    def attempt(self, renewal_id: int, status: str, **values: Any) -> str:
        key = f"renewal-{renewal_id}-{next(_ids)}"
        with unit_of_work(self.engine) as session:
            session.execute(
                insert(ChargeAttempt).values(
                    renewal_id=renewal_id,
                    number=next(_ids),
                    idempotency_key=key,
                    status=status,
                    amount=1999,
                    currency="USD",
                    sends=values.pop("sends", 1),
                    checks=0,
                    created_at=NOW,
                    sent_at=NOW,
                    **values,
                )
            )
        return key

    def email(self, key: str, status: str = "sent", **values: Any) -> None:
        with unit_of_work(self.engine) as session:
            sub = session.scalar(
                insert(Subscription)
                .values(
                    customer_id=self.customer,
                    payment_method_id=self.card,
                    amount=1,
                    currency="USD",
                    interval="month",
                    interval_count=1,
                    anchor=NOW,
                    status="active",
                    status_changed_at=NOW,
                    cancel_at_period_end=False,
                    next_period_index=0,
                    next_renewal_at=NOW + timedelta(days=31),
                    created_at=NOW,
                )
                .returning(Subscription.id)
            )
            session.execute(
                insert(OutboxMessage).values(
                    dedupe_key=key,
                    subscription_id=sub,
                    kind="receipt",
                    recipient="c@example.com",
                    context={},
                    status=status,
                    attempts=1,
                    created_at=NOW,
                    **values,
                )
            )

    def review(self, payment_intent_id: str) -> None:
        with unit_of_work(self.engine) as session:
            session.execute(
                insert(PaymentReview).values(
                    dedupe_key=f"unmatched:{payment_intent_id}",
                    kind="unmatched",
                    status="open",
                    payment_intent_id=payment_intent_id,
                    amount=1999,
                    currency="USD",
                    source="webhook",
                    reason="matches nothing",
                    created_at=NOW,
                )
            )


def paid(books: Books) -> tuple[str, ExecutedCharge]:
    """A renewal paid and booked: the clean case every test starts from."""
    pi = f"pi_{uuid.uuid4().hex}"
    renewal = books.renewal("succeeded", payment_intent_id=pi)
    key = books.attempt(renewal, "succeeded", payment_intent_id=pi)
    return key, ExecutedCharge(pi, 1999, "USD", idempotency_key=key)


@pytest.fixture
def books(engine: Engine) -> Books:
    return Books(engine)


def run(books: Books, settings: Settings, ledger: list[ExecutedCharge], **kw: Any) -> Any:
    return check(books.engine, ledger, now=NOW + timedelta(hours=1), settings=settings, **kw)


def test_a_run_whose_books_agree_is_clean(books: Books, settings: Settings) -> None:
    _, charge = paid(books)
    unknown = books.renewal("unknown")
    unknown_key = books.attempt(unknown, "unknown", sends=2)
    books.review("pi_reviewed")
    books.email("receipt:1")
    ledger = [
        charge,
        ExecutedCharge("pi_held", 1999, "USD", idempotency_key=unknown_key),
        ExecutedCharge("pi_reviewed", 1999, "USD"),
    ]
    report = run(books, settings, ledger, emails=[DeliveredEmail("receipt:1", "<m1>")])
    assert report.ok, report.violations
    figures = report.figures()
    assert figures["charges_executed"] == 3
    assert (figures["held_unknown"], figures["held_in_review"]) == (1, 1)
    assert figures["same_key_resends"] == 1
    assert figures["emails_sent"] == 1


def test_a_period_charged_twice_is_a_double_charge(books: Books, settings: Settings) -> None:
    _, charge = paid(books)
    renewal = books.renewal("succeeded", payment_intent_id="pi_a")
    first = books.attempt(renewal, "declined")
    second = books.attempt(renewal, "succeeded", payment_intent_id="pi_a")
    ledger = [
        charge,
        ExecutedCharge("pi_a", 1999, "USD", idempotency_key=second),
        ExecutedCharge("pi_b", 1999, "USD", idempotency_key=first),
    ]
    report = run(books, settings, ledger)
    assert [v.subject for v in report.double_charges] == [f"renewal {renewal}"]
    # The second execution is booked nowhere either.
    assert [v.subject for v in report.unbooked] == ["pi_b"]
    assert not report.ok


def test_an_executed_charge_booked_nowhere_is_unbooked(books: Books, settings: Settings) -> None:
    renewal = books.renewal("retry_scheduled")
    key = books.attempt(renewal, "declined")
    report = run(books, settings, [ExecutedCharge("pi_lost", 1999, "USD", idempotency_key=key)])
    assert [(v.kind, v.subject) for v in report.unbooked] == [("unbooked", "pi_lost")]
    assert not report.ok


def test_a_booking_with_another_amount_or_no_execution_is_reported(
    books: Books, settings: Settings
) -> None:
    renewal = books.renewal("succeeded", payment_intent_id="pi_wrong")
    books.attempt(renewal, "succeeded", payment_intent_id="pi_wrong")
    books.renewal("succeeded", payment_intent_id="pi_phantom")
    report = run(books, settings, [ExecutedCharge("pi_wrong", 999, "USD")])
    assert sorted(v.kind for v in report.unbooked) == ["amount_mismatch", "booked_not_executed"]


def test_work_left_past_its_lease_is_stuck(books: Books, settings: Settings) -> None:
    expired = NOW - timedelta(minutes=10)
    charging = books.renewal("charging", wake="charge", wake_at=expired, lease_expires_at=expired)
    books.attempt(charging, "in_flight")
    books.renewal("pending", wake="charge", wake_at=expired)
    orphan = books.renewal("retry_scheduled", wake="charge", wake_at=NOW + timedelta(days=3))
    books.attempt(orphan, "in_flight")
    books.renewal("charging", wake="charge", wake_at=NOW, lease_expires_at=NOW + timedelta(hours=2))
    books.email("receipt:stuck", status="sending", lease_expires_at=expired)
    books.email("receipt:due", status="pending", next_attempt_at=expired)
    report = run(books, settings, [])
    assert sorted(v.kind for v in report.stuck) == [
        "attempt_in_flight",
        "due_not_taken",
        "email_not_sent",
        "email_sending",
        "lease_expired",
    ]


def test_more_attempts_than_the_dunning_schedule_allows(books: Books, settings: Settings) -> None:
    assert settings.dunning_days == (3, 5, 7)
    within = books.renewal("failed")
    over = books.renewal("failed")
    for _ in range(4):
        books.attempt(within, "declined")
        books.attempt(over, "declined")
    books.attempt(within, "declined", requested_by="operator:ann")  # an operator's retry
    books.attempt(within, "not_charged")  # closed by an operator: a fresh one followed
    books.attempt(over, "declined")
    report = run(books, settings, [])
    assert [v.subject for v in report.attempts_over_limit] == [f"renewal {over}"]


def test_emails_twice_under_new_ids_or_never_accepted(books: Books, settings: Settings) -> None:
    books.email("receipt:window")
    books.email("receipt:twice")
    books.email("receipt:never")
    emails = [
        DeliveredEmail("receipt:window", "<w>"),
        DeliveredEmail("receipt:window", "<w>"),  # the acceptance-to-commit window: allowed
        DeliveredEmail("receipt:twice", "<t1>"),
        DeliveredEmail("receipt:twice", "<t2>"),
    ]
    report = run(books, settings, [], emails=emails)
    assert report.email_resends == 1
    assert [v.subject for v in report.duplicate_emails] == ["receipt:twice"]
    assert [v.kind for v in report.lost_emails] == ["email_lost"]


def test_renewals_check_exits_non_zero_on_a_violation(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/check.db",
        "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
        "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "renewals", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert cli("db", "upgrade").returncode == 0
    clean = cli("check", "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["ok"] is True

    sandbox.save_card()  # customers only: nothing charged yet
    with sandbox.api_client() as http:
        cus, pm = sandbox.save_card(email="x@example.com")
        http.post(
            f"public/customers/{cus}/charge",
            json={"payment_method_id": pm, "amount": 500, "currency": "USD"},
        ).raise_for_status()
    dirty = cli("check")
    assert dirty.returncode == 1
    assert "unbooked" in dirty.stdout and "1 violation(s)" in dirty.stdout
