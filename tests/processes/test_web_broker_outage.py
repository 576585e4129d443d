"""The Procfile's ``web`` process alone, with a broker that cannot take messages: a stored
event is answered 2xx at once, the failed hand-off is one warning line (no traceback), and
the event is processed once the broker is back and a sweep runs.

Two outages: Redis on a closed port, and the embedded default (the SQLite broker under
``var/``) in a fresh working directory where the broker's file cannot be opened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from renewals.faststar import signature_header
from renewals.models import InboxEvent
from renewals.models.db import create_db_engine, unit_of_work
from renewals.scheduler.beat import SWEEP_TASK
from renewals.webhooks.app import PATH
from tests.support.celery_processes import Process, client_app, running, start_worker, wait_until
from tests.support.databases import fresh_sqlite_url
from tests.support.redis_server import redis_server
from tests.support.smtp import free_port

SECRET = "whsec_outage_test_secret"
ANSWER_WITHIN_S = 2.0
PROCESSED_WITHIN_S = 60.0


@dataclass
class Outage:
    """One way the broker is unavailable while the web process receives an event."""

    name: str
    cwd: Path
    env: dict[str, str]
    # Where the test itself sends the sweep once the broker is back.
    broker_url: str
    engine: Engine
    # Called once the web process answers: checks what start-up did, then breaks the broker.
    break_broker: Callable[[], None]
    # Entered before the worker starts: the broker is back for as long as it lasts.
    broker_back: Callable[[], AbstractContextManager[object]]


def _env(**settings: str) -> dict[str, str]:
    # Nothing of the test runner's own RENEWALS_* settings: the defaults must be the defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
    return {
        **env,
        "RENEWALS_FASTSTAR_WEBHOOK_SECRET": SECRET,
        "RENEWALS_LOG_FORMAT": "json",
        "RENEWALS_LOG_LEVEL": "INFO",
        **{f"RENEWALS_{k.upper()}": v for k, v in settings.items()},
    }


@pytest.fixture(params=["redis", "embedded"])
def outage(
    request: pytest.FixtureRequest, _sqlite_template: Path, tmp_path: Path
) -> Iterator[Outage]:
    database_url = fresh_sqlite_url(_sqlite_template, tmp_path)
    engine = create_db_engine(database_url)
    cwd = tmp_path / "workdir"
    cwd.mkdir()
    if request.param == "redis":
        port = free_port()  # nothing listens there until broker_back()
        broker_url = f"redis://127.0.0.1:{port}/0"
        yield Outage(
            "redis",
            cwd,
            _env(
                database_url=database_url,
                broker_url=broker_url,
                mail_url=f"file://{tmp_path}/mail",
            ),
            broker_url,
            engine,
            break_broker=lambda: None,
            broker_back=lambda: redis_server(port, tmp_path / "redis"),
        )
    else:
        var = cwd / "var"

        def folders_made_then_gone() -> None:
            # `renewals webhooks` started alone made the folders of its default paths...
            assert (var / "mail").is_dir()
            # ... and losing them again makes the broker's file unopenable, the issue's
            # "unable to open database file". The worker's start-up makes them again.
            shutil.rmtree(var)

        assert not var.exists()
        yield Outage(
            "embedded",
            cwd,
            _env(database_url=database_url),  # broker and mail on their defaults
            f"sqla+sqlite:///{var}/broker.db",
            engine,
            break_broker=folders_made_then_gone,
            broker_back=nullcontext,
        )
    engine.dispose()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _start_web(outage: Outage) -> tuple[Process, str]:
    """``renewals webhooks`` as the Procfile's web process runs it, in the outage's cwd."""
    port = free_port()
    log = outage.cwd / "web.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            [sys.executable, "-m", "renewals", "webhooks", "--port", str(port)],
            env=outage.env,
            cwd=outage.cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(popen, log)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _healthy(f"{root}/") or popen.poll() is not None,
            timeout=30,
            what="the web process to answer GET /",
        )
    except AssertionError:
        process.stop()
        raise
    if popen.poll() is not None:
        raise AssertionError(f"web process exited:\n{process.output()[-3000:]}")
    return process, f"{root}{PATH}"


def _post(url: str, event_id: str) -> tuple[int, dict[str, Any], float]:
    body = json.dumps(
        {
            "id": event_id,
            "type": "payment.succeeded",
            "created": int(time.time()),
            "data": {
                "payment_id": f"pi_{event_id}",
                "amount": 1999,
                "currency": "usd",
                "customer_id": "cus_outage",
                "status": "succeeded",
            },
            "livemode": False,
            "api_version": "v1",
        }
    ).encode()
    headers = {
        "X-Webhook-Signature": signature_header(SECRET, int(time.time()), body),
        "X-Webhook-ID": event_id,
        "Content-Type": "application/json",
    }
    started = time.monotonic()
    answer = httpx.post(url, content=body, headers=headers, timeout=10)
    return answer.status_code, answer.json(), time.monotonic() - started


def _inbox(engine: Engine) -> dict[str, tuple[int, str]]:
    with unit_of_work(engine) as session:
        rows = session.execute(select(InboxEvent.event_id, InboxEvent.id, InboxEvent.status))
        return {event_id: (inbox_id, status) for event_id, inbox_id, status in rows}


def _status(engine: Engine, event_id: str) -> str:
    return _inbox(engine).get(event_id, (0, "absent"))[1]


def _expire_handoff_lease(engine: Engine, event_id: str) -> None:
    # Stands for HANDOFF_LEASE (60 s) passing without the hand-off having been processed.
    with unit_of_work(engine) as session:
        event = session.scalars(select(InboxEvent).where(InboxEvent.event_id == event_id)).one()
        event.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)


def _log_lines(process: Process) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for raw in process.output().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"text": raw})  # anything not JSON (a traceback) is kept as text
    return lines


def _assert_one_warning_for(web: Process, inbox_id: int) -> None:
    warnings = [line for line in _log_lines(web) if line.get("level") == "warning"]
    assert len(warnings) == 1, warnings
    [warning] = warnings
    assert warning["event"] == "publish_failed"
    assert warning["task"] == "renewals.process_webhook"
    assert warning["args"] == [inbox_id]
    assert "Traceback" not in web.output()


def test_a_stored_event_is_answered_2xx_and_processed_after_the_outage(outage: Outage) -> None:
    web, url = _start_web(outage)
    with running(web):
        outage.break_broker()

        status, body, took = _post(url, "evt_during_outage")
        assert (status, body) == (200, {"received": True, "duplicate": False})
        assert took < ANSWER_WITHIN_S
        # FastStar retries anyway (say, our answer was lost): still stored once.
        status, body, _ = _post(url, "evt_during_outage")
        assert (status, body) == (200, {"received": True, "duplicate": True})
        [(stored_id, stored_status)] = _inbox(outage.engine).values()
        assert stored_status == "pending"
        _assert_one_warning_for(web, stored_id)

        with outage.broker_back():
            worker = start_worker(outage.env, outage.cwd, concurrency=1)
            with running(worker):
                # The web process hands off again as soon as the broker takes messages.
                status, _, took = _post(url, "evt_after_outage")
                assert status == 200 and took < ANSWER_WITHIN_S
                wait_until(
                    lambda: _status(outage.engine, "evt_after_outage") == "processed",
                    timeout=PROCESSED_WITHIN_S,
                    what="the handed-off event to be processed",
                )
                # Nothing was sent for the first event: it waits for its lease and a sweep.
                assert _status(outage.engine, "evt_during_outage") == "pending"
                _expire_handoff_lease(outage.engine, "evt_during_outage")
                sender = client_app(outage.broker_url)
                try:
                    sender.send_task(SWEEP_TASK, queue="renewals")
                finally:
                    sender.close()
                wait_until(
                    lambda: _status(outage.engine, "evt_during_outage") == "processed",
                    timeout=PROCESSED_WITHIN_S,
                    what="the sweep to find and process the event",
                )
    assert len(_inbox(outage.engine)) == 2
    _assert_one_warning_for(web, stored_id)
