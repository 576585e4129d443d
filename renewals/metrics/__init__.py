"""Prometheus metrics: what the processes count, and what the database says at each scrape.

The calls below are all the rest of the code knows of metrics. Each one never raises: a
metric that cannot be written (a full disk, a folder removed under a running process) must
not turn a charge that FastStar answered into an unrecorded one. Everything is documented,
with the alert rules to set, in docs/metrics.md.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from typing import ParamSpec

import structlog

from renewals.metrics.setup import prepare

__all__ = [
    "count_claimed",
    "count_email",
    "error_class",
    "faststar_endpoint",
    "observe_faststar_call",
    "prepare",
    "sweep_ran",
]

log = structlog.get_logger(__name__)
P = ParamSpec("P")

CHARGE_PATH = re.compile(r"/public/customers/[^/]+/charge")
# Ids in paths (cus_…, pm_…, cs_…) would make one series per customer.
_ID_SEGMENT = re.compile(r"/[A-Za-z]+_[A-Za-z0-9_\-]+")

# What the FastStar client reports as a call's outcome (a charge outcome's kind, or the
# exception class of another call; see renewals/faststar/_classify.py) -> the error class.
# Declines and 402s are business outcomes of a charge, not errors.
_ERROR_CLASSES = {
    "not_sent": "not_sent",
    "unknown": "unknown",
    "configuration_error": "configuration",
    "FastStarNotSentError": "not_sent",
    "FastStarUnknownOutcomeError": "unknown",
    "FastStarMalformedResponse": "malformed",
    "FastStarRequestRejected": "rejected",
    "FastStarConfigurationError": "configuration",
    "unexpected_error": "unexpected",
}


def _never_raises(func: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(func)
    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except Exception as exc:
            log.warning("metrics_not_recorded", call=func.__name__, error=repr(exc))

    return safe


def faststar_endpoint(method: str, path: str) -> str:
    """``POST /public/customers/{id}/charge``: the endpoint without its ids."""
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def error_class(outcome: str, status: int | None) -> str | None:
    """The error class of a FastStar call, or None when it is no error."""
    if status == 429:
        return "rate_limited"
    return _ERROR_CLASSES.get(outcome)


@_never_raises
def observe_faststar_call(
    method: str, path: str, *, http_status: int | None, seconds: float, outcome: str
) -> None:
    """One FastStar call: a charge's outcome and duration, and any call's error class."""
    from renewals.metrics import instruments

    if method == "POST" and CHARGE_PATH.fullmatch(path):
        instruments.charges.labels(outcome).inc()
        instruments.charge_duration.labels(outcome).observe(seconds)
    error = error_class(outcome, http_status)
    if error is not None:
        instruments.faststar_errors.labels(faststar_endpoint(method, path), error).inc()


@_never_raises
def count_claimed(kinds: Iterable[str]) -> None:
    """Work the sweep or the drain claimed, one kind per claimed item."""
    from renewals.metrics import instruments

    counts: dict[str, int] = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        instruments.claimed.labels(kind).inc(count)


@_never_raises
def count_email(status: str) -> None:
    """One delivery, by the outbox row's status afterwards (sent, failed, pending)."""
    from renewals.metrics import instruments

    instruments.emails.labels(status).inc()


@_never_raises
def sweep_ran() -> None:
    from renewals.metrics import instruments

    instruments.sweep_last_run.set(time.time())
