"""Run a real sandbox (uvicorn on a loopback socket) inside the current process, for tests.

    with running_sandbox() as sandbox:
        httpx.post(f"{sandbox.base_url}/public/customers", headers=sandbox.headers, json=...)
        assert sandbox.charges() == [...]

The server runs on its own thread with its own event loop; requests go over a real socket,
so timeouts, truncated responses and concurrency behave as they would against FastStar.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn

from renewals.sandbox.app import SandboxApp, create_app
from renewals.sandbox.client import SandboxCards
from renewals.sandbox.server import bind_socket, quiet_deliberate_drops, uvicorn_config

_STARTUP_TIMEOUT_S = 10.0


class SandboxControlError(RuntimeError):
    """A sandbox control call answered with a failure envelope."""


@dataclass
class RunningSandbox:
    base_url: str
    """``http://127.0.0.1:PORT/api/v1``"""
    api_key: str
    """A key the sandbox accepts (``sk_test_...``)."""
    app: SandboxApp
    """The in-process app, for tests that need to look at state directly."""
    _http: httpx.Client = field(repr=False)

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/api/v1")

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def api_client(self, **kwargs: Any) -> httpx.Client:
        """A new httpx client on ``base_url`` sending the API key (caller closes it)."""
        return httpx.Client(base_url=self.base_url, headers=self.headers, **kwargs)

    def _control(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, f"{self.base_url}/sandbox/{path}", json=json)
        envelope = response.json()
        if response.is_error or not envelope.get("success"):
            raise SandboxControlError(f"{method} /sandbox/{path}: {envelope.get('message')}")
        return envelope.get("data")

    def charges(self) -> list[dict[str, Any]]:
        """Every charge the sandbox executed, oldest first."""
        result: list[dict[str, Any]] = self._control("GET", "charges")
        return result

    def events(self) -> list[dict[str, Any]]:
        """Every webhook event emitted, oldest first, each with its ``delivery`` record."""
        result: list[dict[str, Any]] = self._control("GET", "events")
        return result

    def configure(self, **cfg: Any) -> None:
        self._control("POST", "config", cfg)

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "config")
        return result

    def reset(self) -> None:
        self._control("POST", "reset")

    def add_card(
        self, setup_intent_id: str, number: str, exp_month: int = 12, exp_year: int = 2030
    ) -> None:
        """The buyer enters a card for a SetupIntent (the popup stand-in)."""
        self._control(
            "POST",
            f"setup-intents/{setup_intent_id}/card",
            {"number": number, "exp_month": exp_month, "exp_year": exp_year},
        )

    def refund(self, payment_id: str, amount: int | None = None) -> dict[str, Any]:
        """The merchant refunds (part of) a payment: ``refund.succeeded``, ``payment.refunded``."""
        body = {} if amount is None else {"amount": amount}
        result: dict[str, Any] = self._control("POST", f"payments/{payment_id}/refund", body)
        return result

    def dispute(self, payment_id: str, status: str | None = None) -> dict[str, Any]:
        """The cardholder disputes a payment (first call), or the dispute moves to ``status``."""
        body = {} if status is None else {"status": status}
        result: dict[str, Any] = self._control("POST", f"payments/{payment_id}/dispute", body)
        return result

    def complete_checkout(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._control("POST", f"checkout/sessions/{session_id}/complete")
        return result

    def expire_checkout(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._control("POST", f"checkout/sessions/{session_id}/expire")
        return result

    def save_card(
        self, number: str = "4242424242424242", *, email: str = "buyer@example.com"
    ) -> tuple[str, str]:
        """The seed guide's sequence for a new customer; returns ``(cus_id, pm_id)``."""
        cards = SandboxCards(self.base_url, self.api_key, client=self._http)
        return cards.save_card(email=email, name="Sandbox Buyer", number=number)


def envelope_data(response: httpx.Response) -> Any:
    """``data`` of a 200 success envelope; AssertionError (showing the body) otherwise."""
    envelope = response.json()
    if response.status_code != 200 or envelope.get("success") is not True:
        raise AssertionError(
            f"expected a 200 success envelope, got {response.status_code}: {envelope}"
        )
    return envelope.get("data")


@contextmanager
def running_sandbox(
    *,
    state_path: Path | None = None,
    port: int = 0,
    http: Literal["httptools", "h11"] = "httptools",
) -> Iterator[RunningSandbox]:
    """Start the sandbox on 127.0.0.1 (port 0 = a free one), yield it, stop it on exit.

    ``http`` picks uvicorn's HTTP parser; production serving uses httptools.
    """
    quiet_deliberate_drops()
    app = create_app(state_path)
    sock = bind_socket("127.0.0.1", port)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn_config(app, "127.0.0.1", bound_port, log_level="warning", http=http)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="faststar-sandbox", daemon=True
    )
    thread.start()
    base_url = f"http://127.0.0.1:{bound_port}/api/v1"
    controls = httpx.Client(timeout=10.0)
    try:
        _wait_until_up(server, thread, controls, f"http://127.0.0.1:{bound_port}/")
        yield RunningSandbox(base_url, f"sk_test_{secrets.token_hex(8)}", app, controls)
    finally:
        controls.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_up(
    server: uvicorn.Server, thread: threading.Thread, http: httpx.Client, url: str
) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("sandbox server thread exited during start-up")
        if server.started:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.01)
    raise RuntimeError("sandbox did not start in time")
