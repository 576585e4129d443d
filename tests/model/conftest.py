"""The model's world: the session's sandbox (its clock following the model's), the migrated
SQLite template, a folder, and PostgreSQL for the long profile."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from renewals.sandbox.testing import RunningSandbox
from tests.model.engine_model import SandboxTime, World, sandbox_follows
from tests.model.profiles import LONG


@pytest.fixture
def model_world(
    request: pytest.FixtureRequest,
    _sandbox_server: RunningSandbox,
    _sqlite_template: Path,
    tmp_path: Path,
) -> Iterator[World]:
    postgres = request.getfixturevalue("_postgres_database") if LONG else None
    time_source = SandboxTime()
    # Thousands of steps: only warnings are worth printing next to a failure.
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        with sandbox_follows(time_source):
            yield World(_sandbox_server, _sqlite_template, tmp_path, time_source, postgres)
    finally:
        structlog.configure(**saved)
        _sandbox_server.reset()
