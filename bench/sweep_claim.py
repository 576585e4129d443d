"""How fast the sweep's drain materialises and claims a large due set, and the plans of
its queries.

Creates a fresh database (a SQLite file, or a new PostgreSQL database that is dropped at
the end), inserts ``--subscriptions`` active monthly subscriptions whose period started a
day ago (set-based SQL, no sandbox: nothing is charged), then runs the drain
(``renewals.services.drain.drain``, the production loop) with backpressure off until every
subscription has its renewal and every renewal is claimed. Claimed work is counted, not
published. Prints rows/s and per-step times, then the EXPLAIN plans of the materialise and
claim statements exactly as the drain sent them (captured from the driver), once on the
fresh due set and once more at the end, when every renewal is claimed.

    python bench/sweep_claim.py [--subscriptions 100000] [--batch 500]
        [--database sqlite|postgres] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from renewals.config import Settings
from renewals.logs import configure_logging
from renewals.models import Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.services.drain import drain
from renewals.services.followups import FollowUps
from renewals.services.sweep import DEPTH, Limits, drain_step

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _database(kind: str, postgres_url: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir}/bench.db"
    name = f"renewals_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(postgres_url).set(database=name).render_as_string(hide_password=False)


def _drop(postgres_url: str, url: str) -> None:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def seed(engine: Engine, count: int, now: datetime) -> None:
    """One customer and card, ``count`` due subscriptions: one INSERT … SELECT."""
    anchor = now - timedelta(days=1)
    postgres = engine.dialect.name == "postgresql"
    # Both databases store these as the text/timestamp the models' UTCDateTime writes.
    at = anchor if postgres else anchor.strftime("%Y-%m-%d %H:%M:%S.%f")
    numbers = (
        "SELECT n FROM generate_series(1, :count) AS n"
        if postgres
        else "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count) "
        "SELECT n FROM s"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customers (id, faststar_id, email, created_at) "
                "VALUES (1, 'cus_bench', 'bench@example.com', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO payment_methods (id, faststar_id, customer_id, brand, last4, "
                "exp_month, exp_year, created_at) "
                "VALUES (1, 'pm_bench', 1, 'visa', '4242', 12, 2099, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO subscriptions (customer_id, payment_method_id, amount, currency, "
                "interval, interval_count, anchor, status, status_changed_at, "
                "cancel_at_period_end, next_period_index, next_renewal_at, created_at) "
                f"SELECT 1, 1, 1999, 'USD', 'month', 1, :at, 'active', :at, false, 0, :at, :at "
                f"FROM ({numbers}) AS numbers"
            ),
            {"at": at, "count": count},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements sent to the driver, with their parameters as sent."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain_step(
    engine: Engine,
    settings: Settings,
    now: datetime,
    limits: Limits,
    title: str,
    setup: str | None = None,
) -> None:
    """One drain step (after ``setup``), its SELECTs explained in the same transaction, then
    rolled back: the data stays as it was."""
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        from sqlalchemy.orm import Session

        trans = conn.begin()
        session = Session(bind=conn)
        if setup:
            conn.execute(text(setup))
        with captured(engine) as sent:
            drain_step(session, now=now, settings=settings, limits=limits)
        print(f"\n=== plans, {title} ===")
        for statement, parameters in sent:
            prefix = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
            print("\n" + " ".join(statement.split())[:300])
            for row in rows:
                print("   ", row[0] if postgres else f"{'  ' * (row[1] > 0)}{row[-1]}")
        session.close()
        trans.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    configure_logging(Settings(log_level="WARNING", log_format="json"))

    with tempfile.TemporaryDirectory() as workdir:
        url = _database(args.database, args.postgres_url, Path(workdir))
        try:
            upgrade(url)
            settings = Settings(database_url=url)
            engine = create_db_engine(url)
            now = datetime.now(UTC).replace(microsecond=0)
            started = time.perf_counter()
            seed(engine, args.subscriptions, now)
            print(
                f"{args.database}: {args.subscriptions:,} due subscriptions seeded in "
                f"{time.perf_counter() - started:.1f} s; batch {args.batch}, backpressure off"
            )
            # Backpressure on here, so that the count query is explained too.
            explain_step(engine, settings, now, Limits(args.batch, DEPTH), "a fresh due set")

            handed = 0

            def count(follow: FollowUps) -> None:
                nonlocal handed
                handed += len(follow.work)

            started = time.perf_counter()
            done = drain(
                engine,
                settings=settings,
                clock=lambda: now,
                hand_out=count,
                limits=Limits(batch=args.batch, depth=None),
                budget_s=float("inf"),
            )
            elapsed = time.perf_counter() - started
            with unit_of_work(engine) as session:
                renewals = session.scalar(select(func.count()).select_from(Renewal)) or 0
                leased = session.scalar(
                    select(func.count()).select_from(Renewal).where(Renewal.lease_expires_at > now)
                )
            assert done.materialised == renewals == leased == handed == args.subscriptions, (
                done,
                renewals,
                leased,
                handed,
            )
            print(
                f"\nmaterialised and claimed {args.subscriptions:,} in {elapsed:.2f} s: "
                f"{args.subscriptions / elapsed:,.0f} rows/s; {done.steps} steps "
                f"(one transaction each), {1000 * elapsed / done.steps:.1f} ms per step"
            )
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            # Every other renewal claimed (the others' leases dropped in the explaining
            # transaction): the claim skips the claimed ones through the partial indexes.
            half = "UPDATE renewals SET lease_expires_at = NULL WHERE id % 2 = 0"
            for depth in (DEPTH, None):
                explain_step(
                    engine,
                    settings,
                    now,
                    Limits(args.batch, depth),
                    f"half claimed, depth {depth or 'off (no backpressure)'}",
                    half,
                )
            engine.dispose()
        finally:
            if args.database == "postgres":
                _drop(args.postgres_url, url)


if __name__ == "__main__":
    main()
