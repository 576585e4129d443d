"""Every metric the service exposes: name, type, labels and meaning, in one table.

The instruments (:mod:`renewals.metrics.instruments`) and the database collector
(:mod:`renewals.services.backlog_gauges`) take their names and help texts from here, docs/metrics.md
describes each row, and the tests check that the alert rules name only these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "histogram", "gauge"]
Source = Literal["process", "database"]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # as exposed (counters end in _total)
    kind: Kind
    labels: tuple[str, ...]
    help: str
    # process: counted by the process that did the work (multiprocess files); database:
    # read from the database at every scrape.
    source: Source


CHARGES = Metric(
    "renewals_charges_total",
    "counter",
    ("outcome",),
    "Off-session charges sent to FastStar, by classified outcome.",
    "process",
)
CHARGE_DURATION = Metric(
    "renewals_charge_duration_seconds",
    "histogram",
    ("outcome",),
    "Duration of the FastStar charge call, by classified outcome.",
    "process",
)
FASTSTAR_ERRORS = Metric(
    "renewals_faststar_errors_total",
    "counter",
    ("endpoint", "error"),
    "FastStar calls that failed, by endpoint and error class.",
    "process",
)
CLAIMED = Metric(
    "renewals_claimed_total",
    "counter",
    ("work",),
    "Work claimed by the sweep and the drain, by kind of work.",
    "process",
)
EMAILS = Metric(
    "renewals_emails_total",
    "counter",
    ("result",),
    "Email deliveries, by result (sent, failed, pending: deferred for a retry).",
    "process",
)
SWEEP_LAST_RUN = Metric(
    "renewals_sweep_last_run_timestamp_seconds",
    "gauge",
    (),
    "Unix time the last sweep task on this host finished.",
    "process",
)

DB_UP = Metric(
    "renewals_metrics_db_up",
    "gauge",
    (),
    "1 if this scrape read the database, 0 if it could not (the database gauges are absent).",
    "database",
)
DB_SCRAPE = Metric(
    "renewals_metrics_db_scrape_seconds",
    "gauge",
    (),
    "How long this scrape's database reads took.",
    "database",
)
RENEWALS = Metric(
    "renewals_renewals",
    "gauge",
    ("status",),
    "Renewals (one per subscription period) by status, all time.",
    "database",
)
SWEEP_LAG = Metric(
    "renewals_sweep_lag_seconds",
    "gauge",
    ("due",),
    "Age of the oldest work due and not claimed: a period not materialised yet (due=period), "
    "or a renewal's job (due=job; charges are left out while halted). 0 when none.",
    "database",
)
CLAIMED_UNSTARTED = Metric(
    "renewals_claimed_unstarted",
    "gauge",
    (),
    "Renewals claimed for their charge whose charge has not begun (counted up to the "
    "sweep's backpressure depth).",
    "database",
)
UNKNOWN_BACKLOG = Metric(
    "renewals_unknown_backlog",
    "gauge",
    (),
    "Renewals whose charge outcome is unknown.",
    "database",
)
UNKNOWN_OLDEST_AGE = Metric(
    "renewals_unknown_oldest_age_seconds",
    "gauge",
    (),
    "Age of the oldest unknown outcome, since its charge was sent. 0 when none.",
    "database",
)
OUTBOX_WAITING = Metric(
    "renewals_outbox_waiting",
    "gauge",
    (),
    "Emails queued and not yet delivered (pending or sending).",
    "database",
)
OUTBOX_OLDEST_AGE = Metric(
    "renewals_outbox_oldest_waiting_age_seconds",
    "gauge",
    (),
    "Age of the oldest email waiting to be delivered. 0 when none.",
    "database",
)
OUTBOX_FAILED = Metric(
    "renewals_outbox_failed",
    "gauge",
    (),
    "Emails that failed for good (rejected address or message).",
    "database",
)
MERCHANT_EVENTS_WAITING = Metric(
    "renewals_merchant_events_waiting",
    "gauge",
    (),
    "Events for the merchant's backend not yet delivered (pending or sending).",
    "database",
)
MERCHANT_EVENTS_OLDEST_AGE = Metric(
    "renewals_merchant_events_oldest_waiting_age_seconds",
    "gauge",
    (),
    "Age of the oldest merchant event waiting to be delivered. 0 when none.",
    "database",
)
MERCHANT_EVENTS_FAILED = Metric(
    "renewals_merchant_events_failed",
    "gauge",
    (),
    "Merchant events that failed for good (every retry refused).",
    "database",
)
OPEN_REVIEWS = Metric(
    "renewals_open_reviews",
    "gauge",
    (),
    "Payments waiting for an operator's review.",
    "database",
)
HALTED = Metric(
    "renewals_halted",
    "gauge",
    (),
    "1 while the halt switch is on (no charge starts), else 0.",
    "database",
)
OPERATOR_COMMANDS = Metric(
    "renewals_operator_commands",
    "gauge",
    ("status",),
    "Operator commands not finished yet, by status (pending, running).",
    "database",
)

CATALOGUE: tuple[Metric, ...] = (
    CHARGES,
    CHARGE_DURATION,
    FASTSTAR_ERRORS,
    CLAIMED,
    EMAILS,
    SWEEP_LAST_RUN,
    DB_UP,
    DB_SCRAPE,
    RENEWALS,
    SWEEP_LAG,
    CLAIMED_UNSTARTED,
    UNKNOWN_BACKLOG,
    UNKNOWN_OLDEST_AGE,
    OUTBOX_WAITING,
    OUTBOX_OLDEST_AGE,
    OUTBOX_FAILED,
    MERCHANT_EVENTS_WAITING,
    MERCHANT_EVENTS_OLDEST_AGE,
    MERCHANT_EVENTS_FAILED,
    OPEN_REVIEWS,
    HALTED,
    OPERATOR_COMMANDS,
)


def series_names(metric: Metric) -> tuple[str, ...]:
    """The sample names a metric is exposed under (a histogram has three)."""
    if metric.kind == "histogram":
        return tuple(f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return (metric.name,)
