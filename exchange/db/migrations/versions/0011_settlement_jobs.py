"""Settlement jobs: work staff start from the console (closing a period) that the gateway's
job runner does in the background, with its progress.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ACTIVE_JOB = "state IN ('QUEUED', 'RUNNING')"


def upgrade() -> None:
    op.create_table(
        "settlement_job",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="settlement_job_progress"),
    )
    op.create_index(
        "ux_settlement_job_active",
        "settlement_job",
        ["kind", "subject"],
        unique=True,
        postgresql_where=sa.text(ACTIVE_JOB),
        sqlite_where=sa.text(ACTIVE_JOB),
    )
    op.create_index("ix_settlement_job_state", "settlement_job", ["state", "requested_at"])


def downgrade() -> None:
    op.drop_table("settlement_job")
