"""A private redis-server process on a port of its own, for tests that stop and start the
broker: no other test shares its data, and the shared Redis on 6379 is never touched."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import redis

from tests.support.celery_processes import wait_until


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def redis_server(port: int, directory: Path) -> Iterator[str]:
    """Run redis-server on ``port`` (no persistence) until the block ends; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "redis.log").open("wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: _answers(port) or process.poll() is not None,
            timeout=15,
            what="redis-server to answer",
        )
        assert process.poll() is None, (directory / "redis.log").read_text()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
