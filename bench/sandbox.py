"""The FastStar sandbox as its own process, driven through its control endpoints."""

from __future__ import annotations

import subprocess
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx

from bench.sandbox_throughput import free_port, start_sandbox
from renewals.config import DEFAULT_API_KEY
from renewals.sandbox.client import SandboxCards

API_KEY = DEFAULT_API_KEY  # the worker's default key: the processes run on default settings
CARD_4242 = "4242424242424242"


@dataclass
class Sandbox:
    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls) -> Sandbox:
        port = free_port()
        return cls(start_sandbox(port, None), port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def configure(self, **config: Any) -> None:
        response = httpx.post(f"{self.base_url}/sandbox/config", json=config, timeout=10)
        response.raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/sandbox/reset", timeout=30).raise_for_status()

    def ledger(self) -> list[dict[str, Any]]:
        """Every charge the sandbox executed."""
        response = httpx.get(f"{self.base_url}/sandbox/charges", timeout=60)
        response.raise_for_status()
        charges: list[dict[str, Any]] = response.json()["data"]
        return charges

    def save_cards(self, count: int) -> list[tuple[str, str]]:
        """``count`` customers with a 4242 card each: ``[(cus_…, pm_…)]``. No latency yet."""
        with httpx.Client(timeout=10) as client:
            cards = SandboxCards(self.base_url, API_KEY, client=client)
            return [
                cards.save_card(email=f"bench{n}@example.com", name="Bench", number=CARD_4242)
                for n in range(count)
            ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                with suppress(subprocess.TimeoutExpired):
                    self.process.wait(5)
