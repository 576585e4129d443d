"""``renewals run``: the whole service on its embedded defaults, for a first look.

Starts the FastStar sandbox (unless one already answers at RENEWALS_FASTSTAR_BASE_URL),
migrates the SQLite database, seeds one demo subscription per sandbox test card, then runs a
worker and the scheduler and prints the subscriptions as they renew, until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx

from renewals.cli.root import main, settings_or_exit
from renewals.config import Settings
from renewals.models.db import get_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.services.subscriptions import list_subscriptions, subscription_views

DEMO_CARDS = {
    "4242424242424242": "succeeds",
    "4000002760003184": "needs authentication (402)",
    "4000000000000002": "declined",
    "4000000000009995": "insufficient funds",
    "4000000000000069": "expired card",
    "4000000000000119": "server error, nothing charged",
    "4000000000000341": "charged, response lost",
    "4000000000003220": "server error after charging",
}
DEMO_SWEEP_INTERVAL = "5"


def _sandbox_answers(settings: Settings) -> bool:
    root = urlsplit(settings.faststar_base_url)
    try:
        return httpx.get(f"{root.scheme}://{root.netloc}/", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    # A session of its own: Ctrl-C (or a SIGTERM to our group) must reach only us, so that
    # each child gets one orderly SIGTERM from us; Celery's pool children signalled at the
    # same moment as their parent can leave the parent waiting on a lock forever.
    return subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
        [sys.executable, "-m", *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _seed(settings: Settings) -> None:
    from renewals.cli.subscriptions import save_sandbox_card
    from renewals.services.subscriptions import create_subscription

    engine = get_engine(settings.database_url)
    with unit_of_work(engine) as session:
        if list_subscriptions(session):
            return
    now = datetime.now(UTC)
    for number, behaviour in DEMO_CARDS.items():
        email = f"demo-{number[-4:]}@example.com"
        card = save_sandbox_card(settings, email, behaviour, number)
        with unit_of_work(engine) as session:
            create_subscription(
                session,
                now=now,
                settings=settings,
                email=email,
                name=behaviour,
                card=card,
                amount=1999,
                currency="USD",
                interval="month",
                interval_count=1,
                renews_at=now,
            )
    click.echo(f"seeded {len(DEMO_CARDS)} demo subscriptions, one per sandbox test card")


def _show(settings: Settings) -> None:
    with unit_of_work(get_engine(settings.database_url)) as session:
        views = subscription_views(session, list_subscriptions(session))
    click.echo(f"\n{datetime.now(UTC):%H:%M:%S} subscriptions")
    for sub in views:
        last = sub["renewals"][-1] if sub["renewals"] else None
        detail = ""
        if last:
            detail = last["payment_intent_id"] or last["checkout_url"] or last["last_error"] or ""
        click.echo(
            f"  #{sub['id']:<3} {sub['status']:<16} "
            f"{(last or {}).get('status', 'not due'):<16} {detail}"
        )


@main.command("run")
def run() -> None:
    """Run sandbox, worker and scheduler on the embedded defaults, with demo data."""
    os.environ.setdefault("RENEWALS_SWEEP_INTERVAL", DEMO_SWEEP_INTERVAL)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = settings_or_exit()
    logs = Path("var") / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    children: list[subprocess.Popen[bytes]] = []
    try:
        if not _sandbox_answers(settings):
            port = str(urlsplit(settings.faststar_base_url).port or 8787)
            children.append(_spawn(["renewals.sandbox", "--port", port], env, logs / "sandbox.log"))
            deadline = time.monotonic() + 15
            while not _sandbox_answers(settings):
                if time.monotonic() > deadline:
                    raise click.ClickException("the sandbox did not start; see var/logs")
                time.sleep(0.2)
        upgrade(settings.database_url)
        _seed(settings)
        children.append(_spawn(["renewals", "worker", "-c", "2"], env, logs / "worker.log"))
        children.append(_spawn(["renewals", "scheduler"], env, logs / "scheduler.log"))
        click.echo("worker and scheduler running (logs in var/logs); Ctrl-C stops everything")
        while all(child.poll() is None for child in children):
            _show(settings)
            time.sleep(5)
        raise click.ClickException("a child process stopped; see var/logs")
    except KeyboardInterrupt:
        click.echo("\nstopping")
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
