"""Operator commands through the queue: the `renewals` CLI as a subprocess sends each command
to a real worker process (embedded stack: SQLite and kombu's SQLAlchemy broker, the sandbox
over a socket) and waits for its outcome (--wait), refusals included. One worker serves the
whole module; there is no beat, so sweeps are the operator's `renewals sweep`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import ReviewKind
from renewals.models import OperatorCommand, OutboxMessage, Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.sandbox.testing import RunningSandbox
from tests.support.celery_processes import running, start_worker, wait_until
from tests.support.databases import fresh_sqlite_url
from tests.support.factories import make_subscription_factory
from tests.support.inline import view


@dataclass
class Ops:
    engine: Engine
    settings: Settings
    sandbox: RunningSandbox
    env: dict[str, str]
    workdir: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "renewals", *args],
            env={**os.environ, **self.env},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def done(self, *args: str) -> str:
        result = self.cli(*args, "--wait")
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.strip()

    def refused(self, *args: str) -> str:
        result = self.cli(*args, "--wait")
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "refused: " in result.stderr
        return result.stderr.strip()

    def make(self, card: str) -> int:
        now = datetime.now(UTC)
        return make_subscription_factory(self.engine, self.settings)(card, renews_at=now)

    def renewal(self, sub_id: int) -> Renewal:
        with unit_of_work(self.engine) as session:
            return session.scalars(select(Renewal).where(Renewal.subscription_id == sub_id)).one()

    def charges_of(self, sub_id: int) -> list[dict[str, Any]]:
        customer = view(self.engine, sub_id)["customer_id"]
        return [c for c in self.sandbox.charges() if c["customer_id"] == customer]


@pytest.fixture(scope="module")
def ops(
    _sandbox_server: RunningSandbox,
    _sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ops]:
    workdir = tmp_path_factory.mktemp("operator-commands")
    _sandbox_server.reset()
    database_url = fresh_sqlite_url(_sqlite_template, workdir)
    broker_url = f"sqla+sqlite:///{workdir}/broker.db"
    mail_url = f"file://{workdir}/mail"
    env = {
        "RENEWALS_DATABASE_URL": database_url,
        "RENEWALS_BROKER_URL": broker_url,
        "RENEWALS_FASTSTAR_BASE_URL": _sandbox_server.base_url,
        "RENEWALS_FASTSTAR_API_KEY": _sandbox_server.api_key,
        "RENEWALS_MAIL_URL": mail_url,
        "RENEWALS_LOG_LEVEL": "WARNING",
    }
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        faststar_base_url=_sandbox_server.base_url,
        faststar_api_key=SecretStr(_sandbox_server.api_key),
        mail_url=mail_url,
    )
    engine = create_db_engine(database_url)
    worker = start_worker({**env, "RENEWALS_LOG_LEVEL": "INFO"}, workdir / "worker")
    with running(worker):
        yield Ops(engine, settings, _sandbox_server, env, workdir)
    engine.dispose()


def test_halt_stops_charges_until_unhalt_and_every_read_command_says_so(ops: Ops) -> None:
    sub_id = ops.make("success")
    assert ops.done("halt", "--reason", "FastStar incident").startswith("charges halted")
    assert ops.done("sweep") == "swept: nothing due"  # materialised, nothing claimed to charge
    assert ops.renewal(sub_id).status == "pending"
    shown = ops.cli("subscriptions", "show", str(sub_id), "--json")
    assert (
        shown.returncode == 0 and "HALTED" in shown.stderr and "FastStar incident" in shown.stderr
    )
    assert "halted already" in ops.refused("halt")

    assert ops.done("unhalt").startswith("charges resumed")
    assert ops.done("sweep") == "swept: 1 charge"
    wait_until(lambda: ops.renewal(sub_id).status == "succeeded", what="the charge")
    assert len(ops.charges_of(sub_id)) == 1
    assert "HALTED" not in ops.cli("unknown").stderr

    # The receipt went out; an operator sends it again (a new outbox row).
    with unit_of_work(ops.engine) as session:
        receipt = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.subscription_id == sub_id)
        ).one()
    wait_until(lambda: _statuses(ops, sub_id) == ["sent"], what="the receipt")
    assert "queued again as" in ops.done("resend-email", str(receipt), "--reason", "lost")
    wait_until(lambda: _statuses(ops, sub_id) == ["sent", "sent"], what="the copy")
    assert "no email 999999" in ops.refused("resend-email", "999999")


def _statuses(ops: Ops, sub_id: int) -> list[str]:
    with unit_of_work(ops.engine) as session:
        return list(
            session.scalars(
                select(OutboxMessage.status)
                .where(OutboxMessage.subscription_id == sub_id)
                .order_by(OutboxMessage.id)
            )
        )


def test_subscription_commands_and_their_refusals(ops: Ops) -> None:
    declined, unknown, sca = ops.make("declined"), ops.make("error_500"), ops.make("sca")
    ops.done("sweep")
    wait_until(
        lambda: (
            ops.renewal(declined).status == "retry_scheduled"
            and ops.renewal(unknown).status == "unknown"
            and ops.renewal(sca).checkout_session_id is not None
        ),
        what="the charges' outcomes",
    )
    scheduled = ops.renewal(declined).wake_at

    # retry: a new attempt now; the dunning schedule and count stay.
    assert "a new attempt now" in ops.done("retry", str(declined))
    wait_until(lambda: len(view(ops.engine, declined)["renewals"][0]["attempts"]) == 2)
    wait_until(lambda: ops.renewal(declined).status == "retry_scheduled")
    after = ops.renewal(declined)
    assert (after.declines, after.wake_at) == (1, scheduled)

    assert "-> paused" in ops.done("pause", str(declined), "--reason", "support ticket 7")
    assert f"is paused: `renewals resume {declined}`" in ops.refused("retry", str(declined))
    dry = ops.cli("pause", str(declined), "--dry-run")
    assert dry.returncode == 1 and "paused already" in dry.stderr
    assert "paused -> active" in ops.done("resume", str(declined))
    assert "active -> canceled" in ops.done("cancel", str(declined))
    assert "canceled already" in ops.refused("cancel", str(declined))

    # unknown: retry is refused with the way out, which the operator then takes.
    renewal_id = ops.renewal(unknown).id
    refused = ops.refused("retry", str(unknown))
    assert f"renewal {renewal_id} is unknown: settle it with `renewals reconcile {renewal_id}" in (
        refused
    )
    settled = ops.cli("reconcile", str(renewal_id), "--not-charged", "--reason", "no charge")
    assert settled.returncode == 0, settled.stderr
    assert settled.stdout.startswith(f"renewal {renewal_id}: resolved not charged")
    again = ops.cli("reconcile", str(renewal_id), "--paid", "pi_x")
    assert again.returncode == 1 and "only an unknown outcome is reconciled" in again.stderr

    # cancel of a subscription waiting for authentication: FastStar is asked first.
    assert "action_required -> canceled" in ops.done("cancel", str(sca))
    assert view(ops.engine, sca)["status"] == "canceled"

    # Without --wait the command id is printed; the worker runs it all the same.
    sent = ops.cli("pause", str(unknown))
    assert sent.returncode == 0 and sent.stdout.strip().isdigit()
    wait_until(lambda: view(ops.engine, unknown)["status"] == "paused", what="the pause")
    with unit_of_work(ops.engine) as session:
        row = session.get_one(OperatorCommand, int(sent.stdout))
        assert (row.name, row.status, row.actor) == ("pause", "done", f"operator:{_login()}")


def _login() -> str:
    import getpass

    return getpass.getuser()


def test_reviews_resolve_through_the_queue(ops: Ops) -> None:
    with unit_of_work(ops.engine) as session:
        review_id = transitions.open_review(
            session,
            kind=ReviewKind.UNMATCHED,
            now=datetime.now(UTC),
            source="webhook",
            reason="no renewal of ours matches it",
            payment_intent_id="pi_stray",
            amount=500,
            currency="USD",
        )
    assert review_id is not None
    listed = ops.cli("reviews")
    [row] = [line.split() for line in listed.stdout.splitlines() if "pi_stray" in line][:1]
    assert row[:3] == [str(review_id), "unmatched", "pi_stray"]  # the id to resolve it by
    assert f"({'dismissed'}: not ours)" in ops.done(
        "reviews", "resolve", str(review_id), "--dismiss", "--reason", "not ours"
    )
    assert "resolved already" in ops.refused(
        "reviews", "resolve", str(review_id), "--refunded", "--reason", "again"
    )
