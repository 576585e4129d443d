"""``renewals unknown`` and ``renewals reviews [resolve]``: what operators must look at, how
each row is settled, and the queued command that settles a review."""

from __future__ import annotations

from typing import Any

import click

from renewals.cli.commands import send, sending_options, show_halt
from renewals.cli.root import main, settings_or_exit
from renewals.cli.tables import emit, read_engine, table, when
from renewals.domain.commands import CommandName
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
        show_halt(session)
        rows, _ = with_settlements(unknown_renewals(session), [])
    if not rows and not as_json:
        click.echo("no renewal has an unknown outcome")
        return
    emit(rows, as_json, _unknown_table)


@main.group("reviews", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reviews(ctx: click.Context, as_json: bool) -> None:
    """List payments to act on (refunds due, unmatched payments), and how to settle each."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit()
    with unit_of_work(read_engine(settings)) as session:
        show_halt(session)
        _, rows = with_settlements(unknown_renewals(session), payments_to_review(session))
    if not rows and not as_json:
        click.echo("no payment needs review")
        return
    emit(rows, as_json, _reviews_table)


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
