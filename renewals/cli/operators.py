"""``renewals unknown`` and ``renewals reviews``: what operators must look at, and how each
row is settled."""

from __future__ import annotations

from typing import Any

import click

from renewals.cli.root import main, settings_or_exit
from renewals.cli.tables import emit, read_engine, table, when
from renewals.models.db import unit_of_work
from renewals.services.operators import payments_to_review, unknown_renewals
from renewals.services.views import with_settlements


def _unknown_table(rows: list[dict[str, Any]]) -> str:
    lines = table(
        ["renewal", "sub", "period", "amount", "first sent", "reason"],
        [
            [
                r["renewal_id"],
                r["subscription_id"],
                when(r["period_start"]),
                r["amount_display"],
                when(r["first_sent_at"]),
                r["reason"],
            ]
            for r in rows
        ],
    )
    settle = "\n".join(f"  renewal {r['renewal_id']}: {r['settle']}" for r in rows)
    return f"{lines}\n\nsettle:\n{settle}"


def _reviews_table(rows: list[dict[str, Any]]) -> str:
    lines = table(
        ["review", "kind", "payment", "amount", "renewal", "source", "opened", "reason"],
        [
            [
                r["id"],
                r["kind"],
                r["payment_intent_id"],
                r["amount_display"],
                r["renewal_id"],
                r["source"],
                when(r["created_at"]),
                r["reason"],
            ]
            for r in rows
        ],
    )
    settle = "\n".join(f"  review {r['id']}: {r['settle']}" for r in rows)
    return f"{lines}\n\nsettle:\n{settle}"


@main.command("unknown")
@click.option("--json", "as_json", is_flag=True)
def unknown(as_json: bool) -> None:
    """List renewals whose charge outcome is unknown, and how to settle each."""
    settings = settings_or_exit()
    with unit_of_work(read_engine(settings)) as session:
        rows, _ = with_settlements(unknown_renewals(session), [])
    if not rows and not as_json:
        click.echo("no renewal has an unknown outcome")
        return
    emit(rows, as_json, _unknown_table)


@main.command("reviews")
@click.option("--json", "as_json", is_flag=True)
def reviews(as_json: bool) -> None:
    """List payments to act on (refunds due, unmatched payments), and how to settle each."""
    settings = settings_or_exit()
    with unit_of_work(read_engine(settings)) as session:
        _, rows = with_settlements(unknown_renewals(session), payments_to_review(session))
    if not rows and not as_json:
        click.echo("no payment needs review")
        return
    emit(rows, as_json, _reviews_table)
