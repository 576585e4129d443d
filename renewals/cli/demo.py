"""``renewals run``: the whole service on its embedded defaults, for a first look.

Starts the FastStar sandbox with its state kept in ``var/sandbox.db`` (unless one already
answers at RENEWALS_FASTSTAR_BASE_URL), the webhook receiver, and points the sandbox's
webhooks at the receiver, signed with our webhook secret. Migrates the SQLite database,
seeds one subscription per sandbox test card (only those missing: a restart re-uses both the
database and the sandbox's customers), then runs a worker and the scheduler and shows the
subscriptions as they renew. Once the authentication-required card's email is written, the
demo plays its customer: it completes the Checkout Session the email links to, and the
sandbox's ``payment.succeeded`` webhook brings the subscription back to ``active``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx

from renewals.cli.children import Children
from renewals.cli.demo_view import DEMO_CARDS, LiveView, header, hide_password, shown_path
from renewals.cli.demo_view import summary as summary_text
from renewals.cli.root import main, settings_or_exit
from renewals.config import VAR_DIR, Settings
from renewals.models.db import get_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.notifications.senders import FileSender, eml_name, sender_from_url
from renewals.services.demo import Backlog, DemoRow, backlog, customer_emails, demo_rows

DEMO_SWEEP_INTERVAL = "5"
SCA_CARD = "4000002760003184"
WORKER_CONCURRENCY = "2"
POLL_S = 1.0
SANDBOX_STATE = VAR_DIR / "sandbox.db"
LOGS = VAR_DIR / "logs"


def demo_email(number: str) -> str:
    return f"demo-{number[-4:]}@example.com"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _sandbox_root(settings: Settings) -> str:
    root = urlsplit(settings.faststar_base_url)
    return f"{root.scheme}://{root.netloc}/"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Alembic's INFO lines would scroll the live view's header away on every start."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


class Sandbox:
    """The demo's calls to the sandbox's own controls (never made by the product)."""

    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.faststar_base_url

    def control(self, path: str, body: dict[str, object] | None = None) -> None:
        response = httpx.post(f"{self.base_url}/sandbox/{path}", json=body, timeout=10.0)
        if response.is_error:
            try:
                message = response.json().get("message")
            except ValueError:
                message = f"HTTP {response.status_code}"
            raise click.ClickException(f"the sandbox refused {path}: {message}")

    def send_webhooks_to(self, url: str, secret: str) -> None:
        self.control("config", {"webhook_url": url, "webhook_secret": secret})

    def complete_checkout(self, session_id: str) -> bool:
        """The customer pays on the hosted page; False if the session is no longer open."""
        try:
            self.control(f"checkout/sessions/{session_id}/complete")
        except click.ClickException:
            return False
        return True


def _seed(settings: Settings) -> int:
    """One subscription per test card whose demo customer is not in the database yet."""
    from renewals.cli.subscriptions import save_sandbox_card
    from renewals.services.subscriptions import create_subscription

    engine = get_engine(settings.database_url)
    with unit_of_work(engine) as session:
        known = customer_emails(session)
    missing = [number for number in DEMO_CARDS if demo_email(number) not in known]
    now = datetime.now(UTC)
    for number in missing:
        behaviour = DEMO_CARDS[number]
        card = save_sandbox_card(settings, demo_email(number), behaviour, number)
        with unit_of_work(engine) as session:
            create_subscription(
                session,
                now=now,
                settings=settings,
                email=demo_email(number),
                name=behaviour,
                card=card,
                amount=1999,
                currency="USD",
                interval="month",
                interval_count=1,
                renews_at=now,
            )
    return len(missing)


def _renewals_command() -> str:
    """How the viewer runs ``renewals`` from here (``.venv/bin/renewals`` under make)."""
    script = Path(sys.executable).parent / "renewals"
    return shown_path(script) if script.exists() else "renewals"


def _mail_folder(settings: Settings) -> Path | None:
    sender = sender_from_url(settings.mail_url)
    return sender.directory if isinstance(sender, FileSender) else None


class Story:
    """Plays the customer who comes back on-session, and tells what happened."""

    def __init__(self, sandbox: Sandbox, view: LiveView, mail: Path | None) -> None:
        self.sandbox = sandbox
        self.view = view
        self.mail = mail
        self.completed: dict[int, str] = {}  # subscription -> the session the demo paid
        self.given_up: set[str] = set()
        self.statuses: dict[int, str] = {}
        self.rows: list[DemoRow] = []

    def notice(self, rows: list[DemoRow]) -> None:
        unknown = {r.subscription_id for r in self.rows if r.renewal_status == "unknown"}
        for row in rows:
            if row.subscription_id in unknown and row.renewal_status != "unknown":
                self.view.tell(
                    f"#{row.subscription_id} unknown outcome settled: now {row.renewal_status} "
                    f"(subscriptions show {row.subscription_id} says how)"
                )
        self.rows = rows
        for row in rows:
            before = self.statuses.get(row.subscription_id)
            if before is not None and before != row.sub_status:
                how = ""
                if row.subscription_id in self.completed and row.sub_status == "active":
                    how = " (the payment.succeeded webhook booked the on-session payment)"
                self.view.tell(f"#{row.subscription_id} {before} -> {row.sub_status}{how}")
            self.statuses[row.subscription_id] = row.sub_status

    def act(self, rows: list[DemoRow]) -> None:
        """After a 402 email is written, its customer pays through the link it carries."""
        for row in rows:
            session_id, key = row.checkout_session_id, row.action_email_key
            if session_id is None or key is None or session_id in self.given_up:
                continue
            if self.completed.get(row.subscription_id) == session_id:
                continue
            where = shown_path(self.mail / eml_name(key)) if self.mail else "sent"
            self.view.tell(f"#{row.subscription_id} 402: checkout link emailed ({where})")
            if self.sandbox.complete_checkout(session_id):
                self.completed[row.subscription_id] = session_id
                self.view.tell(
                    f"#{row.subscription_id} the customer pays on-session ({session_id} completed)"
                )
            else:
                self.given_up.add(session_id)
                self.view.tell(f"#{row.subscription_id} {session_id} is no longer open")

    def settled(self, rows: list[DemoRow], work: Backlog, now: datetime) -> bool:
        """Every due renewal charged, every email sent, every paid checkout booked."""
        if not rows or work.renewals or work.emails:
            return False
        for row in rows:
            due = row.next_action_at is None or row.next_action_at <= now
            if row.renewal_status is None and due:
                return False
            paying = row.checkout_session_id and row.checkout_session_id not in self.given_up
            if paying:
                return False
        return True


def _commands(story: Story) -> list[tuple[str, str]]:
    cli = _renewals_command()
    sca = next((r.subscription_id for r in story.rows if r.last4 == SCA_CARD[-4:]), None)
    back = next(iter(story.completed), sca)
    declined = next((r.subscription_id for r in story.rows if r.sub_status == "past_due"), None)
    commands = [
        (f"{cli} subscriptions list", "every subscription, its next action and date"),
    ]
    if back is not None:
        commands.append((f"{cli} subscriptions show {back}", "402, email, checkout, webhook"))
    commands += [
        (f"{cli} report", "outcomes, revenue, recovered, SCA"),
        (f"{cli} unknown", "charges of unknown outcome, and how to settle each"),
        (f"{cli} reviews", "payments to act on (refunds due, unmatched)"),
    ]
    if declined is not None:
        commands.append(
            (f"{cli} retry {declined} --no-wait", "a new attempt now (needs `make run` up)")
        )
    commands.append((f"{cli} command ID", "an operator command's status and outcome"))
    return commands


def _emails(mail: Path | None, since: float) -> tuple[list[Path], int]:
    if mail is None or not mail.is_dir():
        return [], 0
    files = sorted(mail.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name))
    new = [p for p in files if p.stat().st_mtime >= since]
    return new, len(files) - len(new)


def _title(settings: Settings, sandbox_note: str, webhooks_url: str) -> str:
    mail = _mail_folder(settings)
    return header(
        [
            ("database", hide_password(settings.database_url)),
            ("broker", hide_password(settings.broker_url)),
            ("sandbox", f"{settings.faststar_base_url} ({sandbox_note})"),
            ("webhooks", f"{webhooks_url} (signed with RENEWALS_FASTSTAR_WEBHOOK_SECRET)"),
            ("mail", shown_path(mail) if mail else hide_password(settings.mail_url)),
            ("logs", shown_path(LOGS)),
        ],
        f"renewals run: sandbox, webhook receiver, worker ({WORKER_CONCURRENCY} processes), "
        f"scheduler (a sweep every {settings.sweep_interval:g} s)",
    )


def _start_sandbox(children: Children, settings: Settings) -> tuple[str, bool]:
    """The sandbox on its state file, unless one answers already: (header note, whether it
    started on an empty state)."""
    if _answers(_sandbox_root(settings)):
        return "already running: not started here, its state is its own", False
    fresh = not SANDBOX_STATE.exists()
    port = str(urlsplit(settings.faststar_base_url).port or 8787)
    child = children.start(
        "sandbox", ["renewals.sandbox", "--port", port, "--state", str(SANDBOX_STATE)]
    )
    children.wait_ready(child, lambda: _answers(_sandbox_root(settings)))
    return f"state kept in {shown_path(SANDBOX_STATE)}", fresh


def _start_receiver(children: Children, port: int) -> None:
    args = ["renewals", "webhooks", "--host", "127.0.0.1", "--port", str(port)]
    children.wait_ready(
        children.start("webhooks", args),
        lambda: _answers(f"http://127.0.0.1:{port}/"),
        f" (is port {port} taken? renewals run --webhooks-port N)",
    )


def _prepare_database(settings: Settings, sandbox_forgot: bool) -> list[str]:
    """Migrate and seed; returns what the live view should tell (a terminal's first frame
    clears anything printed before it)."""
    notes = []
    with _quiet("alembic"):
        upgrade(settings.database_url)
    if sandbox_forgot and _has_demo_customers(settings):
        warning = (
            f"warning: the database has demo subscriptions but {SANDBOX_STATE} did not "
            f"exist: their cards are unknown to this sandbox. Remove {VAR_DIR}/ to start "
            "afresh."
        )
        click.echo(warning, err=True)
        notes.append(warning)
    seeded = _seed(settings)
    if seeded:
        notes.append(f"seeded {seeded} demo subscription(s), one per sandbox test card")
    else:
        notes.append("the demo subscriptions exist already: re-using them")
    return notes


def _watch(
    settings: Settings,
    children: Children,
    story: Story,
    *,
    started: float,
    until_settled: bool,
    exit_after: float | None,
) -> None:
    """Draw, act, repeat, until a child stops, Ctrl-C or the exit condition."""
    engine = get_engine(settings.database_url)
    while (stopped := children.stopped()) is None:
        with unit_of_work(engine) as session:
            rows, work = demo_rows(session), backlog(session)
        story.notice(rows)
        story.view.show(rows, work)
        story.act(rows)
        if until_settled and story.settled(rows, work, datetime.now(UTC)):
            return
        if exit_after is not None and time.time() - started > exit_after:
            if until_settled:
                raise click.ClickException(f"not settled after {exit_after:g} s")
            return
        time.sleep(POLL_S)
    raise click.ClickException(f"the {stopped.name} stopped; see {stopped.log}")


@main.command("run")
@click.option(
    "--webhooks-port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the webhook receiver the sandbox sends its events to.",
)
@click.option(
    "--until-settled",
    is_flag=True,
    help="Stop once every due renewal is charged, every email sent and the on-session "
    "payment booked.",
)
@click.option(
    "--exit-after",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (with --until-settled: fail if not settled by then).",
)
def run(webhooks_port: int, until_settled: bool, exit_after: float | None) -> None:
    """Run sandbox, webhook receiver, worker and scheduler on the embedded defaults, with one
    demo subscription per sandbox test card."""
    started = time.time()
    os.environ.setdefault("RENEWALS_SWEEP_INTERVAL", DEMO_SWEEP_INTERVAL)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = settings_or_exit()
    LOGS.mkdir(parents=True, exist_ok=True)
    children = Children(LOGS, dict(os.environ))
    sandbox = Sandbox(settings)
    webhooks_url = f"http://127.0.0.1:{webhooks_port}/webhooks/faststar"
    mail = _mail_folder(settings)
    story: Story | None = None
    try:
        sandbox_note, sandbox_forgot = _start_sandbox(children, settings)
        _start_receiver(children, webhooks_port)
        sandbox.send_webhooks_to(webhooks_url, settings.faststar_webhook_secret.get_secret_value())
        notes = _prepare_database(settings, sandbox_forgot)
        children.start("worker", ["renewals", "worker", "-c", WORKER_CONCURRENCY])
        children.start("scheduler", ["renewals", "scheduler"])
        view = LiveView.on_stdout(_title(settings, sandbox_note, webhooks_url))
        story = Story(sandbox, view, mail)
        view.start()
        for note in notes:
            view.tell(note)
        _watch(
            settings,
            children,
            story,
            started=started,
            until_settled=until_settled,
            exit_after=exit_after,
        )
    except KeyboardInterrupt:
        click.echo("\nstopping")
    finally:
        children.stop_all()
    if story is not None:
        emails, earlier = _emails(mail, started)
        click.echo(summary_text(emails, earlier, mail, _commands(story)))


def _has_demo_customers(settings: Settings) -> bool:
    with unit_of_work(get_engine(settings.database_url)) as session:
        known = customer_emails(session)
    return any(demo_email(number) in known for number in DEMO_CARDS)
