"""``renewals unknown`` and ``renewals reviews``: what operators must look at."""

from __future__ import annotations

import json

import click

from renewals.cli.root import main, settings_or_exit
from renewals.models.db import get_engine, unit_of_work
from renewals.services.operators import payments_to_review, unknown_renewals


@main.command("unknown")
@click.option("--json", "as_json", is_flag=True)
def unknown(as_json: bool) -> None:
    """List renewals whose charge outcome is unknown (waiting for reconciliation)."""
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        rows = unknown_renewals(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no renewal has an unknown outcome")
    for row in rows:
        click.echo(
            f"renewal {row['renewal_id']} (subscription {row['subscription_id']}, period "
            f"{row['period_start']}): {row['amount']} {row['currency']}, key "
            f"{row['idempotency_key']}, first sent {row['first_sent_at']}: {row['reason']}"
        )


@main.command("reviews")
@click.option("--json", "as_json", is_flag=True)
def reviews(as_json: bool) -> None:
    """List payments to act on: refunds due, and payments that match nothing of ours."""
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        rows = payments_to_review(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no payment needs review")
    for row in rows:
        click.echo(
            f"{row['kind']}: {row['payment_intent_id']} {row['amount']} {row['currency']} "
            f"(renewal {row['renewal_id']}, {row['source']}): {row['reason']}"
        )
