"""A renewal should cost a handful of SQL statements: counted, not timed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.models.db import unit_of_work
from renewals.services.charging import charge_renewal
from renewals.services.sweep import sweep
from tests.support.factories import Clock


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]).split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_paid_renewal_costs_a_handful_of_statements(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    make_subscription: Callable[..., int],
) -> None:
    make_subscription("success", renews_at=clock.now)
    with unit_of_work(engine) as session:
        [renewal_id] = sweep(session, now=clock(), settings=settings).ids(Work.CHARGE)
    with counting(engine) as statements:
        charge_renewal(engine, faststar, renewal_id, clock=clock, settings=settings)
    # Two transactions, receipt on. First: one locking read (renewal, subscription, card,
    # the halt switch and the attempts in brief), insert attempt, update renewal, audit.
    # Second: one locking read, receipt, audit, update subscription (its current period),
    # attempt and renewal. SQLite's BEGIN IMMEDIATE is left out of the count.
    work = [s for s in statements if s != "BEGIN"]
    assert len(work) <= 10, statements
