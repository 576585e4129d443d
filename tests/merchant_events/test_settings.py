"""The merchant webhook's settings: a URL needs a secret, production refuses a weak one, and
the secret is among those the log redactor hides."""

from __future__ import annotations

import pytest

from renewals.config import ConfigError, load_settings

URL = "RENEWALS_MERCHANT_WEBHOOK_URL"
SECRET = "RENEWALS_MERCHANT_WEBHOOK_SECRET"
STRONG = "3f1c9a7e5b2d4c6e8a0b1d3f5a7c9e1b"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (URL, SECRET, "RENEWALS_ENV"):
        monkeypatch.delenv(name, raising=False)


def test_off_by_default() -> None:
    settings = load_settings()
    assert settings.merchant_webhook_url is None
    assert len(settings.merchant_retry_delays) == 6


def test_a_url_needs_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL, "https://merchant.example/hooks")
    with pytest.raises(ConfigError, match=SECRET):
        load_settings()
    monkeypatch.setenv(SECRET, STRONG)
    settings = load_settings()
    assert STRONG in settings.secrets()


def test_an_empty_url_means_none_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL, "")
    assert load_settings().merchant_webhook_url is None
    monkeypatch.setenv(URL, "merchant.example/hooks")
    with pytest.raises(ConfigError, match=URL):
        load_settings()


@pytest.mark.parametrize("secret", ["", "k3y-9x", "whsec_local"])
def test_production_refuses_a_weak_secret(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("RENEWALS_ENV", "production")
    monkeypatch.setenv("RENEWALS_FASTSTAR_API_KEY", "sk_live_4f9a7c0d2e")
    monkeypatch.setenv("RENEWALS_FASTSTAR_WEBHOOK_SECRET", "whsec_9d41be77c2")
    monkeypatch.setenv(URL, "https://merchant.example/hooks")
    monkeypatch.setenv(SECRET, secret)
    with pytest.raises(ConfigError, match=SECRET) as caught:
        load_settings()
    assert secret == "" or secret not in str(caught.value).replace(SECRET, "")
    monkeypatch.setenv(SECRET, STRONG)
    assert load_settings().merchant_webhook_url == "https://merchant.example/hooks"
