"""Status matches, rewards and redemptions; programs' status-match policies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _saga_columns() -> list[sa.Column[Any]]:
    """The columns of exchange.sagas.state.SagaState."""
    return [
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("step", sa.String(15), nullable=False),
        sa.Column("in_doubt", sa.Boolean(), nullable=False),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("failure_message", sa.String(500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("program") as program:
        program.add_column(sa.Column("status_match", sa.JSON(), nullable=True))

    op.create_table(
        "status_match",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("from_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("to_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=False),
        sa.Column("target_ref", sa.String(128), nullable=False),
        sa.Column("source_tier", sa.String(60), nullable=False),
        sa.Column("source_level", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(60), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("tier_operation", sa.String(60), nullable=False),
        sa.Column("challenge_points", sa.Integer(), nullable=True),
        sa.Column("challenge_activities", sa.Integer(), nullable=True),
        sa.Column("extend_days", sa.Integer(), nullable=True),
        sa.Column("points_earned", sa.Integer(), nullable=False),
        sa.Column("activities_done", sa.Integer(), nullable=False),
        sa.Column("extended", sa.Boolean(), nullable=False),
        *_saga_columns(),
        sa.Index("ix_status_match_member_target", "member_id", "to_program", "created_at"),
        sa.Index("ix_status_match_due", "status", "next_attempt_at"),
        sa.Index("ix_status_match_expiry", "status", "expires_at"),
    )

    op.create_table(
        "reward",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("min_level", sa.Integer(), nullable=False),
        sa.Column("available_from", UTCDateTime(), nullable=False),
        sa.Column("available_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("stock >= 0", name="ck_reward_stock_not_negative"),
        sa.Index("ix_reward_program", "program_id"),
    )

    op.create_table(
        "redemption",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("reward_id", sa.String(64), sa.ForeignKey("reward.id"), nullable=False),
        sa.Column("publisher", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("paying_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("paying_ref", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("usages", sa.JSON(), nullable=False),
        sa.Column("deliver_by", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(10), nullable=True),
        *_saga_columns(),
        sa.UniqueConstraint("member_id", "idempotency_key"),
        sa.Index("ix_redemption_due", "status", "next_attempt_at"),
        sa.Index("ix_redemption_delivery", "status", "deliver_by"),
        sa.Index("ix_redemption_member_created", "member_id", "created_at"),
        sa.Index("ix_redemption_reward", "reward_id"),
    )


def downgrade() -> None:
    op.drop_table("redemption")
    op.drop_table("reward")
    op.drop_table("status_match")
    with op.batch_alter_table("program") as program:
        program.drop_column("status_match")
