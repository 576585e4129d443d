"""Redis's visibility timeout set shorter than a charge: the broker hands the charge's
message out a second time while the first delivery is still waiting for FastStar. The second
copy must send nothing: one attempt, one executed charge, the renewal booked once, and the
audit trail saying the second delivery was refused.

kombu restores a message whose acknowledgement is overdue from inside the consuming worker
(``restore_visible``, run on a timer by the worker's event loop; the app shortens that timer
along with the timeout), so no restart is needed: the test waits for the worker's log to
show the task received twice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from renewals.models import AuditEvent, ChargeAttempt, Renewal, Subscription
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from tests.chaos.stack import CrashStack, crash_stack, now, report
from tests.support.factories import make_subscription_factory
from tests.support.waiting import wait_for

VISIBILITY_TIMEOUT_S = 2
CHARGE_LATENCY_MS = 5000  # more than two visibility timeouts: at least one redelivery


@pytest.fixture(scope="module")
def stack(
    _postgres_database: str,
    redis_url: str,
    _sandbox_server: RunningSandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrashStack]:
    with crash_stack(
        database_url=_postgres_database,
        redis_url=redis_url,
        sandbox=_sandbox_server,
        workdir=tmp_path_factory.mktemp("visibility"),
        RENEWALS_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT_S),
    ) as running:
        try:
            yield running
        finally:
            _sandbox_server.configure(latency_ms=0)


def _deliveries(log: str, task_id: str) -> tuple[int, int]:
    """How often the worker received the task, and how often a delivery finished."""
    received = log.count(f"renewals.charge_renewal[{task_id}] received")
    finished = log.count(f"renewals.charge_renewal[{task_id}] succeeded")
    return received, finished


def _charge_task_ids(log: str) -> list[str]:
    return re.findall(r"renewals\.charge_renewal\[([0-9a-f-]+)\] received", log)


def test_a_charge_redelivered_by_the_visibility_timeout_is_a_no_op(stack: CrashStack) -> None:
    make = make_subscription_factory(stack.engine, stack.settings)
    # Saved and subscribed first, at full speed; due only once FastStar is slow.
    sub_id = make("success", renews_at=now() + timedelta(days=1))
    stack.sandbox.configure(latency_ms=CHARGE_LATENCY_MS)
    with unit_of_work(stack.engine) as session:
        due = now()
        session.execute(
            update(Subscription)
            .where(Subscription.id == sub_id)
            .values(anchor=due, next_renewal_at=due)
        )
    assert stack.worker is not None
    worker = stack.worker
    started = time.monotonic()
    [task_id] = wait_for(
        lambda: sorted(set(_charge_task_ids(worker.output()))),
        lambda ids: len(ids) == 1,
        what="the charge task",
    )
    # Both deliveries finish: the first after FastStar answers, the copy at once.
    deliveries, _ = wait_for(
        lambda: _deliveries(worker.output(), task_id),
        lambda seen: seen[0] >= 2 and seen[1] >= seen[0],
        timeout=60,
        what="the charge message delivered twice, every delivery finished",
    )
    stack.sandbox.configure(latency_ms=0)
    wait_for(
        lambda: stack.figures([sub_id]),
        lambda f: f.emails_received == 1,
        what="the receipt",
    )

    ledger = stack.sandbox.charges()
    [charge] = ledger
    with unit_of_work(stack.engine) as session:
        renewal = session.scalars(select(Renewal).where(Renewal.subscription_id == sub_id)).one()
        attempts = session.scalars(
            select(ChargeAttempt).where(ChargeAttempt.renewal_id == renewal.id)
        ).all()
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.renewal_id == renewal.id)
                .order_by(AuditEvent.id)
            )
        )
    assert renewal.status == "succeeded"
    assert renewal.payment_intent_id == charge["payment_intent_id"]
    assert [(a.status, a.sends) for a in attempts] == [("succeeded", 1)]
    assert attempts[0].idempotency_key == charge["idempotency_key"]
    assert actions.count("renewal_claimed") == 1
    assert "charge_delivery_refused" in actions

    assert stack.check().violations == []
    report(
        {
            "scenario": "visibility timeout",
            "runs": 1,
            "crashes_fired": 0,
            "deliveries": deliveries,
            **stack.figures([sub_id]).as_dict(),
            "seconds": round(time.monotonic() - started),
        }
    )
