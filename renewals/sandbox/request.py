"""What a handler sees of an HTTP request, already parsed by the dispatcher in app.py."""

from __future__ import annotations

from dataclasses import dataclass

from renewals.sandbox.responses import JSON


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: str
    body: JSON
    """The JSON object body; ``{}`` when the request had none."""
    host: str
    """The Host header, used to build URLs on the sandbox itself (checkout pages)."""
    idempotency_key: str | None
    """The ``Idempotency-Key`` header as sent, recorded in the charge log even when ignored."""
