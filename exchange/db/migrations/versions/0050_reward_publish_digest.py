"""A reward keeps what its publishing request asked: ``reward.publish_digest``, the SHA-256 of
the request's terms, so that publishing again under a client-chosen id answers as every
client-chosen id does: the same request returns the reward it made, another is
``IDEMPOTENCY_CONFLICT`` (it was ``BAD_USER_INPUT`` whatever the request).

The reward's own row cannot say: redemptions, a restock and a new price change its stock and
price after it is published. Nullable: a reward published before this revision kept no request,
and publishing under its id is a conflict.

Revision ID: 0050
Revises: 0049
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0050"
down_revision = "0049"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reward", sa.Column("publish_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later), as revision 0044's.
    op.drop_column("reward", "publish_digest")
