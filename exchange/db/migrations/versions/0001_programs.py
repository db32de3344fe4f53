"""Programs: the coalition's currency and tier ladder, programs and their tiers.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import ExactNumeric, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coalition_settings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("settlement_currency", sa.String(3), nullable=False),
        sa.Column("currency_minor_units", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name="coalition_settings_single_row"),
    )
    op.create_table(
        "coalition_level",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.CheckConstraint("level >= 0", name="coalition_level_non_negative"),
    )
    op.create_table(
        "program",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("point_name", sa.String(40), nullable=False),
        sa.Column("point_value", ExactNumeric(18, 6), nullable=False),
        sa.Column("minimum_points", sa.Integer(), nullable=False),
        sa.Column("increment", sa.Integer(), nullable=False),
        sa.Column("member_daily_cap", sa.Integer(), nullable=True),
        sa.Column("member_monthly_cap", sa.Integer(), nullable=True),
        sa.Column("member_yearly_cap", sa.Integer(), nullable=True),
        sa.Column("monthly_issue_budget", sa.Integer(), nullable=True),
        sa.Column("connector", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("minimum_points > 0 AND increment > 0", name="program_limits_positive"),
    )
    op.create_table(
        "program_tier",
        sa.Column(
            "program_id",
            sa.String(64),
            sa.ForeignKey("program.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rank", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("level", sa.Integer(), sa.ForeignKey("coalition_level.level"), nullable=False),
        sa.UniqueConstraint("program_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("program_tier")
    op.drop_table("program")
    op.drop_table("coalition_level")
    op.drop_table("coalition_settings")
