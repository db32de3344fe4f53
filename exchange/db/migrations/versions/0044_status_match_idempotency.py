"""Status matches take a client-chosen idempotency key: ``status_match.idempotency_key``, unique
per member, and ``claimed_tier`` (the tier the member said they held), which is part of the
request a key names.

Both are nullable: a request without a key (an older client) records none, and PostgreSQL and
SQLite alike let any number of rows hold no key under the unique index. Matches made before this
revision had no key, and kept no claim. The key is unique by an index, not a table constraint:
on SQLite a new constraint rebuilds the table, and a rebuilt table loses its triggers (the ones
that move the member's activity markers).

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("status_match", sa.Column("idempotency_key", sa.String(100), nullable=True))
    op.add_column("status_match", sa.Column("claimed_tier", sa.String(60), nullable=True))
    op.create_index("ix_status_match_member_key", "status_match", ["member_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later): a batch would rebuild the table
    # and lose its triggers.
    op.drop_index("ix_status_match_member_key", table_name="status_match")
    op.drop_column("status_match", "claimed_tier")
    op.drop_column("status_match", "idempotency_key")
