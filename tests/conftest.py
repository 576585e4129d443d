"""Shared fixtures: the real sandbox over a socket, and the server-backed gate.

Tests that need PostgreSQL or Redis ask for the ``postgres_url`` / ``redis_url`` fixtures.
Where the server cannot be reached they are skipped, and the run ends with a plain list of
what was skipped; with ``RENEWALS_REQUIRE_SERVICES=1`` (CI sets it) they fail instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from renewals.sandbox.testing import RunningSandbox, running_sandbox

REQUIRE_SERVICES = os.environ.get("RENEWALS_REQUIRE_SERVICES", "") not in ("", "0", "false")
POSTGRES_URL = os.environ.get(
    "RENEWALS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RENEWALS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_skipped_for_services: list[str] = []


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def _require(request: pytest.FixtureRequest, name: str, url: str) -> str:
    if _reachable(url):
        return url
    where = urlsplit(url)
    message = f"{name} not reachable at {where.hostname}:{where.port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and RENEWALS_REQUIRE_SERVICES is set")
    _skipped_for_services.append(f"{request.node.nodeid} ({name})")
    pytest.skip(f"server-backed: {message}")


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    return _require(request, "PostgreSQL", POSTGRES_URL)


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    return _require(request, "Redis", REDIS_URL)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_for_services:
        terminalreporter.section("server-backed tests skipped")
        terminalreporter.write_line(
            f"{len(_skipped_for_services)} test(s) skipped because a server was not "
            "reachable; set RENEWALS_REQUIRE_SERVICES=1 to make them mandatory:"
        )
        for line in _skipped_for_services:
            terminalreporter.write_line(f"  {line}")


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[RunningSandbox]:
    with running_sandbox() as server:
        yield server


@pytest.fixture
def sandbox(_sandbox_server: RunningSandbox) -> RunningSandbox:
    """The real sandbox over a loopback socket, reset to a clean state for each test."""
    _sandbox_server.reset()
    return _sandbox_server
