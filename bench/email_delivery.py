"""The cost of delivering receipts: one task per email (``deliver``) against batches
(``deliver_batch``), in this process, on PostgreSQL, to the file sink.

    python -m bench.email_delivery --emails 500

Per email: this process's CPU (``time.process_time``: rendering, the ORM, the driver), the
PostgreSQL backends' CPU (from /proc, for the connections of the bench's own database),
statements and transactions. The broker's share (one task message per email against one
per batch) is not in these figures; bench/e2e.py's ``cpu_ms_per_renewal`` has it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, text

from bench import backends
from bench.cost import counting
from bench.processes import cpu_seconds
from bench.seed import seed_subscriptions
from renewals.config import Settings
from renewals.logs import configure_logging
from renewals.models import OutboxMessage, Subscription
from renewals.models.db import create_db_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.notifications.batch import deliver_batch
from renewals.notifications.delivery import deliver
from renewals.notifications.examples import SAMPLES
from renewals.notifications.senders import sender_from_url


def _now() -> datetime:
    return datetime.now(UTC)


def seed(engine: Engine, emails: int, tag: str) -> list[int]:
    now = _now()
    seed_subscriptions(engine, [(f"cus_{tag}", f"pm_{tag}")], 1)
    with unit_of_work(engine) as session:
        sub = session.scalars(select(Subscription.id).order_by(Subscription.id.desc())).first()
        rows = [
            {
                "dedupe_key": f"{sub}:{tag}:receipt:{n}",
                "subscription_id": sub,
                "kind": "receipt",
                "recipient": f"customer{n}@example.com",
                "context": SAMPLES["receipt"],
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for n in range(emails)
        ]
        return list(session.scalars(insert(OutboxMessage).returning(OutboxMessage.id), rows))


def backend_cpu_s(engine: Engine, database: str) -> float:
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": database}
        ).scalars()
        return cpu_seconds(list(pids))


def measure(
    engine: Engine, database: str, emails: int, run: Callable[[list[int]], None]
) -> dict[str, Any]:
    ids = seed(engine, emails, tag=str(time.monotonic_ns()))
    server_before = backend_cpu_s(engine, database)
    with counting(engine) as counted:
        cpu, wall = time.process_time(), time.perf_counter()
        run(ids)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server = backend_cpu_s(engine, database) - server_before
    return {
        "client_cpu_ms_per_email": round(1000 * cpu / emails, 3),
        "server_cpu_ms_per_email": round(1000 * server / emails, 3),
        "wall_ms_per_email": round(1000 * wall / emails, 3),
        "statements_per_email": round(counted.statements / emails, 2),
        "transactions_per_email": round(counted.transactions / emails, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=500)
    args = parser.parse_args(argv)
    configure_logging(Settings(log_level="WARNING", log_format="console"))
    with (
        tempfile.TemporaryDirectory(prefix="renewals-bench-mail-") as tmp,
        backends.postgres_database() as url,
    ):
        settings = Settings(database_url=url, mail_url=f"file://{tmp}/mail")
        upgrade(url)
        engine = create_db_engine(url)
        sender = sender_from_url(settings.mail_url)
        database = url.rsplit("/", 1)[1]

        def one_by_one(ids: list[int]) -> None:
            for message_id in ids:
                deliver(engine, message_id, clock=_now, settings=settings, sender=sender)

        def batches(ids: list[int]) -> None:
            while deliver_batch(engine, clock=_now, settings=settings, sender=sender).claimed:
                pass

        try:
            measure(engine, database, 20, one_by_one)  # warm: templates, statement caches
            results = {
                "one task per email": measure(engine, database, args.emails, one_by_one),
                "batches": measure(engine, database, args.emails, batches),
            }
        finally:
            engine.dispose()
        sent = len(list(Path(tmp, "mail").glob("*.eml")))
    for name, figures in results.items():
        print(f"{name:>20}: {figures}")
    print(f"{sent} emails written")


if __name__ == "__main__":
    main()
