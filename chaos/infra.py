"""Servers of a run's own: a PostgreSQL cluster made with ``initdb``, a ``redis-server``,
a RabbitMQ vhost. Free ports, a temporary directory: nothing else on the machine is touched,
so they can be restarted and flushed at will."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on port {port}")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"no {name}: install PostgreSQL's server binaries")
    return on_path


class PrivatePostgres:
    """A cluster in ``directory`` on a free port, fsync off (a test's data, not a bank's).

    initdb refuses to run as root, so as root it runs as the ``postgres`` user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", PG_USER, "--"]
            account = pwd.getpwnam(PG_USER)
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, account.pw_uid, account.pw_gid)
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise RuntimeError(f"{Path(args[0]).name} failed: {output[-500:]}")

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=400"
        )

    def start(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER,
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", self._options(),
            "-l", str(self.log), "-w", "start",
        )  # fmt: skip

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, in-flight transactions lost."""
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", self._options(),
            "-l", str(self.log), "-m", "fast", "-w", "restart",
        )  # fmt: skip
        self.restarts += 1

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                check=False,
                timeout=60,
            )


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.flushes = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("no redis-server on PATH")
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.popen = subprocess.Popen(
                [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_for_port(self.port, "redis-server")

    def flush(self) -> None:
        """FLUSHALL: every queued and unacknowledged message is gone."""
        with redis.Redis.from_url(self.url) as client:
            client.flushall()
        self.flushes += 1

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


class RabbitVhost:
    """A vhost of the run's own on the machine's RabbitMQ (``rabbitmqctl``)."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 5672) -> None:
        self.name = name
        self.host, self.port = host, port
        self.flushes = 0

    @staticmethod
    def available() -> bool:
        if shutil.which("rabbitmqctl") is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", 5672), 1.0):
                return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/{quote(self.name, safe='')}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def flush(self, queue: str = "renewals") -> None:
        """Purge the task queue: RabbitMQ's counterpart of the Redis FLUSHALL."""
        self._ctl("purge_queue", "-p", self.name, queue)
        self.flushes += 1

    def stop(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "delete_vhost", self.name], capture_output=True, check=False, timeout=60
        )
