"""Membership validation and risk gates: the partner's name on a linked account, each program's
declared risk gates, the risk decision log, and an index for counting an account's conversions.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import BigIdentity, UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("linked_account") as batch:
        batch.add_column(sa.Column("holder_name", sa.String(200), nullable=True))
    with op.batch_alter_table("program") as batch:
        batch.add_column(sa.Column("risk", sa.JSON(), nullable=True))
    op.create_table(
        "risk_decision",
        sa.Column("id", BigIdentity, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(12), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("rule", sa.String(40), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("member_id", sa.String(40), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("member_ref", sa.String(128), nullable=False),
        sa.Column("conversion_id", sa.String(36), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_risk_decision_conversion", "risk_decision", ["conversion_id"])
    op.create_index("ix_risk_decision_member", "risk_decision", ["member_id", "decided_at"])
    op.create_index("ix_conversion_account_created", "conversion", ["from_program", "source_ref", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_conversion_account_created", table_name="conversion")
    op.drop_index("ix_risk_decision_member", table_name="risk_decision")
    op.drop_index("ix_risk_decision_conversion", table_name="risk_decision")
    op.drop_table("risk_decision")
    with op.batch_alter_table("program") as batch:
        batch.drop_column("risk")
    with op.batch_alter_table("linked_account") as batch:
        batch.drop_column("holder_name")
