"""Indexes for the retention job (``exchange.retention``): quotes by expiry, ended webhook
deliveries by when they ended, and deliveries by event (an event is pruned once no delivery
names it; the unique key on (subscription, sequence) cannot answer that by sequence alone).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_quote_expires", "quote", ["expires_at"]),
    ("ix_webhook_delivery_sequence", "webhook_delivery", ["sequence"]),
    ("ix_webhook_delivery_ended", "webhook_delivery", ["status", "finished_at"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
