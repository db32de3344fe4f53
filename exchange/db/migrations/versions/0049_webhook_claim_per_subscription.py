"""The delivery worker's claim reads each subscription's own deliveries, by index:
``ix_webhook_delivery_first_due`` and ``ix_webhook_delivery_retry_due`` (a subscription's due
first attempts, and its due retries, in the order they are claimed) and
``ix_webhook_delivery_leased`` (its leased deliveries), in place of ``ix_webhook_delivery_due``.

With a cap on each subscription's deliveries in flight, the claim ranked every claimable
delivery of every subscription, through ``(status, next_attempt_at)``, to take each one's first
few: a receiver that is down for a day piles up a backlog of due retries, and every claim read
and sorted all of it. Now it reads, for each subscription, as many as it may take and stops.

Revision ID: 0049
Revises: 0048
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0049"
down_revision = "0048"
branch_labels = None
depends_on = None

INDEXES = (
    (
        "ix_webhook_delivery_first_due",
        ["subscription_id", "next_attempt_at", "sequence"],
        "status = 'PENDING' AND attempts = 0",
    ),
    (
        "ix_webhook_delivery_retry_due",
        ["subscription_id", "next_attempt_at", "sequence"],
        "status = 'PENDING' AND attempts > 0",
    ),
    (
        "ix_webhook_delivery_leased",
        ["subscription_id", "lease_until"],
        "status = 'PENDING' AND lease_until IS NOT NULL",
    ),
)


def upgrade() -> None:
    for name, columns, condition in INDEXES:
        op.create_index(
            name,
            "webhook_delivery",
            columns,
            postgresql_where=sa.text(condition),
            sqlite_where=sa.text(condition),
        )
    op.drop_index("ix_webhook_delivery_due", table_name="webhook_delivery")


def downgrade() -> None:
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
    for name, _, _ in INDEXES:
        op.drop_index(name, table_name="webhook_delivery")
