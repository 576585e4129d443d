"""Real ``renewals worker`` / ``renewals scheduler`` processes, and what /proc says of them.

Each process runs in a session (process group) of its own, so a worker's pool children are
found, measured and stopped together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 90.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, marker: str, what: str, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} did not start:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the main process (it stops its pool), then SIGKILL to the group."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(20)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


def spawn(
    args: Sequence[str], env: dict[str, str], cwd: Path, name: str, python: Sequence[str] = ()
) -> Process:
    """``renewals <args>`` in ``cwd`` with ``env`` added to ours, output to ``cwd/name.log``.

    ``python`` replaces the interpreter's entry point (``-m renewals``), e.g. to monkey-patch
    for gevent before the CLI is imported.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    log = cwd / f"{name}.log"
    entry = list(python) or ["-m", "renewals"]
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            [sys.executable, *entry, *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(popen, log)


# A worker as the Procfile runs it (`renewals worker --pool threads --concurrency C`), with a
# pool choice for the comparison.
def start_worker(
    env: dict[str, str], cwd: Path, *, concurrency: int, pool: str = "threads"
) -> Process:
    args = ["worker", "--concurrency", str(concurrency), "--pool", pool]
    process = spawn(args, env, cwd, "worker")
    process.wait_for(" ready.", "the worker")
    return process


def start_scheduler(env: dict[str, str], cwd: Path) -> Process:
    process = spawn(["scheduler"], env, cwd, "scheduler")
    process.wait_for("beat: Starting", "the scheduler")
    return process


def stop_all(*processes: Process | None) -> None:
    for process in processes:
        if process is not None:
            process.stop()


# -- /proc ------------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    """Every live process in process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ...
            pids.append(int(entry))
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def memory_kb(pids: Sequence[int]) -> tuple[int, int]:
    """(PSS, RSS) of ``pids`` together, in kB, from smaps_rollup."""
    pss = rss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return pss, rss


@dataclass
class Sampler:
    """Samples a process group's CPU time and memory every ``every_s`` in a thread."""

    pgid: int
    every_s: float = 0.5
    peak_pss_kb: int = 0
    peak_rss_kb: int = 0
    cpu_start_s: float = 0.0
    cpu_end_s: float = 0.0
    processes: int = 0
    main_cpu_start_s: float = 0.0
    main_cpu_end_s: float = 0.0
    _cpu_by_pid: dict[int, float] = field(default_factory=dict)
    _pids: list[int] = field(default_factory=list)
    _samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self, *, rescan: bool = False) -> None:
        # Walking all of /proc costs CPU on a small machine: find the group's processes
        # every few samples only (a prefork pool keeps its children).
        if rescan or self._samples % 8 == 0:
            self._pids = group_pids(self.pgid)
        self._samples += 1
        pids = self._pids
        self.processes = max(self.processes, len(pids))
        pss, rss = memory_kb(pids)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        for pid in pids:  # a child that exits keeps its last reading
            self._cpu_by_pid[pid] = max(self._cpu_by_pid.get(pid, 0.0), cpu_seconds([pid]))

    def start(self) -> None:
        self._sample()
        self.cpu_start_s = sum(self._cpu_by_pid.values())
        self.main_cpu_start_s = self._cpu_by_pid.get(self.pgid, 0.0)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample(rescan=True)
        self.cpu_end_s = sum(self._cpu_by_pid.values())
        self.main_cpu_end_s = self._cpu_by_pid.get(self.pgid, 0.0)

    @property
    def cpu_s(self) -> float:
        return self.cpu_end_s - self.cpu_start_s

    @property
    def main_cpu_s(self) -> float:
        """The group leader's share: a prefork worker's consumer (broker I/O, dispatch to
        the pool, acknowledgements), apart from the tasks it hands its children."""
        return self.main_cpu_end_s - self.main_cpu_start_s
