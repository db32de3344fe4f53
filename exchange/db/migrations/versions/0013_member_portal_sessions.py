"""Members' portal sign-in: sign-ins under way at a partner, and members' portal sessions.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sign_in",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id", ondelete="CASCADE"), nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_portal_sign_in_expires_at", "portal_sign_in", ["expires_at"])
    op.create_table(
        "member_web_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("member.id", ondelete="CASCADE"), nullable=False),
        sa.Column("asserted_by", sa.JSON(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_member_web_session_member_id", "member_web_session", ["member_id"])
    op.create_index("ix_member_web_session_expires_at", "member_web_session", ["expires_at"])


def downgrade() -> None:
    op.drop_table("member_web_session")
    op.drop_table("portal_sign_in")
