"""Conversions and their saga state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversion",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("quote_id", sa.String(36), sa.ForeignKey("quote.id"), nullable=False, unique=True),
        sa.Column("rate_version_id", sa.Integer(), sa.ForeignKey("rate_version.id"), nullable=False),
        sa.Column("from_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("to_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=False),
        sa.Column("target_ref", sa.String(128), nullable=False),
        sa.Column("points_in", sa.BigInteger(), nullable=False),
        sa.Column("points_out", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("money_value_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("step", sa.String(15), nullable=False),
        sa.Column("in_doubt", sa.Boolean(), nullable=False),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("failure_message", sa.String(500), nullable=True),
        sa.Column("usages", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("member_id", "idempotency_key"),
        sa.Index("ix_conversion_due", "status", "next_attempt_at"),
        sa.Index("ix_conversion_member_created", "member_id", "created_at"),
    )


def downgrade() -> None:
    op.drop_table("conversion")
