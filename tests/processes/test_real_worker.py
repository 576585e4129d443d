"""The engine through real Celery processes: a worker (and beats) started as the Procfile
starts them, on the embedded stack (SQLite + kombu's SQLAlchemy broker) and on the production
stack (PostgreSQL + Redis), against the sandbox over a real socket. The sandbox's log of
executed charges is the ground truth: one charge per paid period, whatever happens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.models import ChargeAttempt, OutboxMessage, Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.notifications.examples import SAMPLES
from renewals.notifications.outbox import queue_email
from renewals.sandbox.testing import RunningSandbox
from renewals.services.sweep import sweep
from renewals.worker.names import DELIVER_BATCH_TASK, SWEEP_TASK, TASK_NAMES
from tests.support.celery_processes import (
    black_hole,
    client_app,
    running,
    start_beat,
    start_worker,
    wait_until,
)
from tests.support.databases import fresh_sqlite_url, truncate_all
from tests.support.factories import CARDS, make_subscription_factory
from tests.support.inline import view
from tests.support.redis_db import flush_keeping_claim
from tests.support.smtp import Mailbox, smtp_server

SETTLED = {"succeeded", "requires_action", "retry_scheduled", "failed", "unknown"}
LEASE_S = 10


@dataclass
class Stack:
    name: str
    database_url: str
    broker_url: str
    engine: Engine
    settings: Settings
    sandbox: RunningSandbox
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "RENEWALS_DATABASE_URL": self.database_url,
            "RENEWALS_BROKER_URL": self.broker_url,
            "RENEWALS_FASTSTAR_BASE_URL": self.sandbox.base_url,
            "RENEWALS_FASTSTAR_API_KEY": self.sandbox.api_key,
            "RENEWALS_MAIL_URL": f"file://{self.workdir}/mail",
            "RENEWALS_SWEEP_INTERVAL": "1",
            "RENEWALS_LEASE_SECONDS": str(LEASE_S),
            "RENEWALS_LOG_LEVEL": "INFO",
            "RENEWALS_UNKNOWN_RECHECK_DELAYS": "1s",
            **extra,
        }

    def send(self, task: str, *args: Any) -> None:
        app = client_app(self.broker_url)
        try:
            app.send_task(task, args=list(args), queue="renewals")
        finally:
            app.close()

    def renewal(self, sub_id: int) -> dict[str, Any]:
        renewals = view(self.engine, sub_id)["renewals"]
        return renewals[0] if renewals else {"status": "none", "attempts": []}

    def charges_of(self, sub_id: int) -> list[dict[str, Any]]:
        customer = view(self.engine, sub_id)["customer_id"]
        return [c for c in self.sandbox.charges() if c["customer_id"] == customer]


@pytest.fixture(params=["embedded", "production"])
def stack(
    request: pytest.FixtureRequest, sandbox: RunningSandbox, tmp_path: Path
) -> Iterator[Stack]:
    if request.param == "embedded":
        database_url = fresh_sqlite_url(request.getfixturevalue("_sqlite_template"), tmp_path)
        broker_url = f"sqla+sqlite:///{tmp_path}/broker.db"
    else:
        database_url = request.getfixturevalue("_postgres_database")
        truncate_all(database_url)
        broker_url = request.getfixturevalue("redis_url")
        flush_keeping_claim(broker_url)  # plain FLUSHDB would drop the session's claim
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
        mail_url=f"file://{tmp_path}/mail",
        lease_seconds=LEASE_S,
    )
    engine = create_db_engine(database_url)
    yield Stack(request.param, database_url, broker_url, engine, settings, sandbox, tmp_path)
    engine.dispose()


def _make(stack: Stack, card: str) -> int:
    make = make_subscription_factory(stack.engine, stack.settings)
    return make(card, renews_at=_now())


def _now() -> datetime:
    return datetime.now(UTC)


def test_every_test_card_through_a_real_worker_and_beat(stack: Stack) -> None:
    subs = {card: _make(stack, card) for card in CARDS}
    worker = start_worker(stack.env(), stack.workdir / "worker")
    beat = start_beat(stack.env(), stack.workdir / "beat")
    with running(worker, beat):
        wait_until(
            lambda: (
                all(stack.renewal(s)["status"] in SETTLED for s in subs.values())
                and stack.renewal(subs["sca"])["checkout_url"] is not None
                and any((stack.workdir / "mail").glob("*action_required*.eml"))
            ),
            timeout=60,
            what="every renewal to settle",
        )
    expected = {
        "success": ("succeeded", "active", 1),
        "sca": ("requires_action", "action_required", 0),
        "declined": ("retry_scheduled", "past_due", 0),
        "insufficient_funds": ("retry_scheduled", "past_due", 0),
        "expired": ("failed", "canceled", 0),
        "error_500": ("unknown", "active", 0),
        "lost_response": ("unknown", "active", 1),
        "error_after_charge": ("unknown", "active", 1),
    }
    for card, (renewal_status, sub_status, charges) in expected.items():
        sub = view(stack.engine, subs[card])
        assert (sub["renewals"][0]["status"], sub["status"]) == (renewal_status, sub_status), card
        assert len(sub["renewals"]) == 1, card
        assert len(sub["renewals"][0]["attempts"]) == 1, card
        assert len(stack.charges_of(subs[card])) == charges, card
    paid = stack.renewal(subs["success"])
    assert paid["payment_intent_id"] == stack.charges_of(subs["success"])[0]["payment_intent_id"]
    [eml] = (stack.workdir / "mail").glob("*action_required*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    assert stack.renewal(subs["sca"])["checkout_url"] in body.get_content()


def test_the_same_charge_message_five_times_charges_once(stack: Stack) -> None:
    sub_id = _make(stack, "success")
    with unit_of_work(stack.engine) as session:
        [renewal_id] = sweep(session, now=_now(), settings=stack.settings).ids(Work.CHARGE)
    stack.sandbox.configure(latency_ms=300)  # the first call is still in flight when others run
    worker = start_worker(stack.env(), stack.workdir / "worker", concurrency=4)
    with running(worker):
        for _ in range(5):
            stack.send(TASK_NAMES[Work.CHARGE], renewal_id)
        wait_until(
            lambda: stack.renewal(sub_id)["status"] == "succeeded", timeout=30, what="payment"
        )
        time.sleep(1.0)  # let the other four deliveries finish; they must change nothing
    renewal = stack.renewal(sub_id)
    assert len(renewal["attempts"]) == 1
    assert len(stack.charges_of(sub_id)) == 1


def test_two_beats_and_duplicate_sweeps_charge_each_period_once(stack: Stack) -> None:
    subs = [_make(stack, "success") for _ in range(6)]
    worker = start_worker(stack.env(), stack.workdir / "worker", concurrency=4)
    beats = [start_beat(stack.env(), stack.workdir / f"beat{n}") for n in range(2)]
    with running(worker, *beats):
        for _ in range(3):
            stack.send(SWEEP_TASK)
        wait_until(
            lambda: all(stack.renewal(s)["status"] == "succeeded" for s in subs),
            timeout=60,
            what="every renewal to be paid",
        )
        time.sleep(3)  # several more sweeps from both beats: nothing may change
    for sub_id in subs:
        sub = view(stack.engine, sub_id)
        assert len(sub["renewals"]) == 1
        assert len(sub["renewals"][0]["attempts"]) == 1
        assert len(stack.charges_of(sub_id)) == 1


def _attempt_in_flight(stack: Stack, sub_id: int) -> bool:
    attempts = stack.renewal(sub_id)["attempts"]
    return bool(attempts) and attempts[0]["status"] == "in_flight"


def _sweep_until(stack: Stack, sub_id: int, status: str, timeout: float) -> None:
    def swept() -> bool:
        stack.send(SWEEP_TASK)
        time.sleep(0.5)
        return stack.renewal(sub_id)["status"] == status

    wait_until(swept, timeout=timeout, interval=0.5, what=f"renewal {status}")


# On PostgreSQL + Redis the same kills are made at every recovery point by
# tests/chaos/test_crash_points.py (after_attempt_commit, request_sent_response_unread, with
# the janitor's trusted same-key resend settling them); here they run on the embedded stack,
# which the crash points do not cover, to keep `make test` near ten minutes.
@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_worker_killed_after_the_attempt_commit_before_the_call(stack: Stack) -> None:
    sub_id = _make(stack, "success")
    with black_hole() as port:
        stuck = start_worker(
            stack.env(
                RENEWALS_FASTSTAR_BASE_URL=f"http://127.0.0.1:{port}/api/v1",
                RENEWALS_FASTSTAR_READ_TIMEOUT="120",
            ),
            stack.workdir / "worker1",
        )
        with running(stuck):
            stack.send(SWEEP_TASK)
            wait_until(lambda: _attempt_in_flight(stack, sub_id), timeout=30, what="attempt")
            stuck.kill_group()
    key = stack.renewal(sub_id)["attempts"][0]["idempotency_key"]

    # A new worker, the real FastStar: after the lease the truth is "unknown", not a retry.
    worker = start_worker(stack.env(), stack.workdir / "worker2")
    with running(worker):
        _sweep_until(stack, sub_id, "unknown", timeout=LEASE_S + 20)
        time.sleep(2)
        stack.send(SWEEP_TASK)
        time.sleep(1)
    renewal = stack.renewal(sub_id)
    assert renewal["status"] == "unknown"
    assert [a["status"] for a in renewal["attempts"]] == ["unknown"]
    assert stack.charges_of(sub_id) == []

    # With trusted keys the same attempt is re-sent under its own key: charged once.
    trusting = start_worker(
        stack.env(RENEWALS_TRUST_IDEMPOTENCY_KEYS="true"), stack.workdir / "worker3"
    )
    with running(trusting):
        _sweep_until(stack, sub_id, "succeeded", timeout=40)
    renewal = stack.renewal(sub_id)
    assert [a["idempotency_key"] for a in renewal["attempts"]] == [key]
    [charge] = stack.charges_of(sub_id)
    assert charge["idempotency_key"] == key
    assert charge["payment_intent_id"] == renewal["payment_intent_id"]


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)  # see above
def test_worker_killed_after_the_call_before_the_result_commit(stack: Stack) -> None:
    sub_id = _make(stack, "success")
    stack.sandbox.configure(latency_ms=2000)
    first = start_worker(stack.env(), stack.workdir / "worker1")
    with running(first):
        stack.send(SWEEP_TASK)
        wait_until(lambda: _attempt_in_flight(stack, sub_id), timeout=30, what="attempt")
        time.sleep(0.3)  # the request is with FastStar now
        first.kill_group()
    # FastStar executes the charge although nobody is left to read the answer.
    wait_until(lambda: len(stack.charges_of(sub_id)) == 1, timeout=10, what="the charge")
    stack.sandbox.configure(latency_ms=0)

    worker = start_worker(stack.env(), stack.workdir / "worker2")
    with running(worker):
        _sweep_until(stack, sub_id, "unknown", timeout=LEASE_S + 20)
        time.sleep(2)
        stack.send(SWEEP_TASK)
        time.sleep(1)
    assert stack.renewal(sub_id)["status"] == "unknown"
    assert len(stack.charges_of(sub_id)) == 1  # never a second charge

    trusting = start_worker(
        stack.env(RENEWALS_TRUST_IDEMPOTENCY_KEYS="true"), stack.workdir / "worker3"
    )
    with running(trusting):
        _sweep_until(stack, sub_id, "succeeded", timeout=40)
    [charge] = stack.charges_of(sub_id)
    renewal = stack.renewal(sub_id)
    assert renewal["payment_intent_id"] == charge["payment_intent_id"]
    assert len(renewal["attempts"]) == 1
    with unit_of_work(stack.engine) as session:
        statuses = session.scalars(
            select(ChargeAttempt.status).join(Renewal).where(Renewal.subscription_id == sub_id)
        ).all()
    assert statuses == ["succeeded"]


def test_the_send_task_delivered_three_times_sends_one_email(stack: Stack) -> None:
    sub_id = _make(stack, "success")
    with unit_of_work(stack.engine) as session:
        message_id = queue_email(
            session,
            now=_now(),
            subscription_id=sub_id,
            renewal_id=None,
            period_start=_now(),
            kind="upcoming_renewal",
            sequence=0,
            recipient="jane@example.com",
            context={**SAMPLES["upcoming_renewal"]},
        )
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        worker = start_worker(
            stack.env(RENEWALS_MAIL_URL=f"smtp://127.0.0.1:{port}"),
            stack.workdir / "worker",
            concurrency=4,
        )
        with running(worker):
            for _ in range(3):
                stack.send(TASK_NAMES[Work.DELIVER], message_id)
            wait_until(lambda: len(mailbox.messages) >= 1, timeout=30, what="the email")
            time.sleep(1.5)  # the other two deliveries run and must send nothing
    assert len(mailbox.messages) == 1
    assert mailbox.messages[0]["To"].addresses[0].addr_spec == "jane@example.com"


def test_receipts_of_a_burst_of_renewals_go_out_in_batches_each_once(stack: Stack) -> None:
    subs = [_make(stack, "success") for _ in range(5)]
    worker = start_worker(stack.env(), stack.workdir / "worker", concurrency=4)
    with running(worker):
        stack.send(SWEEP_TASK)
        wait_until(
            lambda: len(list((stack.workdir / "mail").glob("*receipt*.eml"))) == len(subs),
            timeout=60,
            what="every receipt",
        )
    with unit_of_work(stack.engine) as session:
        rows = session.execute(select(OutboxMessage.status, OutboxMessage.attempts)).all()
    assert sorted(rows) == [("sent", 1)] * len(subs)
    log = worker.output()
    assert f"Task {DELIVER_BATCH_TASK}[" in log
    assert f"Task {TASK_NAMES[Work.DELIVER]}[" not in log  # no task per email
