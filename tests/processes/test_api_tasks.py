"""The integration API's tasks through a real worker process (PostgreSQL and Redis of this
module's own, the sandbox over a socket): ``renewals.api.create_subscription`` and
``renewals.api.change_amount`` sent as messages change the database; bad input sent the same
way is refused in the same words as the in-process API and an import (one validation); and
an import from the command line hands the cards to ``renewals.cards.fetch_details``, which
fills in brand and last4 from FastStar."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from renewals.api import RenewalsAPI, RenewalsAPIError
from renewals.config import Settings
from renewals.domain.import_rows import FileFormat
from renewals.models import PaymentMethod, Subscription
from renewals.models.db import create_db_engine, unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.imports import import_subscriptions
from renewals.worker.names import API_TASK_NAMES
from tests.support.celery_processes import Process, client_app, running, start_worker, wait_until
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.factories import save_sandbox_card
from tests.support.redis_db import flush_keeping_claim

# In the future: the first period has not started, so a change applies from period 0.
WHEN = "2030-01-01T09:00:00Z"


@dataclass
class Worker:
    process: Process
    engine: Engine
    settings: Settings
    env: dict[str, str]
    workdir: Path

    def send(self, operation: str, **kwargs: Any) -> None:
        app = client_app(self.settings.broker_url)
        try:
            app.send_task(API_TASK_NAMES[operation], kwargs=kwargs, queue="renewals")
        finally:
            app.close()

    def refusals(self) -> list[dict[str, Any]]:
        """What the worker answered to refused calls, from its JSON log."""
        found = []
        for line in self.process.output().splitlines():
            if '"api_refused"' in line:
                found.append(json.loads(line[line.index("{") :]))
        return found

    def subscription(self, external_id: str) -> Subscription | None:
        with unit_of_work(self.engine) as session:
            return session.scalars(
                select(Subscription).where(Subscription.external_id == external_id)
            ).one_or_none()


@pytest.fixture(scope="module")
def worker(
    postgres_url: str,
    redis_url: str,
    _sandbox_server: RunningSandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    database_url = create_postgres_database(postgres_url)
    flush_keeping_claim(redis_url)
    workdir = tmp_path_factory.mktemp("api-tasks")
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        faststar_base_url=_sandbox_server.base_url,
        faststar_api_key=SecretStr(_sandbox_server.api_key),
        mail_url=f"file://{workdir}/mail",
    )
    env = {
        "RENEWALS_DATABASE_URL": database_url,
        "RENEWALS_BROKER_URL": redis_url,
        "RENEWALS_FASTSTAR_BASE_URL": _sandbox_server.base_url,
        "RENEWALS_FASTSTAR_API_KEY": _sandbox_server.api_key,
        "RENEWALS_MAIL_URL": f"file://{workdir}/mail",
        "RENEWALS_LOG_LEVEL": "INFO",
        "RENEWALS_LOG_FORMAT": "json",
    }
    engine = create_db_engine(database_url)
    process = start_worker(env, workdir / "worker")
    try:
        with running(process):
            yield Worker(process, engine, settings, env, workdir)
    finally:
        engine.dispose()
        drop_postgres_database(postgres_url, database_url)


def test_create_and_change_amount_as_tasks_and_one_refusal_everywhere(worker: Worker) -> None:
    card = save_sandbox_card(worker.settings, "4242424242424242")
    terms: dict[str, Any] = {
        "external_id": "task-1",
        "email": "ada@example.com",
        "customer_id": card.customer_id,
        "payment_method_id": card.payment_method_id,
        "amount": 1999,
        "currency": "USD",
        "interval": "month",
        "next_renewal_at": WHEN,
    }
    worker.send("create_subscription", **terms)
    wait_until(lambda: worker.subscription("task-1") is not None, what="the task's create")
    created = worker.subscription("task-1")
    assert created is not None
    assert (created.amount, created.status.value, created.pending_amount) == (1999, "active", None)

    worker.send("change_amount", subscription="task-1", amount=2499)
    wait_until(
        lambda: getattr(worker.subscription("task-1"), "pending_amount", None) == 2499,
        what="the task's change of amount",
    )
    changed = worker.subscription("task-1")
    assert changed is not None and (changed.amount, changed.pending_from_index) == (1999, 0)

    # The same bad input through the queue, the API and an import: one check, one answer.
    bad = {**terms, "external_id": "task-2", "currency": "usd"}
    worker.send("create_subscription", **bad)
    worker.send("change_amount", subscription="task-1", amount=0)
    wait_until(lambda: len(worker.refusals()) == 2, what="two refusals in the worker's log")
    by_task = {r["operation"]: (r["code"], r["field"], r["error"]) for r in worker.refusals()}

    api = RenewalsAPI(worker.engine, worker.settings)
    with pytest.raises(RenewalsAPIError) as create_refused:
        api.create_subscription(**bad)
    with pytest.raises(RenewalsAPIError) as change_refused:
        api.change_amount("task-1", amount=0)
    header = ",".join(bad)
    row = ",".join(str(value) for value in bad.values())
    report = import_subscriptions(
        worker.engine,
        worker.settings,
        io.StringIO(f"{header}\n{row}\n"),
        FileFormat.CSV,
        now=created.created_at,
        actor="import",
    )
    assert [(e.field, e.reason) for e in report.errors] == [
        (create_refused.value.field, create_refused.value.message)
    ]
    assert by_task == {
        "create_subscription": (
            "invalid",
            "currency",
            "currency must be upper-case, got 'usd' (did you mean 'USD'?)",
        ),
        "change_amount": ("invalid", "amount", change_refused.value.message),
    }
    assert by_task["create_subscription"][1:] == (
        create_refused.value.field,
        create_refused.value.message,
    )
    assert worker.subscription("task-2") is None
    final = worker.subscription("task-1")
    assert final is not None and final.pending_amount == 2499


def test_an_import_from_the_command_line_has_its_cards_detailed_by_the_worker(
    worker: Worker,
) -> None:
    cards = [
        save_sandbox_card(worker.settings, number)
        for number in ("4242424242424242", "5555555555554444", "378282246310005")
    ]
    lines = [
        "external_id,email,customer_id,payment_method_id,amount,currency,interval,next_renewal_at"
    ]
    lines += [
        f"imp-{n},u{n}@example.com,{c.customer_id},{c.payment_method_id},500,USD,month,{WHEN}"
        for n, c in enumerate(cards)
    ]
    path = worker.workdir / "subscriptions.csv"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "renewals", "subscriptions", "import", str(path)],
        env={**os.environ, **worker.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 created, 0 unchanged")

    ids = [c.payment_method_id for c in cards]

    def details() -> dict[str, tuple[str | None, str | None]]:
        with unit_of_work(worker.engine) as session:
            return {
                pm.faststar_id: (pm.brand, pm.last4)
                for pm in session.scalars(
                    select(PaymentMethod).where(PaymentMethod.faststar_id.in_(ids))
                )
                if pm.details_fetched_at is not None
            }

    # Only the command's hint starts the fetch: no beat runs here.
    wait_until(lambda: len(details()) == 3, what="the worker to fetch the card details")
    assert details() == {
        cards[0].payment_method_id: (cards[0].brand, "4242"),
        cards[1].payment_method_id: (cards[1].brand, "4444"),
        cards[2].payment_method_id: (cards[2].brand, "0005"),
    }
    assert {cards[0].brand, cards[1].brand} == {"visa", "mastercard"}
