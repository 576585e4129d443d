"""Importing subscriptions on SQLite and PostgreSQL: written once, a second import changes
nothing, conflicts are reported and write nothing; and the command line around it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from renewals.config import Settings
from renewals.domain.import_rows import FileFormat
from renewals.domain.subscription_input import new_subscription
from renewals.models import AuditEvent, Customer, PaymentMethod, Subscription
from renewals.models.db import create_db_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.services.imports import ImportReport, import_subscriptions
from tests.support.databases import fresh_sqlite_url

HEADER = (
    "external_id,email,customer_id,payment_method_id,amount,currency,interval,next_renewal_at,"
    "interval_count"
)
WHEN = "2026-12-01T09:00:00Z"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def rows(n: int, *, amount: int = 1999, start: int = 0) -> str:
    lines = [HEADER] + [
        f"ext-{i},user{i // 2}@example.com,cus_{i // 2},pm_{i},{amount},USD,month,{WHEN},1"
        for i in range(start, start + n)  # two subscriptions per customer
    ]
    return "\n".join(lines) + "\n"


def run(engine: Engine, settings: Settings, text: str) -> ImportReport:
    return import_subscriptions(
        engine, settings, io.StringIO(text), FileFormat.CSV, now=NOW, actor="import"
    )


def counts(engine: Engine) -> dict[str, int]:
    with unit_of_work(engine) as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Subscription, Customer, PaymentMethod, AuditEvent)
        }


def test_import_then_the_same_file_again_changes_nothing(
    engine: Engine, settings: Settings
) -> None:
    text = rows(12)
    first = run(engine, settings, text)
    assert (first.ok, first.created, first.unchanged, first.cards_to_fetch) == (True, 12, 0, 12)
    after_first = counts(engine)
    assert after_first == {
        "subscriptions": 12,
        "customers": 6,
        "payment_methods": 12,
        "audit_events": 12,
    }
    with unit_of_work(engine) as session:
        sub = session.scalars(select(Subscription).where(Subscription.external_id == "ext-5")).one()
        card = session.get_one(PaymentMethod, sub.payment_method_id)
        assert (sub.status.value, sub.amount, sub.next_period_index) == ("active", 1999, 0)
        assert sub.anchor == sub.next_renewal_at == datetime(2026, 12, 1, 9, tzinfo=UTC)
        assert (card.faststar_id, card.brand, card.details_fetched_at) == ("pm_5", None, None)

    second = run(engine, settings, text)
    assert (second.ok, second.created, second.unchanged) == (True, 0, 12)
    assert counts(engine) == after_first  # no row, no audit row

    # A file that adds rows creates only those.
    more = text + "ext-12,user6@example.com,cus_6,pm_12,1999,USD,month,2026-12-01T09:00:00Z,1\n"
    third = run(engine, settings, more)
    assert (third.created, third.unchanged) == (1, 12)


def test_a_changed_row_is_a_conflict_and_nothing_is_written(
    engine: Engine, settings: Settings
) -> None:
    assert run(engine, settings, rows(2)).created == 2
    before = counts(engine)
    changed = rows(2, amount=2999) + (
        "ext-9,new@example.com,cus_9,pm_9,1999,USD,month,2026-12-01T09:00:00Z,1\n"
    )
    report = run(engine, settings, changed)
    assert not report.ok and report.created == 0
    assert [(e.line, e.field) for e in report.errors] == [(2, "amount"), (3, "amount")]
    assert "not updated" in report.errors[0].reason
    clash = HEADER + (
        f"\next-8,other@example.com,cus_0,pm_8,1999,USD,month,{WHEN},1"  # cus_0's email
        f"\next-7,x@example.com,cus_7,pm_1,1999,USD,month,{WHEN},1\n"  # cus_0's pm_1
    )
    report = run(engine, settings, clash)
    assert [(e.line, e.field) for e in report.errors] == [(2, "email"), (3, "payment_method_id")]
    assert counts(engine) == before  # ext-9 is valid, yet nothing was written


def test_an_invalid_row_writes_nothing_at_all(engine: Engine, settings: Settings) -> None:
    text = rows(3) + "bad,user@example.com,cus_x,pm_x,-1,USD,month,2026-12-01T09:00:00Z,1\n"
    report = run(engine, settings, text)
    assert [(e.line, e.field) for e in report.errors] == [(5, "amount")]
    assert counts(engine)["subscriptions"] == 0


# ---------------------------------------------------------------- the property


_fields = st.fixed_dictionaries(
    {
        "email": st.sampled_from(["a@example.com", "no-at.example.com", "a@b", ""]),
        "customer_id": st.sampled_from(["cus_a", "cus_", "cu_a"]),
        "payment_method_id": st.sampled_from(["pm_a", "pm_a b", "card_a"]),
        "amount": st.one_of(st.integers(-5, 2_000_000).map(str), st.sampled_from(["1.5", "x", ""])),
        "currency": st.sampled_from(["USD", "JPY", "usd", "XYZ", ""]),
        "interval": st.sampled_from(["day", "week", "month", "year", "fortnight"]),
        "next_renewal_at": st.sampled_from(
            ["2026-12-01T09:00:00Z", "2026-12-01T09:00:00+02:00", "2026-12-01T09:00:00", "soon"]
        ),
        "interval_count": st.sampled_from(["", "1", "3", "0", "-1", "x"]),
    }
)


def test_accepted_rows_are_written_and_refused_ones_write_nothing(
    tmp_path: Path, _sqlite_template: Path
) -> None:
    settings = Settings()
    engine = create_db_engine(fresh_sqlite_url(_sqlite_template, tmp_path))
    numbers = iter(range(1_000_000))

    @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_fields)
    def prop(fields: dict[str, str]) -> None:
        n = next(numbers)
        # Fresh ids each example: each row stands alone.
        raw = {
            **fields,
            "external_id": f"p-{n}",
            "customer_id": fields["customer_id"].replace("_a", f"_a{n}"),
            "payment_method_id": fields["payment_method_id"].replace("_a", f"_a{n}"),
        }
        header = ",".join(raw)
        line = ",".join(raw.values())
        try:
            new_subscription(raw, max_amount=settings.max_charge_amount)
            accepted = True
        except ValueError:
            accepted = False
        before = counts(engine)
        report = run(engine, settings, f"{header}\n{line}\n")
        after = counts(engine)
        assert report.ok is accepted
        if accepted:
            assert after["subscriptions"] == before["subscriptions"] + 1
        else:
            assert after == before and report.errors

    try:
        prop()
    finally:
        engine.dispose()


# ----------------------------------------------------------------- the command


def test_the_command_exit_codes_summary_and_no_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        # The hint sent after an import has no worker to reach here.
        "RENEWALS_BROKER_URL": "memory://",
        "RENEWALS_LOG_LEVEL": "WARNING",
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

    upgrade(env["RENEWALS_DATABASE_URL"])
    good = tmp_path / "subs.csv"
    good.write_text(rows(4))
    first = cli("subscriptions", "import", str(good))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("4 created, 0 unchanged")
    again = cli("subscriptions", "import", str(good), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout) | {"cards_to_fetch": 0} == {
        "ok": True,
        "rows": 4,
        "created": 0,
        "unchanged": 4,
        "errors": [],
        "cards_to_fetch": 0,
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"external_id": "j", "email": "secret.person@example", "amount": 5}) + "\n"
    )
    refused = cli("subscriptions", "import", str(bad))
    assert refused.returncode == 1
    assert "line 1: email is not an address" in refused.stderr
    assert "line 1: customer_id is missing" in refused.stderr
    assert "nothing imported" in refused.stderr
    assert "Traceback" not in refused.stderr and "secret.person" not in refused.stderr
