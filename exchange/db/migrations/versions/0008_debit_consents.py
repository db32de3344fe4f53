"""Debit consents: a member's one-time permission, given through a program's partner, for a
request under another partner's token to debit exactly so many of that program's points.

Only the SHA-256 of each consent's secret is stored. Member tokens name the program whose
partner asserted them (``asserted_by``) from this release on; tokens issued before it are
refused and must be requested anew (they live at most a day).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "debit_consent",
        sa.Column("secret_hash", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("member.id", ondelete="CASCADE"), nullable=False),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("used_for", sa.String(80), nullable=True),
    )
    op.create_index("ix_debit_consent_member_id", "debit_consent", ["member_id"])
    op.create_index("ix_debit_consent_expires_at", "debit_consent", ["expires_at"])


def downgrade() -> None:
    op.drop_table("debit_consent")
