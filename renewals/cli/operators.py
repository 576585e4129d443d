"""``renewals unknown`` and ``renewals reviews [resolve]``: what operators must look at."""

from __future__ import annotations

import json

import click

from renewals.cli.commands import send, sending_options, show_halt
from renewals.cli.root import main, settings_or_exit
from renewals.domain.commands import CommandName
from renewals.models.db import get_engine, unit_of_work
from renewals.services.operators import payments_to_review, unknown_renewals


@main.command("unknown")
@click.option("--json", "as_json", is_flag=True)
def unknown(as_json: bool) -> None:
    """List renewals whose charge outcome is unknown (waiting for reconciliation)."""
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        show_halt(session)
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


@main.group("reviews", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reviews(ctx: click.Context, as_json: bool) -> None:
    """List payments to act on: refunds due, and payments that match nothing of ours."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        show_halt(session)
        rows = payments_to_review(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no payment needs review")
    for row in rows:
        click.echo(
            f"review {row['id']} {row['kind']}: {row['payment_intent_id']} {row['amount']} "
            f"{row['currency']} (renewal {row['renewal_id']}, {row['source']}): {row['reason']}"
        )


@reviews.command("resolve")
@click.argument("review_id", type=int)
@click.option("--refunded", "resolution", flag_value="refunded", help="The payment was refunded.")
@click.option("--dismiss", "resolution", flag_value="dismissed", help="Nothing to do.")
@click.option(
    "--book", "renewal_id", type=int, default=None, help="Book the payment on this renewal."
)
@click.option("--reason", required=True, help="Why (written to the audit trail).")
@sending_options()
def resolve(
    review_id: int,
    resolution: str | None,
    renewal_id: int | None,
    reason: str,
    actor: str | None,
    wait: bool,
    timeout: float,
    dry_run: bool,
) -> None:
    """Close a review: --refunded, --dismiss, or --book RENEWAL (only on a renewal that can
    take the payment: an unknown attempt, or a renewal waiting for an on-session payment)."""
    if (resolution is None) == (renewal_id is None):
        raise click.UsageError("give exactly one of --refunded, --dismiss or --book RENEWAL")
    send(
        CommandName.RESOLVE_REVIEW,
        {
            "review_id": review_id,
            "resolution": resolution or "book",
            "renewal_id": renewal_id,
            "reason": reason,
        },
        actor=actor,
        wait=wait,
        timeout=timeout,
        dry=dry_run,
    )
