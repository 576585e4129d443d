"""The renewal engine against a bare httpx loop making the same charge calls.

Starts the sandbox as its own process, saves one 4242 card per subscription, then times:

* **bare**: ``threads`` threads, each POSTing off-session charges with its own
  Idempotency-Key over a keep-alive ``httpx.Client``: nothing but the calls;
* **engine**: the same number of renewals through the engine's own code path: one sweep
  (materialise and claim), then ``charge_renewal`` per renewal on ``threads`` threads
  (lock and check, commit the attempt, call, record the outcome), as a worker does.

Prints renewals/s for both and the ratio (the product's goal is at least 0.8). Traffic goes
to 127.0.0.1 only; every loop is bounded by ``--renewals``.

    python bench/engine_vs_httpx.py [--renewals 600] [--threads 4] [--latency-ms 0]
        [--database sqlite|postgres] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import SecretStr
from sandbox_throughput import free_port, start_sandbox
from sqlalchemy import create_engine, text

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.logs import configure_logging
from renewals.models.db import create_db_engine, unit_of_work
from renewals.models.migrate import upgrade
from renewals.sandbox.client import save_card
from renewals.services.charging import charge_renewal
from renewals.services.subscriptions import SavedCard, create_subscription
from renewals.services.sweep import sweep

API_KEY = "sk_test_bench"


def _database(kind: str, postgres_url: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir}/bench.db"
    name = f"renewals_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def _cards(base_url: str, count: int) -> list[tuple[str, str]]:
    return [
        save_card(base_url, API_KEY, email=f"b{n}@example.com", name="B", number="4242424242424242")
        for n in range(count)
    ]


def bare(base_url: str, cards: list[tuple[str, str]], threads: int) -> float:
    def charge(batch: list[tuple[str, str]]) -> None:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": API_KEY}) as client:
            for customer, card in batch:
                response = client.post(
                    f"/public/customers/{customer}/charge",
                    json={
                        "payment_method_id": card,
                        "amount": 1999,
                        "currency": "USD",
                        "off_session": True,
                    },
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                response.raise_for_status()

    batches = [cards[i::threads] for i in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(charge, batches))
    return len(cards) / (time.perf_counter() - started)


def engine_run(
    base_url: str, database_url: str, cards: list[tuple[str, str]], threads: int
) -> float:
    settings = Settings(
        database_url=database_url,
        faststar_base_url=base_url,
        faststar_api_key=SecretStr(API_KEY),
        lease_seconds=600,
    )
    upgrade(database_url)
    engine = create_db_engine(database_url)
    now = datetime.now(UTC)
    with FastStarClient(base_url, API_KEY) as client:
        methods = {c: client.list_payment_methods(c)[0] for c, _ in cards}
    with unit_of_work(engine) as session:
        for customer, card in cards:
            m = methods[customer]
            create_subscription(
                session,
                now=now,
                settings=settings,
                email="b@example.com",
                name="B",
                card=SavedCard(customer, card, m.brand, m.last4, m.exp_month, m.exp_year),
                amount=1999,
                currency="USD",
                interval="month",
                interval_count=1,
                renews_at=now,
            )

    clients = [FastStarClient(base_url, API_KEY) for _ in range(threads)]

    def work(index: int, renewal_ids: list[int]) -> int:
        paid = 0
        for renewal_id in renewal_ids:
            charge_renewal(
                engine,
                clients[index],
                renewal_id,
                clock=lambda: datetime.now(UTC),
                settings=settings,
            )
            paid += 1
        return paid

    started = time.perf_counter()
    with unit_of_work(engine) as session:
        claimed = sweep(session, now=datetime.now(UTC), settings=settings).ids(Work.CHARGE)
    with ThreadPoolExecutor(threads) as pool:
        done = sum(pool.map(work, range(threads), [claimed[i::threads] for i in range(threads)]))
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    with unit_of_work(engine) as session:
        paid = session.scalar(text("SELECT count(*) FROM renewals WHERE status = 'succeeded'"))
    engine.dispose()
    if paid != len(cards) or done != len(cards):
        raise SystemExit(f"only {paid} of {len(cards)} renewals succeeded")
    return len(cards) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renewals", type=int, default=600)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    # As in production: INFO through our processors (the hot path logs at DEBUG only).
    configure_logging(Settings(log_level="INFO", log_format="json"))

    port = free_port()
    sandbox = start_sandbox(port, None)
    base_url = f"http://127.0.0.1:{port}/api/v1"
    try:
        httpx.post(f"{base_url}/sandbox/config", json={"latency_ms": args.latency_ms})
        with tempfile.TemporaryDirectory() as workdir:
            database_url = _database(args.database, args.postgres_url, Path(workdir))
            baseline = bare(base_url, _cards(base_url, args.renewals), args.threads)
            ours = engine_run(base_url, database_url, _cards(base_url, args.renewals), args.threads)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    ratio = ours / baseline
    print(
        f"{args.renewals} renewals, {args.threads} threads, latency {args.latency_ms} ms, "
        f"{args.database}: bare httpx {baseline:,.0f}/s, engine {ours:,.0f}/s, "
        f"ratio {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
