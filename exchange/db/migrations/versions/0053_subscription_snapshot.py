"""A webhook subscription no longer holds event writers back while it is made:
``webhook_event.xact``, the id of the unit of work that wrote the event (PostgreSQL fills it,
``pg_current_xact_id()``), and ``webhook_subscription.after_snapshot``, the snapshot a new
subscription's mark was taken in.

A subscription receives every event committed after it and none before. Its mark was the
outbox's high-water sequence, read under ``LOCK TABLE webhook_event IN SHARE MODE`` so that no
event written before the mark could commit after it: every unit of work writing an event, of
every program, waited for the subscription to commit. An event is now after the mark if the
snapshot did not see its unit of work committed, which needs no lock.

Events written and subscriptions made before this revision have neither: they are matched by
sequence, as before.

Revision ID: 0053
Revises: 0052
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0053"
down_revision = "0052"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_event", sa.Column("xact", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_event ALTER COLUMN xact SET DEFAULT (pg_current_xact_id()::text::bigint)")
    op.add_column("webhook_subscription", sa.Column("after_snapshot", sa.Text(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later): a batch would rebuild the table.
    op.drop_column("webhook_subscription", "after_snapshot")
    op.drop_column("webhook_event", "xact")
