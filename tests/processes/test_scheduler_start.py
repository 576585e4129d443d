"""The scheduler sweeps once as it starts: beat's own first tick comes a full
``RENEWALS_SWEEP_INTERVAL`` later, and work that fell due while it was down must not wait
for it. A real ``renewals scheduler`` process, its messages read off the broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from renewals.worker.names import SWEEP_TASK
from tests.support.celery_processes import client_app, running, start_beat
from tests.support.waiting import wait_for


def _sent_tasks(broker_url: str) -> list[str]:
    """Task names of the messages waiting in the ``renewals`` queue (taken off it)."""
    app = client_app(broker_url)
    names: list[str] = []
    try:
        with app.connection_for_read() as connection:
            queue: Any = connection.SimpleQueue("renewals")
            try:
                while True:
                    try:
                        message = queue.get(block=True, timeout=0.2)
                    except queue.Empty:
                        return names
                    names.append(message.headers["task"])
                    message.ack()
            finally:
                queue.close()
    finally:
        app.close()


def test_the_scheduler_sweeps_once_when_it_starts(tmp_path: Path) -> None:
    broker_url = f"sqla+sqlite:///{tmp_path}/broker.db"
    env = {
        "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/renewals.db",
        "RENEWALS_BROKER_URL": broker_url,
        # An hour: any sweep seen within the test is the start-up one, not a tick.
        "RENEWALS_SWEEP_INTERVAL": "3600",
    }
    beat = start_beat(env, tmp_path / "beat")
    with running(beat):
        seen: list[str] = []
        wait_for(
            lambda: seen.extend(_sent_tasks(broker_url)) or seen,
            lambda names: SWEEP_TASK in names,
            what="the start-up sweep message",
        )
        assert seen == [SWEEP_TASK]
        assert beat.popen.poll() is None, beat.output()[-2000:]
