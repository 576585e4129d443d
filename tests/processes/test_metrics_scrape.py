"""The must-show of the metrics: a run with mixed outcomes through the production stack
(PostgreSQL, Redis, a real Celery worker, the sandbox over a socket), then
``GET /metrics`` from the web process over HTTP. The worker's pool children and the web
process share one multiprocess folder, as the processes of one host do; every figure of the
scrape is compared with the database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from renewals.config import Settings
from renewals.domain.states import OutboxStatus
from renewals.metrics import names
from renewals.models import ChargeAttempt, OutboxMessage, Renewal
from renewals.models.db import create_db_engine, unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.report import unknown_backlog
from renewals.worker.names import SWEEP_TASK
from tests.support.celery_processes import Process, client_app, running, start_worker
from tests.support.databases import truncate_all
from tests.support.factories import make_subscription_factory
from tests.support.redis_db import flush_keeping_claim
from tests.support.smtp import free_port
from tests.support.waiting import wait_for, wait_until

CARDS = ("success", "declined", "sca", "lost_response")
SETTLED = {"succeeded", "requires_action", "retry_scheduled", "unknown"}
# What each attempt status was classified as when FastStar answered.
OUTCOME_OF_ATTEMPT = {
    "succeeded": "paid",
    "declined": "declined",
    "requires_action": "authentication_required",
    "unknown": "unknown",
}
CHARGE_ENDPOINT = "POST /public/customers/{id}/charge"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def database(_postgres_database: str) -> Iterator[tuple[str, Engine]]:
    truncate_all(_postgres_database)
    engine = create_db_engine(_postgres_database)
    yield _postgres_database, engine
    engine.dispose()


def _start_web(env: dict[str, str], cwd: Path) -> tuple[Process, str]:
    port = free_port()
    cwd.mkdir(parents=True, exist_ok=True)
    log = cwd / "web.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            [sys.executable, "-m", "renewals", "webhooks", "--port", str(port)],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(popen, log)
    root = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{root}/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return popen.poll() is not None

    try:
        wait_until(answers, timeout=30, what="the web process to answer GET /")
    except AssertionError:
        process.stop()
        raise
    assert popen.poll() is None, process.output()[-3000:]
    return process, f"{root}/metrics"


def _scrape(url: str) -> Samples:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return _parse(answer.text)


def _renewal_statuses(engine: Engine) -> Counter[str]:
    with unit_of_work(engine) as session:
        rows = session.execute(select(Renewal.status, func.count()).group_by(Renewal.status))
        return Counter({status.value: count for status, count in rows.tuples()})


def _attempt_outcomes(engine: Engine) -> Counter[str]:
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(ChargeAttempt.status, func.count()).group_by(ChargeAttempt.status)
        )
        return Counter({OUTCOME_OF_ATTEMPT[s.value]: n for s, n in rows.tuples()})


def _outbox(engine: Engine) -> Counter[str]:
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return Counter({status: count for status, count in rows.tuples()})


def test_a_scrape_after_mixed_outcomes_matches_the_database(
    database: tuple[str, Engine], redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    database_url, engine = database
    flush_keeping_claim(redis_url)
    folder = tmp_path / "metrics"
    folder.mkdir()
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
        mail_url=f"file://{tmp_path}/mail",
    )
    env = {
        "RENEWALS_DATABASE_URL": database_url,
        "RENEWALS_BROKER_URL": redis_url,
        "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
        "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
        "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
        "RENEWALS_LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    make = make_subscription_factory(engine, settings)
    now = datetime.now(UTC)
    subs = {card: make(card, renews_at=now) for card in CARDS}
    started = time.time()

    web, url = _start_web(env, tmp_path / "web")
    worker = start_worker(env, tmp_path / "worker")
    with running(worker, web):
        sender = client_app(redis_url)  # one sweep, as beat sends it: the rest is handed on
        try:
            sender.send_task(SWEEP_TASK, queue="renewals")
        finally:
            sender.close()
        wait_until(
            lambda: (
                sum(_renewal_statuses(engine)[s] for s in SETTLED) == len(subs)
                and _outbox(engine)[OutboxStatus.SENT.value] >= 3
            ),  # receipt, failed, action
            timeout=60,
            what="every renewal to settle and its email to go out",
        )
        # Each process writes its counters right after its commit: wait for them.
        samples = wait_for(
            lambda: _scrape(url),
            lambda s: (
                _get(s, names.EMAILS.name, result="sent")
                == _outbox(engine)[OutboxStatus.SENT.value]
                and sum(_get(s, names.CHARGES.name, outcome=o) for o in OUTCOME_OF_ATTEMPT.values())
                == 4
            ),
            interval=0.2,
            what="the scrape to count what the database holds",
        )
        renewal_statuses = _renewal_statuses(engine)
        outcomes = _attempt_outcomes(engine)
        outbox = _outbox(engine)
        with unit_of_work(engine) as session:
            unknown, _ = unknown_backlog(session)
    web_pid = web.popen.pid

    # The database gauges: renewals by status, the unknown backlog, the outbox.
    assert _get(samples, names.DB_UP.name) == 1
    for status in ("pending", "charging", *SETTLED, "failed"):
        assert _get(samples, names.RENEWALS.name, status=status) == renewal_statuses[status]
    assert renewal_statuses == Counter(
        {"succeeded": 1, "retry_scheduled": 1, "requires_action": 1, "unknown": 1}
    )
    assert _get(samples, names.UNKNOWN_BACKLOG.name) == unknown == 1
    assert _get(samples, names.OUTBOX_WAITING.name) == (
        outbox[OutboxStatus.PENDING.value] + outbox[OutboxStatus.SENDING.value]
    )
    assert _get(samples, names.OPEN_REVIEWS.name) == 0
    assert _get(samples, names.HALTED.name) == 0

    # The worker's counters: one charge per attempt, by outcome, with its duration.
    assert outcomes == Counter(
        {"paid": 1, "declined": 1, "authentication_required": 1, "unknown": 1}
    )
    for outcome, count in outcomes.items():
        assert _get(samples, names.CHARGES.name, outcome=outcome) == count, outcome
        duration_count = f"{names.CHARGE_DURATION.name}_count"
        assert _get(samples, duration_count, outcome=outcome) == count, outcome
        inf = _get(samples, f"{names.CHARGE_DURATION.name}_bucket", outcome=outcome, le="+Inf")
        assert inf == count
    assert _get(samples, names.CLAIMED.name, work="charge") == sum(outcomes.values())
    assert _get(samples, names.FASTSTAR_ERRORS.name, endpoint=CHARGE_ENDPOINT, error="unknown") == 1
    assert _get(samples, names.EMAILS.name, result="sent") == outbox[OutboxStatus.SENT.value]
    assert _get(samples, names.SWEEP_LAST_RUN.name) >= started

    # ... written by the worker's pool children, not by the web process that served them.
    writers = {
        int(m.group(1))
        for f in folder.iterdir()
        if (m := re.fullmatch(r"(?:counter|histogram|gauge_max)_(\d+)\.db", f.name))
    }
    assert writers
    assert web_pid not in writers
