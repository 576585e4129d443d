"""Crash points: inert unless armed, one crash per token, refused in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from renewals.config import ConfigError, Settings, load_settings
from renewals.crashpoints import POINTS, parse

_FIRE = "from renewals.crashpoints import crash_point; crash_point({!r}); print('alive')"


def _run(point: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
    return subprocess.run(
        [sys.executable, "-c", _FIRE.format(point)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_parse_reads_names_probabilities_and_refuses_typos() -> None:
    armed = parse("after_attempt_commit:0.3, before_claim_commit", "/tmp/t", "7")
    assert armed.points == {"after_attempt_commit": 0.3, "before_claim_commit": 1.0}
    assert armed.tokens == Path("/tmp/t")
    assert armed.seed == 7
    assert parse("").points == {}
    with pytest.raises(ValueError, match="unknown crash point 'after_atempt_commit'"):
        parse("after_atempt_commit")
    for bad in ("after_attempt_commit:0", "after_attempt_commit:1.5", "after_attempt_commit:x"):
        with pytest.raises(ValueError, match="probability"):
            parse(bad)


def test_a_point_not_armed_does_nothing() -> None:
    result = _run("after_attempt_commit", RENEWALS_CRASH_POINTS="before_claim_commit")
    assert (result.returncode, result.stdout) == (0, "alive\n")


def test_each_token_kills_one_process_with_sigkill(tmp_path: Path) -> None:
    point = "after_attempt_commit"
    (tmp_path / f"{point}.1").touch()
    (tmp_path / "before_claim_commit.1").touch()  # another point's token stays
    env = {"RENEWALS_CRASH_POINTS": ",".join(POINTS), "RENEWALS_CRASH_TOKENS": str(tmp_path)}
    crashed = _run(point, **env)
    assert crashed.returncode == -signal.SIGKILL
    assert crashed.stdout == ""
    assert f"crash point {point} fired" in crashed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before_claim_commit.1"]
    assert _run(point, **env).returncode == 0  # no token left: no crash


def test_production_ignores_crash_points_and_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "after_attempt_commit.1").touch()
    result = _run(
        "after_attempt_commit",
        RENEWALS_ENV="production",
        RENEWALS_CRASH_POINTS="after_attempt_commit",
        RENEWALS_CRASH_TOKENS=str(tmp_path),
    )
    assert result.returncode == 0
    assert (tmp_path / "after_attempt_commit.1").exists()

    production = {
        "RENEWALS_ENV": "production",
        "RENEWALS_FASTSTAR_API_KEY": "sk_live_abcdef",
        "RENEWALS_FASTSTAR_WEBHOOK_SECRET": "whsec_real_secret",
        "RENEWALS_CRASH_POINTS": "after_attempt_commit",
        "RENEWALS_BROKER_VISIBILITY_TIMEOUT": "2",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in production.items():
            patch.setenv(name, value)
        with pytest.raises(ConfigError) as error:
            load_settings()
    assert "RENEWALS_CRASH_POINTS: arms crash points" in str(error.value)
    assert "RENEWALS_BROKER_VISIBILITY_TIMEOUT: must exceed the task time limit" in str(error.value)


def test_a_misspelt_crash_point_stops_start_up() -> None:
    with pytest.raises(ValueError, match="unknown crash point"):
        Settings(crash_points="after_atempt_commit")
