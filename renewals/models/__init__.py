"""SQLAlchemy 2.0 typed models; Alembic migrations live in ``renewals/models/migrations``."""

from renewals.models.audit import AuditEvent
from renewals.models.base import Base
from renewals.models.billing import Customer, PaymentMethod, Subscription
from renewals.models.leases import SweepLease
from renewals.models.merchant_events import MerchantEvent
from renewals.models.operations import OperatorCommand, Switch
from renewals.models.outbox import OutboxMessage
from renewals.models.reconciliation import CheckoutSessionRecord, InboxEvent, PaymentReview
from renewals.models.renewal import OPEN_ATTEMPT_SQL, ChargeAttempt, Renewal

__all__ = [
    "OPEN_ATTEMPT_SQL",
    "AuditEvent",
    "Base",
    "ChargeAttempt",
    "CheckoutSessionRecord",
    "Customer",
    "InboxEvent",
    "MerchantEvent",
    "OperatorCommand",
    "OutboxMessage",
    "PaymentMethod",
    "PaymentReview",
    "Renewal",
    "Subscription",
    "SweepLease",
    "Switch",
]
