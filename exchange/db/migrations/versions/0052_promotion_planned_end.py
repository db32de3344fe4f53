"""A promotion ended early keeps the end it was made with.

* ``promotion.planned_ends_at``: the ``ends_at`` a promotion was made with, kept when
  ``endPromotion`` ends it before then, so that the request that made it, sent again (a retry
  after a lost answer), is known as the same request and answers the promotion as it is, not
  ``IDEMPOTENCY_CONFLICT``. Null for the promotions ended before it was kept: their end as made
  is not known.

Revision ID: 0052
Revises: 0051
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("promotion", sa.Column("planned_ends_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promotion") as batch:
        batch.drop_column("planned_ends_at")
