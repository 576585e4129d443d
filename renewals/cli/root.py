"""The root ``renewals`` command and the settings every subcommand starts from."""

from __future__ import annotations

import click

from renewals.cli.errors import FriendlyGroup
from renewals.config import ConfigError, Settings, load_settings
from renewals.folders import create_local_folders
from renewals.logs import configure_logging


def settings_or_exit() -> Settings:
    """Validated settings with logging configured, or a clear error naming every bad variable.

    Also creates the folders the configured paths need (database, broker, mail), and the
    SQLite broker's tables and queue: whichever process of the embedded default starts
    first, it must not fail on a missing ``var/`` or race another on the broker's schema.
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings)
    try:
        create_local_folders(settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create a folder the configuration needs: {exc}"
        ) from None
    prepare_broker(settings)
    return settings


def prepare_broker(settings: Settings) -> None:
    """The embedded broker's schema and queue, before any process connects to it: kombu
    creates them racily when processes start together (``renewals.sqlite_broker``)."""
    from renewals.sqlite_broker import is_sqlite_broker, prepare_sqlite_broker

    if not is_sqlite_broker(settings.broker_url):
        return
    from renewals.worker.names import TASK_QUEUE

    try:
        prepare_sqlite_broker(settings.broker_url, [TASK_QUEUE])
    except Exception as exc:  # SQLAlchemy's errors; any of them means the same to a person
        raise click.ClickException(f"cannot prepare the SQLite broker: {exc}") from None


@click.group(cls=FriendlyGroup)
@click.option(
    "--debug",
    is_flag=True,
    help="Show the traceback of a failure (as does RENEWALS_LOG_LEVEL=DEBUG).",
)
def main(debug: bool) -> None:
    """Subscription renewals: charge saved FastStar cards off-session, once per period."""
    # Every subcommand refuses a bad configuration here, before it imports anything: some
    # imports (the Celery app, the tasks) read the settings themselves and would otherwise
    # end in a traceback instead of this message.
    try:
        load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
