"""SQLite under concurrency (issue 11, item 5): three worker processes and two schedulers,
started together, against one embedded database and the SQLAlchemy broker on SQLite (a
fresh ``broker.db``), with ~150 subscriptions due at once.

Asserted: every renewal was claimed for its charge once and sent once (one attempt, one
send, one ``renewal_claimed`` row), the sandbox's ledger holds at most one charge per
period, no task failed, and ``database is locked`` shows in no process's log except as a
retried condition.

``RENEWALS_SQLITE_SOAK=1`` (``make model-long``) keeps adding due subscriptions for two
minutes instead.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from renewals.config import Settings
from renewals.models import AuditEvent, ChargeAttempt, Renewal, Subscription
from renewals.models.db import create_db_engine, unit_of_work
from renewals.sandbox.testing import RunningSandbox
from tests.support.celery_processes import Process, _spawn, running
from tests.support.databases import fresh_sqlite_url
from tests.support.factories import make_subscription_factory
from tests.support.waiting import wait_for

SOAK = os.environ.get("RENEWALS_SQLITE_SOAK", "") not in ("", "0")
# Enough for three workers to contend for every claim and the one write lock; `make
# model-long` runs the two-minute soak with far more.
SUBSCRIPTIONS = 45
SOAK_SECONDS = 120.0
SOAK_BATCH = 25
# Mostly paid; declines and 402s end the period's first attempt just as well.
CARDS = ["success"] * 8 + ["declined", "sca"]
FINISHED_FIRST_ATTEMPT = {"succeeded", "retry_scheduled", "requires_action", "failed"}
# A log line that reports "database is locked" as something retried, not a failure.
# (the task's own retry; a publish the sweep makes up for; Celery reconnecting its consumer)
RETRIED = re.compile(
    r"database_locked_retry|publish_failed|Connection to broker lost|consumer: Cannot connect"
)


def _make_due(make: object, count: int, offset: int) -> None:
    for index in range(count):
        make(CARDS[(offset + index) % len(CARDS)], renews_at=_now())  # type: ignore[operator]


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _started(process: Process, marker: str) -> bool:
    return marker in process.output() or process.popen.poll() is not None


@pytest.mark.timeout(0 if SOAK else 180)
def test_three_workers_and_two_schedulers_on_one_sqlite_database(
    sandbox: RunningSandbox, _sqlite_template: Path, tmp_path: Path
) -> None:
    database_url = fresh_sqlite_url(_sqlite_template, tmp_path)
    broker_url = f"sqla+sqlite:///{tmp_path}/broker.db"
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
        mail_url=f"file://{tmp_path}/mail",
    )
    engine = create_db_engine(database_url)
    make = make_subscription_factory(engine, settings)
    _make_due(make, SUBSCRIPTIONS, 0)
    env = {
        "RENEWALS_DATABASE_URL": database_url,
        "RENEWALS_BROKER_URL": broker_url,
        "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
        "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
        "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
        "RENEWALS_SWEEP_INTERVAL": "1",
        "RENEWALS_LOG_LEVEL": "INFO",
    }
    worker_args = ["worker", "--concurrency", "1", "--without-heartbeat", "--without-gossip"]
    # All five at once, on a broker file none of them has seen.
    workers = [
        _spawn(
            [*worker_args, "--without-mingle", "-n", f"w{i}@%h"], env, tmp_path / f"w{i}", "worker"
        )
        for i in range(3)
    ]
    beats = [_spawn(["scheduler"], env, tmp_path / f"b{i}", "beat") for i in range(2)]
    processes = [*workers, *beats]
    with running(*processes):
        for worker in workers:
            wait_for(lambda w=worker: _started(w, " ready."), bool, timeout=60, what="a worker")
        for beat in beats:
            wait_for(lambda b=beat: _started(b, "beat: Starting"), bool, timeout=60, what="beat")
        total = SUBSCRIPTIONS
        if SOAK:
            # Due subscriptions keep arriving while everything runs, a batch whenever the
            # previous one is under way, so the load stays on the database, not the backlog.
            started = time.monotonic()
            while time.monotonic() - started < SOAK_SECONDS:
                _make_due(make, SOAK_BATCH, total)
                total += SOAK_BATCH
                wait_for(
                    lambda: _first_attempts_done(engine),
                    lambda done, total=total: done >= total - SOAK_BATCH,
                    timeout=300,
                    what="the previous batch past its first attempt",
                )
        wait_for(
            lambda: _first_attempts_done(engine),
            lambda done: done == total,
            timeout=120 if not SOAK else 600,
            what=f"all {total} renewals past their first attempt",
        )
        for process in processes:
            assert process.popen.poll() is None, process.output()[-3000:]
    logs = {str(p.log.relative_to(tmp_path)): p.output() for p in processes}
    engine.dispose()
    engine = create_db_engine(database_url)
    try:
        _assert_claimed_and_sent_once(engine, sandbox, total)
    finally:
        engine.dispose()
    _assert_no_failed_task(logs)
    _assert_locked_only_retried(logs)


def _first_attempts_done(engine: object) -> int:
    with unit_of_work(engine) as session:  # type: ignore[arg-type]
        return (
            session.scalar(
                select(func.count(Renewal.id)).where(Renewal.status.in_(FINISHED_FIRST_ATTEMPT))
            )
            or 0
        )


def _assert_claimed_and_sent_once(engine: object, sandbox: RunningSandbox, total: int) -> None:
    with unit_of_work(engine) as session:  # type: ignore[arg-type]
        renewals = session.scalar(select(func.count(Renewal.id)))
        periods = session.execute(
            select(Renewal.subscription_id, func.count(Renewal.id)).group_by(
                Renewal.subscription_id
            )
        ).all()
        attempts = session.execute(
            select(
                ChargeAttempt.renewal_id,
                func.count(ChargeAttempt.id),
                func.sum(ChargeAttempt.sends),
            ).group_by(ChargeAttempt.renewal_id)
        ).all()
        claims = Counter(
            session.scalars(
                select(AuditEvent.renewal_id).where(AuditEvent.action == "renewal_claimed")
            )
        )
        customers = dict(session.execute(select(Subscription.id, Subscription.customer_id)).all())
    assert renewals == total
    assert all(count == 1 for _, count in periods), "a subscription has two renewals"
    assert len(attempts) == total
    twice = [(r, n, s) for r, n, s in attempts if n != 1 or s != 1]
    assert not twice, f"renewals with several attempts or sends: {twice[:10]}"
    assert len(claims) == total and set(claims.values()) == {1}, claims.most_common(3)
    per_customer = Counter(c["customer_id"] for c in sandbox.charges())
    assert all(n == 1 for n in per_customer.values()), per_customer.most_common(3)
    assert len(customers) == total


def _assert_no_failed_task(logs: dict[str, str]) -> None:
    for name, text in logs.items():
        failed = [
            line
            for line in text.splitlines()
            if "raised unexpected" in line or "Unrecoverable error" in line or "Traceback" in line
        ]
        assert not failed, f"{name}: {failed[:5]}"


def _assert_locked_only_retried(logs: dict[str, str]) -> None:
    for name, text in logs.items():
        locked = [line for line in text.splitlines() if "database is locked" in line]
        not_retried = [line for line in locked if not RETRIED.search(line)]
        assert not not_retried, f"{name}: 'database is locked' not as a retry: {not_retried[:5]}"
