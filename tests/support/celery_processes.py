"""Real worker and beat processes for the tests, started the way the Procfile starts them.

Each process gets its own session (process group), so a test can kill -9 a whole worker
(main process and pool children) at once, as a crashed machine would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from tests.support.waiting import wait_until

READY_TIMEOUT_S = 60.0


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill_group(self) -> None:
        """kill -9 the main process and every child: a crash, not a shutdown."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        """SIGTERM to the main process only (it stops its own pool), then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(20)
        if self.popen.poll() is None or _group_alive(self.popen.pid):
            self.kill_group()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _spawn(args: list[str], env: dict[str, str], cwd: Path, name: str) -> Process:
    cwd.mkdir(parents=True, exist_ok=True)
    log = cwd / f"{name}.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            [sys.executable, "-m", "renewals", *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(popen, log)


PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def procfile_pool() -> str:
    """The worker pool the Procfile runs in production (``--pool``/``-P``; Celery's default
    is prefork)."""
    for line in PROCFILE.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "worker":
            args = command.split()
            for flag in ("--pool", "-P"):
                if flag in args:
                    return args[args.index(flag) + 1]
            pools = [a.split("=", 1)[1] for a in args if a.startswith("--pool=")]
            return pools[0] if pools else "prefork"
    raise AssertionError("the Procfile has no worker process")


def start_worker(
    env: dict[str, str], cwd: Path, *, concurrency: int = 2, pool: str | None = None
) -> Process:
    """A worker with the Procfile's pool (or ``pool``), at a test-sized concurrency."""
    process = _spawn(
        [
            "worker",
            "--pool",
            pool or procfile_pool(),
            "--concurrency",
            str(concurrency),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        cwd,
        "worker",
    )
    try:
        wait_until(
            lambda: " ready." in process.output() or process.popen.poll() is not None,
            timeout=READY_TIMEOUT_S,
            what="the worker to be ready",
        )
    except AssertionError:
        process.stop()
        raise
    if process.popen.poll() is not None:
        raise AssertionError(f"worker exited:\n{process.output()[-3000:]}")
    return process


def start_beat(env: dict[str, str], cwd: Path) -> Process:
    process = _spawn(["scheduler"], env, cwd, "beat")
    wait_until(
        lambda: "beat: Starting" in process.output() or process.popen.poll() is not None,
        timeout=READY_TIMEOUT_S,
        what="beat to start",
    )
    return process


@contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


def client_app(broker_url: str) -> Celery:
    """A Celery app that only sends messages, configured like the worker's (JSON only)."""
    app = Celery("renewals-test-client", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="renewals")
    return app


@contextmanager
def black_hole() -> Iterator[int]:
    """A TCP server that accepts connections, reads, and never answers: a call in flight."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
