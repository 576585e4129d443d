"""The bare baseline: a plain httpx loop making the engine's charge calls, nothing else.

``concurrency`` threads, each with its own keep-alive ``httpx.Client``, POST off-session
charges (each with its own Idempotency-Key) until ``count`` calls are made between them.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from bench.sandbox import API_KEY, Sandbox
from bench.seed import AMOUNT


def bare_httpx(
    sandbox: Sandbox, cards: list[tuple[str, str]], concurrency: int, count: int
) -> float:
    """Charges per second; every call must succeed."""
    remaining = [count]
    lock = threading.Lock()
    failures: list[str] = []

    def take() -> int | None:
        with lock:
            if remaining[0] <= 0 or failures:
                return None
            remaining[0] -= 1
            return remaining[0]

    def loop() -> None:
        with httpx.Client(
            base_url=sandbox.base_url, headers={"X-API-Key": API_KEY}, timeout=30
        ) as client:
            while (n := take()) is not None:
                customer, card = cards[n % len(cards)]
                response = client.post(
                    f"/public/customers/{customer}/charge",
                    json={
                        "payment_method_id": card,
                        "amount": AMOUNT,
                        "currency": "USD",
                        "off_session": True,
                    },
                    headers={"Idempotency-Key": f"bare_{uuid.uuid4().hex}"},
                )
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"bare baseline: {len(failures)} failed calls, first {failures[0]}")
    return count / elapsed
