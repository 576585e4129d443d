from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from renewals.config import Settings, load_settings
from renewals.logs import Redactor, configure_logging, luhn_valid


def test_luhn() -> None:
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424241")


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("card 4242 4242 4242 4242 used", "4242 4242 4242 4242"),
        ("card 4000-0027-6000-3184", "4000-0027-6000-3184"),
        ("pan=4000000000000002", "4000000000000002"),
        ("key sk_test_abcdef123", "abcdef123"),
        ("secret whsec_0123456789", "0123456789"),
        ("to jane.buyer+x@example.com", "jane.buyer+x@"),
        ("seti_abc_secret_def456", "def456"),
    ],
)
def test_redactor_removes_sensitive_text(raw: str, leak: str) -> None:
    assert leak not in Redactor().text(raw)


def test_non_luhn_numbers_and_ids_survive() -> None:
    text = "renewal 1234567890123 pi_abc123 amount 1999"
    assert Redactor().text(text) == text


def test_configured_secret_is_redacted_verbatim() -> None:
    assert "opaque-prod-key" not in Redactor(["opaque-prod-key"]).text("k=opaque-prod-key")


def test_structlog_and_stdlib_lines_are_redacted_in_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENEWALS_ENV", "production")
    monkeypatch.setenv("RENEWALS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("RENEWALS_FASTSTAR_API_KEY", "prodkey-without-prefix")
    monkeypatch.setenv("RENEWALS_FASTSTAR_WEBHOOK_SECRET", "whsec-prod-only")
    stream = io.StringIO()
    configure_logging(load_settings(), stream=stream)
    structlog.get_logger("t").debug(
        "charging", email="jane@example.com", headers={"X-API-Key": "prodkey-without-prefix"}
    )
    logging.getLogger("httpx").debug("sent card %s", "4242424242424242")
    try:
        raise ValueError("boom for jane@example.com")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    out = stream.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event"] for line in lines][:2] == ["charging", "sent card [card]"]
    for secret in ("jane@example.com", "prodkey-without-prefix", "4242424242424242"):
        assert secret not in out
    assert "ValueError" in out


def test_digit_runs_inside_identifiers_are_not_cards() -> None:
    # Luhn-valid runs of 16 digits, glued to the rest of an identifier.
    assert luhn_valid("4242424242424242")
    text = (
        "task 2f1c0e4a-4242424242424242-9b1e key rnw_a4242424242424242b "
        "uuid 550e8400-e29b-41d4-a716-4242424242424242"
    )
    assert Redactor().text(text) == text


def test_decimal_fractions_are_not_cards() -> None:
    text = "succeeded in 0.0034633080003914074s"
    assert Redactor().text(text) == text


def test_httpx_request_lines_stay_out_of_info_output() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_level="INFO", log_format="json"), stream=stream)
    logging.getLogger("httpx").info('HTTP Request: POST http://x/charge "HTTP/1.1 200 OK"')
    logging.getLogger("renewals.test").info("kept")
    assert "HTTP Request" not in stream.getvalue()
    assert "kept" in stream.getvalue()
