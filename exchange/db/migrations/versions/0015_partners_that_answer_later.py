"""Partners that answer later: the credits files sent to batch-mode partners.

(Conversions and redemptions waiting for a partner's late word need no new column: they wait
at new saga steps, ``AWAIT_DEBIT`` and ``AWAIT_CREDIT``.)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_batch",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_credit_batch_program_status", "credit_batch", ["program_id", "status"])
    op.create_table(
        "credit_batch_line",
        sa.Column("conversion_id", sa.String(36), sa.ForeignKey("conversion.id"), primary_key=True),
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("credit_batch.id"), nullable=False),
    )
    op.create_index("ix_credit_batch_line_batch", "credit_batch_line", ["batch_id", "conversion_id"])


def downgrade() -> None:
    op.drop_table("credit_batch_line")
    op.drop_table("credit_batch")
