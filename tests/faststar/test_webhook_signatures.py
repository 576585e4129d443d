"""verify_signature: the documented scheme plus our tolerance and rotation choices."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.faststar import (
    FutureSignature,
    InvalidSignature,
    MalformedSignatureHeader,
    SignatureMismatch,
    StaleSignature,
    compute_signature,
    signature_header,
    verify_signature,
)

SECRET = "whsec_current"
OLD = "whsec_previous"
BODY = b'{"id":"evt_1","type":"payment.succeeded"}'
T = 1_700_000_000


def test_valid_signature_returns_timestamp() -> None:
    assert verify_signature(SECRET, signature_header(SECRET, T, BODY), BODY, now=T) == T


def test_signature_is_hmac_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, T, BODY) == expected


def test_any_of_several_secrets_and_several_v1_values() -> None:
    header = (
        f"t={T},v1={compute_signature('whsec_other', T, BODY)},v1={compute_signature(OLD, T, BODY)}"
    )
    assert verify_signature([SECRET, OLD], header, BODY, now=T) == T
    with pytest.raises(SignatureMismatch):
        verify_signature([SECRET], header, BODY, now=T)


def test_whitespace_uppercase_hex_and_unknown_schemes_are_tolerated() -> None:
    sig = compute_signature(SECRET, T, BODY).upper()
    header = f" t={T} , v0=deadbeef , v1={sig} "
    assert verify_signature(SECRET, header, BODY, now=T) == T


@pytest.mark.parametrize(("now", "error"), [(T + 301, StaleSignature), (T - 301, FutureSignature)])
def test_tolerance_both_ways(now: int, error: type[InvalidSignature]) -> None:
    header = signature_header(SECRET, T, BODY)
    with pytest.raises(error):
        verify_signature(SECRET, header, BODY, now=now)
    assert verify_signature(SECRET, header, BODY, now=now, tolerance_s=301) == T


@pytest.mark.parametrize("now", [T + 300, T - 300])
def test_tolerance_edges_are_inclusive(now: int) -> None:
    assert verify_signature(SECRET, signature_header(SECRET, T, BODY), BODY, now=now) == T


def test_tampered_body_or_timestamp_is_a_mismatch() -> None:
    header = signature_header(SECRET, T, BODY)
    with pytest.raises(SignatureMismatch):
        verify_signature(SECRET, header, BODY + b" ", now=T)
    forged = header.replace(f"t={T}", f"t={T + 1}")
    with pytest.raises(SignatureMismatch):
        verify_signature(SECRET, forged, BODY, now=T)


def test_forged_stale_header_reports_mismatch_not_staleness() -> None:
    header = f"t={T - 10_000},v1={'0' * 64}"
    with pytest.raises(SignatureMismatch):
        verify_signature(SECRET, header, BODY, now=T)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        "v1=" + "a" * 64,
        f"t={T}",
        f"t={T},v1=abc",
        f"t={T},v1={'g' * 64}",
        f"t=abc,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t={T},t={T},v1={'a' * 64}",
        f"t={T};v1={'a' * 64}",
        f"t={T}," + ",".join(["v1=" + "a" * 64] * 9),
        "t=1," + "x" * 5000,
    ],
)
def test_malformed_headers(header: str) -> None:
    with pytest.raises(MalformedSignatureHeader):
        verify_signature(SECRET, header, BODY, now=T)


def test_misconfiguration_is_not_an_invalid_signature() -> None:
    header = signature_header(SECRET, T, BODY)
    for secrets in ([], "", [""]):
        with pytest.raises(ValueError) as excinfo:
            verify_signature(secrets, header, BODY, now=T)
        assert not isinstance(excinfo.value, InvalidSignature)
    with pytest.raises(TypeError):
        verify_signature(SECRET, header, BODY.decode(), now=T)  # type: ignore[arg-type]


@given(header=st.text(max_size=200), body=st.binary(max_size=100))
def test_arbitrary_headers_only_raise_invalid_signature(header: str, body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(SECRET, header, body, now=T)


@given(body=st.binary(max_size=200), ts=st.integers(0, 2**33), secret=st.text(min_size=1))
def test_roundtrip(body: bytes, ts: int, secret: str) -> None:
    assert verify_signature(secret, signature_header(secret, ts, body), body, now=ts) == ts
