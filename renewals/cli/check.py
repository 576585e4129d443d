"""``renewals check``: our books against the sandbox's executed charges, after a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from renewals.cli.root import main, settings_or_exit
from renewals.cli.tables import emit, read_engine, table


def _text(data: dict[str, Any]) -> str:
    figures = data["figures"]
    out = [table(["figure", "count"], list(figures.items()))]
    if not data["emails_checked"]:
        out.append("(emails not checked: give --emails with what the SMTP server accepted)")
    out.append("")
    if data["violations"]:
        rows = [[v["kind"], v["subject"], v["detail"]] for v in data["violations"]]
        out.append(table(["violation", "of", "detail"], rows))
        out.append(f"\n{len(rows)} violation(s)")
    else:
        out.append("ok: no violation")
    return "\n".join(out)


@main.command("check")
@click.option(
    "--sandbox-url",
    default=None,
    help="The sandbox's API URL (…/api/v1); default RENEWALS_FASTSTAR_BASE_URL.",
)
@click.option(
    "--emails",
    "emails_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='JSON lines {"key": …, "message_id": …} of the emails the SMTP server accepted.',
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds due work may wait before it counts as stuck (default 2 sweep intervals).",
)
@click.option("--json", "as_json", is_flag=True)
def check_command(
    sandbox_url: str | None, emails_path: Path | None, grace: float | None, as_json: bool
) -> None:
    """Compare the books with the sandbox's charge log once a run has gone quiet.

    Exits 1 on any violation: a period charged twice, an executed charge not booked (nor
    unknown, nor in a review), a renewal or email stuck, attempts over the dunning limit,
    an email delivered twice under different Message-IDs or marked sent and never accepted.
    """
    from renewals.checker import check, fetch_ledger, read_deliveries

    settings = settings_or_exit()
    ledger = fetch_ledger(sandbox_url or settings.faststar_base_url)
    emails = read_deliveries(emails_path) if emails_path is not None else None
    report = check(
        read_engine(settings),
        ledger,
        now=datetime.now(UTC),
        settings=settings,
        emails=emails,
        grace=timedelta(seconds=grace) if grace is not None else None,
    )
    emit(report.to_json(), as_json, _text)
    if not report.ok:
        raise click.exceptions.Exit(1)
