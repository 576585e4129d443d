"""No tracebacks for people: every failure a person meets on the command line ends in a
clear message naming what to fix, and a non-zero exit (real processes, like test_cli.py).
Also ``renewals doctor``, which must fail clearly for a broker that is down, a database
behind on its migrations and a wrong FastStar key."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from renewals.cli import main
from renewals.config import ConfigError, load_settings
from renewals.models.migrate import alembic_config, upgrade
from renewals.sandbox.testing import RunningSandbox

Run = subprocess.CompletedProcess[str]


def _run(*args: str, env: dict[str, str]) -> Run:
    return subprocess.run(
        [sys.executable, "-m", "renewals", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _refused(result: Run, *needles: str, code: int = 1) -> None:
    """A clear refusal: the exit status, every needle in stderr, no traceback, two lines
    at most (click's usage errors add their own usage hint)."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    message = result.stderr.split("Error: ", 1)[1].strip().splitlines()
    assert len(message) <= 2, result.stderr


@pytest.fixture
def env(tmp_path: Path, sandbox: RunningSandbox) -> dict[str, str]:
    return {
        "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "RENEWALS_BROKER_URL": f"sqla+sqlite:///{tmp_path}/broker.db",
        "RENEWALS_FASTSTAR_BASE_URL": sandbox.base_url,
        "RENEWALS_FASTSTAR_API_KEY": sandbox.api_key,
        "RENEWALS_MAIL_URL": f"file://{tmp_path}/mail",
        "RENEWALS_LOG_LEVEL": "INFO",
    }


def test_bad_urls_are_refused_at_start_up(env: dict[str, str]) -> None:
    result = _run(
        "subscriptions",
        "list",
        env={
            **env,
            "RENEWALS_DATABASE_URL": "postgresql://u@127.0.0.1/db",
            "RENEWALS_BROKER_URL": "kafka://127.0.0.1:9092",
        },
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "RENEWALS_DATABASE_URL: postgresql:// names no driver" in result.stderr
    assert "write postgresql+psycopg://" in result.stderr
    assert "RENEWALS_BROKER_URL: scheme must be one of redis" in result.stderr


def test_a_malformed_broker_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENEWALS_BROKER_URL", "redis://h:x/0")
    with pytest.raises(ConfigError, match="RENEWALS_BROKER_URL: the port is not a number"):
        load_settings()
    monkeypatch.setenv("RENEWALS_BROKER_URL", "sqla+postgresql://u@h/broker")
    with pytest.raises(ConfigError, match=r"write sqla\+postgresql\+psycopg://"):
        load_settings()


def test_database_missing_unreachable_or_not_migrated(
    env: dict[str, str], tmp_path: Path, unused_port: int
) -> None:
    missing = _run("subscriptions", "list", env=env)
    _refused(missing, "no database at", "RENEWALS_DATABASE_URL", "renewals db upgrade")
    assert not (tmp_path / "cli.db").exists()  # a read command creates nothing

    sqlite3.connect(tmp_path / "empty.db").close()
    empty = _run("unknown", env={**env, "RENEWALS_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    _refused(empty, "not migrated", "run `renewals db upgrade`")

    down = f"postgresql+psycopg://renewals:hunter22@127.0.0.1:{unused_port}/renewals"
    unreachable = _run("report", env={**env, "RENEWALS_DATABASE_URL": down})
    _refused(unreachable, "cannot reach the database", "RENEWALS_DATABASE_URL")
    assert "hunter22" not in unreachable.stderr  # the password is never shown


@pytest.mark.parametrize(("args", "level"), [(["--debug"], "INFO"), ([], "DEBUG")])
def test_the_traceback_is_there_for_whoever_asks(
    monkeypatch: pytest.MonkeyPatch, unused_port: int, args: list[str], level: str
) -> None:
    # In-process: the exception leaving main() untranslated is what prints the traceback.
    down = f"postgresql+psycopg://renewals@127.0.0.1:{unused_port}/renewals"
    monkeypatch.setenv("RENEWALS_DATABASE_URL", down)
    monkeypatch.setenv("RENEWALS_LOG_LEVEL", level)
    result = CliRunner().invoke(main, [*args, "report"])
    assert isinstance(result.exception, OperationalError)
    monkeypatch.setenv("RENEWALS_LOG_LEVEL", "INFO")
    plain = CliRunner().invoke(main, ["report"])
    assert plain.exit_code == 1
    assert isinstance(plain.exception, SystemExit)
    assert "cannot reach the database" in plain.output


def test_postgres_database_that_does_not_exist(env: dict[str, str], postgres_url: str) -> None:
    url = make_url(postgres_url).set(database="renewals_no_such_db")
    result = _run(
        "subscriptions",
        "list",
        env={**env, "RENEWALS_DATABASE_URL": url.render_as_string(hide_password=False)},
    )
    _refused(result, "does not exist", "renewals db upgrade")


def test_refused_input_and_faststar_failures_leave_nothing_behind(
    env: dict[str, str], sandbox: RunningSandbox, unused_port: int
) -> None:
    upgrade(env["RENEWALS_DATABASE_URL"])
    add = [
        "subscriptions",
        "add",
        "--interval",
        "month",
        "--amount",
        "1999",
        "--currency",
        "USD",
    ]
    good = ["--email", "jane@example.com", "--card", "4242424242424242"]
    cases: list[tuple[list[str], dict[str, str], int, tuple[str, ...]]] = [
        # bad card number: named option, usage error
        ([*add, "--email", "a@example.com", "--card", "4242424242424241"], {}, 2, ("'--card'",)),
        # bad email: refused before FastStar, the address is not echoed
        ([*add, "--email", "jane.example.com", "--card", "4242424242424242"], {}, 1, ("email",)),
        # bad --renews-at, named
        (add + good + ["--renews-at", "tomorrow"], {}, 2, ("'--renews-at'", "ISO-8601")),
        # an amount over the cap, refused before the card is saved
        (
            [
                "subscriptions",
                "add",
                "--interval",
                "month",
                "--amount",
                "99999999",
                "--currency",
                "USD",
                *good,
            ],
            {},
            1,
            ("cap",),
        ),
        # a wrong key: the variable to fix is named
        (
            add + good,
            {"RENEWALS_FASTSTAR_API_KEY": "wrong_key"},
            1,
            ("refused the API key", "RENEWALS_FASTSTAR_API_KEY"),
        ),
        # FastStar (here the sandbox) unreachable
        (
            add + good,
            {"RENEWALS_FASTSTAR_BASE_URL": f"http://127.0.0.1:{unused_port}/api/v1"},
            1,
            ("cannot reach FastStar", "RENEWALS_FASTSTAR_BASE_URL"),
        ),
    ]
    for args, extra, code, needles in cases:
        _refused(_run(*args, env={**env, **extra}), *needles, code=code)
    assert sandbox.app.state.customers == {}  # no orphan customer, no orphan card
    with sqlite3.connect(make_url(env["RENEWALS_DATABASE_URL"]).database or "") as db:
        assert db.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)


def test_doctor_fails_clearly(env: dict[str, str], tmp_path: Path, unused_port: int) -> None:
    upgrade(env["RENEWALS_DATABASE_URL"])
    healthy = _run("doctor", env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    for name in ("database", "migrations", "broker", "faststar", "mail", "scheduler"):
        assert any(line.split()[:2] == [name, "ok"] for line in healthy.stdout.splitlines())

    behind = f"sqlite:///{tmp_path}/behind.db"
    upgrade(behind, "0001")
    sick = _run(
        "doctor",
        "--json",
        env={
            **env,
            "RENEWALS_DATABASE_URL": behind,
            "RENEWALS_BROKER_URL": f"redis://127.0.0.1:{unused_port}/0",
            "RENEWALS_FASTSTAR_API_KEY": "wrong_key",
        },
    )
    assert sick.returncode == 1
    assert "Traceback" not in sick.stderr
    checks = {c["name"]: c for c in json.loads(sick.stdout)}
    assert checks["database"]["status"] == "ok"
    assert checks["migrations"]["status"] == "fail"
    head = ScriptDirectory.from_config(alembic_config(env["RENEWALS_DATABASE_URL"]))
    expected = f"at 0001, head is {head.get_current_head()}: run `renewals db upgrade`"
    assert expected in checks["migrations"]["detail"]
    assert checks["broker"]["status"] == "fail"
    assert "cannot reach the broker" in checks["broker"]["detail"]
    assert "RENEWALS_BROKER_URL" in checks["broker"]["detail"]
    assert checks["faststar"]["status"] == "fail"
    assert "RENEWALS_FASTSTAR_API_KEY" in checks["faststar"]["detail"]
    assert checks["scheduler"]["status"] == "skip"
    assert checks["mail"]["status"] == "ok"
