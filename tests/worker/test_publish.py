"""Best-effort publish: one bounded attempt, False and one warning line when the broker cannot
take the message, and the message on the broker when it can."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, Task
from structlog.testing import capture_logs

from renewals.worker.publish import PUBLISH_TIMEOUT_S, publish
from tests.support.celery_processes import black_hole
from tests.support.redis_server import redis_server
from tests.support.smtp import free_port

# A call that waits for its full timeout still ends within the bound; the slack covers a
# loaded machine, and is far below what a single retry would add.
SLACK_S = 0.5


def _app(broker_url: str) -> tuple[Celery, Task[Any, Any]]:
    app = Celery("publish-test", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="q")

    @app.task(name="publish_test.noop")
    def noop(item_id: int) -> None:
        """Never runs here; only its message matters."""

    return app, noop


@pytest.fixture
def closed_port() -> int:
    return free_port()


def _timed_publish(task: Task[Any, Any], item_id: int) -> tuple[bool, float, list[Any]]:
    started = time.monotonic()
    with capture_logs() as logs:
        sent = publish(task, item_id)
    return sent, time.monotonic() - started, logs


def test_a_closed_port_is_one_warning_and_false(closed_port: int) -> None:
    app, task = _app(f"redis://:hunter2secret@127.0.0.1:{closed_port}/0")
    for attempt in range(2):  # the second call must not be slowed by the first failure
        sent, elapsed, logs = _timed_publish(task, 41 + attempt)
        assert sent is False
        assert elapsed < PUBLISH_TIMEOUT_S + SLACK_S
        [line] = logs
        assert line["log_level"] == "warning"
        assert line["event"] == "publish_failed"
        assert line["task"] == "publish_test.noop"
        assert line["args"] == [41 + attempt]
        assert "OperationalError" in line["error"]
        assert "hunter2secret" not in json.dumps(line)
    app.close()


def test_a_broker_that_never_answers_holds_the_caller_at_most_the_bound() -> None:
    with black_hole() as port:
        app, task = _app(f"redis://127.0.0.1:{port}/0")
        sent, elapsed, logs = _timed_publish(task, 7)
        app.close()
    assert sent is False
    assert elapsed < PUBLISH_TIMEOUT_S + SLACK_S
    assert [line["event"] for line in logs] == ["publish_failed"]


def test_an_unopenable_sqlite_broker_is_one_warning_and_false(tmp_path: Path) -> None:
    # The first failure: the embedded broker's folder does not exist.
    app, task = _app(f"sqla+sqlite:///{tmp_path}/missing/broker.db")
    sent, _, logs = _timed_publish(task, 3)
    app.close()
    assert sent is False
    [line] = logs
    assert "unable to open database file" in line["error"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    with redis_server(free_port(), tmp_path / "redis") as url:
        yield url


def test_the_message_reaches_the_broker_once_it_answers(private_redis: str) -> None:
    app, task = _app(private_redis)
    sent, _, logs = _timed_publish(task, 99)
    app.close()
    assert sent is True
    assert logs == []
    client = redis.Redis.from_url(private_redis)
    [raw] = client.lrange("q", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "publish_test.noop"
    assert message["headers"]["argsrepr"] == "(99,)"
    client.close()
