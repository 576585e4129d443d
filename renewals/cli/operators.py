"""``renewals unknown``: the charges whose outcome nobody knows yet."""

from __future__ import annotations

import json

import click

from renewals.cli.root import main, settings_or_exit
from renewals.models.db import get_engine, unit_of_work
from renewals.services.operators import unknown_renewals


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
