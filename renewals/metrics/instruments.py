"""The process-side instruments: counters, the charge histogram and the sweep heartbeat.

Imported on first use only, after :func:`renewals.metrics.setup.prepare` has chosen the
multiprocess folder: prometheus_client decides at a metric's creation whether its value lives
in this process's memory or in a file that the host's ``/metrics`` endpoint merges.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from renewals.metrics import names

# The charge call's read timeout is 15 s: the top buckets show calls that ran into it.
CHARGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


def _base(metric: names.Metric) -> str:
    return metric.name.removesuffix("_total")


charges = Counter(_base(names.CHARGES), names.CHARGES.help, names.CHARGES.labels)
charge_duration = Histogram(
    names.CHARGE_DURATION.name,
    names.CHARGE_DURATION.help,
    names.CHARGE_DURATION.labels,
    buckets=CHARGE_BUCKETS,
)
faststar_errors = Counter(
    _base(names.FASTSTAR_ERRORS), names.FASTSTAR_ERRORS.help, names.FASTSTAR_ERRORS.labels
)
claimed = Counter(_base(names.CLAIMED), names.CLAIMED.help, names.CLAIMED.labels)
emails = Counter(_base(names.EMAILS), names.EMAILS.help, names.EMAILS.labels)
# "max" across processes: the newest sweep of any worker on the host; the files of workers
# that have exited keep counting, as a heartbeat should.
sweep_last_run = Gauge(
    names.SWEEP_LAST_RUN.name, names.SWEEP_LAST_RUN.help, multiprocess_mode="max"
)
