"""The bench's bookkeeping: duplicates from the sandbox's ledger, and the printed table."""

from __future__ import annotations

from bench.e2e import duplicates
from bench.report import table


def test_duplicates_count_extra_charges_per_renewal_by_idempotency_key() -> None:
    keys = {"k1": 1, "k2": 2, "k3": 2}
    ledger = [
        {"idempotency_key": "k1"},
        {"idempotency_key": "k2"},
        {"idempotency_key": "k3"},  # a second charge for renewal 2, under another key
        {"idempotency_key": "k1"},  # the same key executed twice
        {"idempotency_key": "bare_x"},  # not the engine's
        {"idempotency_key": None},
    ]
    assert duplicates(ledger, keys) == {
        "executed_charges": 4,
        "duplicate_charges": 2,
        "keys_executed_twice": 1,
        "unmatched_charges": 2,
    }


def test_no_duplicates_when_every_renewal_was_charged_once() -> None:
    keys = {f"k{n}": n for n in range(5)}
    ledger = [{"idempotency_key": key} for key in keys]
    assert duplicates(ledger, keys)["duplicate_charges"] == 0


def test_table_aligns_columns_and_shows_missing_values_as_dashes() -> None:
    out = table(
        [{"a": 1.234, "b": None}, {"a": 1234.5, "b": "x"}], [("a", "alpha"), ("b", "beta")]
    ).splitlines()
    assert out[0].split() == ["alpha", "beta"]
    assert out[2].split() == ["1.23", "-"]
    assert out[3].split() == ["1,234", "x"]
    assert len({len(line) for line in out}) == 1


def test_sweep_figures_from_the_worker_log() -> None:
    from bench.e2e import sweep_log_figures

    log = "\n".join(
        [
            "... Task renewals.sweep[ab-1] succeeded in 4.5s: None [celery.app.trace]",
            "... Discarding revoked task: renewals.sweep[ab-2] [celery.worker.request]",
            "... Task renewals.charge_renewal[ab-3] succeeded in 9.0s: None",
            "... Task renewals.sweep[ab-4] succeeded in 20.25s: None [celery.app.trace]",
        ]
    )
    assert sweep_log_figures(log) == {
        "sweeps_run": 2,
        "sweeps_expired_in_queue": 1,
        "sweep_task_s_max": 20.25,
    }


def test_charge_calls_per_second_from_send_times() -> None:
    from datetime import UTC, datetime, timedelta

    from bench.e2e import charge_calls_per_second

    start = datetime(2026, 1, 1, tzinfo=UTC)
    sends = [start + timedelta(milliseconds=100 * n) for n in range(12)]  # 10 then 2
    assert charge_calls_per_second(sends) == {"sent_peak_per_s": 10, "sent_per_busy_s": 6.0}
    assert charge_calls_per_second([])["sent_peak_per_s"] is None


def test_import_figures_flatten_per_database() -> None:
    from bench.import_rows import figures

    result = {
        "rows": 100_000,
        "first_s": 12.5,
        "first_rows_per_s": 8000,
        "second_s": 4.0,
        "load_before_first": 9.5,
        "load_before_second": 10.0,
    }
    flat = figures([{**result, "database": "postgres"}, {**result, "database": "sqlite"}])
    assert flat["import_rows_per_s_postgres"] == flat["import_rows_per_s_sqlite"] == 8000
    assert flat["import_second_s_postgres"] == 4.0
    assert flat["import_load_sqlite"] == [9.5, 10.0]
    assert flat["import_rows"] == 100_000
