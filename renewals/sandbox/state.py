"""All sandbox state in one object: records, the executed-charge log, config and helpers.

Every mutation goes through ``save``/``record_charge`` so the optional state file sees it
(write-through; the app commits once per request). Handlers run on the event loop without
awaiting in between reads and writes, so no locking is needed.
"""

from __future__ import annotations

import random
import time
from typing import Any

from renewals.sandbox.idempotency import IdempotencyStore
from renewals.sandbox.ids import new_id
from renewals.sandbox.models import (
    CheckoutSession,
    Customer,
    Dispute,
    PaymentMethod,
    Price,
    Product,
    Record,
    Refund,
    SetupIntent,
)
from renewals.sandbox.persistence import Persistence
from renewals.sandbox.ratelimit import TokenBucket
from renewals.sandbox.responses import JSON, not_found
from renewals.sandbox.settings import SandboxConfig
from renewals.sandbox.webhooks import WebhookDispatcher


def now() -> int:
    """Unix seconds, FastStar's timestamp format."""
    return int(time.time())


class SandboxState:
    def __init__(self, persistence: Persistence) -> None:
        self.persistence = persistence
        self.config = SandboxConfig()
        self.customers: dict[str, Customer] = {}
        self.setup_intents: dict[str, SetupIntent] = {}
        self.payment_methods: dict[str, PaymentMethod] = {}
        self.checkout_sessions: dict[str, CheckoutSession] = {}
        self.products: dict[str, Product] = {}
        self.prices: dict[str, Price] = {}
        self.refunds: dict[str, Refund] = {}
        self.disputes: dict[str, Dispute] = {}
        self.charges: list[JSON] = []
        """Every charge the sandbox executed: the ground truth for reliability tests."""
        self.idempotency = IdempotencyStore(persistence)
        self.webhooks = WebhookDispatcher(lambda: self.config, persistence)
        self.rate_limit = TokenBucket()
        # The failure mix's draws (SandboxConfig.mix_*), reseeded when mix_seed is set.
        self.mix_random = random.Random()  # noqa: S311 - test outcomes, not secrets
        self._tables: dict[str, tuple[dict[str, Any], type[Record]]] = {
            "customer": (self.customers, Customer),
            "setup_intent": (self.setup_intents, SetupIntent),
            "payment_method": (self.payment_methods, PaymentMethod),
            "checkout_session": (self.checkout_sessions, CheckoutSession),
            "product": (self.products, Product),
            "price": (self.prices, Price),
            "refund": (self.refunds, Refund),
            "dispute": (self.disputes, Dispute),
        }
        self._load()

    def _load(self) -> None:
        snapshot = self.persistence.load()
        for kind, (table, record_type) in self._tables.items():
            for row in snapshot.objects.get(kind, []):
                table[row["id"]] = record_type.from_row(row)
        self.charges.extend(snapshot.charges)
        self.webhooks.restore(snapshot.events)
        self.idempotency.load(snapshot.idempotency)

    def save(
        self,
        kind: str,
        record: Customer
        | SetupIntent
        | PaymentMethod
        | CheckoutSession
        | Product
        | Price
        | Refund
        | Dispute,
    ) -> None:
        """Insert or update a record (kind is a key of ``_tables``)."""
        table, _ = self._tables[kind]
        table[record.id] = record
        self.persistence.put_object(kind, record.id, record.to_row())

    def customer(self, customer_id: str) -> Customer:
        found = self.customers.get(customer_id)
        if found is None:
            raise not_found("customer", customer_id)
        return found

    def charge_of(self, payment_id: str) -> JSON:
        """The executed charge whose payment is ``payment_id`` (404 if none)."""
        for charge in self.charges:
            if charge["payment_intent_id"] == payment_id:
                return charge
        raise not_found("payment", payment_id)

    def record_charge(
        self,
        *,
        customer_id: str | None,
        payment_method_id: str | None,
        amount: int,
        currency: str,
        idempotency_key: str | None,
        source: str,
        checkout_session_id: str | None = None,
    ) -> JSON:
        """Execute (log) a successful charge and emit ``payment.succeeded``."""
        charge: JSON = {
            "payment_intent_id": new_id("pi"),
            "customer_id": customer_id,
            "payment_method_id": payment_method_id,
            "amount": amount,
            "currency": currency,
            "status": "succeeded",
            "idempotency_key": idempotency_key,
            "created": now(),
            "source": source,
            "checkout_session_id": checkout_session_id,
        }
        self.charges.append(charge)
        self.persistence.append_charge(charge)
        self.webhooks.emit(
            "payment.succeeded",
            {
                "payment_id": charge["payment_intent_id"],
                "amount": amount,
                "currency": currency,
                "status": "succeeded",
                "customer_id": customer_id,
                "payment_method_id": payment_method_id,
                "checkout_session_id": checkout_session_id,
            },
        )
        return charge

    def reset(self) -> None:
        """Back to an empty sandbox with default config (``POST /sandbox/reset``)."""
        for table, _ in self._tables.values():
            table.clear()
        self.charges.clear()
        self.idempotency.clear()
        self.webhooks.reset()
        self.rate_limit.reset()
        self.mix_random = random.Random()  # noqa: S311 - test outcomes, not secrets
        self.config = SandboxConfig()
        self.persistence.clear()
