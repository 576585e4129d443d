"""Sandbox-only helper for the CLI: save a test card the way the seed guide does.

Runs customer -> setup-intent -> (sandbox card entry, standing in for the popup) -> attach.
It never charges; the renewal worker's own FastStar client does that.
"""

from __future__ import annotations

from typing import Any

import httpx


class SandboxError(RuntimeError):
    """The sandbox answered a step with a failure envelope (``status_code``: its HTTP status,
    so that callers can tell a refused key, 401, from a refused card, 400)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class SandboxCards:
    """Saves test cards on a running sandbox (``base_url`` ends in ``/api/v1``)."""

    def __init__(self, base_url: str, api_key: str, *, client: httpx.Client | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key}
        self._client = client

    def save_card(
        self, *, email: str, name: str, number: str, exp_month: int = 12, exp_year: int = 2030
    ) -> tuple[str, str]:
        """Create a customer and attach a card; returns ``(cus_id, pm_id)``."""
        client = self._client or httpx.Client(timeout=10.0)
        try:
            customer = self._call(client, "public/customers", {"email": email, "name": name})
            customer_id = str(customer["id"])
            intent = self._call(client, f"public/customers/{customer_id}/setup-intent", None)
            setup_intent_id = str(intent["setup_intent_id"])
            card = {"number": number, "exp_month": exp_month, "exp_year": exp_year}
            self._call(client, f"sandbox/setup-intents/{setup_intent_id}/card", card)
            attached = self._call(
                client,
                f"public/customers/{customer_id}/payment-methods",
                {"setup_intent_id": setup_intent_id},
            )
            return customer_id, str(attached["id"])
        finally:
            if self._client is None:
                client.close()

    def _call(self, client: httpx.Client, path: str, body: dict[str, Any] | None) -> Any:
        response = client.post(f"{self._base_url}/{path}", json=body, headers=self._headers)
        try:
            envelope = response.json()
        except ValueError:
            raise SandboxError(
                f"POST {path}: HTTP {response.status_code}, not JSON",
                status_code=response.status_code,
            ) from None
        if response.is_error or not envelope.get("success"):
            # The message is the sandbox's; it never echoes card numbers or keys.
            raise SandboxError(
                f"POST {path}: {envelope.get('message')}", status_code=response.status_code
            )
        return envelope["data"]


def save_card(
    base_url: str, api_key: str, *, email: str, name: str, number: str
) -> tuple[str, str]:
    """Module-level shortcut for ``SandboxCards(base_url, api_key).save_card(...)``."""
    return SandboxCards(base_url, api_key).save_card(email=email, name=name, number=number)
