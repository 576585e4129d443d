"""The run's processes: each in a session of its own, output appended to its own log file
(so a restarted worker keeps one log), killable as a whole or child by child."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    ready_marker: str | None = None
    _ready_offset: int = field(default=0, repr=False)

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._ready_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as handle:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 90.0) -> None:
        if self.ready_marker is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as handle:
                handle.seek(self._ready_offset)
                if self.ready_marker.encode() in handle.read():
                    return
            if not self.alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.output()[-3000:]}")

    def children(self) -> list[int]:
        """The main process's direct children (a prefork worker's pool processes)."""
        if not self.alive():
            return []
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill_group(self) -> None:
        """SIGKILL to the main process and everything it started: the machine lost it."""
        if self.popen is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL to whatever is left of the group."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(15)
        self.kill_group()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def procfile_worker_args(procfile: Path = ROOT / "Procfile") -> list[str]:
    """The options the Procfile gives ``renewals worker`` (its pool and concurrency)."""
    for line in procfile.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "worker":
            words = shlex.split(command)
            if words[:2] == ["renewals", "worker"]:
                return words[2:]
    return []


def pool_of(worker_args: list[str]) -> str:
    """The Celery pool these worker options choose (prefork unless ``--pool``/``-P``)."""
    for n, word in enumerate(worker_args):
        if word in ("--pool", "-P") and n + 1 < len(worker_args):
            return worker_args[n + 1]
        if word.startswith("--pool="):
            return word.split("=", 1)[1]
    return "prefork"
