"""The risk gates guard redemptions too: a risk decision may be about a redemption, and an
index counts what left an account through redemptions (velocity counts them with conversions).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("risk_decision") as batch:
        batch.add_column(sa.Column("redemption_id", sa.String(36), nullable=True))
    op.create_index("ix_risk_decision_redemption", "risk_decision", ["redemption_id"])
    op.create_index("ix_redemption_account_created", "redemption", ["paying_program", "paying_ref", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_redemption_account_created", table_name="redemption")
    op.drop_index("ix_risk_decision_redemption", table_name="risk_decision")
    with op.batch_alter_table("risk_decision") as batch:
        batch.drop_column("redemption_id")
