"""The chaos run, small, in real processes: a private PostgreSQL cluster and redis-server,
the Procfile's worker SIGKILLed three times (pool children or whole), a Redis FLUSHALL,
two schedulers, the sandbox's failure mix and duplicated, reordered webhooks. The books
must agree with the sandbox's executed charges and no secret may leak (``make chaos`` runs
the full scenarios)."""

from __future__ import annotations

import shutil

import pytest

from chaos.__main__ import FULL, quick, render
from chaos.infra import _pg_bin
from chaos.run import run_scenario
from tests.conftest import REQUIRE_SERVICES, SKIP_PREFIX

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


def _servers_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server (the binary)"
    try:
        _pg_bin("initdb")
    except RuntimeError:
        return "initdb (PostgreSQL server binaries)"
    return None


def test_chaos_quick_postgres_redis_kills_and_flush() -> None:
    missing = _servers_missing()
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(f"{missing} not found and RENEWALS_REQUIRE_SERVICES is set")
        pytest.skip(f"{SKIP_PREFIX}{missing} not reachable")
    result = run_scenario(quick(FULL["postgres-redis"]))
    print(render([result]))
    assert result.error is None, render([result])
    assert result.check is not None and result.check.ok, render([result])
    assert result.hygiene is not None and result.hygiene.ok, render([result])
    figures = result.figures
    assert figures["kills"] == 3
    assert figures["broker_flushes"] == 1
    assert figures["charges_executed"] > 0
    assert figures["emails_sent"] > 0
