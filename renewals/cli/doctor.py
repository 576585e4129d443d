"""``renewals doctor``: is every piece this deployment needs there and answering?

Each check is bounded (a few seconds at most, no retries) and returns one :class:`Check`.
``fail`` means the service cannot work as configured; ``warn`` is worth knowing but not
wrong; ``skip`` means a check could not run because an earlier one failed.

The scheduler has no heartbeat row of its own, and none is added: the sweep writes nothing
when nothing is due, so "the newest sweep row is old" would raise false alarms on a quiet
system. What a dead scheduler leaves behind instead is *overdue work*: a subscription whose
next period started, or a renewal whose next job fell due (and whose lease, if any, ran out),
longer ago than a few sweep intervals. A running sweep picks each up within one interval, so
any such row means no sweep has run. The newest sweep activity (audit rows written by the
sweep) is shown alongside for context.
"""

from __future__ import annotations

import logging
import smtplib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import click
from sqlalchemy import Engine, create_engine, func, or_, select
from sqlalchemy.engine import make_url

from renewals.cli.errors import explain, safe_url
from renewals.cli.root import main, settings_or_exit
from renewals.cli.tables import emit, table
from renewals.config import (
    ENV_PREFIX,
    PUBLISHED_WEBHOOK_SECRETS,
    Settings,
    production_problems,
)
from renewals.domain.states import SubscriptionStatus

Status = Literal["ok", "warn", "fail", "skip"]
TIMEOUT_S = 3.0
# The scheduler check's grace: this many sweep intervals, and never less than a minute.
SWEEP_GRACE_INTERVALS = 3
MIN_SWEEP_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _explain(exc: Exception) -> str:
    # The same words as any other command's failure (one place for them), on one line.
    return explain(exc).replace("\n", "; ")


def _engine(settings: Settings) -> Engine | None:
    """A throw-away engine with a short connect timeout; None if the SQLite file is missing
    (doctor must not create an empty database)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not Path(url.database).exists():
            return None
        return create_engine(url, connect_args={"timeout": TIMEOUT_S})
    return create_engine(url, connect_args={"connect_timeout": int(TIMEOUT_S)})


def check_database(settings: Settings) -> list[Check]:
    """Reachable, and at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from renewals.models.migrate import alembic_config

    # Alembic announces its context at INFO on every configure: noise in a table.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = _engine(settings)
    if engine is None:
        return [
            Check("database", "fail", "no database file yet: run `renewals db upgrade`"),
            Check("migrations", "skip", "needs the database"),
        ]
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        return [
            Check("database", "fail", _explain(exc)),
            Check("migrations", "skip", "needs the database"),
        ]
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    reached = Check("database", "ok", f"{make_url(settings.database_url).get_backend_name()}")
    if current == head:
        return [reached, Check("migrations", "ok", f"at head ({head})")]
    where = f"at {current}" if current else "not migrated"
    return [
        reached,
        Check("migrations", "fail", f"{where}, head is {head}: run `renewals db upgrade`"),
    ]


def check_broker(settings: Settings) -> Check:
    """One connection attempt, no retry, bounded as a publish is."""
    from kombu import Connection

    from renewals.worker.publish import bounded_transport_options

    url = settings.broker_url
    try:
        with Connection(
            url, connect_timeout=TIMEOUT_S, transport_options=bounded_transport_options(url)
        ) as connection:
            connection.ensure_connection(max_retries=0, timeout=int(TIMEOUT_S))
    except Exception as exc:
        return Check("broker", "fail", _explain(exc))
    return Check("broker", "ok", safe_url(url))


def check_faststar(settings: Settings) -> Check:
    """A cheap authenticated GET (the catalog's products): reachable, and the key accepted."""
    import httpx

    from renewals.faststar import FastStarClient

    try:
        with FastStarClient(
            settings.faststar_base_url,
            settings.faststar_api_key.get_secret_value(),
            timeout=httpx.Timeout(TIMEOUT_S),
        ) as client:
            client.list_products()
    except Exception as exc:
        return Check("faststar", "fail", _explain(exc))
    return Check("faststar", "ok", f"{settings.faststar_base_url}, key accepted")


def check_mail(settings: Settings) -> Check:
    """SMTP: connect and EHLO (no login, nothing sent); file: the folder is writable."""
    parts = urlsplit(settings.mail_url)
    if parts.scheme == "console":
        return Check("mail", "ok", "console (printed by the worker)")
    if parts.scheme == "file":
        folder = Path(unquote(parts.netloc + parts.path))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check("mail", "fail", f"cannot write to {folder}: {exc.strerror or exc}")
        return Check("mail", "ok", f"files in {folder}")
    host = parts.hostname or "localhost"
    implicit = parts.scheme == "smtps"
    port = parts.port or (465 if implicit else 25)
    smtp_class: Callable[..., smtplib.SMTP] = smtplib.SMTP_SSL if implicit else smtplib.SMTP
    try:
        smtp = smtp_class(host, port, timeout=TIMEOUT_S)
        try:
            code, _ = smtp.ehlo()
        finally:
            smtp.close()
    except (OSError, smtplib.SMTPException) as exc:
        return Check(
            "mail",
            "fail",
            f"SMTP {host}:{port} unreachable ({type(exc).__name__}: {exc}); "
            f"check {ENV_PREFIX}MAIL_URL",
        )
    if code != 250:
        return Check("mail", "fail", f"SMTP {host}:{port} answered EHLO with {code}")
    return Check("mail", "ok", f"SMTP {host}:{port} answers")


def check_scheduler(settings: Settings, *, now: datetime, database_ok: bool) -> Check:
    """Overdue work means no sweep is running (see the module docstring)."""
    from renewals.models import AuditEvent, Renewal, Subscription

    if not database_ok:
        return Check("scheduler", "skip", "needs the database at the newest migration")
    grace = max(SWEEP_GRACE_INTERVALS * settings.sweep_interval, MIN_SWEEP_GRACE_S)
    cutoff = now - timedelta(seconds=grace)
    engine = _engine(settings)
    if engine is None:  # pragma: no cover - database_ok says it exists
        return Check("scheduler", "skip", "needs the database")
    try:
        with engine.connect() as conn:
            due_periods = conn.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.status == SubscriptionStatus.ACTIVE)
                .where(Subscription.next_renewal_at <= cutoff)
            )
            due_jobs = conn.scalar(
                select(func.count())
                .select_from(Renewal)
                .where(Renewal.wake.is_not(None), Renewal.wake_at <= cutoff)
                .where(or_(Renewal.lease_expires_at.is_(None), Renewal.lease_expires_at <= cutoff))
            )
            last = conn.scalar(
                select(func.max(AuditEvent.created_at)).where(AuditEvent.actor == "sweep")
            )
    except Exception as exc:
        return Check("scheduler", "fail", _explain(exc))
    finally:
        engine.dispose()
    seen = f"last sweep activity {str(last)[:16]}" if last else "no sweep activity recorded"
    overdue = (due_periods or 0) + (due_jobs or 0)
    if overdue:
        return Check(
            "scheduler",
            "fail",
            f"{overdue} renewal(s) due for over {grace:g} s and not picked up: is "
            f"`renewals scheduler` running? ({seen})",
        )
    return Check("scheduler", "ok", f"nothing overdue ({seen})")


def check_webhook_secret(settings: Settings) -> Check:
    current = {s.strip() for s in settings.faststar_webhook_secret.get_secret_value().split(",")}
    published = bool(PUBLISHED_WEBHOOK_SECRETS & current)
    if settings.env == "production":
        problems = production_problems(settings)
        if problems:  # start-up refuses these already; repeated here for completeness
            return Check("webhook secret", "fail", "; ".join(problems))
        return Check("webhook secret", "ok", "set, not a published default")
    if published:
        return Check(
            "webhook secret",
            "warn",
            f"the published default (fine in development; production refuses it: set "
            f"{ENV_PREFIX}FASTSTAR_WEBHOOK_SECRET)",
        )
    return Check("webhook secret", "ok", "set")


def run_checks(settings: Settings, *, now: datetime) -> list[Check]:
    database = check_database(settings)
    database_ok = all(c.status == "ok" for c in database)
    return [
        *database,
        check_broker(settings),
        check_faststar(settings),
        check_mail(settings),
        check_scheduler(settings, now=now, database_ok=database_ok),
        check_webhook_secret(settings),
    ]


def healthy(checks: list[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)


def _text(checks: list[dict[str, Any]]) -> str:
    rows = [
        [c["name"], c["status"].upper() if c["status"] == "fail" else c["status"], c["detail"]]
        for c in checks
    ]
    return table(["check", "status", "detail"], rows)


@main.command("doctor")
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the database, migrations, broker, FastStar, mail, scheduler and secrets.

    Exits 1 when any check fails."""
    from datetime import UTC

    settings = settings_or_exit()
    checks = run_checks(settings, now=datetime.now(UTC))
    emit([c.as_dict() for c in checks], as_json, _text)
    if not healthy(checks):
        if not as_json:
            click.echo("\nsomething is wrong: see the FAIL rows above", err=True)
        sys.exit(1)
