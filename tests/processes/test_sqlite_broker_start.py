"""Processes that start together on a fresh SQLite broker file: kombu creates its tables and
the queue's row racily (``UNIQUE constraint failed: kombu_queue.name``, ``table kombu_queue
already exists``); the start-up of every ``renewals`` process prepares both first, under
SQLite's write lock (``renewals.sqlite_broker``). Six real processes, released at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kombu import Connection

from tests.support.waiting import wait_for

PROCESSES = 6

# What each process does: the CLI's start-up (settings, folders, the broker prepared), then
# waits for the go file, connects to the broker and publishes, as a worker or beat would.
_START_AND_PUBLISH = """
import sys, time
from pathlib import Path
from kombu import Connection
from renewals.cli.root import settings_or_exit
go, ready, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.001)
settings_or_exit()
with Connection(url) as connection:
    queue = connection.SimpleQueue("renewals")
    queue.put({"from": sys.argv[2]})
    queue.close()
"""


def test_processes_starting_together_on_a_fresh_sqlite_broker_all_start(tmp_path: Path) -> None:
    broker_url = f"sqla+sqlite:///{tmp_path}/var/broker.db"
    env = {
        "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/var/renewals.db",
        "RENEWALS_BROKER_URL": broker_url,
        "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
    }
    go = tmp_path / "go"
    processes = []
    for index in range(PROCESSES):
        log = (tmp_path / f"p{index}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _START_AND_PUBLISH,
                    str(go),
                    str(tmp_path / f"ready{index}"),
                    broker_url,
                ],
                env={**_inherited(), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    # Every interpreter up and importing done: they race from the same instant.
    wait_for(
        lambda: sum((tmp_path / f"ready{i}").exists() for i in range(PROCESSES)),
        lambda ready: ready == PROCESSES,
        what="every process to be ready",
    )
    go.touch()
    codes = [process.wait(60) for process in processes]
    logs = {i: (tmp_path / f"p{i}.log").read_text() for i in range(PROCESSES)}
    assert codes == [0] * PROCESSES, logs
    with Connection(broker_url) as connection:
        queue = connection.SimpleQueue("renewals")
        try:
            assert queue.qsize() == PROCESSES
        finally:
            queue.close()


def _inherited() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
