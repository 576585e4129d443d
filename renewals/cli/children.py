"""The child processes of ``renewals run``: started in sessions of their own, stopped with one
SIGTERM each to their main process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 30.0
READY_POLL_S = 0.2


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    logs: Path
    env: dict[str, str]
    running: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as handle:
            # A session of its own: Ctrl-C (or a SIGTERM to our group) must reach only us, so
            # that each child gets one orderly SIGTERM from us; Celery's pool children
            # signalled at the same moment as their parent can leave the parent waiting on a
            # lock forever.
            popen = subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
                [sys.executable, "-m", *args],
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self.running.append(child)
        return child

    def wait_ready(self, child: Child, ready: Callable[[], bool], hint: str = "") -> None:
        """Until ``ready()``; a child that exits first or a deadline fails with its log."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            if child.popen.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException(f"the {child.name} did not start{hint}; see {child.log}")
            time.sleep(READY_POLL_S)

    def stopped(self) -> Child | None:
        return next((c for c in self.running if c.popen.poll() is not None), None)

    def stop_all(self) -> None:
        for child in self.running:
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        for child in self.running:
            try:
                child.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(STOP_TIMEOUT_S)
        self.running.clear()
