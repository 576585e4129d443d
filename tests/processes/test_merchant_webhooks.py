"""Issue 9's must-show for the merchant's backend: every status change reaches a real HTTP
receiver, verified with the snippet docs/merchant-webhooks.md publishes, exactly once after
deduplication on the event id, across a worker killed (kill -9) while a delivery was in
flight. Then a refund and a dispute made through the sandbox's controls travel FastStar's
signed webhook to the ``web`` process, are recorded on the renewal by the worker, open
reviews, and reach the receiver the same way.

Real processes on the production stack (PostgreSQL, Redis): the Procfile's web, worker and
scheduler, the sandbox over a socket, and the receiver in the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from renewals.config import Settings
from renewals.domain.commands import CommandName
from renewals.models import MerchantEvent, Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.commands import command_view, submit
from renewals.services.operators import payments_to_review
from renewals.webhooks.app import PATH
from renewals.worker.names import COMMAND_TASK_NAMES
from tests.support.celery_processes import (
    Process,
    client_app,
    start_beat,
    start_worker,
    wait_until,
)
from tests.support.databases import truncate_all
from tests.support.factories import make_subscription_factory
from tests.support.merchant_receiver import Receiver, merchant_receiver
from tests.support.redis_db import flush_keeping_claim
from tests.support.smtp import free_port

MERCHANT_SECRET = "merchant-process-secret-0123456789abcdef"
FASTSTAR_SECRET = "whsec_merchant_hooks_process_test"
LEASE_S = 10


class Deployment:
    def __init__(
        self, env: dict[str, str], engine: Engine, settings: Settings, workdir: Path
    ) -> None:
        self.env, self.engine, self.settings, self.workdir = env, engine, settings, workdir

    def subscribe(self, card: str) -> int:
        make = make_subscription_factory(self.engine, self.settings)
        return make(card, renews_at=datetime.now(UTC))

    def command(self, name: CommandName, **arguments: Any) -> int:
        command_id = submit(
            self.engine, name.value, arguments, actor="operator:test", now=datetime.now(UTC)
        )
        app = client_app(self.env["RENEWALS_BROKER_URL"])
        try:
            app.send_task(COMMAND_TASK_NAMES[name], args=[command_id], queue="renewals")
        finally:
            app.close()
        return command_id

    def command_status(self, command_id: int) -> str:
        with unit_of_work(self.engine) as session:
            view = command_view(session, command_id)
        assert view is not None
        return str(view["status"])

    def rows(self) -> list[MerchantEvent]:
        with unit_of_work(self.engine) as session:
            return list(session.scalars(select(MerchantEvent).order_by(MerchantEvent.id)))

    def renewal_of(self, sub_id: int) -> Renewal:
        with unit_of_work(self.engine) as session:
            return session.scalars(select(Renewal).where(Renewal.subscription_id == sub_id)).one()


@pytest.fixture
def deployment(
    sandbox: RunningSandbox,
    _postgres_database: str,
    redis_url: str,
    tmp_path: Path,
    receiver: Receiver,
) -> Iterator[Deployment]:
    truncate_all(_postgres_database)
    flush_keeping_claim(redis_url)
    env = {
        "RENEWALS_DATABASE_URL": _postgres_database,
        "RENEWALS_BROKER_URL": redis_url,
        "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
        "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
        "RENEWALS_FASTSTAR_WEBHOOK_SECRET": FASTSTAR_SECRET,
        "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
        "RENEWALS_SWEEP_INTERVAL": "1",
        "RENEWALS_LEASE_SECONDS": str(LEASE_S),
        "RENEWALS_LOG_LEVEL": "INFO",
        "RENEWALS_MERCHANT_WEBHOOK_URL": receiver.url,
        "RENEWALS_MERCHANT_WEBHOOK_SECRET": MERCHANT_SECRET,
        "RENEWALS_MERCHANT_WEBHOOK_RETRY_DELAYS": "1s",
    }
    settings = Settings(
        database_url=_postgres_database,
        broker_url=redis_url,
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
        mail_url=f"file://{tmp_path}/mail",
    )
    engine = create_db_engine(_postgres_database)
    yield Deployment(env, engine, settings, tmp_path)
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with merchant_receiver(MERCHANT_SECRET) as running_receiver:
        yield running_receiver


def _start_web(env: dict[str, str], cwd: Path) -> tuple[Process, str]:
    """The Procfile's web process: FastStar's webhooks in, stored, handed to the worker."""
    port = free_port()
    cwd.mkdir(parents=True, exist_ok=True)
    log = cwd / "web.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            [sys.executable, "-m", "renewals", "webhooks", "--port", str(port)],
            env={**_os_env(), **env},
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(popen, log)
    root = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: _answers(root) or popen.poll() is not None, timeout=30, what="the web process"
    )
    if popen.poll() is not None:
        raise AssertionError(f"web process exited:\n{process.output()[-3000:]}")
    return process, root


def _os_env() -> dict[str, str]:
    # Nothing of the test runner's own RENEWALS_* settings leaks into the processes.
    return {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}


def _answers(root: str) -> bool:
    try:
        return httpx.get(f"{root}/", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _types(receiver: Receiver, sub_id: int) -> list[str]:
    """The subscription's events as a receiver that dedupes on the id keeps them."""
    seen: dict[str, str] = {}
    for delivery in receiver.received():
        if delivery.verified and delivery.event["data"]["subscription"]["id"] == sub_id:
            seen.setdefault(delivery.event_id, delivery.event["type"])
    return list(seen.values())


def test_every_status_change_reaches_the_merchant_once_across_a_worker_kill(
    deployment: Deployment, receiver: Receiver, sandbox: RunningSandbox
) -> None:
    d, env = deployment, deployment.env
    web, web_root = _start_web(env, d.workdir / "web")
    sandbox.configure(webhook_url=f"{web_root}{PATH}", webhook_secret=FASTSTAR_SECRET)
    paid, sca, declined = d.subscribe("success"), d.subscribe("sca"), d.subscribe("declined")
    worker = start_worker(env, d.workdir / "worker1")
    beat = start_beat(env, d.workdir / "beat")
    restarted: list[Process] = []
    try:
        wait_until(
            lambda: (
                _types(receiver, paid) == ["subscription.renewed"]
                and _types(receiver, sca) == ["subscription.action_required"]
                and _types(receiver, declined) == ["subscription.past_due"]
            ),
            timeout=60,
            what="renewed, action_required and past_due at the receiver",
        )

        # The pause's delivery is held in flight by the receiver; the worker sending it dies.
        receiver.stall = 1
        paused = d.command(CommandName.PAUSE, subscription_id=paid, reason="support")
        wait_until(
            lambda: any(r.event["type"] == "subscription.paused" for r in receiver.received()),
            timeout=60,
            what="the pause's first delivery",
        )
        worker.kill_group()
        receiver.release.set()
        assert d.command_status(paused) == "done"

        restarted.append(start_worker(env, d.workdir / "worker2"))
        resumed = d.command(CommandName.RESUME, subscription_id=paid)
        wait_until(lambda: d.command_status(resumed) == "done", timeout=60, what="resume")
        canceled = d.command(CommandName.CANCEL, subscription_id=paid, reason="asked to")
        wait_until(lambda: d.command_status(canceled) == "done", timeout=60, what="cancel")
        wait_until(
            lambda: len(_types(receiver, paid)) == 4,
            timeout=60,
            what="paused (again, after the lease), resumed and canceled at the receiver",
        )

        # FastStar reports a refund and a dispute of the paid renewal's payment.
        pi = d.renewal_of(paid).payment_intent_id
        assert pi is not None
        sandbox.refund(pi)
        sandbox.dispute(pi)
        wait_until(
            lambda: len(_types(receiver, paid)) == 6,
            timeout=60,
            what="renewal.refunded and renewal.disputed at the receiver",
        )
        wait_until(
            lambda: all(row.status == "sent" for row in d.rows()),
            timeout=30,
            what="every event recorded as sent",
        )
    finally:
        receiver.release.set()
        for process in (worker, *restarted, beat, web):
            process.stop()

    deliveries = receiver.received()
    assert deliveries and all(delivery.verified for delivery in deliveries)
    assert _types(receiver, paid)[:4] == [
        "subscription.renewed",
        "subscription.paused",
        "subscription.resumed",
        "subscription.canceled",
    ]
    assert sorted(_types(receiver, paid)[4:]) == ["renewal.disputed", "renewal.refunded"]
    assert _types(receiver, sca) == ["subscription.action_required"]
    assert _types(receiver, declined) == ["subscription.past_due"]

    # Every event written arrived, at least once, each time with the body that was stored;
    # and nothing arrived that was not written: each status change once, after dedupe.
    rows = {row.event_id: row for row in d.rows()}
    assert len(rows) == 8
    assert set(receiver.events()) == set(rows)
    for delivery in deliveries:
        assert delivery.body == rows[delivery.event_id].body.encode()
    paused_id = next(i for i, row in rows.items() if row.type == "subscription.paused")
    assert sum(1 for r in deliveries if r.event_id == paused_id) >= 2  # in flight at the kill
    assert rows[paused_id].attempts >= 2

    renewal = d.renewal_of(paid)
    assert (renewal.refunded_amount, renewal.dispute_status) == (1999, "needs_response")
    with unit_of_work(d.engine) as session:
        kinds = sorted(r["kind"] for r in payments_to_review(session) if r["renewal_id"])
    assert kinds == ["disputed", "refunded"]
