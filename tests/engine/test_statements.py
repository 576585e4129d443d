"""A renewal should cost a handful of SQL statements: counted, not timed.

BEGIN and COMMIT are not counted (psycopg sends them outside the cursor; SQLite's
``BEGIN IMMEDIATE`` is left out here). bench/cost.py counts the same way.
"""

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

# PostgreSQL (the target): first transaction, one locking read (renewal, subscription, card,
# the halt switch and the attempts in brief) and one statement writing the attempt, the
# renewal and the audit row; second transaction, one statement booking the payment
# (attempt, renewal, subscription period, audit, receipt). See transitions/fast_path.py.
POSTGRES_STATEMENTS = 3
# SQLite keeps the ORM path (no data-modifying CTEs): insert attempt, update renewal and
# audit after the read; then a locking read, receipt, audit, and three updates.
SQLITE_STATEMENTS = 10


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
        follow = charge_renewal(engine, faststar, renewal_id, clock=clock, settings=settings)
    assert len(follow.ids(Work.DELIVER)) == 1  # receipts are on: its row is in the count
    work = [s for s in statements if s != "BEGIN"]
    if engine.dialect.name == "postgresql":
        assert work == ["SELECT", "WITH", "WITH"], statements
        assert len(work) == POSTGRES_STATEMENTS <= 4
    else:
        assert len(work) <= SQLITE_STATEMENTS, statements
