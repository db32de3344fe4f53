"""People who sign in to the consoles, and their server-side sessions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("username", sa.String(48), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("encrypted_totp_secret", sa.Text(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("role IN ('settlement', 'admin', 'partner')", name="person_role"),
        sa.CheckConstraint("(role = 'partner') = (program_id IS NOT NULL)", name="person_partner_has_program"),
    )
    op.create_index("ix_person_program_id", "person", ["program_id"])
    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column(
            "username",
            sa.String(48),
            sa.ForeignKey("person.username", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_web_session_username", "web_session", ["username"])
    op.create_index("ix_web_session_expires_at", "web_session", ["expires_at"])


def downgrade() -> None:
    op.drop_table("web_session")
    op.drop_table("person")
