"""``renewals subscriptions import FILE``: many subscriptions at once, from CSV or JSON lines.

Every row is checked (and compared with the database) before anything is written; any
problem is listed by line, the exit status is 1, and nothing is written. Importing the same
file again changes nothing. See docs/integration.md for the columns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from renewals.cli.root import settings_or_exit
from renewals.cli.subscriptions import subscriptions
from renewals.cli.tables import read_engine
from renewals.domain.import_rows import FileFormat, guess_format
from renewals.services.imports import ImportReport, Progress, import_subscriptions

# Errors printed before "... and N more" (--json lists them all).
SHOWN_ERRORS = 50


def _count_lines(path: Path) -> int:
    with path.open("rb") as raw:
        return sum(1 for _ in raw)


@contextmanager
def _progress(path: Path, enabled: bool) -> Iterator[Progress | None]:
    """A progress bar on a terminal (three steps per row: checked, compared, written)."""
    if not enabled:
        yield None
        return
    total = 3 * _count_lines(path)
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
        yield bar.update
        bar.update(max(0, total - bar.pos))


def _report(report: ImportReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.summary(), indent=2))
        return
    if report.ok:
        fetch = (
            f"; card details of {report.cards_to_fetch} card(s) are fetched in the background"
            if report.cards_to_fetch
            else ""
        )
        click.echo(f"{report.created} created, {report.unchanged} unchanged{fetch}")
        return
    for error in report.errors[:SHOWN_ERRORS]:
        click.echo(str(error), err=True)
    more = len(report.errors) - SHOWN_ERRORS
    if more > 0:
        click.echo(f"... and {more} more (--json lists them all)", err=True)


@subscriptions.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in FileFormat]),
    default=None,
    help="Default: by the file's extension (.csv, .jsonl), else by its first character.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_(file: Path, fmt: str | None, as_json: bool) -> None:
    """Import subscriptions from FILE (CSV with a header row, or JSON lines).

    Columns: external_id, email, customer_id (cus_), payment_method_id (pm_), amount (minor
    units), currency, interval, next_renewal_at (ISO-8601 with offset); optional
    interval_count, price_id, name. All rows are checked before anything is written.
    """
    settings = settings_or_exit()
    engine = read_engine(settings)
    with file.open(encoding="utf-8", newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        chosen = FileFormat(fmt) if fmt else guess_format(file.name, first)
        with _progress(file, sys.stderr.isatty() and not as_json) as progress:
            report = import_subscriptions(
                engine,
                settings,
                handle,
                chosen,
                now=datetime.now(UTC),
                actor="import",
                progress=progress,
            )
    _report(report, as_json)
    if not report.ok:
        if not as_json:
            click.echo(
                f"nothing imported: {len(report.errors)} problem(s) in {report.read} row(s)",
                err=True,
            )
        sys.exit(1)
    if report.cards_to_fetch:
        # A hint only: the beat sends the same task every few minutes, so a broker that is
        # down now loses nothing (the cards without details are the queue of record).
        from renewals.worker.integration_tasks import fetch_details_task
        from renewals.worker.publish import publish

        publish(fetch_details_task)
