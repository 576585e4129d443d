"""Cost per renewal in statements and transactions, and a quick claim timing.

PostgreSQL's pg_stat_statements would count every process's statements, but it needs
``shared_preload_libraries``; when it is not loaded (the usual case here) the statements
are counted in-process instead: the worker's own code path (``SERVICES[Work.CHARGE]``, i.e.
``charge_renewal``, and the batch delivery the worker wakes for the receipts it hands on,
``deliver_due_emails``) runs for a sample of renewals under SQLAlchemy's
``before_cursor_execute`` and ``begin`` events, plus the sweep that materialised and
claimed them (its share per renewal). No latency here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, event, text

from bench import backends
from bench.sandbox import API_KEY, Sandbox
from bench.seed import make_due, seed_subscriptions
from renewals.config import Settings
from renewals.domain.work import Work
from renewals.models.db import unit_of_work
from renewals.models.migrate import upgrade
from renewals.runtime import build_runtime
from renewals.services.mail import deliver_due_emails
from renewals.services.sweep import sweep
from renewals.services.work import SERVICES


@dataclass
class Counter:
    statements: int = 0
    transactions: int = 0


@contextmanager
def counting(engine: Engine) -> Iterator[Counter]:
    counter = Counter()

    def on_statement(*args: Any) -> None:
        # As tests/engine/test_statements.py counts: BEGIN and COMMIT are not statements of
        # the work (psycopg sends them outside the cursor; SQLite's BEGIN IMMEDIATE is).
        if not str(args[2]).lstrip().upper().startswith(("BEGIN", "COMMIT")):
            counter.statements += 1

    def on_begin(*_: Any) -> None:
        counter.transactions += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "begin", on_begin)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "begin", on_begin)


def pg_stat_statements_loaded(admin_url: str = backends.POSTGRES_URL) -> bool:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            loaded = conn.execute(text("SHOW shared_preload_libraries")).scalar() or ""
    finally:
        engine.dispose()
    return "pg_stat_statements" in loaded


def measure(sandbox: Sandbox, backend_name: str, *, claimed: int, sample: int) -> dict[str, Any]:
    """Seed ``claimed`` due subscriptions, time one sweep over them (the claim timing), then
    run the worker's services for ``sample`` of them, counting statements and transactions."""
    with (
        tempfile.TemporaryDirectory(prefix="renewals-bench-cost-") as tmp,
        backends.backend(backend_name, Path(tmp)) as backend,
    ):
        settings = Settings(
            database_url=backend.database_url,
            faststar_base_url=sandbox.base_url,
            faststar_api_key=SecretStr(API_KEY),
            mail_url=f"file://{tmp}/mail",
        )
        upgrade(backend.database_url)
        runtime = build_runtime(settings)
        engine = runtime.engine
        try:
            sandbox.reset()
            seed_subscriptions(engine, sandbox.save_cards(4), claimed)
            make_due(engine)
            with counting(engine) as swept:
                started = time.perf_counter()
                with unit_of_work(engine) as session:
                    follow = sweep(session, now=runtime.clock(), settings=settings)
                sweep_s = time.perf_counter() - started
            ids = follow.ids(Work.CHARGE)
            with counting(engine) as charged:
                for renewal_id in ids[:sample]:
                    SERVICES[Work.CHARGE](runtime, renewal_id)
            with counting(engine) as delivered:  # the sample's receipts, as the worker does
                while deliver_due_emails(runtime).claimed:
                    pass
        finally:
            runtime.faststar.close()
            engine.dispose()
    n = min(sample, len(ids))
    per_sweep = swept.statements / len(ids)
    return {
        "backend": backend_name,
        "source": "in-process SQLAlchemy events (pg_stat_statements not preloaded)",
        "sample": n,
        "claimed_by_one_sweep": len(ids),
        "sweep_s": round(sweep_s, 3),
        "sweep_claim_rows_per_s": round(len(ids) / sweep_s, 1),
        "sweep_statements": swept.statements,
        "charge_statements_per_renewal": round(charged.statements / n, 2),
        "charge_transactions_per_renewal": round(charged.transactions / n, 2),
        "receipt_statements_per_renewal": round(delivered.statements / n, 2),
        "receipt_transactions_per_renewal": round(delivered.transactions / n, 2),
        "sweep_statements_per_renewal": round(per_sweep, 3),
        "statements_per_renewal": round(
            (charged.statements + delivered.statements) / n + per_sweep, 2
        ),
        "transactions_per_renewal": round(
            (charged.transactions + delivered.transactions) / n + 1 / len(ids), 2
        ),
    }
