"""bulk import and the integration API

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 10:00:00

- subscriptions.external_id: the merchant's own id, unique (NULL for CLI-created ones);
  an import or an API create is idempotent on it.
- subscriptions.pending_amount / pending_price_id / pending_from_index: a change of price
  that applies from a later period, folded in by the sweep when it materialises it.
- payment_methods brand/last4/exp_month/exp_year become nullable, with details_fetched_at:
  an imported card is known by its pm_ id; its masked details are fetched afterwards. Rows
  that exist already had their details read on attach, so they count as fetched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CARD = (
    ("brand", sa.String(length=32)),
    ("last4", sa.String(length=4)),
    ("exp_month", sa.Integer()),
    ("exp_year", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending_amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("pending_price_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending_from_index", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_subscriptions_external_id"), ["external_id"]
        )
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("details_fetched_at", sa.DateTime(timezone=True), nullable=True)
        )
        for name, type_ in _CARD:
            batch_op.alter_column(name, existing_type=type_, nullable=True)
    op.execute("UPDATE payment_methods SET details_fetched_at = created_at")
    op.create_index(
        "ix_payment_methods_details_missing",
        "payment_methods",
        ["customer_id"],
        unique=False,
        sqlite_where=sa.text("details_fetched_at IS NULL"),
        postgresql_where=sa.text("details_fetched_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_payment_methods_details_missing",
        table_name="payment_methods",
        sqlite_where=sa.text("details_fetched_at IS NULL"),
        postgresql_where=sa.text("details_fetched_at IS NULL"),
    )
    # Cards never fetched have no details to keep under NOT NULL: they go back to empty.
    op.execute(
        "UPDATE payment_methods SET brand = COALESCE(brand, ''), last4 = COALESCE(last4, ''), "
        "exp_month = COALESCE(exp_month, 0), exp_year = COALESCE(exp_year, 0)"
    )
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        for name, type_ in _CARD:
            batch_op.alter_column(name, existing_type=type_, nullable=False)
        batch_op.drop_column("details_fetched_at")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_subscriptions_external_id"), type_="unique")
        batch_op.drop_column("pending_from_index")
        batch_op.drop_column("pending_price_id")
        batch_op.drop_column("pending_amount")
        batch_op.drop_column("external_id")
