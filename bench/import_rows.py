"""How fast ``renewals subscriptions import`` takes a large file, end to end.

Generates ``--rows`` valid rows (CSV; each row its own customer and card, monthly, in USD)
into a temporary file, creates a fresh database (a SQLite file, and a new PostgreSQL
database dropped at the end), then runs the command line exactly as an operator would, in
a process of its own: ``renewals subscriptions import FILE --json``, twice. The first run
creates every row; the second must change nothing (the script checks the summary and the
row and audit counts). Prints seconds and rows/s of each run, with the
1-minute load average just before it (the machine is shared).

    python -m bench.import_rows [--rows 100000] [--database sqlite|postgres|both]
        [--postgres-url URL]

No FastStar call is made: card details are fetched later by a task, which is not run here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.backends import POSTGRES_URL
from bench.sweep_claim import _database, _drop
from renewals.models import AuditEvent, Customer, PaymentMethod, Subscription
from renewals.models.db import create_db_engine, unit_of_work
from renewals.models.migrate import upgrade

COLUMNS = (
    "external_id",
    "email",
    "customer_id",
    "payment_method_id",
    "amount",
    "currency",
    "interval",
    "next_renewal_at",
)


def write_rows(path: Path, rows: int) -> None:
    start = datetime.now(UTC) + timedelta(days=10)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(COLUMNS)
        for n in range(rows):
            out.writerow(
                (
                    f"bench-{n:07d}",
                    f"user{n}@example.com",
                    f"cus_bench{n:07d}",
                    f"pm_bench{n:07d}",
                    1000 + n % 5000,
                    "USD",
                    "month",
                    (start + timedelta(minutes=n % 1440)).isoformat(),
                )
            )


@contextmanager
def database(kind: str, postgres_url: str, workdir: Path) -> Iterator[str]:
    url = _database(kind, postgres_url, workdir)
    try:
        upgrade(url)
        yield url
    finally:
        if kind == "postgres":
            _drop(postgres_url, url)


def run_import(url: str, path: Path) -> tuple[float, dict[str, Any]]:
    env = {
        **os.environ,
        "RENEWALS_DATABASE_URL": url,
        # The hint sent after an import goes nowhere: no worker is part of this figure.
        "RENEWALS_BROKER_URL": "memory://",
        "RENEWALS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "renewals", "subscriptions", "import", str(path), "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def counts(url: str) -> dict[str, int]:
    engine = create_db_engine(url)
    try:
        with unit_of_work(engine) as session:
            return {
                name: session.scalar(select(func.count()).select_from(model)) or 0
                for name, model in (
                    ("subscriptions", Subscription),
                    ("customers", Customer),
                    ("payment_methods", PaymentMethod),
                    ("audit_events", AuditEvent),
                )
            }
    finally:
        engine.dispose()


def bench(kind: str, rows: int, path: Path, postgres_url: str, workdir: Path) -> dict[str, Any]:
    with database(kind, postgres_url, workdir) as url:
        # The machine is shared: the 1-minute load average beside each figure says how busy.
        load_first = os.getloadavg()[0]
        first_s, first = run_import(url, path)
        after_first = counts(url)
        load_second = os.getloadavg()[0]
        second_s, second = run_import(url, path)
        after_second = counts(url)
    assert first["created"] == rows, first
    assert second["created"] == 0 and second["unchanged"] == rows, second
    assert after_first == after_second, (after_first, after_second)
    result = {
        "database": kind,
        "rows": rows,
        "first_s": round(first_s, 2),
        "first_rows_per_s": round(rows / first_s),
        "second_s": round(second_s, 2),
        "second_rows_per_s": round(rows / second_s),
        "second_changed_nothing": True,
        "counts": after_second,
        "load_before_first": round(load_first, 2),
        "load_before_second": round(load_second, 2),
    }
    print(
        f"{kind}: {rows:,} rows imported in {first_s:.1f} s ({rows / first_s:,.0f} rows/s, "
        f"load {load_first:.1f}); again in {second_s:.1f} s ({rows / second_s:,.0f} rows/s, "
        f"load {load_second:.1f}): 0 created, {second['unchanged']:,} unchanged, row and audit "
        "counts equal",
        flush=True,
    )
    return result


def figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's flat figures (bench.run's bench-report.json), per database."""
    flat: dict[str, Any] = {}
    for result in results:
        kind = result["database"]
        flat[f"import_rows_per_s_{kind}"] = result["first_rows_per_s"]
        flat[f"import_first_s_{kind}"] = result["first_s"]
        flat[f"import_second_s_{kind}"] = result["second_s"]
        flat[f"import_load_{kind}"] = [result["load_before_first"], result["load_before_second"]]
        flat["import_rows"] = result["rows"]
    return flat


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    args = parser.parse_args(argv)
    kinds = ["postgres", "sqlite"] if args.database == "both" else [args.database]
    results = []
    with tempfile.TemporaryDirectory(prefix="renewals-bench-import-") as tmp:
        workdir = Path(tmp)
        path = workdir / "subscriptions.csv"
        started = time.perf_counter()
        write_rows(path, args.rows)
        print(f"{args.rows:,} rows written in {time.perf_counter() - started:.1f} s", flush=True)
        for kind in kinds:
            results.append(bench(kind, args.rows, path, args.postgres_url, workdir))
    return results


if __name__ == "__main__":
    main()
