"""``renewals report``: counts, outcomes and revenue per currency over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from renewals.cli.root import main, settings_or_exit
from renewals.cli.tables import emit, read_engine, table, when
from renewals.models.db import unit_of_work
from renewals.services.report import build_report

DEFAULT_DAYS = 30


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected an ISO-8601 date or instant, e.g. 2026-01-01") from None
    # A bare date means its midnight in UTC, the zone every instant here is in.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _money(amounts: list[dict[str, Any]]) -> str:
    return ", ".join(a["display"] for a in amounts) or "-"


def _text(report: dict[str, Any]) -> str:
    window = report["window"]
    out = [f"renewals due {when(window['since'])} to {when(window['until'])}", ""]
    subs = report["subscriptions"]
    out.append("subscriptions: " + ", ".join(f"{n} {status}" for status, n in subs.items()))
    out.append("")
    if report["renewals_by_outcome"]:
        rows = [
            [r["outcome"], r["count"], _money(r["amounts"])] for r in report["renewals_by_outcome"]
        ]
        out.append(table(["outcome", "renewals", "amount (per currency)"], rows))
    else:
        out.append("no renewal fell due in this window")
    recovered, sca = report["recovered"], report["sca"]
    rate = sca["completion_rate"]
    unknown, outbox = report["unknown_backlog"], report["outbox_backlog"]
    events = report["merchant_events"]
    out += [
        "",
        f"recovered:       {recovered['count']} renewal(s), {_money(recovered['amounts'])} "
        "(paid after a decline or a 402)",
        "SCA completion:  "
        + (
            f"{rate:.0%} ({sca['paid_on_session']} of {sca['required']} paid on-session; "
            f"{sca['waiting']} waiting, {sca['expired']} expired)"
            if rate is not None
            else "no 402 in this window"
        ),
        f"unknown backlog: {unknown['count']}"
        + (
            f", oldest sent {when(unknown['oldest_sent_at'])} "
            f"({unknown['oldest_age_hours']} h ago): see `renewals unknown`"
            if unknown["count"]
            else ""
        ),
        f"outbox backlog:  {outbox['waiting']} waiting, {outbox['failed']} failed"
        + (
            f", oldest since {when(outbox['oldest_waiting_since'])}"
            if outbox["oldest_waiting_since"]
            else ""
        ),
        f"merchant events: {events['waiting']} waiting, {events['failed']} failed"
        + (
            f", oldest since {when(events['oldest_waiting_since'])}"
            if events["oldest_waiting_since"]
            else ""
        )
        + (" (failed: not delivered after every retry)" if events["failed"] else ""),
        f"open reviews:    {report['open_reviews']}"
        + (": see `renewals reviews`" if report["open_reviews"] else ""),
    ]
    return "\n".join(out)


@main.command("report")
@click.option("--since", callback=_since, help="Start of the window (ISO-8601 date or instant).")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help=f"The window is the last N days (default {DEFAULT_DAYS}).",
)
@click.option("--json", "as_json", is_flag=True)
def report(since: datetime | None, days: int | None, as_json: bool) -> None:
    """Subscriptions by status; renewals, revenue, recoveries and SCA over a window; backlogs."""
    if since is not None and days is not None:
        raise click.UsageError("give --since or --days, not both")
    settings = settings_or_exit()
    now = datetime.now(UTC)
    start = since or now - timedelta(days=days or DEFAULT_DAYS)
    with unit_of_work(read_engine(settings)) as session:
        data = build_report(session, now=now, since=start)
    emit(data, as_json, _text)
