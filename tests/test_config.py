from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from renewals.config import PUBLISHED_WEBHOOK_SECRETS, ConfigError, load_settings
from renewals.sandbox.settings import DEFAULT_WEBHOOK_SECRET

KEY = "RENEWALS_FASTSTAR_API_KEY"
SECRET = "RENEWALS_FASTSTAR_WEBHOOK_SECRET"
OLD_SECRETS = "RENEWALS_FASTSTAR_WEBHOOK_SECRETS_OLD"
ALLOW = "RENEWALS_ALLOW_TEST_KEYS"
LIVE_KEY = "sk_live_4f9a7c0d2e"
LIVE_SECRET = "whsec_9d41be77c2"


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "MAIL_URL", "FASTSTAR_BASE_URL"):
        monkeypatch.delenv(f"RENEWALS_{name}", raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.faststar_base_url == "http://127.0.0.1:8787/api/v1"
    assert settings.mail_url.startswith("file://")
    assert settings.dunning_days == (3, 5, 7)
    assert settings.effective_log_format == "console"


def test_every_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENEWALS_DATABASE_URL", "mysql://nope")
    monkeypatch.setenv("RENEWALS_MAIL_URL", "carrier-pigeon://loft")
    monkeypatch.setenv("RENEWALS_SWEEP_INTERVAL", "-5")
    monkeypatch.setenv("RENEWALS_DUNNING_RETRY_DAYS", "5,3")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    for name in (
        "RENEWALS_DATABASE_URL",
        "RENEWALS_MAIL_URL",
        "RENEWALS_SWEEP_INTERVAL",
        "RENEWALS_DUNNING_RETRY_DAYS",
    ):
        assert name in message


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """RENEWALS_ENV=production with safe credentials; each test spoils what it checks."""
    monkeypatch.setenv("RENEWALS_ENV", "production")
    monkeypatch.setenv(KEY, LIVE_KEY)
    monkeypatch.setenv(SECRET, LIVE_SECRET)
    for name in (OLD_SECRETS, ALLOW):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def refusal(monkeypatch: pytest.MonkeyPatch) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


def test_production_logs_json(production: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.effective_log_format == "json"
    assert settings.faststar_api_key.get_secret_value() == LIVE_KEY


def test_production_refuses_every_default_at_once(production: pytest.MonkeyPatch) -> None:
    production.delenv(KEY)
    production.delenv(SECRET)
    message = refusal(production)
    lines = message.splitlines()[1:]
    assert len(lines) == 2, message
    assert lines[0].strip().startswith(f"{SECRET}: the published default cannot be used")
    assert f"set {SECRET} to the signing secret" in lines[0]
    assert lines[1].strip().startswith(f"{KEY}: the default cannot be used")
    assert f"set {KEY} to your merchant secret key" in lines[1]
    # It says "the default" and never prints the value.
    assert "whsec_local" not in message
    assert "sk_test_local" not in message


@pytest.mark.parametrize("value", ["", " ", " , "])
def test_production_refuses_an_empty_webhook_secret(
    production: pytest.MonkeyPatch, value: str
) -> None:
    production.setenv(SECRET, value)
    message = refusal(production)
    assert f"{SECRET}: is empty" in message
    assert KEY not in message


@pytest.mark.parametrize(
    "value",
    ["whsec_sandbox", f"{LIVE_SECRET},whsec_local"],
    ids=["sandbox-default", "default-in-a-list"],
)
def test_production_refuses_any_published_webhook_secret(
    production: pytest.MonkeyPatch, value: str
) -> None:
    production.setenv(SECRET, value)
    message = refusal(production)
    assert f"{SECRET}: the published default" in message
    assert LIVE_SECRET not in message


def test_production_refuses_a_published_secret_kept_for_rotation(
    production: pytest.MonkeyPatch,
) -> None:
    production.setenv(OLD_SECRETS, "whsec_old_real,whsec_local")
    message = refusal(production)
    assert f"{OLD_SECRETS}: lists a published default" in message
    assert "whsec_old_real" not in message


def test_production_refuses_test_keys(production: pytest.MonkeyPatch) -> None:
    production.setenv(KEY, "sk_test_51abcdef")
    message = refusal(production)
    assert f"{KEY}: is a test key" in message
    assert f"{ALLOW}=true" in message  # the way out, when test mode is intended
    assert "51abcdef" not in message


def test_allow_test_keys_lets_a_test_key_through(production: pytest.MonkeyPatch) -> None:
    production.setenv(KEY, "sk_test_51abcdef")
    production.setenv(ALLOW, "true")
    settings = load_settings()
    assert settings.allow_test_keys
    assert settings.faststar_api_key.get_secret_value() == "sk_test_51abcdef"


def test_allow_test_keys_does_not_excuse_the_defaults(production: pytest.MonkeyPatch) -> None:
    production.delenv(KEY)
    production.setenv(SECRET, "whsec_local")
    production.setenv(ALLOW, "true")
    message = refusal(production)
    assert f"{KEY}: the default cannot be used" in message
    assert f"{SECRET}: the published default" in message


def test_development_accepts_defaults_test_keys_and_empty_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RENEWALS_ENV", "development")
    monkeypatch.delenv(KEY, raising=False)
    monkeypatch.delenv(ALLOW, raising=False)
    assert load_settings().faststar_api_key.get_secret_value() == "sk_test_local"
    monkeypatch.setenv(KEY, "sk_test_51abcdef")
    monkeypatch.setenv(SECRET, "")
    assert load_settings().webhook_secrets() == ()


@pytest.mark.parametrize("command", [["worker"], ["webhooks"], ["subscriptions", "list"]])
def test_cli_refuses_to_start_in_production_on_defaults(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
    env["RENEWALS_ENV"] = "production"
    result = subprocess.run(
        [sys.executable, "-m", "renewals", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{SECRET}: the published default cannot be used in production" in result.stderr
    assert f"{KEY}: the default cannot be used in production" in result.stderr
    assert not (tmp_path / "var").exists()  # refused before touching anything


def test_the_sandbox_default_secret_is_among_the_refused_ones() -> None:
    assert DEFAULT_WEBHOOK_SECRET in PUBLISHED_WEBHOOK_SECRETS
