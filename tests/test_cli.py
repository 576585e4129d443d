"""The `renewals` command as a newcomer types it: real processes, the real sandbox, SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from renewals.sandbox.testing import RunningSandbox

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(sandbox: RunningSandbox, tmp_path: Path) -> Cli:
    env = {
        **os.environ,
        "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
        "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
        "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
    }

    def run(*args: str, ok: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "renewals", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    run("db", "upgrade")
    return run


def test_add_show_list_round_trip(cli: Cli, sandbox: RunningSandbox) -> None:
    added = json.loads(
        cli(
            "subscriptions",
            "add",
            "--email",
            "jane@example.com",
            "--card",
            "4242 4242 4242 4242",
            "--amount",
            "1999",
            "--currency",
            "USD",
            "--interval",
            "month",
            "--renews-at",
            "2030-01-31T09:00:00Z",
            "--json",
        ).stdout
    )
    assert added["status"] == "active"
    assert added["customer_id"].startswith("cus_")
    assert added["payment_method_id"].startswith("pm_")
    assert (added["amount"], added["currency"]) == (1999, "USD")
    assert added["renewals"] == []
    assert added["next_renewal_at"] == "2030-01-31T09:00:00+00:00"

    plain = cli(
        "subscriptions",
        "add",
        "--email",
        "joe@example.com",
        "--customer",
        added["customer_id"],
        "--payment-method",
        added["payment_method_id"],
        "--amount",
        "500",
        "--currency",
        "JPY",
        "--interval",
        "week",
        "--interval-count",
        "2",
    ).stdout.strip()
    assert plain.isdigit()

    shown = json.loads(cli("subscriptions", "show", str(added["id"]), "--json").stdout)
    assert {k: v for k, v in shown.items() if k != "timeline"} == added
    assert [(e["kind"], e["text"]) for e in shown["timeline"]] == [
        ("audit", "cli: subscription_created -> active")
    ]
    assert (added["amount_display"], added["next_action"]) == ("19.99 USD", "renew")
    listed = json.loads(cli("subscriptions", "list", "--json").stdout)
    assert [s["id"] for s in listed] == [added["id"], int(plain)]
    assert json.loads(cli("subscriptions", "list", "--status", "canceled", "--json").stdout) == []

    # The same for people: a table with headers, amounts in major units per currency.
    table = cli("subscriptions", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "STATUS",
        "AMOUNT",
        "EVERY",
        "NEXT",
        "ACTION",
        "AT",
        "DECLINE",
    ]
    assert table[1].split()[:5] == [str(added["id"]), "active", "19.99", "USD", "1"]
    assert table[1].split()[6:] == ["renew", "2030-01-31", "09:00Z", "-"]
    assert "500 JPY" in table[2] and "2 week" in table[2]
    shown_text = cli("subscriptions", "show", str(added["id"])).stdout
    assert "19.99 USD every 1 month" in shown_text
    assert "cli: subscription_created -> active" in shown_text
    # Empty results say so, in words and in JSON.
    assert cli("unknown").stdout.strip() == "no renewal has an unknown outcome"
    report = json.loads(cli("report", "--days", "7", "--json").stdout)
    assert report["subscriptions"]["active"] == 2
    assert report["renewals_by_outcome"] == []
    assert sandbox.charges() == []  # adding a subscription charges nothing by itself


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "0", "--currency", "USD"], "amount"),
        (["--amount", "-5", "--currency", "USD"], "amount"),
        (["--amount", "100", "--currency", "XYZ"], "currency"),
        (["--amount", "99999999", "--currency", "USD"], "cap"),
    ],
)
def test_bad_subscriptions_are_refused_with_a_clear_error(
    cli: Cli, args: list[str], message: str
) -> None:
    result = cli(
        "subscriptions",
        "add",
        "--email",
        "a@example.com",
        "--card",
        "4242424242424242",
        "--interval",
        "month",
        *args,
        ok=False,
    )
    assert result.returncode != 0
    assert message in result.stderr.lower()
    assert json.loads(cli("subscriptions", "list", "--json").stdout) == []


def test_card_or_customer_not_both(cli: Cli) -> None:
    result = cli(
        "subscriptions",
        "add",
        "--email",
        "a@example.com",
        "--card",
        "4242424242424242",
        "--customer",
        "cus_x",
        "--payment-method",
        "pm_x",
        "--amount",
        "100",
        "--currency",
        "USD",
        "--interval",
        "month",
        ok=False,
    )
    assert result.returncode == 2
    assert "either --card" in result.stderr


def test_bad_configuration_names_the_variable(cli: Cli) -> None:
    result = cli("subscriptions", "list", ok=False, RENEWALS_DATABASE_URL="mysql://nope")
    assert result.returncode == 1
    assert "RENEWALS_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
