"""merchant events: the outbox of signed webhooks to the merchant's backend; refunds and
disputes recorded on the renewal

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00

- merchant_events: one row per event told to the merchant (docs/merchant-webhooks.md),
  written in the transaction of the change, delivered at least once in order per
  subscription.
- renewals.refunded_amount / refunded_at / dispute_id / dispute_status /
  dispute_changed_at: what FastStar reported about the renewal's payment after it was paid.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merchant_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column(
            "subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "renewal_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_merchant_events_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["renewal_id"], ["renewals.id"], name=op.f("fk_merchant_events_renewal_id_renewals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_merchant_events_event_id")),
    )
    op.create_index("ix_merchant_events_due", "merchant_events", ["status", "next_attempt_at"])
    op.create_index("ix_merchant_events_subscription", "merchant_events", ["subscription_id", "id"])
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refunded_amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dispute_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dispute_status", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("dispute_changed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_column("dispute_changed_at")
        batch_op.drop_column("dispute_status")
        batch_op.drop_column("dispute_id")
        batch_op.drop_column("refunded_at")
        batch_op.drop_column("refunded_amount")
    op.drop_index("ix_merchant_events_subscription", table_name="merchant_events")
    op.drop_index("ix_merchant_events_due", table_name="merchant_events")
    op.drop_table("merchant_events")
