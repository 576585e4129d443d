"""The database gauges, read at scrape time, on SQLite and PostgreSQL: seeded rows through
the real services and the state owner, then one ``collect`` compared with what was seeded."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.commands import HALT_SWITCH
from renewals.domain.states import ReviewKind, SwitchEvent
from renewals.faststar import Unknown
from renewals.metrics import names
from renewals.models import Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.notifications.outbox import queue_email
from renewals.services.backlog_gauges import DatabaseCollector
from tests.support import scenarios as sc
from tests.support.due import insert_due_subscriptions
from tests.support.factories import Clock

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(engine: Engine, clock: Clock) -> Samples:
    samples: Samples = {}
    for family in DatabaseCollector(engine, clock).collect():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, metric: names.Metric, **labels: str) -> float:
    return samples[(metric.name, tuple(sorted(labels.items())))]


def _halt(engine: Engine, now: datetime) -> None:
    with unit_of_work(engine) as session:
        switch = transitions.lock_switch(session, HALT_SWITCH, now=now)
        transitions.move_switch(
            session, switch, SwitchEvent.SWITCHED_ON, now=now, actor="operator:test", reason="t"
        )


def test_an_empty_database_reads_zero_everywhere(engine: Engine, clock: Clock) -> None:
    samples = scrape(engine, clock)
    assert value(samples, names.DB_UP) == 1
    database = {m.name for m in names.CATALOGUE if m.source == "database"}
    assert {name for name, _ in samples} == database
    zeros = {key: v for key, v in samples.items() if key[0] not in (names.DB_UP.name,)}
    del zeros[(names.DB_SCRAPE.name, ())]
    assert set(zeros.values()) == {0}
    statuses = {dict(labels)["status"] for name, labels in samples if name == names.RENEWALS.name}
    assert statuses == {
        "pending",
        "charging",
        "succeeded",
        "requires_action",
        "retry_scheduled",
        "failed",
        "unknown",
    }


def test_sweep_lag_claims_and_the_halt_switch(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    insert_due_subscriptions(engine, 2, now=clock())  # their periods started a day ago
    samples = scrape(engine, clock)
    assert value(samples, names.SWEEP_LAG, due="period") == timedelta(days=1).total_seconds()
    assert value(samples, names.SWEEP_LAG, due="job") == 0

    claimed = sc.sweep_only(engine, settings, clock)  # materialised and claimed
    assert len(claimed.work) == 2
    samples = scrape(engine, clock)
    assert value(samples, names.SWEEP_LAG, due="period") == 0
    assert value(samples, names.SWEEP_LAG, due="job") == 0  # claimed: a lease runs
    assert value(samples, names.CLAIMED_UNSTARTED) == 2
    assert value(samples, names.RENEWALS, status="pending") == 2

    # Nobody took the messages; once the leases run out the jobs are due and unclaimed.
    clock.advance(seconds=settings.lease_seconds + 1)
    with unit_of_work(engine) as session:
        oldest = session.scalar(select(func.min(Renewal.wake_at)))
    samples = scrape(engine, clock)
    assert value(samples, names.SWEEP_LAG, due="job") == (clock() - oldest).total_seconds()
    assert value(samples, names.CLAIMED_UNSTARTED) == 0
    assert value(samples, names.HALTED) == 0

    _halt(engine, clock())  # no charge is claimed while halted: no lag to report
    samples = scrape(engine, clock)
    assert value(samples, names.HALTED) == 1
    assert value(samples, names.SWEEP_LAG, due="job") == 0


def test_unknown_outbox_reviews_and_commands(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    [sub_id] = insert_due_subscriptions(engine, 1, now=clock())
    [(_, renewal_id)] = sc.sweep_only(engine, settings, clock).work
    order = sc.begin(engine, settings, clock, renewal_id)
    sc.record(engine, settings, clock, order, Unknown(reason="read timeout"))
    sent_at = clock()
    clock.advance(seconds=90)
    with unit_of_work(engine) as session:
        queue_email(
            session,
            now=clock(),
            subscription_id=sub_id,
            renewal_id=renewal_id,
            period_start=None,
            kind="payment_failed",
            sequence=0,
            recipient="someone@example.com",
            context={},
        )
        transitions.open_review(
            session,
            kind=ReviewKind.UNMATCHED,
            now=clock(),
            source="test",
            reason="nobody's payment",
            payment_intent_id="pi_nobodys",
        )
        transitions.create_command(
            session, now=clock(), actor="operator:test", name="pause", arguments={}
        )
    clock.advance(seconds=30)

    samples = scrape(engine, clock)
    assert value(samples, names.RENEWALS, status="unknown") == 1
    assert value(samples, names.UNKNOWN_BACKLOG) == 1
    assert value(samples, names.UNKNOWN_OLDEST_AGE) == (clock() - sent_at).total_seconds()
    assert value(samples, names.OUTBOX_WAITING) == 1
    assert value(samples, names.OUTBOX_OLDEST_AGE) == 30
    assert value(samples, names.OUTBOX_FAILED) == 0
    assert value(samples, names.OPEN_REVIEWS) == 1
    assert value(samples, names.OPERATOR_COMMANDS, status="pending") == 1
    assert value(samples, names.OPERATOR_COMMANDS, status="running") == 0


def test_a_database_that_cannot_be_read_is_db_up_0_and_nothing_else(
    tmp_path: Any, clock: Clock
) -> None:
    broken = create_db_engine(f"sqlite:///{tmp_path}/missing/renewals.db")
    try:
        samples = scrape(broken, clock)
    finally:
        broken.dispose()
    assert samples == {(names.DB_UP.name, ()): 0}
