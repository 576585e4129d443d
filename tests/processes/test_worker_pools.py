"""Worker pools other than the Procfile's: ``renewals worker --pool gevent`` charges too (the
CLI monkey-patches before anything is imported; without that the worker read no message)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from renewals.config import Settings
from renewals.models.db import create_db_engine
from renewals.sandbox.testing import RunningSandbox
from renewals.worker.names import SWEEP_TASK
from tests.support.celery_processes import client_app, running, start_worker, wait_until
from tests.support.databases import truncate_all
from tests.support.factories import make_subscription_factory
from tests.support.inline import view
from tests.support.redis_db import flush_keeping_claim


def test_a_gevent_worker_charges_a_due_renewal(
    sandbox: RunningSandbox, _postgres_database: str, redis_url: str, tmp_path: Path
) -> None:
    truncate_all(_postgres_database)
    flush_keeping_claim(redis_url)
    settings = Settings(
        database_url=_postgres_database,
        broker_url=redis_url,
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
    )
    engine = create_db_engine(_postgres_database)
    try:
        sub_id = make_subscription_factory(engine, settings)("success", renews_at=datetime.now(UTC))
        env = {
            "RENEWALS_DATABASE_URL": _postgres_database,
            "RENEWALS_BROKER_URL": redis_url,
            "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
            "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
            "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
        }
        worker = start_worker(env, tmp_path / "worker", concurrency=4, pool="gevent")
        with running(worker):
            app = client_app(redis_url)
            try:
                app.send_task(SWEEP_TASK, queue="renewals")
            finally:
                app.close()
            wait_until(
                lambda: (
                    view(engine, sub_id)["renewals"][:1] != []
                    and view(engine, sub_id)["renewals"][0]["status"] == "succeeded"
                ),
                timeout=30,
                what="the renewal to be charged by the gevent worker",
            )
        assert "tasks_at_once=4" in worker.output()
        [renewal] = view(engine, sub_id)["renewals"]
        [charge] = [
            c for c in sandbox.charges() if c["payment_intent_id"] == renewal["payment_intent_id"]
        ]
        assert charge["idempotency_key"] == renewal["attempts"][0]["idempotency_key"]
    finally:
        engine.dispose()
