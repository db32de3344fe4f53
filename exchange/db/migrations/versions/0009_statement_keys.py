"""Statement-signing keys of their own: the ``statement_key`` table.

Settlement statements were signed with the token-signing keys, whose retired keys are published
for about an hour; a statement must verify for as long as it is kept. The new table has the
token keys' columns (the private key encrypted with ``EXCHANGE_KEY_ENCRYPTION_SECRET``, one
active key) but no ``publish_until``: how long a retired statement key stays published follows
from its retirement and the retention setting in force. The gateway creates the first key when
it starts.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statement_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(10), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("encrypted_private_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("state IN ('active', 'retired')", name="statement_key_state"),
        sa.CheckConstraint("(state = 'active') = (retired_at IS NULL)", name="statement_key_retired_at"),
    )
    op.create_index(
        "statement_key_one_active",
        "statement_key",
        ["state"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
        sqlite_where=sa.text("state = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("statement_key_one_active", table_name="statement_key")
    op.drop_table("statement_key")
