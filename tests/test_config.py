from __future__ import annotations

import pytest

from renewals.config import ConfigError, load_settings


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


def test_production_logs_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENEWALS_ENV", "production")
    assert load_settings().effective_log_format == "json"
