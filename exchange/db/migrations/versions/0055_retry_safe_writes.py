"""Retried writes answer what the first one did: a removed assertion key stays, and webhook
subscriptions and their rotations take a client-chosen idempotency key.

``partner_assertion_key.removed_at``: a removed assertion key stays, no longer accepted, so that
``removeAssertionKey`` sent again answers the key it removed, not ``NOT_FOUND``. Registering the
kid again clears it.

Webhook subscriptions take a client-chosen idempotency key:
``webhook_subscription.idempotency_key``, unique per creating client (``created_by``).

A retry of ``createWebhookSubscription`` after a lost answer made a second subscription, and
every event was delivered twice. The key is nullable: a request without one (an older client)
records none, and PostgreSQL and SQLite alike let any number of rows hold no key under the
unique index. Unique by an index, not a table constraint, as revision 0044's: on SQLite a new
constraint rebuilds the table.

``webhook_subscription.rotation_key`` and ``rotated_at``: the key and time of the rotation that
made the secret signing now. A retried ``rotateWebhookSecret`` rotated again, and ended at once
the secret the receiver still held (the one the lost answer replaced had never reached it);
with the same key it now answers that rotation again.

Revision ID: 0055
Revises: 0054
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0055"
down_revision = "0054"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_subscription", sa.Column("rotated_at", UTCDateTime(), nullable=True))
    op.add_column("webhook_subscription", sa.Column("rotation_key", sa.String(100), nullable=True))
    op.add_column("partner_assertion_key", sa.Column("removed_at", UTCDateTime(), nullable=True))
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
    op.drop_column("partner_assertion_key", "removed_at")
    op.drop_column("webhook_subscription", "rotation_key")
    op.drop_column("webhook_subscription", "rotated_at")
