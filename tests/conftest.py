"""Shared fixtures: the real sandbox over a socket, and the server-backed gate.

Tests that need PostgreSQL or Redis ask for the ``postgres_url`` / ``redis_url`` fixtures.
Where the server cannot be reached they are skipped, and the run ends with a plain list of
what was skipped; with ``RENEWALS_REQUIRE_SERVICES=1`` (CI sets it) they fail instead.

Each session gets its own PostgreSQL database and its own Redis database number (claimed
with a lock key, see ``tests/support/redis_db.py``), so two runs on one machine cannot
disturb each other. ``RENEWALS_TEST_REDIS_URL`` names a database to use as is instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.faststar import FastStarClient
from renewals.models.db import create_db_engine
from renewals.sandbox.testing import RunningSandbox, running_sandbox
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    fresh_sqlite_url,
    migrated_sqlite_template,
    truncate_all,
)
from tests.support.factories import Clock, make_subscription_factory
from tests.support.redis_db import claim_redis_db

REQUIRE_SERVICES = os.environ.get("RENEWALS_REQUIRE_SERVICES", "") not in ("", "0", "false")
POSTGRES_URL = os.environ.get(
    "RENEWALS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Given explicitly, used as is; otherwise a free database on this server is claimed.
REDIS_URL = os.environ.get("RENEWALS_TEST_REDIS_URL")
REDIS_SERVER = "redis://127.0.0.1:6379"

_skipped_for_services: list[str] = []


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


SKIP_PREFIX = "server-backed: "


def _require(name: str, url: str) -> str:
    if _reachable(url):
        return url
    where = urlsplit(url)
    message = f"{name} not reachable at {where.hostname}:{where.port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and RENEWALS_REQUIRE_SERVICES is set")
    pytest.skip(SKIP_PREFIX + message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _require("PostgreSQL", POSTGRES_URL)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database for this session alone: empty at first, released at the end."""
    if REDIS_URL is not None:
        yield _require("Redis", REDIS_URL)
        return
    claim = claim_redis_db(_require("Redis", REDIS_SERVER))
    try:
        yield claim.url
    finally:
        claim.release()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and SKIP_PREFIX in str(report.longrepr):
        reason = str(report.longrepr).split(SKIP_PREFIX, 1)[1].split(" not reachable")[0]
        _skipped_for_services.append(f"{report.nodeid} ({reason})")


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


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def _postgres_database(postgres_url: str) -> Iterator[str]:
    url = create_postgres_database(postgres_url)
    yield url
    drop_postgres_database(postgres_url, url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: every engine test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        return fresh_sqlite_url(template, tmp_path)
    url: str = request.getfixturevalue("_postgres_database")
    truncate_all(url)
    return url


@pytest.fixture
def settings(database_url: str, sandbox: RunningSandbox, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.db",
        faststar_base_url=sandbox.base_url,
        faststar_api_key=SecretStr(sandbox.api_key),
        mail_url=f"file://{tmp_path}/mail",
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def faststar(settings: Settings) -> Iterator[FastStarClient]:
    with FastStarClient(
        settings.faststar_base_url, settings.faststar_api_key.get_secret_value()
    ) as client:
        yield client


@pytest.fixture
def make_subscription(engine: Engine, settings: Settings) -> Callable[..., int]:
    return make_subscription_factory(engine, settings)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (connections are refused: "not sent")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
