"""The import's set-based path (staging table, one conflict query, INSERT … SELECT) against
the API's one-row path, on SQLite and PostgreSQL: the same rows stored the same way, the same
conflicts in the same words, and SQLite's writes in line ranges."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from renewals.api import RenewalsAPI, RenewalsAPIError
from renewals.config import Settings
from renewals.domain.import_rows import FileFormat
from renewals.models import AuditEvent, Customer, PaymentMethod, Subscription
from renewals.models.db import unit_of_work
from renewals.services import imports
from renewals.services.imports import ImportReport, import_subscriptions

NOW = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)
HEADER = (
    "external_id,email,customer_id,payment_method_id,amount,currency,interval,next_renewal_at,"
    "interval_count,price_id,name"
)


# What COPY's text format and SQL quoting must carry through untouched.
NAME = 'Ann \\ O\'Hara\t"Q" \\N'
CSV_NAME = NAME.replace('"', '""')


def run(engine: Engine, settings: Settings, lines: list[str]) -> ImportReport:
    body = "\n".join([HEADER, *lines]) + "\n"
    return import_subscriptions(
        engine, settings, io.StringIO(body), FileFormat.CSV, now=NOW, actor="import"
    )


def api(engine: Engine, settings: Settings) -> RenewalsAPI:
    return RenewalsAPI(engine, settings, clock=lambda: NOW, actor="import")


# What an import and an API create must store alike, and what identifies one row.
IDENTITY = {"id", "external_id", "customer_id", "payment_method_id"}


def stored(engine: Engine, external_id: str) -> dict[str, Any]:
    """The subscription as the ORM reads it, its customer, card and audit row, and the raw
    values the database holds for its instants."""
    with unit_of_work(engine) as session:
        sub = session.scalars(
            select(Subscription).where(Subscription.external_id == external_id)
        ).one()
        customer = session.get_one(Customer, sub.customer_id)
        card = session.get_one(PaymentMethod, sub.payment_method_id)
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.subscription_id == sub.id)
        ).one()
        raw = session.execute(
            text(
                "SELECT anchor, next_renewal_at, status_changed_at, created_at "
                "FROM subscriptions WHERE id = :id"
            ),
            {"id": sub.id},
        ).one()
        return {
            "subscription": {
                column.key: getattr(sub, column.key)
                for column in Subscription.__table__.columns
                if column.key not in IDENTITY
            },
            "customer": (customer.email, customer.name, customer.created_at),
            "card": (card.brand, card.last4, card.details_fetched_at, card.created_at),
            "audit": (
                audit.actor,
                audit.action,
                audit.from_status,
                audit.to_status,
                audit.created_at,
                # Only the external id differs, and it is in the details.
                sorted(audit.details or {}),
            ),
            "raw instants": tuple(raw),
        }


def test_an_imported_subscription_reads_back_as_one_the_api_made(
    engine: Engine, settings: Settings
) -> None:
    # An offset other than UTC, microseconds: both must be stored as the ORM stores them.
    when = "2026-12-01T10:30:15.250000+01:30"
    report = run(
        engine,
        settings,
        [f'imp-1,ann@example.com,cus_imp,pm_imp,1999,EUR,week,{when},2,price_basic,"{CSV_NAME}"'],
    )
    assert report.created == 1
    made = api(engine, settings).create_subscription(
        external_id="api-1",
        email="ann@example.com",
        customer_id="cus_api",
        payment_method_id="pm_api",
        amount=1999,
        currency="EUR",
        interval="week",
        next_renewal_at=when,
        interval_count=2,
        price_id="price_basic",
        name=NAME,
    )
    assert made.created
    imported, created = stored(engine, "imp-1"), stored(engine, "api-1")
    assert imported == created
    sub = imported["subscription"]
    assert sub["anchor"] == sub["next_renewal_at"] == datetime(2026, 12, 1, 9, 0, 15, 250000, UTC)
    assert (sub["status"].value, sub["created_at"]) == ("active", NOW)
    assert imported["customer"][1] == NAME


def test_a_file_of_no_rows_creates_nothing(engine: Engine, settings: Settings) -> None:
    report = run(engine, settings, [])
    assert (report.ok, report.read, report.created, report.unchanged) == (True, 0, 0, 0)


def test_a_conflict_is_told_in_the_same_words_by_the_import_and_the_api(
    engine: Engine, settings: Settings
) -> None:
    when = "2026-12-01T09:00:00Z"
    assert run(
        engine,
        settings,
        [
            f"c-1,a@example.com,cus_a,pm_a,1000,USD,month,{when},1,,",
            f"c-2,b@example.com,cus_b,pm_b,1000,USD,month,{when},1,price_x,",
        ],
    ).ok
    terms: dict[str, Any] = {
        "email": "a@example.com",
        "customer_id": "cus_a",
        "payment_method_id": "pm_a",
        "amount": 1000,
        "currency": "USD",
        "interval": "month",
        "next_renewal_at": when,
    }
    cases = {
        # Two terms changed: the first names the field, the reason names both.
        "c-1,a@example.com,cus_a,pm_a,1500,USD,year,{when},1,,": {
            **terms,
            "external_id": "c-1",
            "amount": 1500,
            "interval": "year",
        },
        # A price removed is a change too (NULL against a value).
        "c-2,b@example.com,cus_b,pm_b,1000,USD,month,{when},1,,": {
            **terms,
            "external_id": "c-2",
            "email": "b@example.com",
            "customer_id": "cus_b",
            "payment_method_id": "pm_b",
        },
        "c-3,other@example.com,cus_a,pm_c,1000,USD,month,{when},1,,": {
            **terms,
            "external_id": "c-3",
            "email": "other@example.com",
            "payment_method_id": "pm_c",
        },
        "c-4,d@example.com,cus_d,pm_a,1000,USD,month,{when},1,,": {
            **terms,
            "external_id": "c-4",
            "email": "d@example.com",
            "customer_id": "cus_d",
        },
    }
    told = []
    for line, call in cases.items():
        report = run(engine, settings, [line.format(when=when)])
        assert len(report.errors) == 1 and report.errors[0].line == 2
        with pytest.raises(RenewalsAPIError) as refused:
            api(engine, settings).create_subscription(**call)
        assert refused.value.code == "conflict"
        error = report.errors[0]
        assert (refused.value.field, refused.value.message) == (error.field, error.reason)
        told.append((error.field, error.reason))
    assert told[0][0] == "amount" and "another amount, interval:" in told[0][1]
    assert told[1][0] == "price_id"
    assert told[2] == ("email", "customer cus_a exists with another email")
    assert told[3] == ("payment_method_id", "pm_a is saved for another customer (cus_a)")


def test_sqlite_writes_in_line_ranges_find_customers_and_cards_of_earlier_ranges(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "SQLITE_WRITE_ROWS", 3)
    when = "2026-12-01T09:00:00Z"
    # cus_0 first appears on line 2, and again on lines 6 and 10 (other ranges); the name
    # of a customer is the one of its first row.
    lines = [
        f"r-{n},u{n % 4}@example.com,cus_{n % 4},pm_{n},{100 + n},USD,day,{when},1,,Name {n}"
        for n in range(10)
    ]
    first = run(engine, settings, lines)
    assert (first.created, first.unchanged) == (10, 0)
    again = run(engine, settings, [*lines, f"r-10,u0@example.com,cus_0,pm_10,1,USD,day,{when},1,,"])
    assert (again.created, again.unchanged) == (1, 10)
    with unit_of_work(engine) as session:
        owners = session.execute(
            select(Subscription.external_id, Subscription.amount, Customer.faststar_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
            .where(PaymentMethod.customer_id == Customer.id)
            .order_by(Subscription.id)
        ).all()
        names = dict(session.execute(select(Customer.faststar_id, Customer.name)).tuples().all())
    expected = [(f"r-{n}", 100 + n, f"cus_{n % 4}") for n in range(10)]
    assert [tuple(row) for row in owners] == [*expected, ("r-10", 1, "cus_0")]
    assert names == {f"cus_{n}": f"Name {n}" for n in range(4)}
