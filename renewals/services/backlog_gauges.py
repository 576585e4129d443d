"""The backlog gauges, read from the database at scrape time.

Counters live in the processes that did the work; how much work is waiting lives only in the
database, and reading it there at every scrape means any one scrape, from any host, tells
the truth, whichever processes are up. Each gauge is one short statement, most of them on an
index (docs/metrics.md lists the cost of each); on PostgreSQL the whole read runs under a
statement timeout so a slow database cannot pile scrapes up. When the database cannot be
read the scrape still answers: ``renewals_metrics_db_up 0`` and the process counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric as Family
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from renewals.domain.states import CommandStatus, RenewalStatus, SubscriptionStatus
from renewals.domain.work import Work
from renewals.metrics import names
from renewals.models import OperatorCommand, Renewal, Subscription
from renewals.models.db import unit_of_work
from renewals.services.halt import is_halted
from renewals.services.report import (
    as_utc,
    merchant_event_backlog,
    open_reviews,
    outbox_backlog,
    unknown_backlog,
)
from renewals.services.sweep import DEPTH, unstarted_claims

log = structlog.get_logger(__name__)

# Far below Prometheus' default scrape timeout (10 s).
STATEMENT_TIMEOUT_MS = 5000
UNFINISHED_COMMANDS = (CommandStatus.PENDING.value, CommandStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class Backlogs:
    """One scrape's reading of the database."""

    renewals: dict[str, int]
    period_due_since: datetime | None
    job_due_since: datetime | None
    claimed_unstarted: int
    unknown: int
    unknown_oldest_sent: datetime | None
    outbox_waiting: int
    outbox_oldest: datetime | None
    outbox_failed: int
    merchant_events_waiting: int
    merchant_events_oldest: datetime | None
    merchant_events_failed: int
    open_reviews: int
    halted: bool
    commands: dict[str, int]


def oldest_due_period(session: Session, *, now: datetime) -> datetime | None:
    """The start of the oldest period the sweep has not materialised yet (the materialise
    step's condition, on ``ix_subscriptions_due``)."""
    return as_utc(
        session.scalar(
            select(func.min(Subscription.next_renewal_at))
            .where(Subscription.status == SubscriptionStatus.ACTIVE)
            .where(Subscription.next_renewal_at <= now)
        )
    )


def oldest_due_job(session: Session, *, now: datetime, halted: bool) -> datetime | None:
    """When the oldest renewal job the sweep would claim fell due: never claimed
    (``ix_renewals_claimable``) or claimed and its lease run out (``ix_renewals_leased``),
    as the claim reads them; charges are not claimed while halted, so not counted then."""
    due = [Renewal.wake.is_not(None), Renewal.wake_at <= now]
    if halted:
        due.append(Renewal.wake != Work.CHARGE)
    oldest = [
        as_utc(session.scalar(select(func.min(Renewal.wake_at)).where(*due, lease)))
        for lease in (Renewal.lease_expires_at.is_(None), Renewal.lease_expires_at <= now)
    ]
    return min((at for at in oldest if at is not None), default=None)


def read_backlogs(session: Session, *, now: datetime) -> Backlogs:
    halted = is_halted(session)
    renewals = dict.fromkeys((s.value for s in RenewalStatus), 0)
    for status, count in session.execute(
        select(Renewal.status, func.count()).group_by(Renewal.status)
    ).tuples():
        renewals[status.value] = count
    commands = dict.fromkeys(UNFINISHED_COMMANDS, 0)
    for command_status, count in session.execute(
        select(OperatorCommand.status, func.count())
        .where(OperatorCommand.status.in_(UNFINISHED_COMMANDS))
        .group_by(OperatorCommand.status)
    ).tuples():
        commands[command_status] = count
    unknown, unknown_oldest = unknown_backlog(session)
    waiting, oldest_waiting, failed = outbox_backlog(session)
    events_waiting, events_oldest, events_failed = merchant_event_backlog(session)
    return Backlogs(
        renewals=renewals,
        period_due_since=oldest_due_period(session, now=now),
        job_due_since=oldest_due_job(session, now=now, halted=halted),
        claimed_unstarted=unstarted_claims(session, now=now, limit=DEPTH),
        unknown=unknown,
        unknown_oldest_sent=unknown_oldest,
        outbox_waiting=waiting,
        outbox_oldest=oldest_waiting,
        outbox_failed=failed,
        merchant_events_waiting=events_waiting,
        merchant_events_oldest=events_oldest,
        merchant_events_failed=events_failed,
        open_reviews=open_reviews(session),
        halted=halted,
        commands=commands,
    )


def _gauge(metric: names.Metric, value: float | None = None) -> GaugeMetricFamily:
    if metric.labels:
        return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.name, metric.help, value=value)


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def families(backlogs: Backlogs, *, now: datetime) -> Iterator[Family]:
    renewals = _gauge(names.RENEWALS)
    for status, count in backlogs.renewals.items():
        renewals.add_metric([status], count)
    yield renewals
    lag = _gauge(names.SWEEP_LAG)
    lag.add_metric(["period"], _age(now, backlogs.period_due_since))
    lag.add_metric(["job"], _age(now, backlogs.job_due_since))
    yield lag
    yield _gauge(names.CLAIMED_UNSTARTED, backlogs.claimed_unstarted)
    yield _gauge(names.UNKNOWN_BACKLOG, backlogs.unknown)
    yield _gauge(names.UNKNOWN_OLDEST_AGE, _age(now, backlogs.unknown_oldest_sent))
    yield _gauge(names.OUTBOX_WAITING, backlogs.outbox_waiting)
    yield _gauge(names.OUTBOX_OLDEST_AGE, _age(now, backlogs.outbox_oldest))
    yield _gauge(names.OUTBOX_FAILED, backlogs.outbox_failed)
    yield _gauge(names.MERCHANT_EVENTS_WAITING, backlogs.merchant_events_waiting)
    yield _gauge(names.MERCHANT_EVENTS_OLDEST_AGE, _age(now, backlogs.merchant_events_oldest))
    yield _gauge(names.MERCHANT_EVENTS_FAILED, backlogs.merchant_events_failed)
    yield _gauge(names.OPEN_REVIEWS, backlogs.open_reviews)
    yield _gauge(names.HALTED, 1 if backlogs.halted else 0)
    commands = _gauge(names.OPERATOR_COMMANDS)
    for status, count in backlogs.commands.items():
        commands.add_metric([status], count)
    yield commands


class DatabaseCollector:
    """A prometheus_client collector: reads the backlogs at every ``collect``."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def read(self) -> Backlogs:
        with unit_of_work(self.engine) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            return read_backlogs(session, now=self.clock())

    def collect(self) -> Iterator[Family]:
        started = time.perf_counter()
        try:
            backlogs = self.read()
        except Exception as exc:  # the process counters must still be served
            log.warning("metrics_database_unreadable", error=type(exc).__name__)
            yield _gauge(names.DB_UP, 0)
            return
        yield _gauge(names.DB_UP, 1)
        yield _gauge(names.DB_SCRAPE, time.perf_counter() - started)
        yield from families(backlogs, now=self.clock())
