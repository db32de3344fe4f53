"""Webhook subscriptions take a client-chosen idempotency key:
``webhook_subscription.idempotency_key``, unique per creating client (``created_by``).

A retry of ``createWebhookSubscription`` after a lost answer made a second subscription, and
every event was delivered twice. The key is nullable: a request without one (an older client)
records none, and PostgreSQL and SQLite alike let any number of rows hold no key under the
unique index. Unique by an index, not a table constraint, as revision 0044's: on SQLite a new
constraint rebuilds the table.

Revision ID: 0055
Revises: 0054
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0055"
down_revision = "0054"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_subscription", sa.Column("idempotency_key", sa.String(100), nullable=True))
    op.create_index(
        "ix_webhook_subscription_client_key",
        "webhook_subscription",
        ["created_by", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later), as revision 0044's.
    op.drop_index("ix_webhook_subscription_client_key", table_name="webhook_subscription")
    op.drop_column("webhook_subscription", "idempotency_key")
