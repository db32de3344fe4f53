"""The partners' books: each program's declared monthly issue budget, and the budget alert
levels each program's spend has crossed per period (each logged once).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import ExactNumeric, UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("program") as program:
        program.add_column(sa.Column("budget_monthly_issue", ExactNumeric(18, 4), nullable=True))
    op.create_table(
        "budget_crossing",
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("level", sa.String(10), primary_key=True),
        sa.Column("crossed_at", UTCDateTime(), nullable=False),
        sa.Column("spend_minor", sa.BigInteger(), nullable=False),
        sa.Column("budget_minor", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("budget_crossing")
    with op.batch_alter_table("program") as program:
        program.drop_column("budget_monthly_issue")
