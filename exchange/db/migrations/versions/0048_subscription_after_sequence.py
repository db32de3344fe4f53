"""A webhook subscription receives the events committed after it: ``after_sequence`` on
``webhook_subscription``, the latest event's sequence when it was committed.

The worker matched events to subscriptions by time (made at or before the event happened).
Times tell nothing of commits: an event written while a subscription was being made, and
fanned out before the subscription committed, was missed, and one committed before the
subscription but stamped later (another process's clock) was sent to it. A subscription now
records the outbox's high-water mark as it commits, and receives the events above it.

A subscription made before this revision gets the highest sequence of the events that happened
before it was made (0 if none is left): the events not yet fanned out reach it as the time rule
had them.

Revision ID: 0048
Revises: 0047
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_subscription", sa.Column("after_sequence", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.execute(
        "UPDATE webhook_subscription SET after_sequence = COALESCE(("
        " SELECT max(webhook_event.sequence) FROM webhook_event"
        " WHERE webhook_event.occurred_at < webhook_subscription.created_at), 0)"
    )


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later): a batch would rebuild the table.
    op.drop_column("webhook_subscription", "after_sequence")
